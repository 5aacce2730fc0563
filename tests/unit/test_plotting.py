"""skebm.plotting: the drawn values are the model's, the autocorrelation estimator
is right on a chain with a known answer, and a missing matplotlib is explained."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib", reason="matplotlib is optional")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.neighbors import KernelDensity  # noqa: E402

from skebm import plotting  # noqa: E402
from tests._helpers import small_estimator  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fitted_2d():
    from skebm.datasets import make_two_moons

    X = make_two_moons(300, random_state=0)
    return small_estimator(random_state=0).fit(X), X


def test_density_grid_integrates_to_one():
    # A KDE of bandwidth 0.3 on N(0, I) data: the box is the data range widened by
    # 2 units (> 6 bandwidths) on each side, so the mass outside it is below 1e-8;
    # the 300-point Riemann sum of this smooth density is accurate to ~1e-4.
    X = np.random.RandomState(0).normal(size=(200, 2))
    kde = KernelDensity(bandwidth=0.3).fit(X)
    axes, density = plotting.density_grid(
        kde, X.min(0) - 2, X.max(0) + 2, grid_size=300
    )
    cell = np.prod([a[1] - a[0] for a in axes])
    assert abs(density.sum() * cell - 1.0) < 5e-3
    # Layout: density[i, j] is at (axes[0][j], axes[1][i]).
    point = np.array([[axes[0][7], axes[1][3]]])
    np.testing.assert_allclose(density[3, 7], np.exp(kde.score_samples(point))[0])


def test_plot_density_2d_draws_filled_contours_of_the_model(fitted_2d):
    est, X = fitted_2d
    ax = plotting.plot_density(est, X, grid_size=40)
    contour_sets = [c for c in ax.collections if hasattr(c, "levels")]
    assert contour_sets, "no contour set drawn"
    _, density = plotting.density_grid(
        est, *plotting._bounds(est, X, None, 0.1), grid_size=40
    )
    levels = contour_sets[0].levels
    assert levels[0] <= density.min() and levels[-1] >= density.max()


def test_plot_density_1d_draws_the_exact_density():
    X = np.random.RandomState(0).normal(size=(200, 1))
    est = small_estimator(random_state=0).fit(X)
    ax = plotting.plot_density(est, X, grid_size=64)
    line = ax.lines[-1]
    x, y = line.get_data()
    np.testing.assert_allclose(y, np.exp(est.score_samples(x[:, None])))


def test_plot_density_pair_plot_for_more_than_two_features():
    X = np.random.RandomState(0).normal(size=(200, 3))
    est = small_estimator(random_state=0).fit(X)
    axes = plotting.plot_density(est, X, n_samples=300)
    assert axes.shape == (3, 3)
    assert all(len(axes[i, i].patches) > 0 for i in range(3))  # histograms
    assert len(axes[2, 0].collections) + len(axes[2, 0].images) > 0  # hist2d
    assert len(axes[0, 2].collections) > 0  # the data above the diagonal
    with pytest.raises(ValueError, match=r"\(3, 3\) axes"):
        plotting.plot_density(est, X, ax=plt.subplots(2, 2)[1])


def test_plot_density_needs_a_region_for_foreign_estimators():
    kde = KernelDensity().fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="pass X"):
        plotting.plot_density(kde)


def test_plot_samples_and_loss_curve(fitted_2d):
    est, X = fitted_2d
    samples = est.sample(50, random_state=0)
    ax = plotting.plot_samples(samples, X)
    offsets = ax.collections[-1].get_offsets()
    np.testing.assert_array_equal(np.asarray(offsets), samples)
    ax = plotting.plot_loss_curve(est)
    x, y = ax.lines[0].get_data()
    np.testing.assert_array_equal(x, np.arange(1, est.n_iter_ + 1))
    np.testing.assert_array_equal(y, est.loss_curve_)
    ax = plotting.plot_samples(samples[:, :1], X[:, :1])
    assert len(ax.patches) > 0


def test_plot_validation_curve_draws_the_scores_the_kept_epoch_and_the_base(
    fitted_2d,
):
    est, X = fitted_2d
    ax = plotting.plot_validation_curve(est)
    curve, kept = ax.lines[0], ax.lines[1]
    np.testing.assert_array_equal(curve.get_ydata(), est.validation_scores_)
    best = int(np.argmax(est.validation_scores_))
    assert kept.get_xdata()[0] == best
    assert ax.lines[2].get_ydata()[0] == est.base_validation_score_
    unvalidated = small_estimator(early_stopping=False, random_state=0).fit(X)
    with pytest.raises(ValueError, match="early_stopping=True"):
        plotting.plot_validation_curve(unvalidated)


def test_autocorrelation_of_an_ar1_chain():
    # x_t = φ x_{t-1} + ε_t has autocorrelation φ^k. Bartlett's formula gives a
    # standard error of about sqrt((1+φ²)/(1-φ²)/n) = 0.0034 for one estimate
    # pooled over 200 chains of 2,000 steps (n = 400,000), and centring each chain
    # on its own mean biases it by about -(1+φ)/(1-φ)/2000 = -0.0045; the
    # tolerance 0.02 is several times both.
    phi, n_steps, n_chains = 0.8, 2000, 200
    rng = np.random.RandomState(0)
    x = np.empty((n_steps, n_chains))
    x[0] = rng.normal(size=n_chains) / np.sqrt(1 - phi**2)
    for t in range(1, n_steps):
        x[t] = phi * x[t - 1] + rng.normal(size=n_chains)
    acf = plotting.chain_autocorrelation(x, max_lag=10)
    np.testing.assert_allclose(acf, phi ** np.arange(11), atol=0.02)
    white = plotting.chain_autocorrelation(rng.normal(size=(n_steps, n_chains)), 5)
    np.testing.assert_allclose(white, np.r_[1.0, np.zeros(5)], atol=0.01)


def test_autocorrelation_rejects_degenerate_chains():
    with pytest.raises(ValueError, match="constant"):
        plotting.chain_autocorrelation(np.ones((10, 3)))
    with pytest.raises(ValueError, match="at least 2 steps"):
        plotting.chain_autocorrelation(np.ones(1))


def test_plot_chains_draws_traces_and_autocorrelation():
    rng = np.random.RandomState(0)
    chains = rng.normal(size=(100, 8, 2))
    trace, acf_ax = plotting.plot_chains(chains, feature=1, max_lag=10, n_shown=3)
    assert len(trace.lines) == 3
    np.testing.assert_array_equal(trace.lines[0].get_data()[1], chains[:, 0, 1])
    _, acf = acf_ax.lines[0].get_data()
    np.testing.assert_allclose(
        acf, plotting.chain_autocorrelation(chains[:, :, 1], max_lag=10)
    )


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"skebm\[examples\]"):
        plotting.plot_loss_curve([1.0, 0.5])
