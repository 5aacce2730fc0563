"""EnergyOutlierDetector: scikit-learn's outlier-detector checks with no expected
failures, the contamination contract, and detection quality against an oracle."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity
from sklearn.utils.estimator_checks import parametrize_with_checks

from skebm import EnergyDensityEstimator, EnergyOutlierDetector
from tests._helpers import small_estimator


@parametrize_with_checks([EnergyOutlierDetector(small_estimator(), contamination=0.1)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _contaminated(n_inliers, n_outliers, seed):
    """Inliers from N(0, I₂), outliers uniform on [-6, 6]²; label 1 marks outliers."""
    rng = np.random.RandomState(seed)
    X = np.vstack(
        [rng.normal(size=(n_inliers, 2)), rng.uniform(-6, 6, size=(n_outliers, 2))]
    )
    is_outlier = np.r_[np.zeros(n_inliers), np.ones(n_outliers)]
    return X, is_outlier


def test_detection_is_close_to_the_oracle():
    # The best possible score ranks rows by the likelihood ratio of the inlier and
    # outlier densities; the outliers are uniform, so that is the inlier density
    # N(0, I). With 100 outliers and 900 inliers the standard error of an AUC near
    # 0.95 is about sqrt(0.95 * 0.05 / 100) = 0.022 (Hanley & McNeil); both AUCs are
    # computed on the same test rows, so their difference varies much less. The
    # detector is trained on contaminated data and must come within 0.03.
    X_train, _ = _contaminated(900, 100, seed=0)
    X_test, is_outlier = _contaminated(900, 100, seed=1)
    detector = EnergyOutlierDetector(
        EnergyDensityEstimator(max_iter=30, random_state=0, device="cpu"),
        contamination=0.1,
    ).fit(X_train)
    auc = roc_auc_score(is_outlier, -detector.score_samples(X_test))
    oracle = roc_auc_score(is_outlier, -multivariate_normal(np.zeros(2)).logpdf(X_test))
    assert oracle > 0.9, oracle
    assert auc > oracle - 0.03, (auc, oracle)


@pytest.mark.parametrize("contamination", [0.02, 0.1, 0.5])
def test_training_outlier_fraction_equals_contamination(contamination):
    X, _ = _contaminated(180, 20, seed=0)
    detector = EnergyOutlierDetector(
        small_estimator(random_state=0), contamination=contamination
    ).fit(X)
    labels = detector.predict(X)
    assert set(np.unique(labels)) == {-1, 1}
    assert (labels == -1).sum() == round(contamination * len(X))
    scores = detector.score_samples(X)
    assert detector.offset_ == np.percentile(scores, 100 * contamination)
    np.testing.assert_array_equal(
        detector.decision_function(X), scores - detector.offset_
    )


@pytest.mark.parametrize(
    "density", [KernelDensity(bandwidth=0.5), GaussianMixture(2, random_state=0)]
)
def test_any_density_estimator_can_be_wrapped(density):
    X, _ = _contaminated(180, 20, seed=0)
    detector = EnergyOutlierDetector(density, contamination=0.1).fit(X)
    np.testing.assert_allclose(
        detector.score_samples(X), detector.estimator_.score_samples(X)
    )
    assert (detector.predict(X) == -1).sum() == 20


def test_the_wrapped_estimator_is_cloned_not_fitted():
    X, _ = _contaminated(90, 10, seed=0)
    inner = small_estimator(random_state=0)
    detector = EnergyOutlierDetector(inner).fit(X)
    assert not hasattr(inner, "energy_")
    assert detector.estimator_ is not inner
    assert clone(detector).estimator is not inner


def test_default_estimator_is_an_energy_density_estimator():
    X, _ = _contaminated(45, 5, seed=0)
    detector = EnergyOutlierDetector().fit(X)
    assert type(detector.estimator_) is EnergyDensityEstimator
    assert detector.estimator_.get_params() == EnergyDensityEstimator().get_params()


def test_grid_search_reaches_the_wrapped_estimator_parameters():
    detector = EnergyOutlierDetector(small_estimator())
    detector.set_params(estimator__loss="cd", estimator__sampler__step_size=0.05)
    assert detector.estimator.loss == "cd"
    assert detector.estimator.sampler_params == {"step_size": 0.05}


def test_random_state_seeds_the_wrapped_estimator():
    X, _ = _contaminated(90, 10, seed=0)
    detector = EnergyOutlierDetector(small_estimator(random_state=5), random_state=0)
    assert detector.fit(X).estimator_.random_state == 0
    again = clone(detector).fit(X)
    np.testing.assert_array_equal(detector.score_samples(X), again.score_samples(X))
    detector.set_params(random_state=None)
    assert detector.fit(X).estimator_.random_state == 5
    with pytest.raises(ValueError, match="no random_state parameter"):
        EnergyOutlierDetector(KernelDensity(), random_state=0).fit(X)


def test_invalid_contamination_is_rejected():
    X, _ = _contaminated(45, 5, seed=0)
    with pytest.raises(ValueError, match="contamination"):
        EnergyOutlierDetector(small_estimator(), contamination=0.7).fit(X)
