"""Persistence: the safe format, pickle and joblib, versions, devices.

The safe format (``est.save`` / ``skebm.load``) must restore a model exactly and
run no code from the file; pickle and joblib must round-trip exactly; a model
fitted on CUDA must load on a machine without CUDA.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from torch import nn

import skebm
from skebm import EnergyDensityEstimator
from skebm.exceptions import (
    UnknownComponentError,
    UnsafeToSaveError,
    VersionWarning,
)
from skebm.losses import BaseLoss, NoiseContrastiveEstimation
from skebm.plugins import Registry
from skebm.samplers import MALA, Langevin, LinearSchedule
from tests._helpers import cuda, small_estimator

ROOT = Path(__file__).resolve().parents[2]


def _assert_same_model(a, b, X):
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(
        a.sample(25, random_state=7), b.sample(25, random_state=7)
    )


def _assert_same_state(original, loaded):
    """Every attribute is restored: same names, equal values, equal tensors."""
    assert set(vars(loaded)) == set(vars(original))
    for name, value in vars(original).items():
        other = getattr(loaded, name)
        if isinstance(value, nn.Module):
            assert type(other) is type(value), name
            left, right = value.state_dict(), other.state_dict()
            assert left.keys() == right.keys(), name
            for key in left:
                assert torch.equal(left[key], right[key]), f"{name}.{key}"
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, other), name
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other, err_msg=name)
        elif name == "_optimizer_state" and value is not None:
            assert repr(value) == repr(other), name
        elif name in ("loss_", "sampler_"):
            assert type(other) is type(value)
            assert repr(other.get_params()) == repr(value.get_params())
        else:
            assert repr(value) == repr(other), name


CONFIGURATIONS = {
    "default": dict(),
    "pcd-langevin-float64": dict(
        loss="pcd",
        loss_params={"n_steps": 2, "buffer_size": 100},
        sampler="langevin",
        dtype="float64",
        base="gaussian",
    ),
    "instances-and-schedule": dict(
        loss=NoiseContrastiveEstimation(noise_ratio=3),
        sampler=MALA(
            step_size=LinearSchedule(start=0.05, end=0.01), target_accept=None
        ),
        base="standard",
        max_grad_norm=5.0,
    ),
}


@pytest.mark.parametrize("config", list(CONFIGURATIONS))
def test_save_load_restores_the_model_exactly(moons, tmp_path, config):
    est = small_estimator(random_state=0, **CONFIGURATIONS[config]).fit(moons)
    est.save(tmp_path / "model.skebm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same version, same device: no warning
        loaded = skebm.load(tmp_path / "model.skebm")
    assert type(loaded) is EnergyDensityEstimator
    assert repr(loaded.get_params()) == repr(est.get_params())
    _assert_same_state(est, loaded)
    _assert_same_model(est, loaded, moons)


def test_save_load_then_warm_start_equals_one_longer_fit(moons, tmp_path):
    """The optimiser, loss state and random stream are saved: resuming a loaded
    model trains exactly as the original would have."""
    params = dict(
        loss="pcd",
        loss_params={"n_steps": 2, "buffer_size": 100},
        early_stopping=False,
        ema_decay=0.0,
    )
    long = small_estimator(max_iter=5, random_state=0, **params).fit(moons)
    first = small_estimator(max_iter=2, warm_start=True, random_state=0, **params)
    first.fit(moons)
    first.save(tmp_path / "half.skebm")
    resumed = skebm.load(tmp_path / "half.skebm").set_params(max_iter=3).fit(moons)
    np.testing.assert_array_equal(resumed.loss_curve_, long.loss_curve_)
    _assert_same_model(long, resumed, moons)


def test_unfitted_estimator_round_trips_its_parameters(tmp_path):
    est = EnergyDensityEstimator(
        energy_params={"hidden_layer_sizes": (8, 4)},
        sampler=Langevin(step_size=0.02),
        partition_params={"n_chains": 32},
    )
    est.save(tmp_path / "config.skebm")
    loaded = skebm.load(tmp_path / "config.skebm")
    assert not hasattr(loaded, "energy_")
    assert repr(loaded.get_params()) == repr(est.get_params())
    assert loaded.energy_params["hidden_layer_sizes"] == (8, 4)  # a tuple again


def test_the_file_is_json_plus_a_weights_only_tensor_file(moons, tmp_path):
    small_estimator(random_state=0).fit(moons).save(tmp_path / "model.skebm")
    with zipfile.ZipFile(tmp_path / "model.skebm") as zf:
        assert sorted(zf.namelist()) == ["skebm.json", "tensors.pt"]
        metadata = json.loads(zf.read("skebm.json"))
        tensors = torch.load(
            io.BytesIO(zf.read("tensors.pt")), weights_only=True, map_location="cpu"
        )
    assert metadata["skebm_version"] == skebm.__version__
    assert metadata["params"]["max_iter"] == 3
    assert set(tensors) == {
        "energy",
        "base",
        "loss_state",
        "optimizer",
        "train_rng_state",
    }


# -- files crafted to run code -----------------------------------------------------


class _Payload:
    """Unpickling this writes a marker file: stands for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _tampered_copy(source: Path, target: Path, *, tensors=None, metadata=None):
    with zipfile.ZipFile(source) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    if tensors is not None:
        members["tensors.pt"] = tensors
    if metadata is not None:
        members["skebm.json"] = json.dumps(metadata)
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_a_tensor_file_crafted_to_run_code_is_refused(moons, tmp_path):
    small_estimator(random_state=0).fit(moons).save(tmp_path / "model.skebm")
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save({"energy": _Payload(marker)}, evil)
    _tampered_copy(
        tmp_path / "model.skebm", tmp_path / "evil.skebm", tensors=evil.getvalue()
    )
    # The payload is live: an unrestricted load runs it.
    with zipfile.ZipFile(tmp_path / "evil.skebm") as zf:
        torch.load(io.BytesIO(zf.read("tensors.pt")), weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    with pytest.raises(ValueError, match="Refusing to load.*nothing from it was"):
        skebm.load(tmp_path / "evil.skebm")
    assert not marker.exists()


def test_a_pickle_passed_to_load_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError, match="not a skebm model file"):
        skebm.load(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_json_naming_arbitrary_code_is_inert(moons, tmp_path):
    """Class names in the JSON are looked up in the plugin registry, never
    imported: naming ``os.system`` finds nothing and runs nothing."""
    small_estimator(random_state=0).fit(moons).save(tmp_path / "model.skebm")
    with zipfile.ZipFile(tmp_path / "model.skebm") as zf:
        metadata = json.loads(zf.read("skebm.json"))
    marker = tmp_path / "pwned"
    metadata["params"]["loss"] = {
        "__component__": {
            "kind": "loss",
            "name": "os:system",
            "params": {"command": f"touch {marker}"},
        }
    }
    _tampered_copy(tmp_path / "model.skebm", tmp_path / "evil.skebm", metadata=metadata)
    with pytest.raises(UnknownComponentError, match="Unknown loss 'os:system'"):
        skebm.load(tmp_path / "evil.skebm")
    metadata["params"]["loss"] = {"__schedule__": {"class": "os", "params": {}}}
    _tampered_copy(tmp_path / "model.skebm", tmp_path / "evil.skebm", metadata=metadata)
    with pytest.raises(ValueError, match="Unknown schedule 'os'"):
        skebm.load(tmp_path / "evil.skebm")
    metadata["class"] = "subprocess.Popen"
    _tampered_copy(tmp_path / "model.skebm", tmp_path / "evil.skebm", metadata=metadata)
    with pytest.raises(ValueError, match="restores EnergyDensityEstimator only"):
        skebm.load(tmp_path / "evil.skebm")
    assert not marker.exists()


# -- what cannot be saved safely ---------------------------------------------------


class _UnregisteredLoss(BaseLoss):
    def _loss(self, model, x, *, sampler, generator, state):
        return model.energy(x).mean()


class _Quadratic(nn.Module):
    def __init__(self, n_features, width=4):
        super().__init__()
        self.linear = nn.Linear(n_features, width)

    def forward(self, x):
        return 0.01 * self.linear(x).pow(2).sum(-1)


@pytest.mark.parametrize(
    ("params", "fragment", "picklable"),
    [
        (
            dict(energy=lambda n_features: _Quadratic(n_features), energy_params=None),
            "is not a registered energy",
            False,  # pickle cannot store a lambda either
        ),
        (
            dict(energy=_Quadratic, energy_params=None),
            "is not a registered energy",
            True,
        ),
        (
            dict(energy=_Quadratic(2), energy_params=None),
            "a _Quadratic instance",
            True,
        ),
        (
            dict(loss=_UnregisteredLoss()),
            "_UnregisteredLoss is not a registered loss",
            True,
        ),
        (
            dict(
                loss=NoiseContrastiveEstimation(
                    noise=torch.distributions.MultivariateNormal(
                        torch.zeros(2), torch.eye(2)
                    )
                )
            ),
            "Cannot save loss.noise",
            True,
        ),
    ],
    ids=["lambda", "unregistered-class", "module-instance", "loss", "distribution"],
)
def test_what_cannot_be_restored_safely_refuses_to_save(
    moons, tmp_path, params, fragment, picklable
):
    est = small_estimator(random_state=0, **params).fit(moons)
    with pytest.raises(UnsafeToSaveError, match="use pickle or joblib") as info:
        est.save(tmp_path / "model.skebm")
    assert fragment in str(info.value)
    assert not (tmp_path / "model.skebm").exists()
    if picklable:  # the alternative the message names works
        np.testing.assert_array_equal(
            pickle.loads(pickle.dumps(est)).score_samples(moons),
            est.score_samples(moons),
        )


# -- plugins: restored by registered name ------------------------------------------


class _PluginEnergy(nn.Module):
    def __init__(self, n_features, width=6):
        super().__init__()
        self.linear = nn.Linear(n_features, width)

    def forward(self, x):
        return 0.01 * self.linear(x).pow(2).sum(-1)


class _PluginSampler(Langevin):
    """A third-party sampler: Langevin under another name."""


class _Plugin:
    @skebm.hookimpl
    def skebm_register_energies(self, register):
        register("plugin-energy", _PluginEnergy)

    @skebm.hookimpl
    def skebm_register_samplers(self, register):
        register("plugin-sampler", _PluginSampler)


def _registry_with_plugin(monkeypatch, installed: bool):
    registry = Registry(load_entry_points=False)
    if installed:
        registry.add_plugin(_Plugin(), "skebm-fake", version="1.2")
    monkeypatch.setattr("skebm.plugins._REGISTRY", registry)


def test_plugin_components_are_restored_by_name(moons, tmp_path, monkeypatch):
    _registry_with_plugin(monkeypatch, installed=True)
    est = small_estimator(
        energy=_PluginEnergy,  # the registered class itself
        energy_params={"width": 5},
        sampler=_PluginSampler(step_size=0.03),
        loss="cd",
        loss_params={"n_steps": 2},
        random_state=0,
    ).fit(moons)
    est.save(tmp_path / "model.skebm")
    with zipfile.ZipFile(tmp_path / "model.skebm") as zf:
        metadata = json.loads(zf.read("skebm.json"))
    assert metadata["params"]["energy"]["__component_class__"]["name"] == (
        "skebm-fake:plugin-energy"
    )
    loaded = skebm.load(tmp_path / "model.skebm")
    assert type(loaded.energy_) is _PluginEnergy
    assert type(loaded.sampler_) is _PluginSampler
    assert loaded.sampler_.step_size == 0.03
    _assert_same_model(est, loaded, moons)


def test_a_missing_plugin_is_a_clear_error(moons, tmp_path, monkeypatch):
    _registry_with_plugin(monkeypatch, installed=True)
    small_estimator(
        energy="skebm-fake:plugin-energy",
        energy_params={"width": 3},
        sampler="plugin-sampler",
        random_state=0,
    ).fit(moons).save(tmp_path / "model.skebm")
    _registry_with_plugin(monkeypatch, installed=False)
    with pytest.raises(UnknownComponentError) as info:
        skebm.load(tmp_path / "model.skebm")
    message = str(info.value)
    assert "not available here" in message
    assert "'skebm-fake:plugin-energy' from skebm-fake 1.2" in message
    assert "Install the plugin" in message


# -- pickle, joblib, versions ------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGURATIONS))
def test_pickle_and_joblib_round_trips_are_exact(moons, tmp_path, config):
    est = small_estimator(random_state=0, **CONFIGURATIONS[config]).fit(moons)
    by_pickle = pickle.loads(pickle.dumps(est))
    joblib.dump(est, tmp_path / "model.joblib")
    by_joblib = joblib.load(tmp_path / "model.joblib")
    for loaded in (by_pickle, by_joblib):
        _assert_same_state(est, loaded)
        _assert_same_model(est, loaded, moons)


def test_a_version_mismatch_warns(moons, tmp_path):
    small_estimator(random_state=0).fit(moons).save(tmp_path / "model.skebm")
    with zipfile.ZipFile(tmp_path / "model.skebm") as zf:
        metadata = json.loads(zf.read("skebm.json"))
    metadata["skebm_version"] = "0.0.1"
    _tampered_copy(tmp_path / "model.skebm", tmp_path / "old.skebm", metadata=metadata)
    with pytest.warns(VersionWarning, match="saved with skebm 0.0.1"):
        skebm.load(tmp_path / "old.skebm")


def test_a_newer_format_is_refused_with_advice(moons, tmp_path):
    small_estimator(random_state=0).fit(moons).save(tmp_path / "model.skebm")
    with zipfile.ZipFile(tmp_path / "model.skebm") as zf:
        metadata = json.loads(zf.read("skebm.json"))
    metadata["format_version"] = 99
    _tampered_copy(tmp_path / "model.skebm", tmp_path / "new.skebm", metadata=metadata)
    with pytest.raises(ValueError, match="format version 99.*Upgrade skebm"):
        skebm.load(tmp_path / "new.skebm")


# -- across devices ----------------------------------------------------------------


def test_load_onto_a_chosen_device(moons, tmp_path):
    small_estimator(random_state=0).fit(moons).save(tmp_path / "model.skebm")
    assert skebm.load(tmp_path / "model.skebm", device="cpu").device_.type == "cpu"
    with pytest.raises(ValueError, match="Unknown device 'tpu'. Available devices"):
        skebm.load(tmp_path / "model.skebm", device="tpu")


_LOAD_WITHOUT_CUDA = textwrap.dedent(
    """
    import pickle, sys, warnings
    import numpy as np, torch
    import skebm
    from skebm.exceptions import DeviceWarning

    assert not torch.cuda.is_available(), "CUDA must be hidden in this process"
    folder = sys.argv[1]
    X = np.load(folder + "/X.npy")
    expected = np.load(folder + "/expected.npy")
    for how in ("pickle", "safe"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if how == "pickle":
                with open(folder + "/model.pkl", "rb") as f:
                    est = pickle.load(f)
            else:
                est = skebm.load(folder + "/model.skebm")
        device_warnings = [w for w in caught if w.category is DeviceWarning]
        assert len(device_warnings) == 1, [str(w.message) for w in caught]
        assert "cuda" in str(device_warnings[0].message), device_warnings[0].message
        assert est.device_ == torch.device("cpu"), est.device_
        tolerance = float(sys.argv[2])
        np.testing.assert_allclose(
            est.score_samples(X), expected, rtol=tolerance, atol=tolerance
        )
        assert np.all(np.isfinite(est.sample(5, random_state=0)))
        assert "set_params(device='cpu')" in str(device_warnings[0].message)
        # Training continues on the CPU once asked to (device="cuda" would raise).
        est.set_params(device="cpu", warm_start=True, max_iter=1).fit(X)
        print(how, "ok")
    """
)


def _load_in_a_process_without_cuda(folder: Path, tolerance: float):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_CUDA, str(folder), str(tolerance)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["pickle", "ok", "safe", "ok"]


def _write_model(est, X, expected, folder: Path):
    np.save(folder / "X.npy", X)
    np.save(folder / "expected.npy", expected)
    (folder / "model.pkl").write_bytes(pickle.dumps(est))
    est.save(folder / "model.skebm")


def test_a_cuda_model_loads_without_cuda_cpu_simulation(moons, tmp_path):
    """What a CUDA-fitted model's pickle and file hold, made on the CPU: the
    state says ``cuda:0`` (tensors are always stored on the CPU). Loading it in a
    process where torch sees no CUDA falls back to the CPU with one
    DeviceWarning and scores exactly as the original."""
    est = small_estimator(loss="pcd", loss_params={"n_steps": 2}, random_state=0)
    est.fit(moons)
    expected = est.score_samples(moons)
    est.device_ = torch.device("cuda:0")  # as if fitted there
    _write_model(est, moons, expected, tmp_path)
    _load_in_a_process_without_cuda(tmp_path, tolerance=0.0)


@cuda
def test_a_cuda_model_loads_without_cuda(moons, tmp_path):
    """Fitted on the GPU; loaded in a subprocess with CUDA_VISIBLE_DEVICES=""."""
    est = small_estimator(
        loss="pcd", loss_params={"n_steps": 2}, device="cuda", random_state=0
    ).fit(moons)
    assert est.device_.type == "cuda"
    _write_model(est, moons, est.score_samples(moons), tmp_path)
    # CPU and GPU kernels round float32 differently, by about 1e-7 of each term
    # (log q, E, log Z: order 1), so a log-density near 0 differs by 1e-7 absolute
    # but 1e-5 relative (seen on an H200): absolute and relative tolerance.
    _load_in_a_process_without_cuda(tmp_path, tolerance=1e-5)
