"""Base densities: normalised, sampled exactly, with the gradients the samplers use,
and fitted with the number of components the data support."""

import numpy as np
import pytest
import torch
from scipy.stats import kstest, lognorm, norm

from skebm import bases
from skebm.bases import (
    BASE_CLASSES,
    TAIL_SHARE,
    GaussianMixtureDensity,
    MarginalGaussianization,
    StandardNormalDensity,
    _max_components,
    fit_base,
    refit_base,
    with_tails,
)
from skebm.datasets import make_funnel, make_gaussian_grid, make_rings, make_two_moons


def _standardised(X):
    return (X - X.mean(0)) / X.std(0)


@pytest.fixture(scope="module")
def rings():
    return _standardised(make_rings(3000, random_state=0))


@pytest.fixture(scope="module")
def gaussianized(rings):
    return fit_base("gaussianized", rings[:2700], Z_valid=rings[2700:], random_state=0)


def _grid_integral(density, n=600):
    low, high = density.bounds(8.0)
    axes = [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in zip(low, high)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        log_q = density.log_prob(torch.as_tensor(mesh)).numpy()
    return np.exp(log_q).sum() * np.prod((high - low) / n)


def test_marginal_gaussianization_is_monotone_invertible_and_gaussianizes(rings):
    transform = MarginalGaussianization.fit(rings)
    x = torch.as_tensor(rings)
    z, slope = transform(x)
    torch.testing.assert_close(transform.inverse(z), x)
    assert torch.all(slope > 0)
    # Far beyond the knots the map continues linearly, still invertible.
    far = torch.tensor([[-50.0, 60.0]], dtype=torch.float64)
    torch.testing.assert_close(transform.inverse(transform(far)[0]), far)
    # The slope is the derivative (central differences between knots).
    h = 1e-6
    numeric = (transform(x + h)[0] - transform(x - h)[0]) / (2 * h)
    assert torch.quantile((numeric - slope).abs() / slope, 0.99) < 1e-4
    # Each transformed feature is close to standard normal (kernel smoothing keeps
    # it from being exactly so): Kolmogorov-Smirnov distance below 0.03.
    for column in z.T.numpy():
        assert kstest(column, norm.cdf).statistic < 0.03


def test_the_map_leaves_no_empty_gaps_between_sparse_extreme_values():
    # Log-normal rows: the largest training values lie far apart. The density the
    # map implies, phi(T(x)) T'(x), must not fall to almost nothing between them
    # (with Silverman's bandwidth everywhere, one held-out row of this draw was
    # 183 nats below its true log-density).
    x = np.random.RandomState(0).lognormal(size=6000)
    train, held_out = x[:4500], x[4500:]
    mean, std = train.mean(), train.std()
    inside = held_out[(held_out > train.min()) & (held_out < train.max())]
    transform = MarginalGaussianization.fit(((train - mean) / std)[:, None])
    z, slope = transform(torch.as_tensor((inside - mean) / std)[:, None])
    implied = norm.logpdf(z[:, 0].numpy()) + np.log(slope[:, 0].numpy())
    gap = implied - (lognorm(1).logpdf(inside) + np.log(std))
    assert gap.min() > -2.0
    # Smoothing costs a little on average (measured: -0.04 nats on this draw).
    assert gap.mean() > -0.1


def test_the_map_reaches_the_tails_of_wide_inner_kernels():
    # 300 rows of Neal's funnel: in its heavy-tailed columns the kernels of the
    # sparse middle are wider than the outermost ones. The outer knots must still
    # be placed at the tail's quantiles, not stacked where the search grid ended
    # (that made outer slopes of 1e9 on 5 of 6 draws, and a held-out row scored
    # -5e16 nats).
    X = make_funnel(300, random_state=1)
    mean, std = X.mean(0), X.std(0)
    transform = MarginalGaussianization.fit((X - mean) / std)
    assert transform.slopes.max() < 1e3
    held_out = make_funnel(3000, random_state=2)
    z, _ = transform(torch.as_tensor((held_out - mean) / std))
    # The map continues linearly beyond its knots, so rows far outside the
    # training range map far out (measured: |z| up to 174 here), but not to the
    # 1e8 of stacked knots.
    assert np.abs(z.numpy()).max() < 1e3


def test_gaussianized_mixture_is_normalised(gaussianized):
    assert abs(_grid_integral(gaussianized) - 1.0) < 2e-3


def test_gaussianized_mixture_samples_follow_its_density(gaussianized):
    """The draws' marginal distribution equals the density's marginal (the density
    integrated over the other feature on a grid): a Kolmogorov-Smirnov test."""
    draws = gaussianized.sample(4000, generator=torch.Generator().manual_seed(0))
    low, high = gaussianized.bounds(8.0)
    n = 800
    axes = [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in zip(low, high)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = np.exp(gaussianized.log_prob(torch.as_tensor(mesh)).numpy())
    marginal = density.reshape(n, n).sum(1)
    cdf = np.cumsum(marginal) / marginal.sum()

    def marginal_cdf(x):
        return np.interp(x, axes[0] + (axes[0][1] - axes[0][0]) / 2, cdf)

    assert kstest(draws[:, 0].numpy(), marginal_cdf).pvalue > 1e-3


def test_gaussianized_gradients_equal_autograd(gaussianized, rings):
    x = torch.as_tensor(rings[:50])
    value, grad = gaussianized.log_prob_and_grad(x)
    leaf = x.clone().requires_grad_(True)
    expected = gaussianized.log_prob(leaf)
    (expected_grad,) = torch.autograd.grad(expected.sum(), leaf)
    torch.testing.assert_close(value, expected.detach())
    torch.testing.assert_close(grad, expected_grad)
    torch.testing.assert_close(gaussianized.grad_log_prob(x), expected_grad)
    assert gaussianized.has_closed_form_gradient


@pytest.mark.parametrize(
    "density",
    [
        StandardNormalDensity(2),
        GaussianMixtureDensity(
            [0.3, 0.7], [[0, 0], [1, 2]], np.tile(np.eye(2), (2, 1, 1))
        ),
        "gaussianized",
    ],
    ids=["standard", "mixture", "gaussianized"],
)
def test_an_empty_density_of_the_stored_shapes_loads_the_state(density, gaussianized):
    density = gaussianized if density == "gaussianized" else density
    state = density.state_dict()
    empty = BASE_CLASSES[type(density).__name__]._empty(state, 2)
    empty.load_state_dict(state)
    x = torch.randn(7, 2, dtype=torch.float64)
    torch.testing.assert_close(empty.log_prob(x), density.log_prob(x))


def _components_per_member(base) -> int:
    return base.n_member_components // base.n_members


def test_components_are_chosen_on_held_out_rows():
    X = _standardised(make_gaussian_grid(3000, n_per_side=3, std=0.05, random_state=0))
    base = fit_base("gmm", X[:2500], Z_valid=X[2500:], random_state=0)
    # The true number is 9 (3 x 3 separated Gaussians); held-out noise may add one.
    assert 9 <= _components_per_member(base) <= 10
    # Without held-out rows BIC decides, here alike; no cap below what the data
    # support (the old cap of 20 is gone).
    assert 9 <= _components_per_member(fit_base("gmm", X, random_state=0)) <= 10
    X = _standardised(make_gaussian_grid(6000, n_per_side=5, std=0.05, random_state=0))
    base = fit_base("gmm", X[:5000], Z_valid=X[5000:], random_state=0)
    assert _components_per_member(base) >= 25


def test_a_shared_covariance_is_chosen_where_the_components_share_one():
    # 25 Gaussians of one isotropic spread: "tied" has 2 x 24 fewer parameters.
    X = _standardised(make_gaussian_grid(6000, random_state=0))
    base = fit_base("gmm", X[:5000], Z_valid=X[5000:], random_state=0)
    assert base.covariance_type == "tied"
    covariances = base.scale_tril @ base.scale_tril.transpose(-1, -2)
    per_member = covariances[: base.n_member_components].unflatten(
        0, (base.n_members, -1)
    )
    assert torch.equal(per_member, per_member[:, :1].expand_as(per_member))
    # Two moons are not a mixture of one shape: full covariances.
    X = _standardised(make_two_moons(3000, random_state=0))
    base = fit_base("gmm", X[:2500], Z_valid=X[2500:], random_state=0)
    assert base.covariance_type == "full"


class _ScriptedMixture:
    """Stands in for a fitted mixture whose held-out score is set in advance."""

    def __init__(self, n_components, scores):
        self.n_components, self._scores = n_components, scores

    def fit(self, Z):
        return self

    def score(self, Z):
        return self._scores[self.n_components]


def test_the_component_search_crosses_a_plateau(monkeypatch):
    # Held-out scores as on Neal's funnel: a jump at 4 components, three sizes no
    # better, then better again from 10 up to 12; nothing beats 12 until 40.
    scores = {1: -30, 2: -29, 3: -29, 4: -22, 5: -22.1, 6: -22.2, 8: -22.3}
    scores |= {10: -19, 12: -17, 15: -17.5, 20: -17.6, 25: -17.7, 30: -17.8, 40: -16}
    monkeypatch.setattr(
        bases, "_sk_mixture", lambda k, *args, **kwargs: _ScriptedMixture(k, scores)
    )
    Z = np.zeros((10, 2))
    fits, found = bases._search_components("full", list(scores), Z, Z, 1e-6, 0)
    # Past the plateau after 4; stopped by the fourth size in a row below 12.
    assert [fit.n_components for fit in fits] == list(scores)[:-1]  # not 40
    assert found == [scores[fit.n_components] for fit in fits]


def test_few_rows_support_few_components(rng):
    X = rng.normal(size=(40, 3))
    valid = rng.normal(size=(10, 3))
    # Full covariances in 3-D: 10 parameters per component, 2 rows per parameter.
    assert _max_components(40, 3, "full") == 2
    base = fit_base("gmm", X, {"covariance_type": "full"}, Z_valid=valid)
    assert _components_per_member(base) <= 2
    # A tied covariance is shared: 4 parameters per component, so 5 at most.
    assert _max_components(40, 3, "tied") == 5
    base = fit_base("gmm", X, {"covariance_type": "tied"}, Z_valid=valid)
    assert _components_per_member(base) <= 5
    assert fit_base("gaussian", X).n_components == 1
    fixed = fit_base("gmm", X, {"n_components": 2, "n_members": 1}, random_state=0)
    assert fixed.n_member_components == 2


def test_unknown_options_are_refused(rings):
    with pytest.raises(ValueError, match="Unknown base_params"):
        fit_base("gmm", rings, {"n_component": 3})
    with pytest.raises(ValueError, match="Unknown base 'auto'"):
        fit_base("auto", rings)
    with pytest.raises(ValueError, match="increase strictly"):
        MarginalGaussianization([[0.0, 0.0]], [[0.0, 1.0]])


@pytest.mark.parametrize("kind", ["gmm", "gaussianized", "gaussian"])
def test_refit_keeps_the_components_and_refines_the_same_solution(kind, rings):
    from skebm.bases import refit_base

    base = fit_base(kind, rings[:2000], Z_valid=rings[2000:2300], random_state=0)
    # Refitting to the rows it was fitted on continues EM from where it stopped:
    # the training likelihood cannot fall (EM is monotone) and the held-out one
    # barely moves (it would jump if EM restarted elsewhere).
    same = refit_base(base, rings[:2000])
    train, x = torch.as_tensor(rings[:2000]), torch.as_tensor(rings[2300:])
    mixture, refitted = base, same
    if kind == "gaussianized":
        train = base.transform(train)[0]
        mixture, refitted = base.inner, same.inner
    assert (refitted.n_members, refitted.covariance_type) == (
        mixture.n_members,
        mixture.covariance_type,
    )
    for before, after in zip(_members(mixture), _members(refitted)):  # EM per run
        assert after.log_prob(train).mean() >= before.log_prob(train).mean() - 1e-12
    assert abs(same.log_prob(x).mean() - base.log_prob(x).mean()) < 0.02
    more = refit_base(base, rings)
    assert type(more) is type(base) and more.n_components == base.n_components
    held_out = torch.as_tensor(rings[2300:])
    # Rows it now saw score higher (they are in its training set).
    assert more.log_prob(held_out).mean() > base.log_prob(held_out).mean()


def _members(mixture):
    """The runs an averaged mixture holds, each as a mixture of its own."""
    size = mixture.n_member_components // mixture.n_members
    return [
        _part(mixture, slice(start, start + size))
        for start in range(0, mixture.n_member_components, size)
    ]


def _part(mixture, components: slice) -> GaussianMixtureDensity:
    """Some of a mixture's components, as a mixture of their own."""
    covariances = mixture.scale_tril @ mixture.scale_tril.transpose(-1, -2)
    return GaussianMixtureDensity(
        mixture.log_weights[components].exp(),
        mixture.means[components],
        covariances[components],
    )


def _tails(mixture) -> GaussianMixtureDensity:
    return _part(mixture, slice(mixture.n_member_components, None))


def test_an_averaged_mixture_is_the_mean_of_its_runs(rng):
    X = _standardised(make_two_moons(2000, random_state=0))
    base = fit_base("gmm", X, {"n_components": 6}, random_state=0)
    assert base.n_members > 1 and base.n_member_components == 6 * base.n_members
    x = torch.as_tensor(rng.normal(size=(50, 2)))
    runs = torch.stack([member.log_prob(x) for member in _members(base)])
    mean = torch.logsumexp(runs, 0) - np.log(base.n_members)
    torch.testing.assert_close(
        base.log_prob(x),
        torch.logaddexp(
            mean + np.log1p(-TAIL_SHARE),
            _tails(base).log_prob(x) + np.log(TAIL_SHARE),
        ),
    )


def test_averaging_runs_raises_the_held_out_likelihood():
    # Two moons are no Gaussian mixture: EM runs from other starts stop at other,
    # equally good fits, and their average has less variance than any one of them.
    # Measured on data seeds 0-3 with 10, 15 and 20 components: a gain in all 12,
    # above 3 standard errors in 9 (here: 0.014 nats per row, 5.2 errors).
    X = _standardised(make_two_moons(10000, random_state=0))
    train, held_out = X[:5000], torch.as_tensor(X[5000:])
    params = {"n_components": 10}
    single = fit_base("gmm", train, {**params, "n_members": 1}, random_state=0)
    averaged = fit_base("gmm", train, params, random_state=0)
    gain = (averaged.log_prob(held_out) - single.log_prob(held_out)).numpy()
    stderr = gain.std(ddof=1) / np.sqrt(gain.size)
    assert averaged.n_members >= 4
    assert gain.mean() > 3 * stderr


def test_runs_at_a_poor_optimum_or_repeated_are_not_averaged():
    from sklearn.mixture import GaussianMixture

    from skebm.bases import _distinct_good_fits

    X = _standardised(make_gaussian_grid(3000, std=0.2, random_state=0))
    runs = [
        GaussianMixture(25, covariance_type="tied", random_state=seed).fit(X)
        for seed in range(8)
    ]
    scores = np.array([run.score(X) for run in runs])
    kept = _distinct_good_fits(runs, X)
    # Some starts merge two of the 25 Gaussians: 0.1 nats per row below the best.
    assert scores.min() < scores.max() - 0.1
    assert min(run.score(X) for run in kept) >= scores.max() - 0.05
    assert len(kept) < (scores >= scores.max() - 0.05).sum()
    rows = [run.score_samples(X) for run in kept]
    for i in range(len(rows)):
        for j in range(i):
            assert np.abs(rows[i] - rows[j]).max() > 0.01


def test_the_averaging_structure_is_stored_and_checked():
    mixture = GaussianMixtureDensity(
        np.ones(4),
        np.zeros((4, 2)),
        np.tile(np.eye(2), (4, 1, 1)),
        n_members=2,
        covariance_type="tied",
    )
    state = mixture.state_dict()
    loaded = GaussianMixtureDensity._empty(state, 2)
    loaded.load_state_dict(state)
    assert (loaded.n_members, loaded.covariance_type) == (2, "tied")
    # A state saved before mixtures were averaged: one full-covariance run.
    del state["structure"]
    loaded = GaussianMixtureDensity._empty(state, 2)
    loaded.load_state_dict(state)
    assert (loaded.n_members, loaded.covariance_type, loaded.n_tail) == (1, "full", 0)
    # Saved before tails: none.
    state["structure"] = torch.tensor([2, 1])
    loaded = GaussianMixtureDensity._empty(state, 2)
    loaded.load_state_dict(state)
    assert (loaded.n_members, loaded.covariance_type, loaded.n_tail) == (2, "tied", 0)
    with pytest.raises(ValueError, match="n_tail must be"):
        GaussianMixtureDensity(
            np.ones(4), np.zeros((4, 2)), np.tile(np.eye(2), (4, 1, 1)), n_tail=4
        )
    state["structure"] = torch.tensor([3, 0])
    with pytest.raises(RuntimeError, match="n_members must divide"):
        GaussianMixtureDensity._empty(state, 2).load_state_dict(state)
    with pytest.raises(ValueError, match="n_members must divide"):
        GaussianMixtureDensity(
            np.ones(4), np.zeros((4, 2)), np.tile(np.eye(2), (4, 1, 1)), n_members=3
        )
    with pytest.raises(ValueError, match="covariance_type must be"):
        fit_base("gmm", np.zeros((10, 2)), {"covariance_type": "shared"})


def test_a_mixture_base_keeps_heavy_tails_beyond_its_data():
    X = _standardised(make_gaussian_grid(3000, n_per_side=3, std=0.05, random_state=0))
    base = fit_base("gmm", X, random_state=0)
    members = _part(base, slice(0, base.n_member_components))
    assert base.n_tail >= 1
    # Two standard deviations past the outermost Gaussians of the grid: the members
    # alone, narrow Gaussians, put it hundreds of nats down.
    far = torch.tensor([[3.0, 3.0]], dtype=torch.float64)
    assert members.log_prob(far).item() < -300
    tails = _tails(base)
    assert base.log_prob(far).item() > -20
    assert base.log_prob(far).item() >= (
        tails.log_prob(far).item() + np.log(TAIL_SHARE) - 1e-9
    )
    # On the data the tails cost at most -log(1 - 1e-4) nats.
    rows = torch.as_tensor(X)
    cost = members.log_prob(rows) - base.log_prob(rows)
    assert 0 <= cost.max().item() <= -np.log1p(-TAIL_SHARE) + 1e-12
    # They leave a quadrature's box where the members put it.
    for got, expected in zip(base.bounds(), members.bounds()):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="tails already"):
        with_tails(base, X)


def test_the_tails_reach_the_farthest_row():
    rng = np.random.default_rng(0)
    for X in (rng.normal(size=(2000, 2)), rng.standard_cauchy(size=(2000, 2))):
        base = fit_base("gmm", X, {"n_components": 2, "n_members": 1}, random_state=0)
        covariance = np.cov(X, rowvar=False) + 1e-6 * np.eye(2)
        centred = X - X.mean(0)
        radius = np.sqrt(
            np.einsum("nd,dk,nk->n", centred, np.linalg.inv(covariance), centred).max()
        )
        tails = _tails(base)
        scales = 2.0 ** np.arange(1, base.n_tail + 1)
        np.testing.assert_allclose(
            (tails.scale_tril @ tails.scale_tril.transpose(-1, -2)).numpy(),
            scales[:, None, None] ** 2 * covariance,
        )
        np.testing.assert_allclose(
            tails.means.numpy(), np.tile(X.mean(0), (base.n_tail, 1))
        )
        assert scales[-1] >= radius and (base.n_tail == 1 or scales[-2] < radius)
        np.testing.assert_allclose(tails.log_weights.exp().numpy(), 1 / base.n_tail)
    assert base.n_tail >= 5  # Cauchy rows reach far


def test_refit_builds_the_tails_from_the_new_rows(rings):
    base = fit_base("gmm", rings[:2000], {"n_components": 3}, random_state=0)
    wider = np.concatenate([rings, 40 * rings[:1]])
    more = refit_base(base, wider)
    assert more.n_member_components == base.n_member_components
    assert more.n_tail > base.n_tail
    assert (more.n_members, more.covariance_type) == (
        base.n_members,
        base.covariance_type,
    )
    gaussian = fit_base("gaussian", rings)
    assert gaussian.n_tail == 0 and refit_base(gaussian, wider).n_tail == 0


def test_refit_of_a_diagonal_mixture_stays_diagonal(rings):
    from skebm.bases import refit_base

    params = {"covariance_type": "diag", "n_components": 3}
    base = fit_base("gmm", rings[:2000], params, random_state=0)
    more = refit_base(base, rings, params)
    covariances = more.scale_tril @ more.scale_tril.transpose(-1, -2)
    covariances = covariances[: more.n_member_components]
    off_diagonal = covariances - torch.diag_embed(
        torch.diagonal(covariances, 0, -2, -1)
    )
    assert off_diagonal.abs().max() < 1e-12


def test_beyond_its_data_the_map_is_no_steeper_than_at_its_centre():
    # A digits-like pixel: 900 training values in [0, 1], a held-out one at 8.3.
    # Beyond the outer knots the map continues with at most its central slope, so
    # the density there falls like a Gaussian of the feature's spread, not of the
    # outermost kernel's width (measured: -3,475 nats at 8.3 with the kernel's
    # slope, -317 with the central one).
    x = np.random.RandomState(0).uniform(size=900)
    mean, std = x.mean(), x.std()
    transform = MarginalGaussianization.fit(((x - mean) / std)[:, None])
    knots_x, knots_z = transform.knots_x[0], transform.knots_z[0]
    low, high = torch.searchsorted(knots_z, torch.tensor([-1.0, 1.0]).double())
    central = (knots_z[high] - knots_z[low]) / (knots_x[high] - knots_x[low])
    assert transform.slopes[0, 0] <= central and transform.slopes[0, -1] <= central
    far = torch.tensor([[(8.3 - mean) / std]], dtype=torch.float64)
    z, slope = transform(far)
    implied = norm.logpdf(z.item()) + np.log(slope.item()) - np.log(std)
    assert implied > -400
