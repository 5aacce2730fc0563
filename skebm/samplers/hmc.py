"""Hamiltonian Monte Carlo with a leapfrog integrator and an optional diagonal mass."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch

from skebm.fast_gradient import energy_and_grad
from skebm.samplers._base import BaseSampler
from skebm.samplers.schedules import BaseSchedule, schedule_value
from skebm.utils._sklearn_compat import Interval

__all__ = ["HMC", "hmc_step"]

#: An energy error ``H(end) - H(start)`` above this (or not finite) marks a
#: divergent trajectory, as in Stan; such a proposal is always rejected.
DIVERGENCE_THRESHOLD = 1000.0


def _kinetic(momentum: torch.Tensor, inverse_mass) -> torch.Tensor:
    """``½ pᵀ M⁻¹ p`` per chain, summed over every non-chain axis."""
    return 0.5 * (momentum * momentum * inverse_mass).flatten(1).sum(1)


def hmc_step(energy, x, value, grad, step, n_leapfrog, generator, mass=None):
    """One HMC transition: a leapfrog trajectory and a Metropolis correction.

    The trajectory costs ``n_leapfrog`` gradient evaluations: the start's energy
    and gradient are passed in (and returned for the next transition), not
    recomputed.

    Parameters
    ----------
    energy : callable
    x, value, grad : Tensor
        Current states ``(n, ...)``, their energies ``(n,)`` and gradients.
    step : float
        Leapfrog step size ``ε``.
    n_leapfrog : int
        Leapfrog steps ``L`` per trajectory.
    generator : torch.Generator
    mass : float or Tensor or None
        Diagonal of the mass matrix ``M`` (broadcast against a state); ``None``
        is the identity.

    Returns
    -------
    x, value, grad : Tensor
        The new states with their energies and gradients.
    accepted : Tensor of shape (n,), bool
    divergent : Tensor of shape (n,), bool
        Trajectories whose energy error was not finite or above
        :data:`DIVERGENCE_THRESHOLD` (always rejected).
    """
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if mass is None:
        inverse_mass, momentum = 1.0, noise
    else:
        inverse_mass = 1.0 / mass
        momentum = noise * (mass**0.5 if torch.is_tensor(mass) else math.sqrt(mass))
    start_hamiltonian = value + _kinetic(momentum, inverse_mass)
    position, value_new, grad_new = x, value, grad
    momentum = momentum - 0.5 * step * grad_new
    for leap in range(n_leapfrog):
        position = position + step * inverse_mass * momentum
        value_new, grad_new = energy_and_grad(energy, position)
        if leap < n_leapfrog - 1:
            momentum = momentum - step * grad_new
    momentum = momentum - 0.5 * step * grad_new
    energy_error = value_new + _kinetic(momentum, inverse_mass) - start_hamiltonian
    uniform = torch.rand(
        value.shape, generator=generator, device=x.device, dtype=x.dtype
    )
    # A NaN energy error compares False: the proposal is rejected and reported as
    # divergent, never replaced or clamped.
    accepted = torch.log(uniform) < -energy_error
    divergent = ~(energy_error <= DIVERGENCE_THRESHOLD)
    keep = accepted.reshape(-1, *([1] * (x.ndim - 1)))
    return (
        torch.where(keep, position, x),
        torch.where(accepted, value_new, value),
        torch.where(keep, grad_new, grad),
        accepted,
        divergent,
    )


class HMC(BaseSampler):
    """Hamiltonian Monte Carlo: exact for any step size and trajectory length.

    Each transition draws a momentum ``p ~ N(0, M)``, follows ``n_leapfrog``
    leapfrog steps of the Hamiltonian ``H = E(x) + ½ pᵀM⁻¹p`` and accepts the end
    point with probability ``min(1, exp(-ΔH))``, so ``exp(-E)`` is exactly
    invariant. A trajectory costs ``n_leapfrog`` gradient evaluations (the start's
    energy and gradient are reused from the previous transition), plus one at the
    start of a run.

    Parameters
    ----------
    step_size : float or BaseSchedule, default=0.1
        Leapfrog step ``ε``; a schedule is evaluated once per transition.
    n_leapfrog : int, default=10
        Leapfrog steps ``L`` per transition.
    mass : float, array-like of shape (n_features,) or None, default=None
        Diagonal of the mass matrix ``M``; ``None`` is the identity. A good choice
        is the inverse of the target's variance along each axis.

    Notes
    -----
    ``n_steps`` in :meth:`sample` counts transitions (trajectories).
    ``sample(..., return_info=True)`` also returns ``"acceptance_rate"`` (mean over
    chains and transitions) and ``"divergence_rate"`` (the fraction of
    trajectories whose energy error was not finite or exceeded 1000; they are
    rejected, never clamped).

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import HMC
    >>> g = torch.Generator().manual_seed(0)
    >>> x, info = HMC(step_size=0.2, n_leapfrog=8).sample(
    ...     lambda x: 0.5 * (x ** 2).sum(-1), torch.zeros(4000, 1),
    ...     n_steps=50, generator=g, return_info=True)
    >>> round(float(x.var()), 1), bool(info["acceptance_rate"] > 0.9)
    (1.0, True)
    """

    _parameter_constraints: dict = {
        "step_size": [Interval(Real, 0, None, closed="neither"), BaseSchedule],
        "n_leapfrog": [Interval(Integral, 1, None, closed="left")],
        "mass": [Interval(Real, 0, None, closed="neither"), "array-like", None],
    }

    def __init__(self, step_size=0.1, n_leapfrog=10, mass=None):
        self.step_size = step_size
        self.n_leapfrog = n_leapfrog
        self.mass = mass

    def _mass(self, x: torch.Tensor):
        if self.mass is None or isinstance(self.mass, Real):
            return self.mass
        mass = np.asarray(self.mass, dtype=np.float64)
        if mass.shape != x.shape[1:] or not np.all(mass > 0):
            raise ValueError(
                f"mass must be a positive number or a positive array of shape "
                f"{tuple(x.shape[1:])} (one entry per feature); got shape "
                f"{mass.shape} with minimum {mass.min() if mass.size else None}."
            )
        return torch.as_tensor(mass, device=x.device, dtype=x.dtype)

    def _run(self, energy, x, *, n_steps, generator):
        mass = self._mass(x)
        value, grad = energy_and_grad(energy, x)
        accepted_total = torch.zeros((), device=x.device, dtype=x.dtype)
        divergent_total = torch.zeros((), device=x.device, dtype=x.dtype)
        for t in range(n_steps):
            step = schedule_value(self.step_size, t, n_steps)
            x, value, grad, accepted, divergent = hmc_step(
                energy, x, value, grad, step, self.n_leapfrog, generator, mass
            )
            accepted_total = accepted_total + accepted.to(x.dtype).mean()
            divergent_total = divergent_total + divergent.to(x.dtype).mean()
        counted = max(n_steps, 1)
        return x, {
            "acceptance_rate": accepted_total / counted,
            "divergence_rate": divergent_total / counted,
        }
