"""Log-partition estimation for the model ``p(z) = q(z) exp(-E(z)) / Z``.

``Z = E_q[exp(-E)]`` because the base ``q`` is normalised. Three estimators:

* :func:`importance_log_partition` — plain importance sampling from the base: the
  mean of ``exp(-E)`` over many exact base draws, unbiased for ``Z``; any dimension,
  and accurate while the energy is a moderate correction of its base.
* :func:`ais_log_partition` — annealed importance sampling along the geometric path
  ``π_β ∝ q·exp(-βE)``, ``β: 0 → 1``, from exact base draws, with
  Metropolis-adjusted Langevin transitions; any dimension. Returns the estimate
  and its standard error (delta method on the importance weights).
* :func:`grid_log_partition` — midpoint quadrature over a box holding the base's
  mass, widened where the model's mass reaches its edge, for ``d <= 2``; its error
  estimate is the change from a half-resolution grid.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils.validation import check_scalar

from skebm.energies.residual import ResidualEnergy
from skebm.fast_gradient import energy_and_grad
from skebm.samplers.langevin import mala_accept, mala_proposal
from skebm.utils._torch import evaluate_in_chunks, frozen_parameters

__all__ = [
    "MIN_IMPORTANCE_ESS",
    "PARTITION_METHODS",
    "PartitionEstimate",
    "ais_log_partition",
    "estimate_log_partition",
    "grid_log_partition",
    "importance_log_partition",
]

#: Fewest effective draws of importance sampling for ``"auto"`` to keep its
#: estimate rather than anneal.
MIN_IMPORTANCE_ESS = 100

#: Base draws evaluated at once by :func:`importance_log_partition`.
_CHUNK = 16384


@dataclass(frozen=True)
class PartitionEstimate:
    """An estimate of ``log Z`` with its standard error and diagnostics."""

    log_partition: float
    stderr: float
    effective_sample_size: float | None = None
    acceptance_rate: float | None = None


def _energy_parts(model: ResidualEnergy, z: torch.Tensor):
    """``E(z)``, ``∇E(z)``, ``log q(z)``, ``∇log q(z)``: every tempered energy
    ``U_β = βE - log q`` and its gradient are linear combinations of these."""
    learned, grad_learned = energy_and_grad(model.energy, z)
    log_base, grad_log_base = model.base.log_prob_and_grad(z)
    return learned, grad_learned, log_base, grad_log_base


def importance_log_partition(
    model: ResidualEnergy,
    *,
    generator: torch.Generator,
    n_draws: int = 2**19,
) -> PartitionEstimate:
    """Importance-sampling estimate of ``log E_q[exp(-E)]`` from exact base draws.

    The mean of ``exp(-E(z))`` over ``n_draws`` draws of the base is unbiased for
    ``Z``. Its accuracy depends on how far the model is from its base: when a few
    draws carry most of the weight (a small ``effective_sample_size``), mass the
    draws missed is uncounted and the estimate is low. Draws are made and
    evaluated in chunks, so memory stays bounded; the weights are accumulated in
    float64.

    Parameters
    ----------
    model : ResidualEnergy
        Energy and (normalised) base density.
    generator : torch.Generator
        The only source of randomness.
    n_draws : int, default=2**19
        Base draws.

    Returns
    -------
    PartitionEstimate
        With the effective sample size of the weights; no acceptance rate.

    Examples
    --------
    >>> import torch
    >>> from skebm.bases import StandardNormalDensity
    >>> from skebm.energies import MLPEnergy, ResidualEnergy
    >>> model = ResidualEnergy(MLPEnergy(3, (8,)), StandardNormalDensity(3))
    >>> importance_log_partition(
    ...     model, generator=torch.Generator().manual_seed(0), n_draws=1000
    ... ).log_partition  # an untrained MLP energy is 0, so log Z is exactly 0
    0.0
    """
    if model.base is None:
        raise ValueError("Importance sampling needs a normalised base density.")
    n_draws = check_scalar(n_draws, "n_draws", Integral, min_val=2)
    sizes = [_CHUNK] * (n_draws // _CHUNK)
    if n_draws % _CHUNK:
        sizes.append(n_draws % _CHUNK)
    with torch.no_grad():
        log_weights = torch.cat(
            [
                -model.energy(model.base.sample(size, generator=generator)).double()
                for size in sizes
            ]
        )
    return _summarise(log_weights, None)


def ais_log_partition(
    model: ResidualEnergy,
    *,
    generator: torch.Generator,
    n_chains: int = 1024,
    n_temperatures: int = 200,
    n_mcmc_steps: int = 1,
    step_size: float = 0.05,
    target_accept: float = 0.65,
) -> PartitionEstimate:
    """Annealed importance sampling estimate of ``log E_q[exp(-E)]``.

    Chains start at exact draws of the base. At each temperature ``β_k`` the
    log-weights gain ``-(β_k - β_{k-1}) E(z)`` at the current state, then
    ``n_mcmc_steps`` MALA steps leave ``π_{β_k}`` invariant. One step size, shared
    by all chains, is adapted from the population's past acceptance rate. (A
    per-chain step adapted from the chain's own history makes each kernel depend on
    that chain's path, which biases the estimate.) Weights are accumulated in float64.

    Parameters
    ----------
    model : ResidualEnergy
        Energy and (normalised) base density.
    generator : torch.Generator
        The only source of randomness.
    n_chains : int, default=1024
    n_temperatures : int, default=200
        Intermediate distributions (linearly spaced ``β``).
    n_mcmc_steps : int, default=1
        MALA steps per temperature.
    step_size : float, default=0.05
        Initial MALA step size.
    target_accept : float, default=0.65
        Acceptance rate the step sizes are adapted towards.

    Returns
    -------
    PartitionEstimate
    """
    if model.base is None:
        raise ValueError("AIS needs a normalised base density to start from.")
    n_chains = check_scalar(n_chains, "n_chains", Integral, min_val=2)
    n_temperatures = check_scalar(n_temperatures, "n_temperatures", Integral, min_val=1)
    n_mcmc_steps = check_scalar(n_mcmc_steps, "n_mcmc_steps", Integral, min_val=0)
    step_size = check_scalar(
        step_size, "step_size", Real, min_val=0.0, include_boundaries="neither"
    )
    target_accept = check_scalar(
        target_accept,
        "target_accept",
        Real,
        min_val=0.0,
        max_val=1.0,
        include_boundaries="neither",
    )
    betas = torch.linspace(0.0, 1.0, n_temperatures + 1, dtype=torch.float64).tolist()
    with frozen_parameters(model):
        z = model.base.sample(n_chains, generator=generator)
        log_step = torch.full((), math.log(step_size), device=z.device, dtype=z.dtype)
        log_weights = torch.zeros(n_chains, device=z.device, dtype=torch.float64)
        accepted_total = torch.zeros((), device=z.device, dtype=torch.float64)
        parts = _energy_parts(model, z)
        for k in range(1, n_temperatures + 1):
            log_weights -= (betas[k] - betas[k - 1]) * parts[0].to(torch.float64)
            beta = betas[k]
            for _ in range(n_mcmc_steps):
                step = log_step.exp()
                value = beta * parts[0] - parts[2]
                grad = beta * parts[1] - parts[3]
                proposal, noise = mala_proposal(z, grad, step, generator)
                new = _energy_parts(model, proposal)
                accepted = mala_accept(
                    z,
                    proposal,
                    noise,
                    value,
                    beta * new[0] - new[2],
                    beta * new[1] - new[3],
                    step,
                    generator,
                )
                keep = accepted.unsqueeze(-1)
                z = torch.where(keep, proposal, z)
                parts = tuple(
                    torch.where(keep if old.ndim == 2 else accepted, fresh, old)
                    for old, fresh in zip(parts, new)
                )
                rate = accepted.to(torch.float64).mean()
                log_step = log_step + 0.1 * (rate.to(z.dtype) - target_accept)
                accepted_total += rate
    return _summarise(
        log_weights,
        accepted_total / max(n_temperatures * n_mcmc_steps, 1),
    )


def _summarise(log_weights: torch.Tensor, acceptance) -> PartitionEstimate:
    n = log_weights.shape[0]
    log_z = torch.logsumexp(log_weights, 0) - math.log(n)
    w = torch.exp(log_weights - log_weights.max())
    mean = w.mean()
    stderr = w.std(unbiased=True) / (math.sqrt(n) * mean)
    ess = w.sum() ** 2 / (w * w).sum()
    values = [log_z, stderr, ess]
    if acceptance is not None:
        values.append(torch.as_tensor(acceptance, dtype=torch.float64, device=w.device))
    log_z, stderr, ess, *acceptance = torch.stack(values).cpu().tolist()
    return PartitionEstimate(log_z, stderr, ess, *acceptance)


#: Largest share of the quadrature's mass in the outermost cells of one side of
#: the box before that side moves out (a base's own box holds about 1e-10 there).
_EDGE_MASS = 1e-6

#: Most times the box of :func:`grid_log_partition` is widened.
_MAX_WIDENINGS = 8


def grid_log_partition(
    model: ResidualEnergy,
    *,
    n_points: int | None = None,
    width: float = 6.0,
) -> PartitionEstimate:
    """Midpoint-rule quadrature of ``log ∫ q(z) exp(-E(z)) dz`` for ``d <= 2``.

    The box starts as the base's ``bounds(width)`` (mean ± ``width`` standard
    deviations of every component), which holds all but a negligible part of the
    base's mass. The model's mass can lie beyond it (rows far in a heavy tail, where
    the energy raised a base that had almost none), so each side whose outermost
    cells hold more than ``_EDGE_MASS`` of the total moves out by half the box's
    length on that axis, up to ``_MAX_WIDENINGS`` times, with the same number of
    points.

    Parameters
    ----------
    model : ResidualEnergy
    n_points : int, default=None
        Points per axis (default 20001 in 1-D, 401 in 2-D).
    width : float, default=6.0
        Half-width of the starting box in base standard deviations.

    Returns
    -------
    PartitionEstimate
        ``stderr`` is the absolute change from a grid with half the points per
        axis over the same box: an estimate of the quadrature error.
    """
    if model.base is None:
        raise ValueError("Grid quadrature needs a base density to place the box.")
    d = model.base.n_features
    if d > 2:
        raise ValueError(f"Grid quadrature is available for d <= 2, got d={d}.")
    if n_points is None:
        n_points = 20001 if d == 1 else 401
    n_points = check_scalar(n_points, "n_points", Integral, min_val=4)
    low, high = model.base.bounds(width)
    values = _grid_log_density(model, low, high, n_points)
    for _ in range(_MAX_WIDENINGS):
        wider = _widened(values, low, high)
        if wider is None:
            break
        low, high = wider
        values = _grid_log_density(model, low, high, n_points)
    fine = _log_integral(values, low, high)
    half_resolution = _grid_log_density(model, low, high, n_points // 2)
    coarse = _log_integral(half_resolution, low, high)
    return PartitionEstimate(fine, abs(fine - coarse))


def _grid_log_density(model, low, high, n_points) -> np.ndarray:
    """``log q - E`` at the cell midpoints, shaped ``(n_points,) * d``."""
    axes = [
        lo + (np.arange(n_points) + 0.5) * (hi - lo) / n_points
        for lo, hi in zip(low, high)
    ]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    ref = next(model.base.buffers())
    log_density = evaluate_in_chunks(
        lambda z: -model(z), mesh, device=ref.device, dtype=ref.dtype, chunk=16384
    )
    return log_density.reshape((n_points,) * len(axes))


def _log_integral(values: np.ndarray, low, high) -> float:
    """The midpoint rule's ``log`` of the integral over the box."""
    log_cell = float(np.sum(np.log((high - low) / values.shape[0])))
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()) + log_cell)


def _widened(values: np.ndarray, low, high):
    """The box with every side whose outermost cells hold more than
    ``_EDGE_MASS`` of the mass moved out, or None when no side does."""
    top = values.max()
    total = np.exp(values - top).sum()
    low, high = np.array(low, dtype=float), np.array(high, dtype=float)
    moved = False
    for axis in range(values.ndim):
        step = (high[axis] - low[axis]) / 2
        for index, bound, sign in ((0, low, -1.0), (-1, high, 1.0)):
            edge = np.exp(np.take(values, index, axis=axis) - top).sum()
            if not edge <= _EDGE_MASS * total:
                bound[axis] += sign * step
                moved = True
    return (low, high) if moved else None


def estimate_log_partition(
    model: ResidualEnergy,
    method: str,
    params: dict | None,
    *,
    generator: torch.Generator,
) -> PartitionEstimate:
    """Dispatch to :func:`importance_log_partition` (``"importance"``),
    :func:`ais_log_partition` (``"ais"``) or :func:`grid_log_partition`
    (``"grid"``) with ``params`` as keyword arguments.

    ``"auto"`` is exact quadrature where it is affordable (``d <= 2``). Elsewhere
    it is importance sampling, which costs less than AIS for the same accuracy
    while the energy is a moderate correction of its base, and AIS where the
    importance weights rest on fewer than ``MIN_IMPORTANCE_ESS`` effective draws
    (the base is then too far from the model). ``params`` may hold keys of every
    method, and each reads its own.
    """
    if method not in ("auto", *PARTITION_METHODS):
        raise ValueError(
            f"Unknown partition method {method!r}; use 'auto', "
            + ", ".join(repr(name) for name in PARTITION_METHODS)
            + "."
        )
    if method != "auto":
        return _run(method, model, params, generator, strict=True)
    if model.base.n_features <= 2:
        return _run("grid", model, params, generator)
    estimate = _run("importance", model, params, generator)
    if estimate.effective_sample_size >= MIN_IMPORTANCE_ESS:
        return estimate
    return _run("ais", model, params, generator)


def _run(method: str, model, params, generator, *, strict: bool = False):
    """``method`` with ``params`` as keyword arguments: all of them when
    ``strict`` (an unknown key raises), else those the method takes."""
    function, accepted = PARTITION_METHODS[method]
    options = {
        key: value for key, value in (params or {}).items() if strict or key in accepted
    }
    if method != "grid":  # quadrature draws nothing
        options["generator"] = generator
    return function(model, **options)


def _options(function) -> tuple[str, ...]:
    return tuple(
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "generator"
    )


#: Method name -> (estimator, the names of its options).
PARTITION_METHODS = {
    name: (function, _options(function))
    for name, function in (
        ("importance", importance_log_partition),
        ("ais", ais_log_partition),
        ("grid", grid_log_partition),
    )
}
