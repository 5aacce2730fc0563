"""
Model selection: choosing the loss and the step size by cross-validation
========================================================================

``score`` of an :class:`~skebm.EnergyDensityEstimator` is a normalised held-out
log-likelihood, so ``GridSearchCV`` can rank models trained with different losses
(and different MCMC step sizes) honestly, as it ranks bandwidths of a
``KernelDensity``. Here a ``Pipeline`` (scaling, then the density) is tuned over
every registered loss: losses that run MCMC during training are tried with two
Langevin step sizes, the others once. Newly installed losses (plugins) join the
grid without editing this script.

The base density is a single Gaussian (``base="gaussian"``), so the learned
energy has the moons to explain and the losses differ. Scores are in the units of
the scaled data, which shifts every candidate by the same constant.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import skebm
from skebm import EnergyDensityEstimator
from skebm.datasets import make_two_moons
from skebm.plotting import plot_density

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

X = make_two_moons(900, noise=0.1, random_state=0)

pipe = Pipeline(
    [
        ("scale", StandardScaler()),
        (
            "density",
            EnergyDensityEstimator(
                base="gaussian",
                partition="grid",  # exact log Z by quadrature: 2-D, and fast
                # (a coarser grid in the test suite's fast mode)
                partition_params={"n_points": 101} if FAST else None,
                sampler="langevin",
                energy_params={"hidden_layer_sizes": (64, 64)},
                learning_rate=1e-2,
                batch_size=128,
                max_iter=2 if FAST else 20,
                random_state=0,
            ),
        ),
    ]
)

# %%
# The grid: one entry per registered loss, with step sizes for those that sample.
step_sizes = [0.003, 0.03]
grid = []
for component in skebm.list_losses():
    entry = {"density__loss": [component.name]}
    if component.cls.requires_sampler:
        entry["density__sampler__step_size"] = step_sizes
    grid.append(entry)

search = GridSearchCV(pipe, grid, cv=2 if FAST else 3)
search.fit(X)

# %%
# The CV table, best first.
results = search.cv_results_
order = np.argsort(results["rank_test_score"], kind="stable")
print(f"{'rank':>4}  {'loss':<8} {'step size':>9}  {'held-out LL':>16}  {'fit s':>6}")
labels = []
for i in order:
    params = results["params"][i]
    step = params.get("density__sampler__step_size")
    step_text = "-" if step is None else f"{step:g}"
    labels.append(
        params["density__loss"] + ("" if step is None else f", step {step:g}")
    )
    print(
        f"{results['rank_test_score'][i]:>4}  {params['density__loss']:<8} "
        f"{step_text:>9}  {results['mean_test_score'][i]:>8.3f} ± "
        f"{results['std_test_score'][i]:<6.3f} {results['mean_fit_time'][i]:>6.1f}"
    )
print("best:", search.best_params_)

# %%
# The table as a chart, and the density of the refitted best pipeline.
fig, axes = plt.subplots(
    1, 2, figsize=(13, 4.5), layout="constrained", width_ratios=[1, 1.2]
)
means = results["mean_test_score"][order]
stds = results["std_test_score"][order]
axes[0].barh(
    np.arange(len(order)),
    means - means.min() + 0.05,
    xerr=stds,
    left=means.min() - 0.05,
    color="tab:blue",
    alpha=0.7,
)
axes[0].set_yticks(np.arange(len(order)), labels)
axes[0].invert_yaxis()
axes[0].set_xlabel("mean held-out log-likelihood (3-fold CV, scaled units)")
axes[0].set_title("GridSearchCV over losses and Langevin step sizes")
best = search.best_estimator_
Z = best.named_steps["scale"].transform(X)
plot_density(best.named_steps["density"], Z, ax=axes[1])
axes[1].set_title(f"best: {labels[0]}")
fig.savefig(OUTPUT / "model_selection.png", dpi=90)
print(f"figure written to {OUTPUT / 'model_selection.png'}")
