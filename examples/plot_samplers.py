"""
Sampling a known energy with each built-in sampler
==================================================

The samplers of skebm target any density ``∝ exp(-E(x))``, not only trained
models. Here every registered sampler (``skebm.list_samplers()``: new ones, plugins
included, join without edits) samples two energies whose exact distributions are
known:

* a **banana**: ``x₁ ~ N(0, a²)`` and ``x₂ | x₁ ~ N(b(x₁² - a²), 1)``, curved and
  with a scale that changes along the curve;
* a **mixture** of two Gaussians with weights 0.3 and 0.7, whose modes are far
  enough apart that chains rarely cross between them.

1,000 chains start from ``N(0, I)``, run 200 burn-in steps (during which adaptive
samplers tune their step size, which is then frozen) and 500 recorded steps. The
first figure compares the final states with exact draws; the second shows trace
plots and autocorrelations of ``x₁``, and the printed table acceptance rates and
moment errors. Unadjusted Langevin has no accept step, so besides the error of a
finite run it carries a discretisation bias that grows with the step size; the
Metropolis correction of MALA removes that bias. On the mixture every sampler
gets the mode weights wrong: chains mostly stay in the mode they started near.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.base import clone

import skebm
from skebm.plotting import chain_autocorrelation, plot_chains

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

N_CHAINS = 200 if FAST else 1000
N_BURN_IN, N_RECORDED = (20, 30) if FAST else (200, 500)
STEP_SIZE = 0.1  # the starting step of every sampler that has one

# %%
# The two targets, each with its energy and an exact sampler.
A, B = 1.5, 0.6
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
WEIGHTS = torch.tensor([0.3, 0.7])
STD = 0.6


def banana_energy(x):
    x1, x2 = x[:, 0], x[:, 1]
    return 0.5 * (x1 / A) ** 2 + 0.5 * (x2 - B * (x1**2 - A**2)) ** 2


def banana_exact(n, rng):
    x1 = A * rng.standard_normal(n)
    return np.column_stack([x1, B * (x1**2 - A**2) + rng.standard_normal(n)])


def mixture_energy(x):
    squared = ((x[:, None, :] - MEANS.to(x)) ** 2).sum(-1)
    log_components = WEIGHTS.to(x).log() - 0.5 * squared / STD**2
    return -torch.logsumexp(log_components, dim=1)


def mixture_exact(n, rng):
    component = rng.choice(2, size=n, p=WEIGHTS.numpy())
    return MEANS.numpy()[component] + STD * rng.standard_normal((n, 2))


TARGETS = {
    "banana": (banana_energy, banana_exact, [-5, 5], [-3, 7]),
    "mixture": (mixture_energy, mixture_exact, [-4.5, 4.5], [-3, 3]),
}


def run_chains(sampler, energy, generator):
    """Burn in, freeze an adapted step size, then record every step."""
    x0 = torch.randn((N_CHAINS, 2), generator=generator, dtype=torch.float64)
    x, info = sampler.sample(
        energy, x0, n_steps=N_BURN_IN, generator=generator, return_info=True
    )
    if "target_accept" in sampler.get_params() and "step_size" in info:
        # Adaptive samplers report the per-chain steps they settled on; a fixed
        # step keeps the recorded chain a time-homogeneous Markov chain.
        sampler = clone(sampler).set_params(
            step_size=float(info["step_size"].median()), target_accept=None
        )
    states, accepted = [x], []
    for _ in range(N_RECORDED):
        x, info = sampler.sample(
            energy, x, n_steps=1, generator=generator, return_info=True
        )
        states.append(x)
        if "acceptance_rate" in info:
            accepted.append(info["acceptance_rate"])
    acceptance = float(torch.stack(accepted).mean()) if accepted else None
    return torch.stack(states).numpy(), acceptance, sampler


registry = skebm.plugins.get_registry()
names = [component.name for component in skebm.list_samplers()]
rng = np.random.RandomState(0)
results = {}
for target, (energy, exact, _, _) in TARGETS.items():
    reference = exact(200_000, rng)
    for name in names:
        sampler = registry.get("sampler", name)()
        if "step_size" in sampler.get_params():
            sampler.set_params(step_size=STEP_SIZE)
        generator = torch.Generator().manual_seed(0)
        chains, acceptance, used = run_chains(sampler, energy, generator)
        results[target, name] = chains, acceptance
        final = chains[-1]
        step = used.get_params().get("step_size")
        acceptance_text = "  -  " if acceptance is None else f"{acceptance:.3f}"
        print(
            f"{target:<8} {name:<10} step {step:<6.3g} acceptance {acceptance_text}"
            f"  mean x1 {final[:, 0].mean():+.3f} (exact {reference[:, 0].mean():+.3f})"
            f"  var x1 {final[:, 0].var():.3f} (exact {reference[:, 0].var():.3f})"
            f"  P(x1 > 0) {np.mean(final[:, 0] > 0):.3f}"
            f" (exact {np.mean(reference[:, 0] > 0):.3f})"
            f"  acf(10) {chain_autocorrelation(chains[:, :, 0], 10)[10]:.2f}"
        )

# %%
# Final states of every chain, over the target's density, next to exact draws.
fig, axes = plt.subplots(
    len(TARGETS),
    len(names) + 1,
    figsize=(4 * (len(names) + 1), 7.5),
    layout="constrained",
    squeeze=False,
)
for row, (target, (energy, exact, xlim, ylim)) in enumerate(TARGETS.items()):
    xs, ys = np.linspace(*xlim, 200), np.linspace(*ylim, 200)
    grid = torch.tensor(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2))
    density = torch.exp(-energy(grid)).reshape(len(ys), len(xs)).numpy()
    panels = [("exact draws", exact(N_CHAINS, rng), None)]
    panels += [(name, *results[target, name]) for name in names]
    for ax, (title, chains, acceptance) in zip(axes[row], panels):
        points = chains if title == "exact draws" else chains[-1]
        ax.contour(xs, ys, density, levels=8, colors="0.6", linewidths=0.7)
        ax.scatter(*points.T, s=2, alpha=0.5)
        if acceptance is not None:
            title += f" (acceptance {acceptance:.2f})"
        ax.set_title(f"{target}: {title}", fontsize=10)
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
fig.savefig(OUTPUT / "samplers.png", dpi=80)
print(f"figure written to {OUTPUT / 'samplers.png'}")

# %%
# Trace plots and autocorrelation of x₁ for every target and sampler.
fig, axes = plt.subplots(
    len(TARGETS) * len(names),
    2,
    figsize=(11, 2.4 * len(TARGETS) * len(names)),
    layout="constrained",
    squeeze=False,
    width_ratios=[2, 1],
)
for i, (target, name) in enumerate((t, n) for t in TARGETS for n in names):
    chains, _ = results[target, name]
    plot_chains(chains, axes=axes[i], max_lag=min(50, N_RECORDED - 1), n_shown=4)
    axes[i, 0].set_title(f"{target}, {name}: four of {N_CHAINS} chains", fontsize=10)
    axes[i, 1].set_ylim(-0.1, 1.0)
fig.savefig(OUTPUT / "sampler_chains.png", dpi=80)
print(f"figure written to {OUTPUT / 'sampler_chains.png'}")
