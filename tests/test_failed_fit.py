"""A fit, partial_fit or warm start that raises leaves the estimator exactly as it
was: parameters, every fitted attribute and score_samples (issue "Reliability
II", class 2 and the roll-back of class 1)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from skebm.datasets import make_two_moons
from skebm.exceptions import DivergenceError
from tests.conftest import small_estimator

X = make_two_moons(300, random_state=0)


def _fitted(**params):
    return small_estimator(random_state=0, base="gmm", **params).fit(X)


def _state(est) -> tuple[bytes, dict, np.ndarray]:
    """Everything a caller can observe: every attribute (pickled), the parameters
    and the scores."""
    scores = est.score_samples(X) if hasattr(est, "energy_") else None
    return pickle.dumps(vars(est)), est.get_params(deep=False), scores


def _assert_unchanged(est, before):
    after = _state(est)
    assert after[0] == before[0]
    assert after[1].keys() == before[1].keys()
    assert all(after[1][k] is before[1][k] for k in before[1])
    np.testing.assert_array_equal(after[2], before[2])


#: (description, how the estimator is changed before the failing call, the call,
#: the error it must raise)
FAILURES = {
    "unknown sampler name": (
        dict(sampler="no-such-sampler"),
        lambda est: est.fit(X),
        ValueError,
    ),
    "misspelled energy_params key": (
        dict(energy_params={"hidden_layer_size": (8,)}),
        lambda est: est.fit(X),
        ValueError,
    ),
    "other number of features, warm start": (
        dict(warm_start=True),
        lambda est: est.fit(np.column_stack([X, X[:, :1]])),
        ValueError,
    ),
    "other number of features, partial_fit": (
        dict(),
        lambda est: est.partial_fit(np.column_stack([X, X[:, :1]])),
        ValueError,
    ),
    "warm start switching the loss": (
        dict(warm_start=True, loss="cd"),
        lambda est: est.fit(X),
        ValueError,
    ),
    "warm start that explodes": (
        dict(warm_start=True, learning_rate=1e10, max_iter=5),
        lambda est: est.fit(X),
        DivergenceError,
    ),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_a_failed_call_leaves_a_fitted_estimator_as_it_was(name):
    changes, call, error = FAILURES[name]
    est = _fitted()
    est.set_params(**changes)
    before = _state(est)
    with pytest.raises(error):
        call(est)
    _assert_unchanged(est, before)
    # and the same call fails the same way again (no half-applied state)
    with pytest.raises(error):
        call(est)
    _assert_unchanged(est, before)


def test_a_failed_first_fit_leaves_the_estimator_unfitted():
    est = small_estimator(energy_params={"no_such_option": 1})
    with pytest.raises(ValueError, match="no_such_option"):
        est.fit(X)
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(est))
    with pytest.raises(NotFittedError):
        est.score_samples(X)


def test_an_exploding_fit_is_caught_before_it_replaces_anything():
    """With NCE and a huge learning rate the weights stay finite while the model
    stops being a density: the held-out score or log Z becomes non-finite."""
    est = small_estimator(learning_rate=1e10, max_iter=5, random_state=0)
    with pytest.raises(DivergenceError, match="left as it was"):
        est.fit(X)
    assert not hasattr(est, "energy_")


def test_an_interrupt_keeps_the_partly_trained_model():
    """KeyboardInterrupt is the documented exception: not rolled back."""
    from tests.test_estimator import _FailingLoss

    est = small_estimator(loss=_FailingLoss(fail_at=3, error=KeyboardInterrupt()))
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X)
    assert hasattr(est, "energy_")
    assert torch.isfinite(torch.as_tensor(est.score(X)))
