"""Score matching: Hyvärinen's objective (exact or Hutchinson) and denoising SM."""

from __future__ import annotations

from numbers import Integral, Real

import torch

from skebm.losses._base import BaseLoss
from skebm.utils._sklearn_compat import Interval, StrOptions

__all__ = ["DenoisingScoreMatching", "ScoreMatching"]


def _total_energy_gradient(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (a leaf requiring grad) and ``∇ₓU(x)`` with its graph kept."""
    x = x.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    return x, gradient


def _directional_second_derivative(gradient, x, direction) -> torch.Tensor:
    """``∇ₓ(direction · ∇U)``: a Hessian-vector product (zeros when ``∇U`` is
    constant in ``x``)."""
    if not gradient.requires_grad:
        return torch.zeros_like(x)
    (product,) = torch.autograd.grad(
        (gradient * direction).sum(), x, create_graph=True, allow_unused=True
    )
    return torch.zeros_like(x) if product is None else product


class ScoreMatching(BaseLoss):
    """Score matching (Hyvärinen, 2005): fit the model's score to the data's.

    Minimises ``E_data[½ |∇U(x)|² - tr ∇²U(x)]``, where ``U = E - log q`` is the
    model's total energy (its score is ``-∇U``), which equals the Fisher divergence
    to the data up to a constant. The normaliser is never needed.

    ``method="exact"`` computes the Hessian trace with one backward pass per
    dimension (for small ``d``). ``method="hutchinson"`` estimates it without bias
    as ``vᵀ∇²U v`` averaged over ``n_projections`` random probes ``v`` with
    ``E[vvᵀ] = I`` (sliced score matching with the squared norm kept exact, the
    variance-reduced form of Song et al., 2019): one backward pass per probe
    whatever ``d``.

    Parameters
    ----------
    method : {"exact", "hutchinson"}, default="exact"
        How the trace of the Hessian is computed.
    n_projections : int, default=1
        Probes per row for ``method="hutchinson"``.
    probe : {"rademacher", "gaussian"}, default="rademacher"
        Distribution of the probes: random signs (lower variance) or standard
        normal.

    Notes
    -----
    The energy must be twice differentiable in ``x``: use a smooth activation
    (``"silu"``, ``"softplus"``, ...), not ``"relu"``.

    References
    ----------
    Hyvärinen, A. (2005). Estimation of non-normalized statistical models by score
    matching. JMLR 6.
    Song, Y., Garg, S., Shi, J. and Ermon, S. (2019). Sliced score matching: a
    scalable approach to density and score estimation. UAI.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import GaussianEnergy
    >>> from skebm.losses import ScoreMatching
    >>> x = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    >>> ScoreMatching()(GaussianEnergy(2), x).item()  # mean of ½|x|² - tr I
    -1.5
    """

    _parameter_constraints: dict = {
        "method": [StrOptions({"exact", "hutchinson"})],
        "n_projections": [Interval(Integral, 1, None, closed="left")],
        "probe": [StrOptions({"rademacher", "gaussian"})],
    }

    def __init__(self, method="exact", n_projections=1, probe="rademacher"):
        self.method = method
        self.n_projections = n_projections
        self.probe = probe

    def _loss(self, model, x, *, sampler, generator, state):
        with torch.enable_grad():
            x, gradient = _total_energy_gradient(model, x)
            if self.method == "exact":
                trace = self._exact_trace(gradient, x)
            else:
                trace = self._hutchinson_trace(gradient, x, generator)
            return (0.5 * gradient.square().sum(-1) - trace).mean()

    @staticmethod
    def _exact_trace(gradient, x):
        columns = []
        for i in range(x.shape[1]):
            unit = torch.zeros_like(x)
            unit[:, i] = 1.0
            columns.append(_directional_second_derivative(gradient, x, unit)[:, i])
        return torch.stack(columns, dim=1).sum(1)

    def _hutchinson_trace(self, gradient, x, generator):
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for _ in range(self.n_projections):
            if self.probe == "rademacher":
                signs = torch.randint(
                    0, 2, x.shape, generator=generator, device=x.device
                )
                probe = 2.0 * signs.to(x.dtype) - 1.0
            else:
                probe = torch.randn(
                    x.shape, generator=generator, device=x.device, dtype=x.dtype
                )
            product = _directional_second_derivative(gradient, x, probe)
            total = total + (probe * product).sum(-1)
        return total / self.n_projections


class DenoisingScoreMatching(BaseLoss):
    """Denoising score matching (Vincent, 2011): match the score of noised data.

    Each row is perturbed, ``x̃ = x + σε`` with ``ε ~ N(0, I)``, and the model's
    score ``-∇U(x̃)`` is regressed on the perturbation's score ``-ε/σ``:
    ``½ E|∇U(x̃) - ε/σ|²``. The optimum is the score of the data smoothed by
    ``N(0, σ²I)``, so the learned density is the data's convolved with that noise
    (for Gaussian data, covariance ``Σ + σ²I``): a bias that shrinks with ``σ``
    while the variance of the objective grows.

    With several noise levels (a tuple), every row is perturbed at every level
    and the terms are weighted by ``σ²`` as in NCSN (Song & Ermon, 2019), then
    divided by ``Σσ²``. The energy is not conditioned on the noise level, so it
    fits a single compromise: for Gaussian data the covariance
    ``Σ + (Σσ⁴ / Σσ²) I``.

    Parameters
    ----------
    sigma : float or tuple of float, default=0.1
        Noise standard deviation(s), in the estimator's standardised units.

    References
    ----------
    Vincent, P. (2011). A connection between score matching and denoising
    autoencoders. Neural Computation 23(7).
    Song, Y. and Ermon, S. (2019). Generative modeling by estimating gradients of
    the data distribution. NeurIPS.

    Examples
    --------
    >>> from skebm import EnergyDensityEstimator
    >>> from skebm.losses import DenoisingScoreMatching
    >>> est = EnergyDensityEstimator(loss=DenoisingScoreMatching(sigma=(0.05, 0.1)))
    """

    _parameter_constraints: dict = {
        "sigma": [Interval(Real, 0, None, closed="neither"), tuple, list],
    }

    def __init__(self, sigma=0.1):
        self.sigma = sigma

    def _sigmas(self) -> list[float]:
        sigmas = (
            list(self.sigma) if isinstance(self.sigma, tuple | list) else [self.sigma]
        )
        if not sigmas or not all(
            isinstance(s, Real) and not isinstance(s, bool) and s > 0 for s in sigmas
        ):
            raise ValueError(
                "sigma must be a positive number or a non-empty tuple of positive "
                f"numbers, got {self.sigma!r}."
            )
        return [float(s) for s in sigmas]

    def _loss(self, model, x, *, sampler, generator, state):
        sigmas = self._sigmas()
        levels = len(sigmas)
        sigma = torch.tensor(sigmas, device=x.device, dtype=x.dtype).repeat_interleave(
            x.shape[0]
        )[:, None]
        noise = torch.randn(
            (levels * x.shape[0], x.shape[1]),
            generator=generator,
            device=x.device,
            dtype=x.dtype,
        )
        with torch.enable_grad():
            _, gradient = _total_energy_gradient(
                model, x.repeat(levels, 1) + sigma * noise
            )
        # σ² · ½|∇U - ε/σ|² = ½|σ∇U - ε|², averaged and divided by mean σ².
        residual = sigma * gradient - noise
        weight = sum(s * s for s in sigmas) / levels
        return 0.5 * residual.square().sum(-1).mean() / weight
