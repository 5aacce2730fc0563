"""
A convolutional energy on 8x8 digits
====================================

scikit-learn's 8x8 digits are 64-pixel rows. :class:`~skebm.energies.ConvEnergy`
(``energy="conv"``) reshapes each row to a 1x8x8 image inside the energy, so the
estimator keeps its usual rows-in, rows-out surface while the network sees
images. Pixels (0..16) are dequantised, ``(pixel + U(0, 1)) / 17``, which gives a
continuous density on [0, 1]^64; a fixed split holds out a quarter of the images.

The held-out mean log-likelihood (nats per image, higher is better) of the
convolutional model is compared with an MLP energy of about the same number of
parameters, with the base density alone, and with
:class:`~sklearn.neighbors.KernelDensity` whose bandwidth is chosen by 5-fold
cross-validation (on the pixels, and on standardised pixels). The base is one
full-covariance Gaussian (``base="gaussian"``): in 64 dimensions a
full-covariance mixture component has 2,145 free parameters, and the default
``base="gmm"`` allows at most one sample in five per parameter, so with 1,347
training images it would fit a single component anyway.

The figure shows training digits next to rows drawn by ``sample`` from the
convolutional model and from its base, reshaped to 8x8 images.

Run it with ``python examples/plot_conv_digits.py``; ``SKEBM_EXAMPLES_FAST=1``
shrinks the training for a smoke test and ``SKEBM_EXAMPLES_OUTPUT=dir`` chooses
where the figure is written.
"""

import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KernelDensity

from skebm import EnergyDensityEstimator

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

# %%
# Data: dequantised pixels in [0, 1], 1,347 training and 450 held-out images.
pixels = load_digits().data
X = (pixels + np.random.RandomState(0).uniform(size=pixels.shape)) / 17.0
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)

# %%
# Kernel density estimation, bandwidth by 5-fold cross-validation, once on the
# pixels and once on standardised pixels (what the energy models do inside):
# corner pixels are nearly constant, and one bandwidth cannot suit them and the
# strokes at once. Standardising adds the Jacobian ``-Σ log scale`` to the
# log-density in pixel units.
results = {}
mean, scale = X_train.mean(axis=0), X_train.std(axis=0)
for name, shift, divide, bandwidths in [
    ("pixels", 0.0, 1.0, np.logspace(-1.5, -0.5, 21)),
    ("standardised pixels", mean, scale, np.logspace(-1.0, 0.5, 21)),
]:
    start = time.perf_counter()
    grid = {"bandwidth": bandwidths[::4] if FAST else bandwidths}
    search = GridSearchCV(KernelDensity(), grid, cv=5).fit((X_train - shift) / divide)
    kde = search.best_estimator_
    log_density = kde.score_samples((X_test - shift) / divide) - np.sum(
        np.log(np.broadcast_to(divide, X.shape[1]))
    )
    label = f"KernelDensity on {name} (CV bandwidth {kde.bandwidth:.3f})"
    results[label] = (log_density.mean(), time.perf_counter() - start)

# %%
# The energy models: NCE against the Gaussian base, ``log Z`` at the end of
# ``fit`` (by importance sampling from the base, the default beyond 2-D); early
# stopping on 10 % of the training images (the default). The MLP reads the
# pixels themselves (no Fourier features) and its hidden sizes give it about as
# many parameters as the convolutional energy's two convolutions.
common = dict(
    base="gaussian",
    max_iter=3 if FAST else 100,
    sample_steps=20 if FAST else 1000,
    random_state=0,
)
if FAST:
    common["partition_params"] = {"n_draws": 4096, "n_chains": 64, "n_temperatures": 10}
energies = {
    "ConvEnergy (energy='conv')": dict(energy="conv"),
    "MLPEnergy, hidden (64, 16)": dict(
        energy="mlp",
        energy_params={"hidden_layer_sizes": (64, 16), "fourier_features": 0},
    ),
}
models = {}
for name, params in energies.items():
    start = time.perf_counter()
    est = EnergyDensityEstimator(**common, **params).fit(X_train)
    models[name] = est
    n_parameters = sum(p.numel() for p in est.energy_.parameters())
    label = (
        f"{name}, {n_parameters:,} parameters (log Z ± {est.log_partition_stderr_:.2f})"
    )
    results[label] = (est.score(X_test), time.perf_counter() - start)
# Untrained, the energy is exactly zero: log Z = 0 from any number of draws, and
# base draws are exact samples (no MCMC steps needed).
base_only = EnergyDensityEstimator(
    **{
        **common,
        "max_iter": 0,
        "sample_steps": 0,
        "partition_params": {"n_draws": 2},
    }
).fit(X_train)
results["its base density alone (one Gaussian)"] = (base_only.score(X_test), 0.0)

print(f"8x8 digits, {len(X_train)} train / {len(X_test)} held-out images")
print("held-out mean log-likelihood (nats per image, higher is better):")
for label, (score, seconds) in results.items():
    print(f"  {label:<62} {score:8.2f}   {seconds:6.1f}s")

# %%
# Samples: rows come back from ``sample``; reshape them to see images. Chains
# start at draws of the base (moved by independence Metropolis-Hastings steps
# with base draws proposed) and run ``sample_steps`` MALA steps. In 64
# dimensions the chains move slowly: after 200 steps the samples were still
# blurred; after 1,000 they take digit shapes.
conv = models["ConvEnergy (energy='conv')"]
rows = {
    "training digits": X_train[:10],
    "ConvEnergy model: est.sample(10)": conv.sample(10, random_state=0),
    "base density alone (exact draws): base_only.sample(10)": base_only.sample(
        10, random_state=0
    ),
}
fig = plt.figure(figsize=(10, 3.9), layout="constrained")
for subfig, (title, images) in zip(fig.subfigures(len(rows), 1), rows.items()):
    subfig.suptitle(title, fontsize=10)
    for ax, image in zip(subfig.subplots(1, len(images)), images):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
fig.savefig(OUTPUT / "conv_digits.png", dpi=90)
print(f"figure written to {OUTPUT / 'conv_digits.png'}")
