"""Progress reporting: nothing at verbose=0, a bar at 1, a line per epoch at 2; the
reporting never changes results."""

import sys

import numpy as np
import pytest
import torch

from skebm._progress import EpochProgress, SamplingProgress
from skebm.estimator import _START_STEPS
from tests._helpers import small_estimator


def _fit_and_sample(moons, verbose, **params):
    # One base, so one training run to report (base="auto" reports each candidate).
    params = {"base": "gmm", **params}
    est = small_estimator(max_iter=2, verbose=verbose, random_state=0, **params)
    est.fit(moons)
    return est, est.sample(30, random_state=0)


def test_verbose_0_is_silent(moons, capsys):
    _fit_and_sample(moons, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_2_prints_a_line_per_epoch_and_per_sample_chunk(moons, capsys):
    _fit_and_sample(moons, verbose=2, sampler="langevin")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("[EnergyDensityEstimator] epoch 1, loss=")
    assert lines[1].startswith("[EnergyDensityEstimator] epoch 2, loss=")
    # Langevin evaluates the energy once per step (sample_steps=5 in
    # small_estimator), after the 16 independence steps that start the chains
    # (one evaluation at the base draws, one per step).
    evaluations = 5 + 1 + _START_STEPS
    assert lines[2].startswith(
        "[EnergyDensityEstimator] sample chunk 1/1: "
        f"30 rows, {evaluations} energy evaluations"
    )


def test_verbose_1_shows_a_tqdm_bar_with_the_loss(moons, capsys):
    pytest.importorskip("tqdm")
    _fit_and_sample(moons, verbose=1)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "EnergyDensityEstimator" in captured.err
    assert "2/2" in captured.err and "loss=" in captured.err


def test_verbose_1_falls_back_to_a_text_bar_without_tqdm(moons, capsys, monkeypatch):
    # A None entry in sys.modules makes `import tqdm.auto` raise ImportError.
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    _fit_and_sample(moons, verbose=1)
    err = capsys.readouterr().err
    assert "EnergyDensityEstimator: 2/2 epoch" in err and "loss=" in err
    assert err.endswith("\n")


@pytest.mark.parametrize("verbose", [1, 2])
def test_reporting_does_not_change_results(moons, verbose, capsys):
    quiet, quiet_samples = _fit_and_sample(moons, verbose=0)
    loud, loud_samples = _fit_and_sample(moons, verbose=verbose)
    np.testing.assert_array_equal(quiet.loss_curve_, loud.loss_curve_)
    np.testing.assert_array_equal(quiet.score_samples(moons), loud.score_samples(moons))
    np.testing.assert_array_equal(quiet_samples, loud_samples)


def test_short_sample_calls_stay_silent_at_verbose_1(moons, capsys):
    pytest.importorskip("tqdm")
    est = small_estimator(max_iter=1, random_state=0).fit(moons)
    est.set_params(verbose=1).sample(10, random_state=0)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("tqdm_installed", [True, False])
def test_sampling_bar_counts_energy_evaluations(capsys, monkeypatch, tqdm_installed):
    if tqdm_installed:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    energy = torch.nn.Linear(2, 1)
    with SamplingProgress(name="Est", n_chunks=1, verbose=1, delay=0.0) as progress:
        counted = progress.wrap(energy)
        x = torch.randn(4, 2)
        for _ in range(7):
            torch.testing.assert_close(counted(x), energy(x))
    err = capsys.readouterr().err
    assert "Est.sample" in err and "7" in err and "eval" in err


def test_epoch_progress_closes_its_bar_on_early_exit(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with (
        pytest.raises(RuntimeError),
        EpochProgress(name="Est", n_epochs=10, verbose=1) as progress,
    ):
        progress.epoch_done(1, 0.5, 0.01)
        raise RuntimeError
    err = capsys.readouterr().err
    assert "Est: 1/10 epoch" in err and err.endswith("\n")


def test_no_bar_when_no_epoch_runs(moons, capsys):
    small_estimator(max_iter=0, verbose=1, random_state=0).fit(moons)
    assert capsys.readouterr().err == ""
