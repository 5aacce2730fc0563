"""
Anomaly detection: EnergyOutlierDetector, IsolationForest and LocalOutlierFactor
================================================================================

:class:`~skebm.EnergyOutlierDetector` flags the rows that a fitted density finds
least likely: its ``score_samples`` is the model's normalised log-density and
``contamination`` sets the threshold ``offset_``. It is compared here with
scikit-learn's ``IsolationForest`` and ``LocalOutlierFactor`` (``novelty=True``,
so it can score new rows) on the same data: two moons with 10% of the rows
replaced by uniform noise. Each detector is fitted on one contaminated sample and
scored on another, whose labels give each detector's ROC AUC.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neighbors import LocalOutlierFactor

from skebm import EnergyDensityEstimator, EnergyOutlierDetector
from skebm.datasets import make_two_moons

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

CONTAMINATION = 0.1
LOW, HIGH = np.array([-2.0, -1.5]), np.array([3.0, 2.0])


def contaminated_moons(n_samples, seed):
    """Two moons with a fraction CONTAMINATION of uniform outliers (label 1)."""
    rng = np.random.RandomState(seed)
    n_outliers = int(CONTAMINATION * n_samples)
    inliers = make_two_moons(n_samples - n_outliers, noise=0.1, random_state=seed)
    outliers = rng.uniform(LOW, HIGH, size=(n_outliers, 2))
    is_outlier = np.r_[np.zeros(len(inliers)), np.ones(n_outliers)]
    return np.vstack([inliers, outliers]), is_outlier


X_train, _ = contaminated_moons(1000, seed=0)
X_test, y_test = contaminated_moons(1000, seed=1)

detectors = {
    "EnergyOutlierDetector": EnergyOutlierDetector(
        EnergyDensityEstimator(max_iter=3 if FAST else 60, random_state=0),
        contamination=CONTAMINATION,
    ),
    "IsolationForest": IsolationForest(contamination=CONTAMINATION, random_state=0),
    "LocalOutlierFactor": LocalOutlierFactor(
        n_neighbors=35, contamination=CONTAMINATION, novelty=True
    ),
}

# %%
# Fit on the training sample, score the test sample. ``score_samples`` is higher
# for normal rows in all three, so the outlier score is its negative.
aucs, curves = {}, {}
for name, detector in detectors.items():
    detector.fit(X_train)
    outlier_score = -detector.score_samples(X_test)
    aucs[name] = roc_auc_score(y_test, outlier_score)
    curves[name] = roc_curve(y_test, outlier_score)[:2]
    flagged = detector.predict(X_test) == -1
    recall = flagged[y_test == 1].mean()
    print(
        f"{name:<22} ROC AUC {aucs[name]:.3f}   flagged {flagged.mean():.1%} of "
        f"the test rows, {recall:.0%} of its outliers"
    )

# %%
# Decision functions (the zero level is each detector's threshold) and ROC curves.
xs, ys = (np.linspace(lo, hi, 200) for lo, hi in zip(LOW, HIGH))
grid = np.column_stack([a.ravel() for a in np.meshgrid(xs, ys)])
fig, axes = plt.subplots(1, 4, figsize=(18, 4.2), layout="constrained")
for ax, (name, detector) in zip(axes, detectors.items()):
    decision = detector.decision_function(grid).reshape(len(ys), len(xs))
    ax.contourf(xs, ys, decision, levels=20, cmap="Blues_r")
    ax.contour(xs, ys, decision, levels=[0], colors="darkred", linewidths=2)
    inlier = y_test == 0
    ax.scatter(*X_test[inlier].T, s=3, color="white", edgecolor="k", linewidths=0.2)
    ax.scatter(*X_test[~inlier].T, s=10, color="gold", edgecolor="k", linewidths=0.4)
    ax.set_title(f"{name}\nROC AUC {aucs[name]:.3f}")
    ax.set_xlim(LOW[0], HIGH[0])
    ax.set_ylim(LOW[1], HIGH[1])
for name, (fpr, tpr) in curves.items():
    axes[3].plot(fpr, tpr, label=f"{name} ({aucs[name]:.3f})")
axes[3].plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=0.8)
axes[3].set_xlabel("false positive rate")
axes[3].set_ylabel("true positive rate")
axes[3].set_title("ROC on the held-out sample")
axes[3].legend(loc="lower right", fontsize=8)
fig.savefig(OUTPUT / "anomaly_detection.png", dpi=80)
print(f"figure written to {OUTPUT / 'anomaly_detection.png'}")
