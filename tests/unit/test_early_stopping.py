"""Held-out rows inside fit: early stopping on the held-out log-likelihood, averaged
weights, the choice among candidate bases, and an honest log Z for each."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from skebm._heldout import HeldOutLikelihood
from skebm._training import _Averaging
from skebm.bases import StandardNormalDensity
from skebm.datasets import make_rings
from skebm.energies import MLPEnergy
from skebm.exceptions import PartitionWarning
from skebm.partition import grid_log_partition
from tests._helpers import small_estimator


@pytest.fixture(scope="module")
def rings():
    return make_rings(600, random_state=0)


def test_the_curve_starts_at_the_base_and_the_best_epoch_is_kept(rings):
    est = small_estimator(
        max_iter=30, n_iter_no_change=4, base="gaussian", random_state=0
    ).fit(rings)
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ + 1  # the untrained model, then every epoch
    assert scores[0] == pytest.approx(est.base_validation_score_, abs=1e-9)
    # Stopped n_iter_no_change epochs after the best one (or at max_iter).
    best = int(np.argmax(scores))
    assert est.n_iter_ == 30 or est.n_iter_ - best == 4
    # The kept model beats its base on the held-out rows (measured: +0.11 nats).
    assert est.best_validation_score_ > est.base_validation_score_ + 0.05


def test_an_energy_that_never_helps_leaves_the_model_equal_to_its_base(rings):
    """No epoch improves the held-out score by tol: the untrained energy (zero
    everywhere) is what fit keeps, so the model is exactly its base."""
    est = small_estimator(
        max_iter=20,
        n_iter_no_change=3,
        tol=10.0,
        base="gmm",
        ema_decay=0.0,
        random_state=0,
    ).fit(rings)
    assert est.n_iter_ == 3
    z = torch.randn(50, 2)
    with torch.no_grad():
        assert est.energy_(z).abs().max().item() == 0.0
    # log Z of the base alone is 0 up to the error of a 101 x 101 quadrature.
    assert est.log_partition_ == pytest.approx(0.0, abs=1e-3)


def test_auto_keeps_the_candidate_base_that_scores_best_on_held_out_rows(rings):
    """The best mean is kept; the Gaussianised base only by a margin, so where it
    is best the kept one is it or the best of the others (test_base_choice.py)."""
    est = small_estimator(max_iter=5, random_state=0).fit(rings)
    assert set(est.base_scores_) == {"gaussian", "gmm", "gaussianized"}
    best = max(est.base_scores_, key=est.base_scores_.get)
    others = {k: v for k, v in est.base_scores_.items() if k != "gaussianized"}
    assert est.base_kind_ in {best, max(others, key=others.get)}
    if best != "gaussianized":
        assert est.base_kind_ == best
    assert est.best_validation_score_ == est.base_scores_[est.base_kind_]


def test_without_held_out_rows_auto_is_one_mixture(rings):
    for est in (
        small_estimator(early_stopping=False, random_state=0).fit(rings),
        small_estimator(random_state=0).partial_fit(rings),
        small_estimator(random_state=0).fit(rings[:40]),  # 4 rows would be held out
    ):
        assert est.base_kind_ == "gmm" and est.base_scores_ is None
        assert est.validation_scores_ is None


def test_partition_auto_is_exact_quadrature_in_two_dimensions(rings):
    est = small_estimator(max_iter=3, base="gaussian", random_state=0)
    est.set_params(partition_params=None).fit(rings)
    grid = grid_log_partition(est._model())
    assert est.log_partition_ == grid.log_partition
    # Options of either method are accepted with "auto"; each reads its own.
    est.set_params(partition_params={"n_points": 101, "n_chains": 8}).fit(rings)
    grid = grid_log_partition(est._model(), n_points=101)
    assert est.log_partition_ == grid.log_partition


def _sharp_clusters(rng):
    return np.vstack([rng.normal(size=(150, 3)) * 0.05 + c for c in (-2, 0, 2)])


def test_a_log_partition_resting_on_few_chains_drops_the_energy(rng):
    """A trained energy whose AIS log Z rests on a few chains is replaced by its
    untrained (zero) self: the model falls back to its base, with an exact log Z."""
    est = small_estimator(
        max_iter=40,
        base="standard",
        learning_rate=3e-2,
        energy_params={"hidden_layer_sizes": (32,)},
        partition="ais",
        partition_params={"n_chains": 12, "n_temperatures": 2},
        random_state=0,
    )
    X = _sharp_clusters(rng)
    with pytest.warns(PartitionWarning, match="the trained energy was dropped"):
        est.fit(X)
    assert est.log_partition_ == 0.0
    np.testing.assert_array_equal(est.score_samples(X), est.base_score_samples(X))


def test_a_refit_base_that_leaves_log_z_unreliable_is_not_kept(rings, monkeypatch):
    """The final refit of the base must not cost the trained energy: where log Z
    under the refitted base is unreliable, the validated model stays as it was."""
    import skebm._fitting as fitting

    estimates = []

    def estimate(estimator):
        original(estimator)
        estimates.append((estimator.base_, estimator.log_partition_))
        if len(estimates) == 2:  # the estimate after the refit
            estimator._partition_reliable = False

    original = fitting._estimate_partition
    monkeypatch.setattr(fitting, "_estimate_partition", estimate)
    est = small_estimator(max_iter=5, base="gaussian", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PartitionWarning)
        est.fit(rings)
    (validated, log_z), (refitted, _) = estimates
    assert refitted is not validated  # a refit happened, and was undone
    assert est.base_ is validated and est.log_partition_ == log_z
    assert not est._energy_dropped
    with torch.no_grad():
        assert (
            est.energy_(torch.as_tensor(rings[:50], dtype=torch.float32)).abs().max()
            > 0
        )
    assert grid_log_partition(est._model()).log_partition == pytest.approx(
        log_z, abs=1e-6
    )


def test_an_energy_that_does_not_start_at_zero_is_kept_with_a_warning(rng):
    est = small_estimator(
        max_iter=10,
        base="standard",
        energy="gaussian",
        energy_params=None,
        learning_rate=3e-2,
        partition="ais",
        partition_params={"n_chains": 12, "n_temperatures": 2},
        random_state=0,
    )
    with pytest.warns(PartitionWarning, match="may be off"):
        est.fit(_sharp_clusters(rng))


def test_a_reliable_log_partition_does_not_warn(rings):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PartitionWarning)
        small_estimator(max_iter=3, random_state=0).fit(rings)


def test_averaging_warms_up_then_follows_the_weights_slowly():
    module = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(module.weight)
    averaging = _Averaging(module, decay=0.99)
    with torch.no_grad():
        module.weight.fill_(1.0)
    averaging.update()  # decay min(0.99, 1/10): the average moves 90 % of the way
    assert averaging.module.weight.item() == pytest.approx(0.9)
    for _ in range(10_000):
        averaging.update()
    assert averaging.module.weight.item() == pytest.approx(1.0)
    assert not averaging.module.weight.requires_grad


def test_the_averaged_weights_are_the_ones_kept(rings):
    plain = dict(max_iter=4, early_stopping=False, base="gmm", random_state=0)
    raw = small_estimator(ema_decay=0.0, **plain).fit(rings)
    averaged = small_estimator(ema_decay=0.99, **plain).fit(rings)
    np.testing.assert_array_equal(raw.loss_curve_, averaged.loss_curve_)
    assert not np.allclose(raw.score_samples(rings), averaged.score_samples(rings))


class _Tilt(nn.Module):
    """``E(z) = -a·z₁``: on a standard normal base the model ``q·exp(-β·E) / Z_β``
    is the normal distribution with mean ``(β·a, 0)`` and ``log Z_β = (β·a)² / 2``."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return -self.a * z[:, 0]


@pytest.mark.parametrize("true_scale", [0.0, 0.3, 0.6])
def test_best_scale_finds_the_strength_the_held_out_rows_were_drawn_with(true_scale):
    n_rows, n_draws, a = 4000, 8192, 2.0
    rows = torch.randn(n_rows, 2, generator=torch.Generator().manual_seed(0))
    rows[:, 0] += true_scale * a
    held_out = HeldOutLikelihood(
        StandardNormalDensity(2),
        rows,
        n_draws=n_draws,
        generator=torch.Generator().manual_seed(1),
    )
    found = held_out.best_scale(_Tilt(a))
    # Maximum likelihood over β is mean(z₁) / a, standard error 1 / (a·√n_rows).
    # log Z_β by importance sampling moves it by about 1 / (a·√ESS), where the
    # weights exp(β·a·z₁) of standard normal draws have ESS ≈ n_draws / e^((β·a)²)
    # (the defensive share changes it little); the grid adds half a step.
    data_error = 1 / (a * n_rows**0.5)
    sampling_error = 1 / (a * (n_draws / np.exp((true_scale * a) ** 2)) ** 0.5)
    tolerance = 3 * np.hypot(data_error, sampling_error) + 0.5 / 40
    assert abs(found - true_scale) <= tolerance


def _tilted_held_out(true_scale: float, a: float, n_rows: int, seed: int):
    """Held-out rows of the tilted model with factor ``true_scale`` (see _Tilt)."""
    rows = torch.randn(n_rows, 2, generator=torch.Generator().manual_seed(seed))
    rows[:, 0] += true_scale * a
    held_out = HeldOutLikelihood(
        StandardNormalDensity(2),
        rows,
        n_draws=8192,
        generator=torch.Generator().manual_seed(1),
    )
    return rows, held_out


def test_best_scale_stops_at_one_where_the_rows_ask_for_more():
    _, held_out = _tilted_held_out(1.5, 2.0, 2000, seed=0)
    assert held_out.best_scale(_Tilt(2.0)) == 1.0


def test_best_scale_keeps_one_where_a_smaller_factor_gains_less_than_its_error():
    """200 rows drawn with the factor 0.95: the maximum-likelihood factor is below
    1 by δ, a gain of (a·δ)² / 2 nats per row over 1, against a standard error of
    at least a·δ / sqrt(200) from the rows alone, so the gain is within it for
    δ < 2 / (a·sqrt(200)) = 0.071."""
    a = 2.0
    rows, held_out = _tilted_held_out(0.95, a, 200, seed=3)
    shortfall = 1 - float(rows[:, 0].mean()) / a
    assert 0.02 < shortfall < 0.06  # the draw this test is about
    assert held_out.best_scale(_Tilt(a)) == 1.0


class _RecordingMLP(MLPEnergy):
    """An MLP energy that records the factors ``fit`` scales it by."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.factors = []

    def scale_output_(self, factor: float) -> None:
        self.factors.append(factor)
        super().scale_output_(factor)


def test_fit_scales_the_trained_energy_once_by_the_factor_chosen(rings, monkeypatch):
    monkeypatch.setattr(HeldOutLikelihood, "best_scale", lambda self, energy: 0.5)
    energy = _RecordingMLP(2, (16,), fourier_features=8)
    est = small_estimator(
        energy=energy, energy_params=None, base="gaussian", max_iter=10, random_state=0
    ).fit(rings)
    assert est.energy_.factors == [0.5]
    assert est.energy_scale_ == 0.5


def test_a_factor_of_zero_leaves_the_base_with_its_exact_log_partition(
    rings, monkeypatch
):
    monkeypatch.setattr(HeldOutLikelihood, "best_scale", lambda self, energy: 0.0)
    est = small_estimator(base="gaussian", max_iter=10, random_state=0).fit(rings)
    assert est.energy_scale_ == 0.0
    with torch.no_grad():
        assert est.energy_(torch.randn(50, 2)).abs().max().item() == 0.0
    # The model is scored as its base: log Z is 0 up to the quadrature's error.
    assert est.log_partition_ == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(
        est.score_samples(rings), est.base_score_samples(rings), atol=1e-3
    )


class _MLPPlusQuadratic(MLPEnergy):
    """An MLP energy plus a term its inherited ``scale_output_`` does not scale."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 0.1 * (x * x).sum(-1)


def test_an_energy_that_scale_output_does_not_scale_is_kept_as_trained(
    rings, monkeypatch
):
    def fit(factor):
        monkeypatch.setattr(
            HeldOutLikelihood, "best_scale", lambda self, energy: factor
        )
        return small_estimator(
            energy=_MLPPlusQuadratic,
            base="gaussian",
            max_iter=5,
            random_state=0,
        ).fit(rings)

    refused, kept = fit(0.5), fit(1.0)
    assert refused.energy_scale_ == 1.0
    z = torch.randn(50, 2)
    with torch.no_grad():
        torch.testing.assert_close(refused.energy_(z), kept.energy_(z))


@pytest.mark.parametrize(
    "params",
    [{"early_stopping": False}, {"energy": "gaussian", "energy_params": None}],
    ids=["no held-out rows", "no scale_output_"],
)
def test_without_held_out_rows_or_scale_output_the_energy_is_kept_as_trained(
    rings, params
):
    est = small_estimator(base="gaussian", random_state=0, **params).fit(rings)
    assert est.energy_scale_ == 1.0
