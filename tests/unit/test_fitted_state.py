"""The fitted state is listed once (``skebm/_fitted_state.py``): every attribute
that holds tensors is in ``TENSOR_ATTRIBUTES``, and files written before that
module existed still load."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import skebm
from skebm._fitted_state import PLAIN_ATTRIBUTES, REBUILT_ATTRIBUTES, TENSOR_ATTRIBUTES
from skebm.datasets import make_two_moons
from tests._helpers import small_estimator

DATA = Path(__file__).parents[1] / "data"

#: Small fits that between them set every kind of fitted state: a loss state
#: (pcd's replay buffer), early stopping's records, a base chosen by "auto".
FITS = {
    "pcd": dict(loss="pcd", loss_params={"n_steps": 2}, early_stopping=False),
    "auto": dict(max_iter=2, n_iter_no_change=1),
}


def _holds_tensors(value) -> bool:
    if isinstance(value, torch.Tensor | nn.Module | torch.Generator):
        return True
    if isinstance(value, dict):
        return any(_holds_tensors(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_tensors(v) for v in value)
    return False


@pytest.fixture(scope="module", params=sorted(FITS))
def fitted(request):
    X = make_two_moons(200, random_state=0)
    return small_estimator(random_state=0, **FITS[request.param]).fit(X), X


def test_every_fitted_attribute_is_listed_and_only_the_listed_hold_tensors(fitted):
    est, _ = fitted
    params = est.get_params(deep=False)
    for name, value in vars(est).items():
        if name in params or name in TENSOR_ATTRIBUTES or name in REBUILT_ATTRIBUTES:
            continue
        assert name in PLAIN_ATTRIBUTES, f"list {name} in skebm/_fitted_state.py"
        assert not _holds_tensors(value), (
            f"{name} holds tensors: list it in skebm._fitted_state.TENSOR_ATTRIBUTES"
        )
        assert PLAIN_ATTRIBUTES[name](value, est.n_features_in_), name
    assert set(TENSOR_ATTRIBUTES) <= set(vars(est))


def test_pickle_and_the_file_format_keep_the_same_state(fitted, tmp_path):
    est, X = fitted
    path = tmp_path / "model.skebm"
    skebm.save(est, path)
    for copy in (pickle.loads(pickle.dumps(est)), skebm.load(path)):
        np.testing.assert_array_equal(copy.score_samples(X), est.score_samples(X))
        np.testing.assert_array_equal(
            copy.sample(5, random_state=0), est.sample(5, random_state=0)
        )
        assert set(vars(copy)) == set(vars(est))


def test_save_is_a_function_and_a_method(fitted, tmp_path):
    est, X = fitted
    skebm.save(est, tmp_path / "a.skebm")
    est.save(tmp_path / "b.skebm")
    a, b = skebm.load(tmp_path / "a.skebm"), skebm.load(tmp_path / "b.skebm")
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))


def test_a_file_saved_before_the_fitted_state_had_one_owner_loads(monkeypatch):
    """``tests/data/pre-refactor.skebm`` was written by skebm 0.1.0 at commit
    ffcfd3f (pcd, a mixture base, grid log Z) with the scores it gave then, and
    the rows ``sample`` drew then, when its chains started at the base draws
    themselves (no independence steps)."""
    expected = json.loads((DATA / "pre-refactor.json").read_text())
    est = skebm.load(DATA / "pre-refactor.skebm")
    X = np.asarray(expected["X"])
    np.testing.assert_allclose(est.score_samples(X), expected["score_samples"])
    monkeypatch.setattr(skebm.estimator, "_START_STEPS", 0)
    np.testing.assert_allclose(est.sample(5, random_state=0), expected["sample"])
    assert est._loss_state is not None and est._optimizer_state is not None
    assert est.energy_scale_ == 1.0  # files older than the attribute


def test_a_pickle_from_before_an_added_attribute_loads_with_its_default(fitted):
    est, X = fitted
    state = est.__getstate__()
    del state["energy_scale_"]  # as pickled by a version without it
    old = type(est).__new__(type(est))
    old.__setstate__(state)
    assert old.energy_scale_ == 1.0
    np.testing.assert_array_equal(old.score_samples(X), est.score_samples(X))


#: Attribute edits a hostile or damaged file may carry, each refused on loading.
BAD_ATTRIBUTES = {
    "a NaN mean": ("mean_", {"__ndarray__": [float("nan"), 0.0], "dtype": "float64"}),
    "a zero scale": ("scale_", {"__ndarray__": [0.0, 1.0], "dtype": "float64"}),
    "a string log Z": ("log_partition_", "0.0"),
    "an object array": ("mean_", {"__ndarray__": ["a", "b"], "dtype": "O"}),
    "a method name": ("score_samples", 1.0),
    "the class": ("__class__", "EnergyDensityEstimator"),
    "a huge n_features_in_": ("n_features_in_", 10**12),
    "a wrong n_features_in_": ("n_features_in_", 3),
}


@pytest.mark.parametrize("edit", sorted(BAD_ATTRIBUTES))
def test_fitted_attributes_from_a_file_are_checked(edit, tmp_path):
    import zipfile

    from skebm.exceptions import ModelFileError

    name, value = BAD_ATTRIBUTES[edit]
    source = DATA / "pre-refactor.skebm"
    path = tmp_path / "edited.skebm"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w") as zout:
        for member in zin.namelist():
            data = zin.read(member)
            if member == "skebm.json":
                metadata = json.loads(data)
                metadata["attributes"][name] = value
                data = json.dumps(metadata).encode()
            zout.writestr(member, data)
    with pytest.raises(ModelFileError, match="edited.skebm"):
        skebm.load(path)
