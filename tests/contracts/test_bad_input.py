"""Every bad input of the table in docs/bad-input.md, run row by row.

The table is the single source: this module parses it from docs/bad-input.md and runs
every call of every row, checking the exact exception (or warning) type and that
each quoted fragment of the message appears. A row without a case here, or a case
without a row, fails, so the documentation and the behaviour cannot drift apart.
"""

from __future__ import annotations

import copy
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from sklearn.exceptions import NotFittedError

import skebm
from skebm.exceptions import (
    DivergenceError,
    ModelFileError,
    UnknownComponentError,
    UnsafeToSaveError,
)
from skebm.utils._sklearn_compat import InvalidParameterError
from tests._helpers import small_estimator

PAGE = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"

OUTCOMES = {
    "ValueError": ValueError,
    "TypeError": TypeError,
    "InvalidParameterError": InvalidParameterError,
    "UnknownComponentError": UnknownComponentError,
    "NotFittedError": NotFittedError,
    "UnsafeToSaveError": UnsafeToSaveError,
    "UserWarning": UserWarning,
    "ModelFileError": ModelFileError,
    "DivergenceError": DivergenceError,
}


def _table_rows() -> list[dict]:
    """The rows of the table in docs/bad-input.md."""
    section = PAGE.read_text(encoding="utf-8")
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("input", "---"):
            continue
        rows.append(
            {
                "input": cells[0],
                "calls": re.findall(r"`([\w.]+)`", cells[1]),
                "result": cells[2].strip("`"),
                "fragments": re.findall(r"`([^`]+)`", cells[3]),
            }
        )
    return rows


ROWS = _table_rows()

_rng = np.random.RandomState(0)
X_GOOD = _rng.normal(size=(60, 2))


@pytest.fixture(scope="module")
def fitted():
    return small_estimator(random_state=0).fit(X_GOOD)


def _with_row(value) -> np.ndarray:
    X = X_GOOD[:10].copy()
    X[3, 1] = value
    return X


def _on_data(X, *, fresh=("fit", "partial_fit")):
    """A case calling ``method(X)``: on a fresh estimator for the methods in
    ``fresh``, else on a copy of the fitted one."""

    def run(method, fitted, tmp_path):
        est = (
            small_estimator(random_state=0)
            if method in fresh
            else copy.deepcopy(fitted)
        )
        return getattr(est, method)(X)

    return run


def _fit_with(**params):
    def run(method, fitted, tmp_path):
        assert method == "fit"
        return small_estimator(random_state=0, **params).fit(X_GOOD)

    return run


def _huge_values(method, fitted, tmp_path):
    X = X_GOOD * 1e30
    est = small_estimator(random_state=0).fit(X)
    if method == "score":
        assert np.isfinite(est.score(X))
    if method == "sample":
        samples = est.sample(50, random_state=0)
        assert np.all(np.isfinite(samples))
        assert np.abs(samples).max() < 100 * np.abs(X).max()


def _far_rows(method, fitted, tmp_path):
    far = np.array([[1e30, 0.0], [0.0, -1e30], [1e300, 1e300], [0.5, 0.5]])
    values = fitted.score_samples(far)
    assert np.array_equal(values[:3], [-np.inf] * 3)
    assert np.isfinite(values[3])


def _constant_feature(method, fitted, tmp_path):
    X = np.column_stack([X_GOOD[:, 0], np.full(len(X_GOOD), 3.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. a division by zero
        est = small_estimator(random_state=0).fit(X)
        assert est.scale_[1] == 1.0
        if method == "score_samples":
            assert np.all(np.isfinite(est.score_samples(X)))
        if method == "sample":
            assert np.all(np.isfinite(est.sample(5, random_state=0)))


def _sample_seeded_with_a_string(method, fitted, tmp_path):
    fitted.sample(5, random_state="seed")


def _each_sample_arg(*args):
    """Run ``sample(arg)`` for every arg; each must raise (checked per arg)."""

    def run(method, fitted, tmp_path):
        errors = []
        for arg in args:
            try:
                fitted.sample(arg)
            except Exception as exc:  # collected and checked below
                errors.append(exc)
        assert len(errors) == len(args), "every argument must be refused"
        kinds = {type(e) for e in errors}
        assert len(kinds) == 1, kinds
        raise errors[-1]

    return run


def _cuda_without_cuda(method, fitted, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so device='cuda' is valid here")
    small_estimator(device="cuda").fit(X_GOOD)


def _set_params(method, fitted, tmp_path):
    small_estimator().set_params(max_iterr=5)


def _warm_start_other_loss(method, fitted, tmp_path):
    est = small_estimator(warm_start=True, random_state=0).fit(X_GOOD)
    est.set_params(loss="cd").fit(X_GOOD)


def _unfitted(method, fitted, tmp_path):
    est = small_estimator()
    if method == "sample":
        est.sample(3)
    else:
        getattr(est, method)(X_GOOD)


def _save_lambda(method, fitted, tmp_path):
    est = small_estimator(
        energy=lambda n_features: torch.nn.Sequential(
            torch.nn.Linear(n_features, 1), torch.nn.Flatten(0)
        ),
        energy_params=None,
        random_state=0,
    ).fit(X_GOOD)
    est.save(tmp_path / "lambda.skebm")


def _load_pickle(method, fitted, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(fitted))
    skebm.load(path)


def _damaged_file(method, fitted, tmp_path):
    path = tmp_path / "model.skebm"
    skebm.save(fitted, path)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("tensors.pt")
    raw[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 1
    path.write_bytes(bytes(raw))
    skebm.load(path)


def _inflating_file(method, fitted, tmp_path):
    path = tmp_path / "model.skebm"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("skebm.json", "{}")
        zf.writestr("tensors.pt", bytes(200 * 2**20))
    skebm.load(path)


def _many_values_file(method, fitted, tmp_path):
    path = tmp_path / "model.skebm"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("skebm.json", "[" + "{}," * 2_000_000 + "{}]")
        zf.writestr("tensors.pt", b"")
    skebm.load(path)


def _tensor_input(method, fitted, tmp_path):
    tensor = torch.tensor(X_GOOD, dtype=torch.bfloat16, requires_grad=True)
    values = torch.as_tensor(X_GOOD, dtype=torch.bfloat16).to(torch.float32).numpy()
    if method == "fit":
        small_estimator(random_state=0, max_iter=1).fit(tensor)
    else:
        np.testing.assert_allclose(
            fitted.score_samples(tensor), fitted.score_samples(values), rtol=1e-6
        )
    assert tensor.grad is None


CASES = {
    "NaN in `X`": _on_data(_with_row(np.nan)),
    "±inf in `X`": _on_data(_with_row(np.inf)),
    "no rows, shape (0, 2)": _on_data(np.empty((0, 2))),
    "one row": _on_data(X_GOOD[:1]),
    "no columns, shape (10, 0)": _on_data(np.empty((10, 0))),
    "1-D array": _on_data(X_GOOD[:, 0]),
    "3-D array": _on_data(X_GOOD.reshape(30, 2, 2)),
    "scipy sparse matrix": _on_data(scipy.sparse.csr_matrix(X_GOOD)),
    "object dtype holding Python objects": _on_data(
        np.array([[object(), 1.0]] * 10, dtype=object)
    ),
    "strings": _on_data(np.array([["a", "b"]] * 10)),
    "complex dtype": _on_data(X_GOOD.astype(np.complex128)),
    "huge values (about 1e30)": _huge_values,
    "values around 1e200 (their squares overflow float64)": _on_data(X_GOOD * 1e200),
    "rows astronomically far from the data (1e30 after fitting N(0, 1))": _far_rows,
    "a constant (zero-variance) feature": _constant_feature,
    "wrong number of features": _on_data(X_GOOD[:, :1], fresh=()),
    "`sample(0)`, `sample(-1)`": _each_sample_arg(0, -1),
    '`sample(2.5)`, `sample("3")`': _each_sample_arg(2.5, "3"),
    '`sample(random_state="seed")`': _sample_seeded_with_a_string,
    "`batch_size` larger than the data": _fit_with(batch_size=5000),
    '`device="tpu"`': _fit_with(device="tpu"),
    '`device="cuda"` without CUDA': _cuda_without_cuda,
    "out-of-range parameter, `max_iter=-1`": _fit_with(max_iter=-1),
    'wrongly typed parameter, `learning_rate="fast"`': _fit_with(learning_rate="fast"),
    "`max_grad_norm=0`": _fit_with(max_grad_norm=0),
    "misspelled estimator parameter, `max_iterr=5`": _set_params,
    'misspelled `loss_params` key, `{"n_step": 3}`': _fit_with(
        loss="cd", loss_params={"n_step": 3}
    ),
    "misspelled `energy_params` key": _fit_with(
        energy_params={"hidden_layer_size": (4,)}
    ),
    "misspelled `partition_params` key": _fit_with(partition_params={"n_chain": 9}),
    "misspelled `base_params` key": _fit_with(base_params={"n_component": 2}),
    'unknown strategy name, `sampler="malaa"`': _fit_with(sampler="malaa"),
    "another loss on a warm start": _warm_start_other_loss,
    "an estimator that is not fitted": _unfitted,
    "a lambda as `energy`": _save_lambda,
    "a pickle file": _load_pickle,
    "a damaged model file (one byte of its tensors changed)": _damaged_file,
    "a 200 kB model file whose tensors inflate to 200 MB": _inflating_file,
    "a 6 MB model file whose JSON holds 2 million objects": _many_values_file,
    "a learning rate far too large, `learning_rate=1e10`": _fit_with(
        learning_rate=1e10
    ),
    "a bfloat16 tensor that requires grad": _tensor_input,
    "20,000 features with a full-covariance base": lambda method, fitted, tmp_path: (
        small_estimator(base="gmm").fit(
            np.random.RandomState(0).normal(size=(4, 20_000))
        )
    ),
}


def test_every_table_row_has_a_case_and_every_case_a_row():
    assert len(ROWS) >= 30
    assert [row["input"] for row in ROWS] == list(CASES)


@pytest.mark.parametrize(
    ("row", "call"),
    [(row, call) for row in ROWS for call in row["calls"]],
    ids=[f"{row['input']}-{call}" for row in ROWS for call in row["calls"]],
)
def test_bad_input_row(row, call, fitted, tmp_path):
    case = CASES[row["input"]]
    method = call.removeprefix("skebm.")
    if row["result"].startswith("works"):
        case(method, fitted, tmp_path)
        return
    expected = OUTCOMES[row["result"]]
    if issubclass(expected, Warning):
        with pytest.warns(expected) as record:
            case(method, fitted, tmp_path)
        messages = [str(w.message) for w in record if w.category is expected]
        assert messages, f"no {expected.__name__} was emitted"
        message = messages[0]
    else:
        with pytest.raises(Exception) as info:  # the exact type is checked next
            case(method, fitted, tmp_path)
        assert type(info.value) is expected, (
            f"{row['input']} / {call}: expected {expected.__name__}, got "
            f"{type(info.value).__name__}: {info.value}"
        )
        message = str(info.value)
    for fragment in row["fragments"]:
        assert fragment in message, f"{fragment!r} not in {message!r}"
