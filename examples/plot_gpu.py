"""
Training on a GPU
=================

``device="auto"`` (the default) trains on the first CUDA device when there is
one and on the CPU otherwise; ``device="cuda:1"``, ``"mps"`` or ``"cpu"`` choose
explicitly. Data are moved once, every batch, sampling chain and ``log Z``
estimate stays on the device, and results come back as NumPy arrays, so the code
is the same everywhere. A model fitted on a GPU pickles with CPU tensors and
loads on a machine without one.

This script fits a pinwheel with a wider network and larger batches, where a GPU
helps, and measures seconds per epoch on every device present: after a first
``fit`` has chosen the base (one epoch on each candidate, which also warms the
device up), a warm start trains the kept model ``n`` epochs more, and its time
over ``n`` is the cost of one epoch (with a ``1/n`` share of the final ``log Z``
estimate). Without a GPU it runs on the CPU alone.
"""

import os
import pickle
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from skebm import EnergyDensityEstimator
from skebm.datasets import make_pinwheel
from skebm.plotting import plot_density

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

X = make_pinwheel(4000 if FAST else 20000, random_state=0)
X_test = make_pinwheel(5000, random_state=1)
N_EPOCHS = 2 if FAST else 20
params = dict(
    energy_params={"hidden_layer_sizes": (256, 256)},
    batch_size=1024,
    learning_rate=3e-3,
    random_state=0,
    # A coarser log Z quadrature grid in the test suite's fast mode.
    partition_params={"n_points": 101} if FAST else None,
)

devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
print("devices:", ", ".join(devices), "| device='auto' picks", devices[-1])


def seconds_per_epoch(device):
    est = EnergyDensityEstimator(device=device, max_iter=1, **params).fit(X)
    est.set_params(warm_start=True, max_iter=N_EPOCHS)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    est.fit(X)
    if device == "cuda":
        torch.cuda.synchronize()
    return est, (time.perf_counter() - start) / N_EPOCHS


timings, models = {}, {}
for device in devices:
    models[device], timings[device] = seconds_per_epoch(device)
    print(
        f"{device:>5}: {timings[device]:.3f} s per epoch, held-out LL "
        f"{models[device].score(X_test):.3f}"
    )

# %%
# The fitted model lives on ``device_``; a pickle carries CPU tensors.
est = models[devices[-1]]
restored = pickle.loads(pickle.dumps(est))
print(f"fitted on {est.device_}, unpickled on {restored.device_}")
assert np.allclose(
    restored.score_samples(X_test[:100]), est.score_samples(X_test[:100])
)

fig, axes = plt.subplots(
    1, 2, figsize=(12, 4.5), layout="constrained", width_ratios=[1.3, 1]
)
plot_density(est, X, ax=axes[0])
axes[0].set_title(f"pinwheel density fitted on {est.device_}")
names = list(timings)
bars = axes[1].bar(names, [timings[d] for d in names], color="tab:blue")
axes[1].bar_label(bars, fmt="%.3f s")
axes[1].set_ylabel(f"seconds per epoch ({len(X):,} rows, 256x256 MLP)")
if "cuda" in timings:
    speedup = timings["cpu"] / timings["cuda"]
    axes[1].set_title(f"{torch.cuda.get_device_name()}: {speedup:.1f}x the CPU")
else:
    axes[1].set_title("no CUDA device here: CPU only")
fig.savefig(OUTPUT / "gpu.png", dpi=80)
print(f"figure written to {OUTPUT / 'gpu.png'}")
