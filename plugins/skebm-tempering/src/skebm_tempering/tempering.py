"""Parallel tempering (replica exchange) with Langevin or MALA moves."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch

from skebm.samplers import BaseSampler, energy_and_grad
from skebm.samplers.langevin import mala_accept, mala_proposal
from skebm.utils.constraints import Interval, StrOptions

__all__ = ["ParallelTempering", "geometric_ladder"]


def geometric_ladder(
    n_temperatures: int, max_temperature: float, *, like: torch.Tensor
) -> torch.Tensor:
    """Temperatures ``T_k = max_temperature ** (k / (K - 1))``, from 1 up.

    Examples
    --------
    >>> import torch
    >>> from skebm_tempering import geometric_ladder
    >>> geometric_ladder(3, 100.0, like=torch.zeros(1, dtype=torch.float64))
    tensor([  1.,  10., 100.], dtype=torch.float64)
    """
    exponents = torch.linspace(
        0.0, 1.0, n_temperatures, device=like.device, dtype=like.dtype
    )
    return float(max_temperature) ** exponents


class ParallelTempering(BaseSampler):
    """Replica exchange over a ladder of temperatures.

    Every chain has one replica per temperature ``T_k`` (``T_0 = 1``), replica
    ``k`` targeting ``exp(-E(x) / T_k)``. Each step first proposes to swap the
    states of neighbouring temperatures, alternating the even pairs ``(0, 1),
    (2, 3), ...`` and the odd pairs ``(1, 2), ...``, and accepts a swap of
    ``(k, k+1)`` with probability ``min(1, exp((β_k - β_{k+1}) (E(x_k) -
    E(x_{k+1}))))``, ``β = 1 / T``; then it moves every replica by a Langevin or
    MALA step. Hot replicas cross energy barriers and the swaps carry their
    states down to ``T = 1``, so separated modes are visited in proportion to
    their mass. Swaps are exact Metropolis moves on the product of the tempered
    densities: with ``move="mala"`` the whole chain leaves ``exp(-E)`` exactly
    invariant at ``T = 1`` (with ``move="langevin"`` the only error is the
    Langevin discretisation of each replica).

    All chains and replicas form one batch of ``n_temperatures · n_chains`` rows:
    one energy and gradient evaluation of that batch per step, no Python loop
    over chains or replicas, and no host synchronisation.

    Parameters
    ----------
    step_size : float, default=0.01
        Step ``ε`` at ``T = 1``; replica ``k`` steps ``ε·T_k``, which keeps the
        stability of the update the same at every temperature while hot
        replicas move further.
    n_temperatures : int, default=6
        Replicas per chain, ``K >= 2``.
    max_temperature : float, default=10.0
        The hottest temperature; the ladder is geometric,
        ``T_k = max_temperature ** (k / (K - 1))``. It must flatten the
        barriers: crossing a barrier of height ``ΔE`` is easy at ``T ≳ ΔE / 3``.
    move : {"mala", "langevin"}, default="mala"
        The move of each replica: Metropolis-adjusted (exact) or unadjusted
        Langevin (one fewer energy evaluation, a small step-size bias).
    target_accept : float or None, default=0.574
        ``move="mala"`` only: each replica's step is adapted towards this
        acceptance rate during the first ``n_adapt`` steps and frozen afterwards
        (so the chain after burn-in is exact). ``None`` keeps ``ε·T_k``.
    n_adapt : int or None, default=None
        Length of the adaptation phase; ``None`` means half of the run.

    Notes
    -----
    ``sample(..., return_info=True)`` also returns ``"temperatures"`` (shape
    ``(K,)``), ``"swap_rate"`` (the acceptance of each neighbouring pair, shape
    ``(K - 1,)``) and, for MALA moves, ``"acceptance_rate"`` (per temperature,
    after burn-in, shape ``(K,)``). Swap rates far below 0.2 call for more
    temperatures; a chain that never reaches the hot end cannot cross barriers.

    References
    ----------
    Swendsen, R. H. and Wang, J.-S. (1986). Replica Monte Carlo simulation of
    spin-glasses. Physical Review Letters 57, 2607.
    Geyer, C. J. (1991). Markov chain Monte Carlo maximum likelihood. Computing
    Science and Statistics: 23rd Symposium on the Interface.
    Okabe, T., Kawata, M., Okamoto, Y. and Mikami, M. (2001). Replica-exchange
    Monte Carlo method for the isobaric-isothermal ensemble. Chemical Physics
    Letters 335, 435 (alternating even/odd swaps).

    Examples
    --------
    >>> import torch
    >>> from skebm_tempering import ParallelTempering
    >>> def energy(x):  # two modes at -3 and +3, barrier of 18 nats
    ...     return -torch.logaddexp(-2 * (x + 3) ** 2, -2 * (x - 3) ** 2).sum(-1)
    >>> sampler = ParallelTempering(step_size=0.05, max_temperature=30.0)
    >>> x = sampler.sample(energy, torch.full((2000, 1), -3.0), n_steps=300,
    ...                    generator=torch.Generator().manual_seed(0))
    >>> round(float((x > 0).double().mean()), 1)  # started in one mode, finds both
    0.5
    """

    _parameter_constraints: dict = {
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "n_temperatures": [Interval(Integral, 2, None, closed="left")],
        "max_temperature": [Interval(Real, 1, None, closed="neither")],
        "move": [StrOptions({"mala", "langevin"})],
        "target_accept": [Interval(Real, 0, 1, closed="neither"), None],
        "n_adapt": [Interval(Integral, 0, None, closed="left"), None],
    }

    def __init__(
        self,
        step_size=0.01,
        n_temperatures=6,
        max_temperature=10.0,
        move="mala",
        target_accept=0.574,
        n_adapt=None,
    ):
        self.step_size = step_size
        self.n_temperatures = n_temperatures
        self.max_temperature = max_temperature
        self.move = move
        self.target_accept = target_accept
        self.n_adapt = n_adapt

    def _run(self, energy, x, *, n_steps, generator):
        n_chains, n_temps = x.shape[0], int(self.n_temperatures)
        temperatures = geometric_ladder(n_temps, self.max_temperature, like=x)
        # Rows are replica-major: row k * n_chains + i is chain i at temperature k.
        row_temperature = temperatures.repeat_interleave(n_chains).unsqueeze(-1)
        row_beta = 1.0 / row_temperature.squeeze(-1)
        log_step = torch.log(self.step_size * row_temperature)
        mala = self.move == "mala"
        n_adapt = 0
        if mala and self.target_accept is not None:
            n_adapt = n_steps // 2 if self.n_adapt is None else int(self.n_adapt)
            n_adapt = min(n_adapt, n_steps)
        swaps = _Swaps(temperatures, n_chains)
        accepted = torch.zeros(n_temps, device=x.device, dtype=x.dtype)

        states = x.repeat(n_temps, 1)
        value, grad = energy_and_grad(energy, states)
        for t in range(n_steps):
            states, value, grad = swaps.attempt(states, value, grad, t, generator)
            if not mala:
                states = _langevin_move(
                    states, grad, self.step_size, log_step.exp(), generator
                )
                if t + 1 < n_steps:
                    value, grad = energy_and_grad(energy, states)
                continue
            states, value, grad, accept = _mala_move(
                energy, states, value, grad, row_beta, log_step.exp(), generator
            )
            rate = accept.to(x.dtype)
            if t < n_adapt:
                # Robbins-Monro on each replica's log step, gain decaying as 1/sqrt(t).
                gain = 1.0 / math.sqrt(t + 1.0)
                log_step = log_step + gain * (rate.unsqueeze(-1) - self.target_accept)
            else:
                accepted = accepted + rate.view(n_temps, n_chains).mean(-1)
        info = {"temperatures": temperatures, "swap_rate": swaps.rate()}
        if mala:
            info["acceptance_rate"] = accepted / max(n_steps - n_adapt, 1)
        return states[:n_chains], info


def _langevin_move(states, grad, step_size, step, generator):
    """An unadjusted Langevin step of every replica, ``step = ε·T`` per row.

    The drift is ``ε·T`` times the tempered gradient ``∇E / T``: ``ε ∇E``.
    """
    noise = torch.randn(
        states.shape, generator=generator, device=states.device, dtype=states.dtype
    )
    return states - step_size * grad + torch.sqrt(2 * step) * noise


def _mala_move(energy, states, value, grad, beta, step, generator):
    """A MALA step of every replica on its tempered energy ``β·E``.

    ``value`` and ``grad`` are the untempered ``E`` and ``∇E`` of ``states`` (the
    swaps need ``E``); returns the new ones and the acceptance decisions.
    """
    beta_column = beta.unsqueeze(-1)
    proposal, noise = mala_proposal(states, beta_column * grad, step, generator)
    value_p, grad_p = energy_and_grad(energy, proposal)
    accept = mala_accept(
        states,
        proposal,
        noise,
        beta * value,
        beta * value_p,
        beta_column * grad_p,
        step,
        generator,
    )
    keep = accept.unsqueeze(-1)
    return (
        torch.where(keep, proposal, states),
        torch.where(accept, value_p, value),
        torch.where(keep, grad_p, grad),
        accept,
    )


class _Swaps:
    """Alternating even/odd swap moves between neighbouring temperatures."""

    def __init__(self, temperatures: torch.Tensor, n_chains: int):
        n_temps = temperatures.shape[0]
        device = temperatures.device
        self.n_chains = n_chains
        self.beta = 1.0 / temperatures
        self.lower = [
            torch.arange(parity, n_temps - 1, 2, device=device) for parity in (0, 1)
        ]
        self.chains = torch.arange(n_chains, device=device)
        self.identity = torch.arange(n_temps, device=device).unsqueeze(-1)
        self.accepted = torch.zeros(
            n_temps - 1, device=device, dtype=temperatures.dtype
        )
        self.attempts = [0, 0]  # swap events of each parity

    def attempt(self, states, value, grad, t, generator):
        """Propose the swaps of parity ``t % 2``; return the permuted replicas."""
        parity = t % 2
        lower = self.lower[parity]
        if lower.numel() == 0:
            return states, value, grad
        self.attempts[parity] += 1
        energies = value.view(-1, self.n_chains)
        log_ratio = (self.beta[lower] - self.beta[lower + 1]).unsqueeze(-1) * (
            energies[lower] - energies[lower + 1]
        )
        uniform = torch.rand(
            log_ratio.shape, generator=generator, device=value.device, dtype=value.dtype
        )
        swap = torch.log(uniform) < log_ratio
        self.accepted[lower] += swap.to(value.dtype).mean(-1)
        # source[k, i]: the temperature whose state chain i's replica k receives.
        source = self.identity.expand(-1, self.n_chains).clone()
        upper = lower.unsqueeze(-1) + 1
        source[lower] = torch.where(swap, upper, source[lower])
        source[lower + 1] = torch.where(swap, upper - 1, source[lower + 1])
        rows = (source * self.n_chains + self.chains).reshape(-1)
        return states[rows], value[rows], grad[rows]

    def rate(self) -> torch.Tensor:
        """Accepted fraction of the proposed swaps of each neighbouring pair."""
        n_pairs = self.accepted.shape[0]
        attempts = torch.tensor(
            [self.attempts[k % 2] for k in range(n_pairs)],
            device=self.accepted.device,
            dtype=self.accepted.dtype,
        )
        return self.accepted / attempts.clamp(min=1)
