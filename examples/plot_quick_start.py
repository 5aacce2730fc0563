"""
Quick start: a density of two moons
===================================

An :class:`~skebm.EnergyDensityEstimator` is fitted to two interleaving half
circles, then used the way scikit-learn density estimators are: ``score`` gives
the held-out mean log-likelihood (normalised, so it can be compared with any other
density model), ``score_samples`` the log-density of each row and ``sample`` new
rows. The figure shows the learned density over the training data, rows drawn by
``sample`` and the training loss per epoch.

Run it with ``python examples/plot_quick_start.py``; ``SKEBM_EXAMPLES_FAST=1``
shrinks the training for a smoke test and ``SKEBM_EXAMPLES_OUTPUT=dir`` chooses
where the figure is written.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt

from skebm import EnergyDensityEstimator
from skebm.datasets import make_two_moons
from skebm.plotting import plot_density, plot_loss_curve, plot_samples

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

# %%
# Data: 2,000 rows to train on and 2,000 held out.
X = make_two_moons(4000, noise=0.1, random_state=0)
X_train, X_test = X[:2000], X[2000:]

# %%
# Fit. The model is a Gaussian-mixture base density times ``exp(-E)``, with ``E``
# a small neural network trained by noise-contrastive estimation; ``log Z`` is
# estimated at the end of ``fit`` so that scores are normalised.
est = EnergyDensityEstimator(max_iter=5 if FAST else 100, random_state=0)
est.fit(X_train)
print(f"held-out mean log-likelihood: {est.score(X_test):.3f} nats per row")
print(f"log Z = {est.log_partition_:.4f} ± {est.log_partition_stderr_:.4f} (AIS)")
print("log-density of the first three held-out rows:", est.score_samples(X_test[:3]))

samples = est.sample(2000, random_state=1)

# %%
# Plot the density, the samples and the loss curve.
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
plot_density(est, X_train, ax=axes[0])
axes[0].set_title(f"learned density (held-out LL {est.score(X_test):.3f})")
plot_samples(samples, X_train, ax=axes[1])
axes[1].set_title("est.sample(2000) over the training data")
plot_loss_curve(est, ax=axes[2])
axes[2].set_title("NCE training loss")
fig.savefig(OUTPUT / "quick_start.png", dpi=90)
print(f"figure written to {OUTPUT / 'quick_start.png'}")
