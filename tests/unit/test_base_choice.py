"""Which candidate model ``base="auto"`` keeps (``choose_base``)."""

import math

import numpy as np
import pytest

import skebm._fitting as fitting
from skebm._base_choice import choose_base
from skebm.datasets import make_rings
from tests._helpers import small_estimator

N_ROWS = 500


@pytest.fixture
def rows():
    """Held-out scores of one candidate; others differ from it row by row."""
    return np.random.default_rng(0).normal(-2.0, 1.0, size=N_ROWS)


def noise(scale, seed=1):
    return np.random.default_rng(seed).normal(0.0, scale, size=N_ROWS)


def all_reliable(held_out):
    return dict.fromkeys(held_out, True)


def test_the_best_mean_is_kept_by_any_margin(rows):
    held_out = {"gaussian": rows + 1e-4, "gmm": rows, "gaussianized": rows - 0.1}
    assert choose_base(held_out, all_reliable(held_out)) == "gaussian"


def test_ties_go_to_the_candidate_fitted_first(rows):
    held_out = {"gaussian": rows, "gmm": rows.copy()}
    assert choose_base(held_out, all_reliable(held_out)) == "gaussian"


def test_the_gaussianized_base_needs_more_than_one_standard_error(rows):
    # The paired difference has standard deviation 0.1, so its standard error is
    # 0.1 / sqrt(500) = 0.0045; the noise is centred, so the mean gain is set.
    spread = noise(0.1) - noise(0.1).mean()
    stderr = spread.std(ddof=1) / math.sqrt(N_ROWS)
    for gain, kept in (
        (0.5 * stderr, "gmm"),
        (0.99 * stderr, "gmm"),
        (1.01 * stderr, "gaussianized"),
        (5 * stderr, "gaussianized"),
    ):
        held_out = {
            "gaussian": rows - 0.05,
            "gmm": rows,
            "gaussianized": rows + gain + spread,
        }
        assert choose_base(held_out, all_reliable(held_out)) == kept, gain / stderr


def test_a_narrowly_best_gaussianized_base_gives_way_to_the_better_other(rows):
    spread = noise(0.1) - noise(0.1).mean()
    held_out = {
        "gaussian": rows - 0.001,
        "gmm": rows - 0.002,
        "gaussianized": rows + spread,
    }
    assert choose_base(held_out, all_reliable(held_out)) == "gaussian"


def test_a_lone_gaussianized_candidate_is_kept(rows):
    assert choose_base({"gaussianized": rows}, {"gaussianized": True}) == "gaussianized"
    # Or the only reliable one: an unreliable log Z does not count as a rival.
    held_out = {"gmm": rows + 1.0, "gaussianized": rows}
    assert choose_base(held_out, {"gmm": False, "gaussianized": True}) == "gaussianized"


def test_an_unreliable_log_z_is_kept_only_when_nothing_else_is(rows):
    held_out = {"gaussian": rows + 5.0, "gmm": rows}
    assert choose_base(held_out, {"gaussian": False, "gmm": True}) == "gmm"
    assert choose_base(held_out, {"gaussian": False, "gmm": False}) == "gaussian"


def test_a_non_finite_score_ranks_last(rows):
    diverged = np.full(N_ROWS, np.nan)
    held_out = {"gaussian": rows, "gmm": diverged}
    assert choose_base(held_out, all_reliable(held_out)) == "gaussian"
    held_out = {"gmm": diverged, "gaussianized": rows}
    assert choose_base(held_out, all_reliable(held_out)) == "gaussianized"


def test_fit_keeps_what_choose_base_picks_from_each_candidates_held_out_rows(
    monkeypatch,
):
    """``fit`` passes every candidate's per-row held-out scores (whose means are
    ``base_scores_``) and keeps the candidate chosen, here one that is not the best."""
    seen = {}

    def worst(held_out, reliable):
        seen.update(held_out=dict(held_out), reliable=dict(reliable))
        return min(held_out, key=lambda kind: held_out[kind].mean())

    monkeypatch.setattr(fitting, "choose_base", worst)
    X = make_rings(600, random_state=0)
    est = small_estimator(max_iter=3, random_state=0).fit(X)
    held_out = seen["held_out"]
    assert list(held_out) == ["gaussian", "gmm", "gaussianized"]
    assert all(rows.shape == (60,) for rows in held_out.values())
    for kind, rows in held_out.items():
        assert rows.mean() == pytest.approx(est.base_scores_[kind], rel=1e-12)
    assert est.base_kind_ == min(est.base_scores_, key=est.base_scores_.get)
    assert est.best_validation_score_ == est.base_scores_[est.base_kind_]
