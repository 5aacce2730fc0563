"""Fuzzing the public methods with random shapes, dtypes, values and arguments.

Every call must either succeed with correctly shaped, finite output, or raise a
ValueError or TypeError that carries a message and was not raised inside torch.
Anything else (a crash, NaN output, a torch RuntimeError, an IndexError) fails.

One ``-inf`` is allowed: ``score_samples`` of a row astronomically far from the
data (its density underflows); rows within ``1e6`` of the training data must be
finite. The examples are derandomised, so CI runs the same 500 every time;
``pytest --hypothesis-show-statistics`` shows how many calls of each method
succeeded and which errors the others raised.
"""

from __future__ import annotations

import copy
import traceback
import warnings

import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests._helpers import small_estimator

# Hypothesis casts the special values to float16, which overflows on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast")

#: Parameters of the fuzzed estimators: as small as a model gets.
TINY = dict(
    energy_params={"hidden_layer_sizes": (4,)},
    max_iter=1,
    sample_steps=2,
    partition_params={"n_draws": 256, "n_chains": 8, "n_temperatures": 2},
    base_params={"max_components": 2},
)

DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    np.int64,
    np.int8,
    np.uint8,
    np.bool_,
    np.complex128,
    np.dtype("U3"),
    np.dtype(object),
]

METHODS = [
    "fit",
    "partial_fit",
    "partial_fit_on_fitted",
    "score_samples",
    "score",
    "sample",
]
MODERATE = 1e6  # rows within this of the training data must score finitely


SPECIAL = [0.0, 1e30, -1e30, 1e-300, 1e160, 1e300, np.nan, np.inf, -np.inf]


@st.composite
def arrays(draw):
    """Arrays of any of DTYPES, 0-3 dimensions, tame or wild values."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(
        st.one_of(
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
        )
    )
    if dtype.kind == "f" and draw(st.booleans()):
        elements = st.floats(-5, 5, width=min(dtype.itemsize * 8, 64))
    elif dtype.kind == "f":
        elements = st.one_of(
            hnp.from_dtype(dtype), st.sampled_from(SPECIAL).map(dtype.type)
        )
    elif dtype.kind == "O":
        elements = st.one_of(
            st.floats(), st.integers(-10, 10), st.text(max_size=2), st.none()
        )
    else:  # from_dtype: strings that numpy stores as drawn (no trailing NUL)
        elements = hnp.from_dtype(dtype)
    return draw(hnp.arrays(dtype, shape, elements=elements))


#: Inputs with the fitted model's two features: they mostly pass validation, so
#: the methods' success paths are fuzzed too (as NumPy arrays of several dtypes).
two_columns = st.builds(
    lambda a, dtype: a.astype(dtype),
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(0, 40), st.just(2)),
        elements=st.floats(-5, 5),
    ),
    st.sampled_from([np.float64, np.float32, np.float16, np.int64]),
)
#: Two features, some values huge, tiny or non-finite.
wild_two_columns = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 12), st.just(2)),
    elements=st.one_of(st.floats(-5, 5), st.sampled_from(SPECIAL), st.floats()),
)

inputs = st.one_of(
    two_columns,
    two_columns.map(lambda a: a.tolist()),
    wild_two_columns,
    arrays(),
    arrays().map(lambda a: a.tolist()),
    st.builds(scipy.sparse.csr_matrix, two_columns.map(lambda a: a.astype(float))),
    st.one_of(st.none(), st.floats(), st.text(max_size=3)),
)

parameters = st.fixed_dictionaries(
    {},
    optional={  # mostly valid values, so that fits also succeed
        "batch_size": st.one_of(
            st.integers(1, 64),
            st.just("auto"),
            st.sampled_from([0, -1, 2.5, "x", None]),
        ),
        "dtype": st.sampled_from(["float32", "float64"] * 3 + ["float16", 64]),
        "max_iter": st.integers(-1, 2),
        "base": st.sampled_from(["gmm", "gaussian", "standard"] * 2 + ["kde"]),
    },
)

sample_sizes = st.one_of(
    st.integers(1, 40),
    st.integers(0, 40).map(np.int64),
    st.integers(-3, 0),
    st.one_of(st.floats(-2, 40), st.booleans(), st.text(max_size=2), st.none()),
)
seeds = st.one_of(
    st.none(),
    st.integers(0, 2**32 - 1),
    st.one_of(st.integers(-5, -1), st.text(max_size=2), st.floats(0, 9)),
)


@pytest.fixture(scope="module")
def fitted():
    X = np.random.RandomState(0).normal(size=(80, 2))
    return small_estimator(random_state=0, **TINY).fit(X)


def _as_float_rows(X) -> np.ndarray:
    return np.asarray(X.toarray() if scipy.sparse.issparse(X) else X, dtype=np.float64)


def _check_scores(values, X, *, training: bool) -> None:
    rows = _as_float_rows(X)
    assert isinstance(values, np.ndarray), type(values)
    assert values.dtype == np.float64 and values.shape == (rows.shape[0],)
    assert not np.isnan(values).any(), values
    assert not (values == np.inf).any(), values
    moderate = np.abs(rows).max(axis=1) <= MODERATE
    must_be_finite = np.ones_like(moderate) if training else moderate
    assert np.isfinite(values[must_be_finite]).all(), values


def _check_samples(samples, n, d) -> None:
    assert isinstance(samples, np.ndarray) and samples.dtype == np.float64
    assert samples.shape == (n, d), samples.shape
    assert np.isfinite(samples).all()


def _call(method, fitted, X, params, n, seed):
    """The call under test; returns what the checks need."""
    if method in ("fit", "partial_fit"):
        est = small_estimator(random_state=0, **{**TINY, **params})
        assert getattr(est, method)(X) is est
        return est
    if method == "partial_fit_on_fitted":
        est = copy.deepcopy(fitted)
        assert est.partial_fit(X) is est
        return est
    if method == "sample":
        return fitted.sample(n, random_state=seed)
    return getattr(fitted, method)(X)


def _check_success(method, result, X, n) -> None:
    """The output of a call that succeeded (any exception here is a failure)."""
    if method in ("fit", "partial_fit"):
        _check_scores(result.score_samples(X), X, training=True)
        _check_samples(result.sample(3, random_state=0), 3, result.n_features_in_)
    elif method == "partial_fit_on_fitted":
        _check_scores(result.score_samples(X), X, training=False)
    elif method == "score_samples":
        _check_scores(result, X, training=False)
    elif method == "score":
        assert isinstance(result, float) and not np.isnan(result) and result != np.inf
        if (np.abs(_as_float_rows(X)) <= MODERATE).all():
            assert np.isfinite(result)
    else:
        _check_samples(result, int(n), 2)


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    method=st.sampled_from(METHODS),
    X=inputs,
    params=parameters,
    n=sample_sizes,
    seed=seeds,
)
def test_public_methods_succeed_or_raise_a_clear_error(
    fitted, method, X, params, n, seed
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are allowed; outcomes are checked
        try:
            result = _call(method, fitted, X, params, n, seed)
        except (ValueError, TypeError) as exc:
            event(f"{method}: {type(exc).__name__}")
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            origin = traceback.extract_tb(exc.__traceback__)[-1].filename
            assert "/torch/" not in origin, f"raised inside torch: {origin}: {exc!r}"
            return
        _check_success(method, result, X, n)
        event(f"{method}: succeeded")
