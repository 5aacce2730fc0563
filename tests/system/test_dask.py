"""Scaling out: a grid search over EnergyDensityEstimator on a real Dask cluster
(two worker processes) gives exactly the serial results."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from tests._helpers import small_estimator

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is optional (the test extra installs it)"
)
joblib = pytest.importorskip("joblib")

GRID = {"loss": ["nce", "cd"], "learning_rate": [1e-3, 1e-2]}


def _search(X, **params):
    return GridSearchCV(small_estimator(random_state=0), GRID, cv=2, **params).fit(X)


@pytest.mark.slow
def test_grid_search_on_a_dask_cluster_equals_the_serial_run(moons):
    serial = _search(moons)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with (
            distributed.get_task_stream(client) as tasks,
            joblib.parallel_backend("dask"),
        ):
            on_cluster = _search(moons, n_jobs=-1)
        workers = {task["worker"] for task in tasks.data}
    # 4 candidates x 2 folds = 8 fits ran as tasks, on both worker processes.
    assert len(tasks.data) >= 8 and len(workers) == 2, (len(tasks.data), workers)
    assert on_cluster.best_params_ == serial.best_params_
    timings = {"mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"}
    assert set(on_cluster.cv_results_) == set(serial.cv_results_)
    for key, expected in serial.cv_results_.items():
        if key in timings:
            continue
        got = on_cluster.cv_results_[key]
        if isinstance(expected, np.ndarray) and expected.dtype != object:
            np.testing.assert_array_equal(got, expected, err_msg=key)
        else:
            assert list(got) == list(expected), key
