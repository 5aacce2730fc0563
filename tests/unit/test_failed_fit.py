"""A fit, partial_fit or warm start that raises leaves the estimator exactly as it
was: parameters, every fitted attribute and score_samples (issue "Reliability
II", class 2 and the roll-back of class 1)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from skebm.datasets import make_two_moons
from skebm.exceptions import DivergenceError
from tests._helpers import small_estimator

X = make_two_moons(300, random_state=0)


def _fitted(**params):
    return small_estimator(random_state=0, base="gmm", **params).fit(X)


def _plain(value):
    """``value`` with modules as their state dicts and tensors as arrays, so that
    copies compare equal."""
    if isinstance(value, nn.Module):
        value = value.state_dict()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _state(est) -> tuple[dict, dict, np.ndarray]:
    """Everything a caller can observe: every attribute, the parameters and the
    scores."""
    params = est.get_params(deep=False)
    attributes = {k: _plain(v) for k, v in vars(est).items() if k not in params}
    scores = est.score_samples(X) if hasattr(est, "energy_") else None
    return attributes, params, scores


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_equal, a, b))
    return pickle.dumps(a) == pickle.dumps(b)


def _assert_unchanged(est, before):
    after = _state(est)
    changed = [
        k
        for k in before[0].keys() | after[0].keys()
        if not _equal(before[0].get(k), after[0].get(k))
    ]
    assert not changed
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


@pytest.mark.parametrize("early_stopping", [True, False])
@pytest.mark.parametrize("learning_rate", [10.0, 1e10])
def test_an_exploding_fit_is_caught_before_it_replaces_anything(
    learning_rate, early_stopping
):
    """With NCE and a learning rate far too large the weights stay finite while
    the loss rises by orders of magnitude (2.7 to hundreds, or to 1e20) and the
    model stops being a density."""
    est = small_estimator(
        learning_rate=learning_rate,
        max_iter=5,
        early_stopping=early_stopping,
        random_state=0,
    )
    with pytest.raises(DivergenceError, match="left as it was"):
        est.fit(X)
    assert not hasattr(est, "energy_")


def test_an_interrupt_keeps_the_partly_trained_model():
    """KeyboardInterrupt is the documented exception: not rolled back."""
    from tests._helpers import FailingLoss

    est = small_estimator(loss=FailingLoss(fail_at=3, error=KeyboardInterrupt()))
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X)
    assert hasattr(est, "energy_")
    assert torch.isfinite(torch.as_tensor(est.score(X)))
