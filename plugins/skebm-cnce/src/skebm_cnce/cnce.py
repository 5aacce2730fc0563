"""Conditional noise-contrastive estimation (Ceylan & Gutmann, 2018)."""

from __future__ import annotations

from numbers import Integral, Real

import torch
import torch.nn.functional as F

from skebm.losses import BaseLoss
from skebm.utils.constraints import Interval

__all__ = ["ConditionalNCE"]


class ConditionalNCE(BaseLoss):
    """Conditional noise-contrastive estimation: tell data from nearby noise.

    Every data row ``x`` is paired with ``n_noise`` noisy copies
    ``y = x + σ·ε``, ``ε ~ N(0, I)``, and a classifier learns which of the two
    is the data point. Its logit is ``G(x, y) = U(y) - U(x)``, with ``U`` the
    model's total energy (``-log`` of its unnormalised density): the noise is
    symmetric, ``p(y | x) = p(x | y)``, so the noise densities cancel, and so
    does the normaliser ``Z``. The loss is the logistic loss
    ``mean softplus(U(x) - U(y))``; it is consistent for the model's parameters
    (the minimiser is the data density when the model family contains it) and
    needs neither MCMC nor a normaliser estimate.

    Parameters
    ----------
    noise_scale : float, default=0.5
        ``σ``, in the estimator's standardised units (the data have unit
        variance per feature there). Small values make the two points hard to
        tell apart and the loss approach score matching; large ones make the
        task easy and the gradient weak. Values from a third to the whole of the
        data's scale work well.
    n_noise : int, default=4
        Noisy copies per data row (``κ``); more copies lower the variance of
        the gradient at a proportional cost.

    References
    ----------
    Ceylan, C. and Gutmann, M. U. (2018). Conditional noise-contrastive
    estimation of unnormalised models. Proceedings of the 35th International
    Conference on Machine Learning (ICML), PMLR 80, 726-734.

    Examples
    --------
    >>> import torch
    >>> from skebm_cnce import ConditionalNCE
    >>> loss = ConditionalNCE(noise_scale=0.5)
    >>> x = torch.zeros(4, 2)
    >>> value = loss(lambda u: 0.5 * (u ** 2).sum(-1), x,
    ...              generator=torch.Generator().manual_seed(0))
    >>> value.shape, bool(value < torch.log(torch.tensor(2.0)))
    (torch.Size([]), True)
    """

    _parameter_constraints: dict = {
        "noise_scale": [Interval(Real, 0, None, closed="neither")],
        "n_noise": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, noise_scale=0.5, n_noise=4):
        self.noise_scale = noise_scale
        self.n_noise = n_noise

    def _loss(self, model, x, *, sampler, generator, state):
        batch = x.shape[0]
        data = x.repeat(int(self.n_noise), 1)
        noise = torch.randn(
            data.shape, generator=generator, device=x.device, dtype=x.dtype
        )
        energies = model(torch.cat([x, data + self.noise_scale * noise]))
        data_energy = energies[:batch].repeat(int(self.n_noise))
        return F.softplus(data_energy - energies[batch:]).mean()
