"""scikit-learn's estimator checks and skebm's density checks, with no expected
failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skebm.utils.estimator_checks import parametrize_with_density_checks
from tests._helpers import small_estimator

ESTIMATORS = [small_estimator(dtype="float32"), small_estimator(dtype="float64")]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@parametrize_with_density_checks(
    [*ESTIMATORS, small_estimator(loss="pcd", sampler="langevin")]
)
def test_density_contract(estimator, check):
    check(estimator)
