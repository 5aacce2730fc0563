"""Analytic energies with exact log-normalisers and exact samplers.

They serve as test targets with known moments and densities, and as ``energy=``
for users who want to sample, or fit by maximum likelihood, a known family.
Each energy ``E`` has a method ``log_partition()`` returning the exact
``log ∫ exp(-E(x)) dx`` as a tensor, and ``sample(n_samples, generator=)``
returning exact draws from ``exp(-E) / Z`` on the energy's device and dtype.

=========================  =========  ===========================================
class                      learnable  density ``exp(-E) / Z``
=========================  =========  ===========================================
``GaussianEnergy``         yes        ``N(μ, Σ)``, full covariance
``GaussianMixtureEnergy``  yes        ``Σ_k w_k N(μ_k, Σ_k)`` (``log Z = 0``)
``DoubleWellEnergy``       no         ``∝ exp(-a Σ_i (x_i² - 1)²)``, ``2^d`` modes
``RosenbrockEnergy``       no         banana: ``x_i | x_{i-1} ~ N(x_{i-1}², ·)``
=========================  =========  ===========================================
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import ive
from torch import nn

__all__ = [
    "DoubleWellEnergy",
    "GaussianEnergy",
    "GaussianMixtureEnergy",
    "RosenbrockEnergy",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _precision_cholesky_init(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log diag L`` and the strict lower part of ``L`` with ``Σ⁻¹ = L Lᵀ``."""
    chol = np.linalg.cholesky(np.linalg.inv(covariance))
    return np.log(np.diagonal(chol, axis1=-2, axis2=-1)), np.tril(chol, -1)


def _as_parameter(value, learnable: bool) -> nn.Parameter:
    tensor = torch.as_tensor(np.asarray(value), dtype=torch.get_default_dtype())
    return nn.Parameter(tensor, requires_grad=learnable)


def _standard_normal(module: nn.Module, shape, generator) -> torch.Tensor:
    reference = next(module.parameters(), None)
    if reference is None:
        reference = next(module.buffers())
    return torch.randn(
        shape, generator=generator, device=reference.device, dtype=reference.dtype
    )


class GaussianEnergy(nn.Module):
    """The quadratic energy ``E(x) = ½ (x - μ)ᵀ P (x - μ)`` of a Gaussian.

    ``exp(-E)`` is an unnormalised ``N(μ, P⁻¹)``. The precision is parametrised as
    ``P = L Lᵀ`` with ``L`` lower triangular with a positive diagonal, so any
    parameter value is valid.

    Parameters
    ----------
    n_features : int
        Dimension.
    mean : array-like of shape (n_features,), default=None
        Initial mean (zeros).
    covariance : array-like of shape (n_features, n_features), default=None
        Initial covariance (identity).
    learnable : bool, default=True
        Whether the mean and precision are trainable parameters.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import GaussianEnergy
    >>> energy = GaussianEnergy(2, covariance=[[2.0, 0.0], [0.0, 0.5]])
    >>> round(energy.log_partition().item(), 4)  # log(2π · sqrt(det Σ))
    1.8379
    >>> energy.sample(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2])
    """

    def __init__(self, n_features, mean=None, covariance=None, learnable=True):
        super().__init__()
        d = int(n_features)
        mean = np.zeros(d) if mean is None else np.asarray(mean, dtype=np.float64)
        covariance = (
            np.eye(d)
            if covariance is None
            else np.asarray(covariance, dtype=np.float64)
        )
        if mean.shape != (d,) or covariance.shape != (d, d):
            raise ValueError(
                f"mean must have shape ({d},) and covariance ({d}, {d}); got "
                f"{mean.shape} and {covariance.shape}."
            )
        log_diag, off_diag = _precision_cholesky_init(covariance)
        self.n_features = d
        self.mean = _as_parameter(mean, learnable)
        self.log_diag = _as_parameter(log_diag, learnable)
        self.off_diag = _as_parameter(off_diag, learnable)

    def precision_cholesky(self) -> torch.Tensor:
        """The lower-triangular ``L`` with ``P = L Lᵀ``."""
        return torch.tril(self.off_diag, -1) + torch.diag(self.log_diag.exp())

    def precision(self) -> torch.Tensor:
        chol = self.precision_cholesky()
        return chol @ chol.T

    def covariance(self) -> torch.Tensor:
        return torch.linalg.inv(self.precision())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x - self.mean) @ self.precision_cholesky()
        return 0.5 * (y * y).sum(-1)

    def log_partition(self) -> torch.Tensor:
        """``log ∫ exp(-E) = d/2 log 2π - log det L``."""
        return 0.5 * self.n_features * _LOG_2PI - self.log_diag.sum()

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        """Exact draws ``μ + L⁻ᵀ ξ``, ``ξ ~ N(0, I)``."""
        noise = _standard_normal(self, (n_samples, self.n_features), generator)
        chol = self.precision_cholesky().detach()
        # Rows: x = μ + ξ L⁻¹, since (L⁻ᵀ ξ)ᵀ = ξᵀ L⁻¹.
        offsets = torch.linalg.solve_triangular(chol, noise, upper=False, left=False)
        return self.mean.detach() + offsets


class GaussianMixtureEnergy(nn.Module):
    """The negative log-density of a Gaussian mixture, ``-log Σ_k w_k N(x; μ_k, Σ_k)``.

    The energy is normalised (``log_partition() = 0``). Weights are parametrised
    by logits and each precision by a Cholesky factor with a positive diagonal, so
    any parameter value is valid.

    Parameters
    ----------
    n_features : int
        Dimension.
    n_components : int, default=2
        Used when ``means`` is not given.
    weights : array-like of shape (n_components,), default=None
        Mixture weights (normalised here); equal by default.
    means : array-like of shape (n_components, n_features), default=None
        Component means; by default spread evenly on ``[-1, 1]`` along the first
        axis.
    covariances : array-like of shape (n_components, n_features, n_features), \
default=None
        Component covariances; identity by default.
    learnable : bool, default=True
        Whether weights, means and precisions are trainable parameters.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import GaussianMixtureEnergy
    >>> energy = GaussianMixtureEnergy(1, weights=[0.5, 0.5], means=[[-2.0], [2.0]])
    >>> density = torch.exp(-energy(torch.tensor([[-2.0], [2.0]])))
    >>> [round(v, 4) for v in density.tolist()]  # half of N(0, 1)'s peak each
    [0.1995, 0.1995]
    """

    def __init__(
        self,
        n_features,
        n_components=2,
        weights=None,
        means=None,
        covariances=None,
        learnable=True,
    ):
        super().__init__()
        d = int(n_features)
        if means is None:
            k = int(n_components)
            means = np.zeros((k, d))
            means[:, 0] = np.linspace(-1.0, 1.0, k) if k > 1 else 0.0
        means = np.asarray(means, dtype=np.float64)
        k = means.shape[0] if means.ndim == 2 else 0
        weights = np.full(k, 1.0) if weights is None else np.asarray(weights, float)
        if covariances is None:
            covariances = np.broadcast_to(np.eye(d), (k, d, d))
        covariances = np.asarray(covariances, dtype=np.float64)
        if (
            means.shape != (k, d)
            or k == 0
            or weights.shape != (k,)
            or covariances.shape != (k, d, d)
        ):
            raise ValueError(
                f"For {d} features, means must have shape (k, {d}), weights (k,) and "
                f"covariances (k, {d}, {d}) with k >= 1; got {means.shape}, "
                f"{weights.shape} and {covariances.shape}."
            )
        if np.any(weights <= 0):
            raise ValueError(f"weights must be positive, got {weights}.")
        log_diag, off_diag = _precision_cholesky_init(covariances)
        self.n_features = d
        self.logits = _as_parameter(np.log(weights / weights.sum()), learnable)
        self.means = _as_parameter(means, learnable)
        self.log_diag = _as_parameter(log_diag, learnable)
        self.off_diag = _as_parameter(off_diag, learnable)

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    def precision_cholesky(self) -> torch.Tensor:
        """The factors ``L_k`` with ``Σ_k⁻¹ = L_k L_kᵀ``, shape ``(k, d, d)``."""
        return torch.tril(self.off_diag, -1) + torch.diag_embed(self.log_diag.exp())

    def covariances(self) -> torch.Tensor:
        chol = self.precision_cholesky()
        return torch.linalg.inv(chol @ chol.transpose(-1, -2))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("bd,kde->bke", x, self.precision_cholesky()) - torch.einsum(
            "kd,kde->ke", self.means, self.precision_cholesky()
        )
        log_components = (
            torch.log_softmax(self.logits, 0)
            + self.log_diag.sum(-1)
            - 0.5 * self.n_features * _LOG_2PI
            - 0.5 * (y * y).sum(-1)
        )
        return -torch.logsumexp(log_components, dim=-1)

    def log_partition(self) -> torch.Tensor:
        """Zero: the energy is a normalised negative log-density."""
        return torch.zeros((), dtype=self.means.dtype, device=self.means.device)

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        """Exact draws: a component by weight, then ``μ_k + L_k⁻ᵀ ξ``."""
        component = torch.multinomial(
            self.weights().detach(), n_samples, replacement=True, generator=generator
        )
        noise = _standard_normal(self, (n_samples, self.n_features), generator)
        chol = self.precision_cholesky().detach()[component]
        offsets = torch.linalg.solve_triangular(
            chol, noise.unsqueeze(1), upper=False, left=False
        ).squeeze(1)
        return self.means.detach()[component] + offsets


class DoubleWellEnergy(nn.Module):
    """A double well in every coordinate: ``E(x) = a Σ_i (x_i² - 1)²``.

    The density has ``2^d`` modes at ``x_i = ±1``, separated by barriers of height
    ``a``. The coordinates are independent, each with normaliser

    ``∫ exp(-a (t² - 1)²) dt = (π/2) e^{-a/2} [I_{-1/4}(a/2) + I_{1/4}(a/2)]``

    (``I_ν`` the modified Bessel function of the first kind), so
    ``log Z = d · log`` of that. Exact draws use rejection sampling from a mixture
    of ``N(±1, 1/(2a))``, which bounds the density everywhere (acceptance about
    one half for any ``a``).

    Parameters
    ----------
    n_features : int, default=1
        Dimension.
    barrier : float, default=2.0
        ``a``, the height of the barrier between the wells.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import DoubleWellEnergy
    >>> energy = DoubleWellEnergy(1, barrier=2.0)
    >>> energy(torch.tensor([[-1.0], [0.0], [1.0]])).tolist()
    [0.0, 2.0, 0.0]
    >>> round(energy.log_partition().item(), 3)  # log 1.4109
    0.344
    """

    def __init__(self, n_features=1, barrier=2.0):
        super().__init__()
        if not barrier > 0:
            raise ValueError(f"barrier must be positive, got {barrier}.")
        self.n_features = int(n_features)
        half = 0.5 * float(barrier)
        log_norm_1d = math.log(math.pi / 2) + math.log(
            ive(-0.25, half) + ive(0.25, half)
        )
        self.register_buffer(
            "barrier", torch.tensor(float(barrier), dtype=torch.get_default_dtype())
        )
        self.register_buffer(
            "_log_partition",
            torch.tensor(
                self.n_features * log_norm_1d, dtype=torch.get_default_dtype()
            ),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.barrier * (x * x - 1.0).square().sum(-1)

    def log_partition(self) -> torch.Tensor:
        return self._log_partition.clone()

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        """Exact draws by rejection, coordinate-wise (loops until all accepted)."""
        n = int(n_samples) * self.n_features
        a = self.barrier
        std = torch.rsqrt(2.0 * a)
        accepted = []
        n_accepted = 0
        while n_accepted < n:
            m = 2 * (n - n_accepted) + 64
            sign = torch.randint(0, 2, (m,), generator=generator, device=a.device).to(
                a.dtype
            )
            t = (2.0 * sign - 1.0) + std * _standard_normal(self, (m,), generator)
            # Envelope: exp(-a(t²-1)²) <= exp(-a(t-1)²) + exp(-a(t+1)²).
            log_ratio = -a * (t * t - 1.0).square() - torch.logaddexp(
                -a * (t - 1.0).square(), -a * (t + 1.0).square()
            )
            uniform = torch.rand(
                (m,), generator=generator, device=a.device, dtype=a.dtype
            )
            keep = t[torch.log(uniform) < log_ratio]
            accepted.append(keep)
            n_accepted += int(keep.shape[0])
        return torch.cat(accepted)[:n].reshape(int(n_samples), self.n_features)


class RosenbrockEnergy(nn.Module):
    """A Rosenbrock ("banana") energy with an exact normaliser.

    ``E(x) = a (x_1 - location)² + b Σ_{i=2}^{d} (x_i - x_{i-1}²)²``

    is the negative log-density of the chain ``x_1 ~ N(location, 1/(2a))``,
    ``x_i | x_{i-1} ~ N(x_{i-1}², 1/(2b))`` (Pagani et al., 2019), so
    ``log Z = ½ log(π/a) + (d-1)/2 · log(π/b)`` and exact draws follow the chain.
    The defaults give the classic curved 2-D target (a hard test for samplers).

    Parameters
    ----------
    n_features : int, default=2
        Dimension.
    location : float, default=1.0
        Mean of ``x_1``.
    a : float, default=0.05
        Precision scale of ``x_1``.
    b : float, default=5.0
        Precision scale of each ``x_i`` around ``x_{i-1}²``.

    References
    ----------
    Pagani, F., Wiegand, M. and Nadarajah, S. (2019). An n-dimensional Rosenbrock
    distribution for MCMC testing. arXiv:1903.09556.

    Examples
    --------
    >>> import math, torch
    >>> from skebm.energies import RosenbrockEnergy
    >>> energy = RosenbrockEnergy(2)
    >>> energy(torch.tensor([[1.0, 1.0]])).tolist()
    [0.0]
    >>> exact = math.log(math.pi / 0.5)  # ½ log(π/a) + ½ log(π/b)
    >>> math.isclose(energy.log_partition().item(), exact, rel_tol=1e-6)
    True
    """

    def __init__(self, n_features=2, location=1.0, a=0.05, b=5.0):
        super().__init__()
        if not (a > 0 and b > 0):
            raise ValueError(f"a and b must be positive, got a={a}, b={b}.")
        self.n_features = int(n_features)
        dtype = torch.get_default_dtype()
        self.register_buffer("location", torch.tensor(float(location), dtype=dtype))
        self.register_buffer("a", torch.tensor(float(a), dtype=dtype))
        self.register_buffer("b", torch.tensor(float(b), dtype=dtype))
        log_z = 0.5 * math.log(math.pi / a) + 0.5 * (self.n_features - 1) * math.log(
            math.pi / b
        )
        self.register_buffer("_log_partition", torch.tensor(log_z, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = self.a * (x[:, 0] - self.location).square()
        if self.n_features > 1:
            energy = energy + self.b * (x[:, 1:] - x[:, :-1].square()).square().sum(-1)
        return energy

    def log_partition(self) -> torch.Tensor:
        return self._log_partition.clone()

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        """Exact draws along the chain ``x_1 → x_2 → …``."""
        noise = _standard_normal(self, (n_samples, self.n_features), generator)
        columns = [self.location + noise[:, 0] * torch.rsqrt(2.0 * self.a)]
        for i in range(1, self.n_features):
            columns.append(
                columns[-1].square() + noise[:, i] * torch.rsqrt(2.0 * self.b)
            )
        return torch.stack(columns, dim=1)
