"""
Quick start: a density of three rings
=====================================

An :class:`~skebm.EnergyDensityEstimator` is fitted to three concentric rings,
then used the way scikit-learn density estimators are: ``score`` gives the held-out
mean log-likelihood (normalised, so it can be compared with any other density
model), ``score_samples`` the log-density of each row and ``sample`` new rows.

The model is a base density ``q`` times ``exp(-E)``. ``fit`` holds out 10 % of the
rows, trains an energy on each candidate base, stops each when the held-out
log-likelihood stops improving, and keeps the best. The figure shows the base it
kept, the learned density, rows drawn by ``sample``, and the held-out
log-likelihood per epoch next to the base's: the gap is what the energy learned.

Run it with ``python examples/plot_quick_start.py``; ``SKEBM_EXAMPLES_FAST=1``
shrinks the training for a smoke test and ``SKEBM_EXAMPLES_OUTPUT=dir`` chooses
where the figure is written.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skebm import EnergyDensityEstimator
from skebm.datasets import make_rings
from skebm.plotting import density_grid, plot_samples, plot_validation_curve

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

# %%
# Data: 2,000 rows to train on and 2,000 held out, with their exact density.
X, log_density = make_rings(4000, random_state=0, return_log_density=True)
X_train, X_test = X[:2000], X[2000:]

# %%
# Fit with the defaults. ``base_scores_`` shows how each candidate base did on
# the held-out rows, ``base_kind_`` which one was kept.
est = EnergyDensityEstimator(max_iter=3 if FAST else 300, random_state=0)
est.fit(X_train)
print("candidate bases on held-out rows:", est.base_scores_)
print(f"kept: base {est.base_kind_!r} after {est.n_iter_} epochs")
print(f"held-out mean log-likelihood: {est.score(X_test):.3f} nats per row")
print(f"  its base alone:             {est.base_score_samples(X_test).mean():.3f}")
print(f"  the true density:           {log_density(X_test).mean():.3f}")
print(f"log Z = {est.log_partition_:.4f} (exact quadrature in 2-D)")
print("log-density of the first three held-out rows:", est.score_samples(X_test[:3]))

samples = est.sample(2000, random_state=1)

# %%
# Plot the base, the learned density, the samples and the validation curve.
low, high = X.min(0) - 0.5, X.max(0) + 0.5
(xs, ys), density = density_grid(est, low, high, grid_size=200)
mesh = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
base = np.exp(est.base_score_samples(mesh)).reshape(len(ys), len(xs))

fig, axes = plt.subplots(1, 4, figsize=(19, 4.3), layout="constrained")
axes[0].contourf(xs, ys, base, levels=30, cmap="viridis")
axes[0].set_title(
    f"base q ({est.base_kind_}): held-out LL "
    f"{est.base_score_samples(X_test).mean():.3f}"
)
axes[1].contourf(xs, ys, density, levels=30, cmap="viridis")
axes[1].set_title(f"learned q·exp(-E)/Z: held-out LL {est.score(X_test):.3f}")
plot_samples(samples, X_train, ax=axes[2])
axes[2].set_title("est.sample(2000) over the training data")
for ax in axes[:3]:
    ax.set_aspect("equal")
plot_validation_curve(est, ax=axes[3])
axes[3].set_title("held-out log-likelihood per epoch")
fig.savefig(OUTPUT / "quick_start.png", dpi=90)
print(f"figure written to {OUTPUT / 'quick_start.png'}")
