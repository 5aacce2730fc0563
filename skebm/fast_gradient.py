"""The fast-gradient protocol: how an energy gives samplers its gradient.

Every sampler moves chains with ``∇ₓE(x)``. By default skebm gets it from
autograd (one vector-Jacobian product, no parameter gradients). An energy can do
better by providing, next to ``forward``:

``value_and_grad(x) -> (E(x), ∇ₓE(x))``
    both detached, for a batch ``x`` of shape ``(n, d)``;
``langevin_update(x, noise, step, noise_scale) -> x'``
    one Langevin move ``x - step·∇ₓE(x) + noise_scale·noise``, detached, fused
    however the energy likes (``step`` and ``noise_scale`` are numbers or 0-d
    tensors);
``has_closed_form_gradient``
    ``True`` when both are plain tensor code (no autograd), which
    :mod:`skebm.acceleration` then compiles instead of the autograd graph.

:class:`~skebm.energies.MLPEnergy` implements it with a hand-written backward
pass, the base densities with closed forms, and
:func:`skebm.acceleration.attach_compiled_kernels` with compiled kernels. Samplers
never call these attributes directly: they call :func:`energy_and_grad` and
:func:`langevin_update`, which use the energy's own when present and autograd
otherwise, so every energy works and the protocol only adds speed. The three are
optional and independent; :class:`FastGradientEnergy` names the full set for type
checkers.

A module that wraps an energy (to add a term, count evaluations, attach kernels)
subclasses :class:`ForwardingEnergy`, which passes the protocol through to the
wrapped energy, so a wrapper never silently falls back to autograd.

Examples
--------
>>> import torch
>>> from skebm.fast_gradient import energy_and_grad
>>> from skebm.energies import MLPEnergy
>>> energy = MLPEnergy(2)
>>> value, grad = energy_and_grad(energy, torch.zeros(3, 2))  # the MLP's own
>>> grad.shape
torch.Size([3, 2])
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from skebm.utils._torch import autograd_value_and_grad

__all__ = [
    "FastGradientEnergy",
    "ForwardingEnergy",
    "energy_and_grad",
    "langevin_move",
    "langevin_update",
]


@runtime_checkable
class FastGradientEnergy(Protocol):
    """An energy that gives samplers its gradient without autograd (see the
    module's description)."""

    has_closed_form_gradient: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def langevin_update(
        self,
        x: torch.Tensor,
        noise: torch.Tensor,
        step: float | torch.Tensor,
        noise_scale: float | torch.Tensor,
    ) -> torch.Tensor: ...


def energy_and_grad(energy, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``E(x)`` and ``∇ₓE(x)`` for a batch, both detached.

    The energy's own ``value_and_grad`` when it has one; otherwise only the
    gradient with respect to ``x`` is computed (a vector-Jacobian product with
    ones), never parameter gradients.
    """
    fast = getattr(energy, "value_and_grad", None)
    if fast is not None:
        return fast(x)
    return autograd_value_and_grad(energy, x)


def langevin_update(
    energy,
    x: torch.Tensor,
    noise: torch.Tensor,
    step: float | torch.Tensor,
    noise_scale: float | torch.Tensor,
) -> torch.Tensor:
    """One Langevin move ``x - step·∇ₓE(x) + noise_scale·noise``, detached.

    The energy's own ``langevin_update`` when it has one; otherwise the gradient
    comes from :func:`energy_and_grad`.
    """
    fused = getattr(energy, "langevin_update", None)
    if fused is not None:
        return fused(x, noise, step, noise_scale)
    _, grad = energy_and_grad(energy, x)
    return langevin_move(x, grad, noise, step, noise_scale)


def langevin_move(x, grad, noise, step, noise_scale) -> torch.Tensor:
    """``x - step·grad + noise_scale·noise`` for numbers or 0-d tensor steps.

    Numbers take two kernels (``add`` with ``alpha``) instead of four; tensors (as
    compiled callers pass them) are left to the compiler to fuse.
    """
    if torch.is_tensor(step) or torch.is_tensor(noise_scale):
        return x - step * grad + noise_scale * noise
    return torch.add(x, grad, alpha=-step).add_(noise, alpha=noise_scale)


class ForwardingEnergy(nn.Module):
    """A module wrapping one energy, :attr:`energy`, with the fast-gradient
    protocol passed through to it.

    Subclasses override what they change (``forward`` and the two kernels, or
    some of them) and call ``super()`` for the wrapped energy's part.

    Parameters
    ----------
    energy : nn.Module
        The wrapped energy, mapping ``(batch, d)`` to ``(batch,)``.
    """

    def __init__(self, energy: nn.Module):
        super().__init__()
        self.energy = energy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(x)

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The wrapped energy's :func:`energy_and_grad`."""
        return energy_and_grad(self.energy, x)

    def langevin_update(
        self,
        x: torch.Tensor,
        noise: torch.Tensor,
        step: float | torch.Tensor,
        noise_scale: float | torch.Tensor,
    ) -> torch.Tensor:
        """The wrapped energy's :func:`langevin_update`."""
        return langevin_update(self.energy, x, noise, step, noise_scale)

    @property
    def has_closed_form_gradient(self) -> bool:
        """Whether the wrapped energy's kernels are closed forms."""
        return getattr(self.energy, "has_closed_form_gradient", False)
