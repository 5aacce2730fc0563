"""The residual form: a learned energy on top of a fixed base density."""

from __future__ import annotations

import torch
from torch import nn

from skebm.bases import BaseDensity
from skebm.fast_gradient import ForwardingEnergy, langevin_move
from skebm.utils._torch import autograd_value_and_grad

__all__ = ["ResidualEnergy"]


class ResidualEnergy(ForwardingEnergy):
    """The total energy ``U(x) = E(x) - log q(x)`` of the model ``q·exp(-E)``.

    Samplers see the total energy ``U`` (through ``forward``); losses also use its
    parts: the learned energy :attr:`energy` and the base density :attr:`base`.
    With ``base=None`` the base is flat (``log q = 0``) and ``U = E``, which is how
    a plain energy module is trained on its own.

    Parameters
    ----------
    energy : nn.Module
        The learned energy ``E``, mapping ``(batch, d)`` to ``(batch,)``.
    base : BaseDensity or None
        The fixed, normalised base density ``q``.

    Examples
    --------
    >>> import torch
    >>> from skebm.bases import StandardNormalDensity
    >>> from skebm.energies import MLPEnergy, ResidualEnergy
    >>> model = ResidualEnergy(MLPEnergy(2), StandardNormalDensity(2))
    >>> x = torch.zeros(1, 2)
    >>> torch.allclose(model(x), -model.base.log_prob(x))  # untrained: U = -log q
    True
    """

    def __init__(self, energy: nn.Module, base: BaseDensity | None = None):
        super().__init__(energy)
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.base is None:
            return super().forward(x)
        return self.energy(x) - self.base.log_prob(x)

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``U(x)`` and ``∇ₓU(x)``, detached (see
        :func:`skebm.fast_gradient.energy_and_grad`).

        When the learned energy has its own ``value_and_grad`` (the MLP's
        hand-written one, or a compiled one), it is used for ``E`` and the base
        supplies its own gradient (:meth:`BaseDensity.log_prob_and_grad`); otherwise
        one autograd pass covers ``U``.
        """
        if self.base is None:
            return super().value_and_grad(x)
        if getattr(self.energy, "value_and_grad", None) is None:
            return autograd_value_and_grad(self, x)
        value, grad = self.energy.value_and_grad(x)
        log_q, grad_log_q = self.base.log_prob_and_grad(x)
        return value - log_q, grad - grad_log_q

    def langevin_update(
        self,
        x: torch.Tensor,
        noise: torch.Tensor,
        step: float | torch.Tensor,
        noise_scale: float | torch.Tensor,
    ) -> torch.Tensor:
        """The Langevin move on ``U`` (see :func:`skebm.fast_gradient.langevin_update`):
        the learned energy's move, plus ``step·∇ log q(x)`` for the base."""
        if self.base is None:
            return super().langevin_update(x, noise, step, noise_scale)
        if getattr(self.energy, "langevin_update", None) is None:
            _, grad = self.value_and_grad(x)
            return langevin_move(x, grad, noise, step, noise_scale)
        grad_log_q = self.base.grad_log_prob(x)
        moved = self.energy.langevin_update(x, noise, step, noise_scale)
        if torch.is_tensor(step):
            return moved + step * grad_log_q
        return torch.add(moved, grad_log_q, alpha=step)

    @property
    def has_closed_form_gradient(self) -> bool:
        """Whether the fast path is plain tensor code ``torch.compile`` traces:
        the energy's and the base's gradients are both closed forms."""
        base_ok = self.base is None or self.base.has_closed_form_gradient
        return base_ok and super().has_closed_form_gradient

    def sample_base(
        self, n_samples: int, *, generator: torch.Generator, like: torch.Tensor
    ) -> torch.Tensor:
        """Exact draws from the base (standard normal when the base is flat)."""
        if self.base is not None:
            return self.base.sample(n_samples, generator=generator)
        return torch.randn(
            (n_samples, like.shape[-1]),
            generator=generator,
            device=like.device,
            dtype=like.dtype,
        )


def as_residual(energy: nn.Module) -> ResidualEnergy:
    """Wrap a plain energy module as a flat-base :class:`ResidualEnergy`."""
    return energy if isinstance(energy, ResidualEnergy) else ResidualEnergy(energy)
