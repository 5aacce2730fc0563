"""The estimator inside scikit-learn's machinery: Pipeline, GridSearchCV, clone,
pickle."""

import pickle

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests._helpers import small_estimator


def test_grid_search_over_sampler_step_and_loss_params_selects_by_score(moons):
    pipe = make_pipeline(
        StandardScaler(), small_estimator(loss="cd", sampler="langevin", random_state=0)
    )
    grid = {
        "energydensityestimator__sampler__step_size": [0.001, 0.05],
        "energydensityestimator__loss_params": [{"n_steps": 2}, {"n_steps": 4}],
    }
    search = GridSearchCV(pipe, grid, cv=2).fit(moons)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.all(np.isfinite(scores))
    assert search.best_index_ == int(np.argmax(scores))
    best = search.best_estimator_[-1]
    assert (
        best.sampler_.step_size
        == search.best_params_["energydensityestimator__sampler__step_size"]
    )
    assert (
        best.loss_.n_steps
        == search.best_params_["energydensityestimator__loss_params"]["n_steps"]
    )
    # GridSearchCV's score is the estimator's mean log-likelihood on the fold.
    assert np.isfinite(search.score(moons))


def test_grid_search_over_strategy_instance_parameters(moons):
    from skebm.samplers import Langevin

    est = small_estimator(loss="cd", sampler=Langevin(), random_state=0)
    search = GridSearchCV(est, {"sampler__step_size": [0.001, 0.01]}, cv=2).fit(moons)
    assert search.best_params_["sampler__step_size"] in (0.001, 0.01)


def test_clone_pickle_and_joblib_round_trips(moons, tmp_path):
    pipe = make_pipeline(StandardScaler(), small_estimator(random_state=0)).fit(moons)
    expected = pipe.score_samples(moons)
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(pipe)).score_samples(moons), expected
    )
    joblib.dump(pipe, tmp_path / "model.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "model.joblib").score_samples(moons), expected
    )
    refit = clone(pipe).fit(moons)
    np.testing.assert_array_equal(refit.score_samples(moons), expected)
