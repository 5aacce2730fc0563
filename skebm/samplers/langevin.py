"""Langevin samplers: unadjusted (ULA) and Metropolis-adjusted (MALA)."""

from __future__ import annotations

import math
from numbers import Real

import torch

from skebm.fast_gradient import energy_and_grad, langevin_update
from skebm.samplers._base import BaseSampler
from skebm.samplers.schedules import BaseSchedule, schedule_value
from skebm.utils._sklearn_compat import Interval

__all__ = ["MALA", "Langevin", "mala_accept", "mala_proposal", "mala_step"]


class Langevin(BaseSampler):
    """Unadjusted Langevin dynamics (ULA).

    Each step is ``x ← x - ε ∇E(x) + s·sqrt(2ε)·ξ`` with ``ξ ~ N(0, I)``. With
    ``noise_scale=1`` the chain targets ``exp(-E)`` up to a discretisation bias that
    vanishes as ``ε → 0``; use :class:`MALA` for exact sampling.

    Parameters
    ----------
    step_size : float or BaseSchedule, default=0.01
        ``ε``, in the units of the sampled space (the estimator's standardised
        space).
    noise_scale : float or BaseSchedule, default=1.0
        ``s``; values below 1 sample a colder distribution.

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import Langevin
    >>> g = torch.Generator().manual_seed(0)
    >>> x = Langevin(step_size=0.05).sample(
    ...     lambda x: 0.5 * (x ** 2).sum(-1), torch.zeros(4000, 1),
    ...     n_steps=200, generator=g)
    >>> round(float(x.var()), 1)  # close to 1, the target's variance
    1.0
    """

    _parameter_constraints: dict = {
        "step_size": [Interval(Real, 0, None, closed="neither"), BaseSchedule],
        "noise_scale": [Interval(Real, 0, None, closed="left"), BaseSchedule],
    }

    def __init__(self, step_size=0.01, noise_scale=1.0):
        self.step_size = step_size
        self.noise_scale = noise_scale

    def _run(self, energy, x, *, n_steps, generator):
        for t in range(n_steps):
            step = schedule_value(self.step_size, t, n_steps)
            noise = schedule_value(self.noise_scale, t, n_steps) * math.sqrt(2 * step)
            x = langevin_update(energy, x, self._noise(x, generator), step, noise)
        return x, {}


def mala_proposal(x, grad, step, generator):
    """A Langevin proposal ``x - ε∇E + sqrt(2ε)ξ``; returns it and the noise ``ξ``."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if torch.is_tensor(step):  # per-chain steps of shape (n, 1)
        proposal = torch.addcmul(x, step, grad, value=-1.0)
        return proposal.addcmul_(torch.sqrt(2 * step), noise), noise
    proposal = torch.add(x, grad, alpha=-step)
    return proposal.add_(noise, alpha=math.sqrt(2 * step)), noise


def mala_accept(x, proposal, noise, value, value_p, grad_p, step, generator):
    """The Metropolis–Hastings decision for a :func:`mala_proposal`.

    ``log α = E(x) - E(x') + log q(x | x') - log q(x' | x)`` with
    ``q(b | a) = N(b; a - ε∇E(a), 2ε I)``; ``log q(x' | x) = -|ξ|²/2`` up to the
    constant shared by both directions. Returns a bool tensor of shape ``(n,)``.
    """
    backward = x - proposal + step * grad_p
    step_flat = step.reshape(-1) if torch.is_tensor(step) else step
    log_ratio = (
        value
        - value_p
        - (backward * backward).sum(-1) / (4 * step_flat)
        + 0.5 * (noise * noise).sum(-1)
    )
    uniform = torch.rand(
        value.shape, generator=generator, device=x.device, dtype=x.dtype
    )
    return torch.log(uniform) < log_ratio


def mala_step(energy, x, value, grad, step, generator):
    """One Metropolis-adjusted Langevin step, reusing the current energy/gradient.

    Parameters
    ----------
    energy : callable
    x, value, grad : Tensor
        Current states ``(n, d)``, their energies ``(n,)`` and gradients ``(n, d)``.
    step : float or Tensor
        Step size ``ε``: a number, or a tensor of shape ``(n, 1)`` for per-chain
        steps.
    generator : torch.Generator

    Returns
    -------
    x, value, grad : Tensor
        The new states with their energies and gradients (one gradient evaluation,
        of the proposal).
    accepted : Tensor of shape (n,), bool
    """
    proposal, noise = mala_proposal(x, grad, step, generator)
    value_p, grad_p = energy_and_grad(energy, proposal)
    accepted = mala_accept(x, proposal, noise, value, value_p, grad_p, step, generator)
    keep = accepted.unsqueeze(-1)
    return (
        torch.where(keep, proposal, x),
        torch.where(accepted, value_p, value),
        torch.where(keep, grad_p, grad),
        accepted,
    )


class MALA(BaseSampler):
    """Metropolis-adjusted Langevin algorithm: exact for any step size.

    A Langevin proposal ``x' = x - ε∇E(x) + sqrt(2ε)ξ`` is accepted with the
    Metropolis–Hastings probability, so ``exp(-E)`` is exactly invariant. The
    proposal's energy and gradient are reused after an accept: one gradient
    evaluation per step.

    Parameters
    ----------
    step_size : float or BaseSchedule, default=0.01
        Initial ``ε``. A schedule needs ``target_accept=None``.
    target_accept : float or None, default=0.574
        When set, each chain's step size is adapted towards this acceptance rate
        during the first ``n_adapt`` steps (burn-in) and frozen afterwards, so the
        chain after burn-in is exact. 0.574 is optimal for smooth targets.
    n_adapt : int or None, default=None
        Length of the adaptation phase; ``None`` means half of the run.

    Notes
    -----
    ``sample(..., return_info=True)`` also returns ``"acceptance_rate"`` (the mean
    acceptance after burn-in, a tensor) and ``"step_size"`` (per-chain final steps).

    Examples
    --------
    >>> import torch
    >>> from skebm.samplers import MALA
    >>> g = torch.Generator().manual_seed(0)
    >>> x, info = MALA(step_size=0.5, target_accept=None).sample(
    ...     lambda x: 0.5 * (x ** 2).sum(-1), torch.zeros(4000, 1),
    ...     n_steps=100, generator=g, return_info=True)
    >>> round(float(x.var()), 1), bool(info["acceptance_rate"] > 0.5)
    (1.0, True)
    """

    _parameter_constraints: dict = {
        "step_size": [Interval(Real, 0, None, closed="neither"), BaseSchedule],
        "target_accept": [Interval(Real, 0, 1, closed="neither"), None],
        "n_adapt": [Interval(Real, 0, None, closed="left"), None],
    }

    def __init__(self, step_size=0.01, target_accept=0.574, n_adapt=None):
        self.step_size = step_size
        self.target_accept = target_accept
        self.n_adapt = n_adapt

    def _run(self, energy, x, *, n_steps, generator):
        adapt = self.target_accept is not None
        if adapt and isinstance(self.step_size, BaseSchedule):
            raise ValueError("MALA cannot adapt a scheduled step_size; pass a float.")
        n_adapt = 0
        if adapt:
            n_adapt = n_steps // 2 if self.n_adapt is None else int(self.n_adapt)
            n_adapt = min(n_adapt, n_steps)
        log_step = torch.full(
            (x.shape[0], 1),
            math.log(schedule_value(self.step_size, 0, n_steps)),
            device=x.device,
            dtype=x.dtype,
        )
        value, grad = energy_and_grad(energy, x)
        accepted_total = torch.zeros((), device=x.device, dtype=x.dtype)
        for t in range(n_steps):
            if isinstance(self.step_size, BaseSchedule):
                step = self.step_size(t, n_steps)
            else:
                step = log_step.exp()
            x, value, grad, accepted = mala_step(
                energy, x, value, grad, step, generator
            )
            if t < n_adapt:
                # Robbins-Monro on each chain's log step, gain decaying as 1/sqrt(t).
                gain = 1.0 / math.sqrt(t + 1.0)
                log_step = log_step + gain * (
                    accepted.to(x.dtype).unsqueeze(-1) - self.target_accept
                )
            else:
                accepted_total = accepted_total + accepted.to(x.dtype).mean()
        counted = max(n_steps - n_adapt, 1)
        step_out = (
            torch.full_like(log_step, self.step_size(n_steps - 1, n_steps))
            if isinstance(self.step_size, BaseSchedule)
            else log_step.exp()
        )
        return x, {
            "acceptance_rate": accepted_total / counted,
            "step_size": step_out.squeeze(-1),
        }
