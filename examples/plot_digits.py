"""
Generating new digits: an energy model next to kernel density estimation
========================================================================

scikit-learn's "Kernel Density Estimation" example learns a density of
handwritten digits in a 15-dimensional PCA space and samples new digits from it.
Here the same is done with an :class:`~skebm.EnergyDensityEstimator`, side by
side with the cross-validated ``KernelDensity`` of that example.

Both models are fitted on the same 75% of the digits and evaluated on the other
25%: because both report normalised log-densities in the same PCA space, their
held-out mean log-likelihoods compare directly. New digits are drawn in PCA space
with ``sample`` and mapped back to pixels with ``PCA.inverse_transform``.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KernelDensity

from skebm import EnergyDensityEstimator

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

digits = load_digits()
train, test = train_test_split(
    digits.data, test_size=0.25, stratify=digits.target, random_state=0
)
pca = PCA(n_components=15, whiten=False).fit(train)
Z_train, Z_test = pca.transform(train), pca.transform(test)

# %%
# Kernel density estimation, bandwidth by 5-fold cross-validation (as in
# scikit-learn's example). ``KernelDensity.score`` is a sum, hence the division.
kde = GridSearchCV(KernelDensity(), {"bandwidth": np.logspace(-1, 1, 20)}, cv=5)
kde = kde.fit(Z_train).best_estimator_
kde_ll = kde.score(Z_test) / len(Z_test)

# %%
# The energy model: a Gaussian-mixture base corrected by a neural energy trained
# with noise-contrastive estimation. In 15 dimensions a full-covariance component
# has 136 parameters, so 1,347 digits support only one of them; a mixture of 12
# diagonal Gaussians is a better base. ``max_iter=0`` gives the base alone.
params = dict(
    base_params={"covariance_type": "diag", "n_components": 12},
    learning_rate=3e-3,
    random_state=0,
)
ebm = EnergyDensityEstimator(max_iter=3 if FAST else 100, **params).fit(Z_train)
ebm_ll = ebm.score(Z_test)
base_ll = EnergyDensityEstimator(max_iter=0, **params).fit(Z_train).score(Z_test)

print("Digits in a 15-D PCA space, held-out mean log-likelihood (nats per digit):")
print(f"  KernelDensity (bandwidth {kde.bandwidth:.2f}, 5-fold CV)  {kde_ll:8.2f}")
print(f"  EnergyDensityEstimator                       {ebm_ll:8.2f}")
print(f"  its base density alone (12 diagonal Gaussians) {base_ll:6.2f}")
print(
    f"  (log Z of the energy model: {ebm.log_partition_:.3f} ± "
    f"{ebm.log_partition_stderr_:.3f})"
)

# %%
# Draw 44 digits from each model and show them under 44 real held-out digits.
n_shown = 44
real = test[:n_shown]
kde_digits = pca.inverse_transform(kde.sample(n_shown, random_state=0))
ebm_digits = pca.inverse_transform(ebm.sample(n_shown, random_state=0))

fig, axes = plt.subplots(
    15, 11, figsize=(6.6, 9.6), subplot_kw={"xticks": [], "yticks": []}
)
blocks = [
    ("held-out digits", real),
    (f"KernelDensity samples (held-out LL {kde_ll:.1f})", kde_digits),
    (f"EnergyDensityEstimator samples (held-out LL {ebm_ll:.1f})", ebm_digits),
]
for block, (title, images) in enumerate(blocks):
    for k in range(n_shown):
        ax = axes[5 * block + k // 11, k % 11]
        ax.imshow(
            np.clip(images[k], 0, 16).reshape(8, 8),
            cmap="binary",
            vmin=0,
            vmax=16,
            interpolation="nearest",
        )
    axes[5 * block, 5].set_title(title, fontsize=9)
    for k in range(11):
        axes[5 * block + 4, k].set_visible(False)
fig.subplots_adjust(left=0.02, right=0.98, top=0.97, bottom=0.0, hspace=0.08)
fig.savefig(OUTPUT / "digits.png", dpi=90)
print(f"figure written to {OUTPUT / 'digits.png'}")
