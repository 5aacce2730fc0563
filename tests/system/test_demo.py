"""The demo: the README's first command. Its model must beat a cross-validated KDE
on held-out data and be honestly normalised."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.integrate import trapezoid  # numpy<2 has no np.trapezoid

from skebm._demo import run_demo
from skebm.partition import grid_log_partition


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.png"
    return run_demo(str(path))


def test_demo_beats_cross_validated_kde(demo):
    assert demo["ebm"] > demo["kde"], demo


def test_demo_writes_its_figure(demo):
    with open(demo["figure"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_demo_density_integrates_to_one(demo):
    est = demo["estimator"]
    low = est.mean_ - 12 * est.scale_
    high = est.mean_ + 12 * est.scale_
    axes = [np.linspace(lo, hi, 1201) for lo, hi in zip(low, high)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(est.score_samples(grid)).reshape(1201, 1201)
    total = trapezoid(trapezoid(density, axes[1], axis=1), axes[0])
    assert abs(total - 1.0) < 0.05, total


def test_demo_ais_agrees_with_exact_quadrature(demo):
    est = demo["estimator"]
    exact = grid_log_partition(est._model())
    assert abs(est.log_partition_ - exact.log_partition) < 0.05


def test_cli_demo_fast(tmp_path):
    out = tmp_path / "fast.png"
    result = subprocess.run(
        [sys.executable, "-m", "skebm", "demo", "--fast", "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "KernelDensity" in result.stdout and out.exists()


def test_cli_plugins_lists_builtins_as_json():
    result = subprocess.run(
        [sys.executable, "-m", "skebm", "plugins", "--all"],
        capture_output=True,
        text=True,
        check=True,
    )
    listing = json.loads(result.stdout)
    names = {(c["kind"], c["name"]) for c in listing["components"]}
    assert {("loss", "nce"), ("sampler", "mala"), ("energy", "mlp")} <= names
    assert all(p["status"] == "builtin" for p in listing["plugins"])
