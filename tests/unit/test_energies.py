"""Energies as users write them: their own modules, composites and hybrids, the
convolutional energy for image rows, and energies shipped by plugins."""

import math
import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from torch import nn

import skebm
from skebm.bases import StandardNormalDensity
from skebm.energies import (
    CompositeEnergy,
    ConvEnergy,
    GaussianEnergy,
    GaussianMixtureEnergy,
    HybridEnergy,
    MLPEnergy,
    ResidualEnergy,
)
from skebm.utils._sklearn_compat import InvalidParameterError
from tests._helpers import cuda, small_estimator, write_distribution
from tests.user_energies import NegativeLogDensity, SoftplusFeatureEnergy


def quick_estimator(**params):
    """``small_estimator`` over a one-Gaussian base: the base is not under test
    here, and it fits in milliseconds where the default BIC search over mixtures
    takes most of a small fit."""
    return small_estimator(**{"base": "gaussian", **params})


def _perturbed(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` with every parameter moved randomly (MLPEnergy starts at 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return module


def _state(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_state(module: nn.Module, state: dict) -> None:
    current = module.state_dict()
    assert current.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(current[key], value), key


# -- CompositeEnergy and HybridEnergy ----------------------------------------------


def test_composite_is_the_weighted_sum_of_its_terms():
    gaussian = GaussianEnergy(3, mean=[1.0, 0.0, -1.0])
    network = _perturbed(MLPEnergy(3, hidden_layer_sizes=(8,)))
    energy = CompositeEnergy(3, [gaussian, network], weights=[0.5, -2.0])
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    expected = 0.5 * gaussian(x) - 2.0 * network(x)
    torch.testing.assert_close(energy(x), expected)
    # Terms given as instances are held, not copied (like nn.Sequential).
    assert energy.energies[0] is gaussian and energy.energies[1] is network
    assert CompositeEnergy(3, [gaussian, network]).weights.tolist() == [1.0, 1.0]


def test_composite_builds_terms_from_specifications():
    def factory(n_features, width):
        return SoftplusFeatureEnergy(n_features, width=width)

    energy = CompositeEnergy(
        4,
        [
            "gaussian",
            ("mlp", {"hidden_layer_sizes": (5,)}),
            (SoftplusFeatureEnergy, {"width": 3}),
            (factory, {"width": 2}),
        ],
        weights=2.0,
    )
    gaussian, mlp, by_class, by_factory = energy.energies
    assert isinstance(gaussian, GaussianEnergy) and gaussian.n_features == 4
    assert mlp.layers[0].out_features == 5
    assert by_class.hidden.out_features == 3 and by_factory.hidden.out_features == 2
    assert energy.weights.tolist() == [2.0] * 4
    assert energy(torch.zeros(7, 4)).shape == (7,)


def test_composite_errors_teach():
    with pytest.raises(
        InvalidParameterError, match="Did you mean 'hidden_layer_sizes'"
    ):
        CompositeEnergy(2, [("mlp", {"hidden_layer_size": (4,)})])
    with pytest.raises(ValueError, match=r"Term 1 of CompositeEnergy.*\(batch, 2\)"):
        CompositeEnergy(2, ["gaussian", nn.Linear(2, 1)])
    with pytest.raises(ValueError, match="one entry per energy \\(2\\)"):
        CompositeEnergy(2, ["gaussian", "mlp"], weights=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        CompositeEnergy(2, ["gaussian"], weights=math.nan)
    with pytest.raises(TypeError, match="Pass the energies second"):
        CompositeEnergy([GaussianEnergy(2)], 2)
    with pytest.raises(ValueError, match="at least one"):
        CompositeEnergy(2, [])
    with pytest.raises(ValueError, match="configure the instance directly"):
        CompositeEnergy(2, [(GaussianEnergy(2), {"learnable": False})])


def test_learned_weights_are_parameters_and_fixed_weights_are_not():
    energy = CompositeEnergy(
        2, ["gaussian", ("mlp", {"hidden_layer_sizes": (4,)})], learn_weights=[0, 1]
    )
    _perturbed(energy.energies[1])
    assert dict(energy.named_parameters())["learned_weights"].shape == (1,)
    assert "fixed_weights" in dict(energy.named_buffers())
    energy(torch.randn(8, 2)).sum().backward()
    assert energy.learned_weights.grad is not None
    assert energy.learned_weights.grad.abs().item() > 0


def test_hybrid_starts_at_its_analytic_term_and_learns_its_mixing_weight():
    energy = HybridEnergy(3, network_params={"hidden_layer_sizes": (8,)}, mixing=0.5)
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(energy(x), energy.analytic(x))
    assert isinstance(energy.analytic, GaussianEnergy)
    assert isinstance(energy.network, MLPEnergy)
    assert energy.mixing.item() == 0.5
    assert energy.learned_weights.shape == (1,)
    frozen = HybridEnergy(3, learn_mixing=False)
    assert frozen.learned_weights.numel() == 0


def test_residual_form_is_the_hybrid_of_the_base_and_the_network():
    """The docstrings' claim: E - log q is a hybrid with the analytic term -log q
    and the network's weight fixed at 1."""
    base = StandardNormalDensity(2)
    network = _perturbed(MLPEnergy(2, hidden_layer_sizes=(8,)))
    hybrid = HybridEnergy(
        2, analytic=NegativeLogDensity(base), network=network, learn_mixing=False
    )
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hybrid(x), ResidualEnergy(network, base)(x))


def test_modules_inside_energy_params_are_not_trained_in_place(moons):
    gaussian = GaussianEnergy(2)
    before = _state(gaussian)
    est = quick_estimator(
        energy="composite",
        energy_params={"energies": [gaussian, ("mlp", {"hidden_layer_sizes": (8,)})]},
        random_state=0,
    ).fit(moons)
    _assert_same_state(gaussian, before)
    assert est.energy_.energies[0] is not gaussian
    assert est.energy_params["energies"][0] is gaussian
    assert any(
        not torch.equal(a, b)
        for a, b in zip(est.energy_.energies[0].state_dict().values(), before.values())
    ), "the estimator's own copy of the Gaussian term was trained"


def test_set_params_folds_into_energy_params_for_names_classes_and_factories():
    est = small_estimator(energy="hybrid", energy_params={"mixing": 0.5})
    est.set_params(energy__learn_mixing=False)
    assert est.energy_params == {"mixing": 0.5, "learn_mixing": False}
    est = small_estimator(energy=SoftplusFeatureEnergy, energy_params=None)
    est.set_params(energy__width=3)
    assert est.energy_params == {"width": 3}


def _two_gaussians(n, rng):
    """A bimodal mixture ½N((-1.5, 0), 0.5² I) + ½N((1.5, 0), 0.5² I) in 2-D."""
    means = np.array([[-1.5, 0.0], [1.5, 0.0]])
    X = means[rng.randint(2, size=n)] + 0.5 * rng.standard_normal((n, 2))
    return X


def _two_gaussians_log_density(X):
    means = np.array([[-1.5, 0.0], [1.5, 0.0]])
    sq = ((X[:, None, :] - means) ** 2).sum(-1) / 0.25
    log_component = -0.5 * sq - np.log(2 * np.pi * 0.25)
    return np.logaddexp(log_component[:, 0], log_component[:, 1]) - np.log(2)


@pytest.mark.slow
def test_composite_gaussian_plus_mlp_trains_and_scores():
    """A Gaussian + MLP composite over a one-Gaussian base learns a bimodal density.

    Target: a two-Gaussian mixture with exact log-density. The base (one fitted
    Gaussian) cannot be bimodal; the composite must close the gap. On a common
    held-out set, ``mean(log p_true - log p_model)`` estimates KL(p_true ||
    model) with standard error ``sd / sqrt(n_test)``; the test asks the trained
    model's KL to be below 0.05 nats plus 3 standard errors (measured: 0.013 ±
    0.004), while the base's is above 0.5 (measured: 0.77). log Z is exact (grid
    quadrature), so no estimator noise enters the scores.
    """
    rng = np.random.RandomState(0)
    X_train, X_test = _two_gaussians(2000, rng), _two_gaussians(2000, rng)
    true = _two_gaussians_log_density(X_test)
    params = dict(
        energy="composite",
        energy_params={
            "energies": ["gaussian", ("mlp", {"hidden_layer_sizes": (32, 32)})],
        },
        base="gaussian",
        partition="grid",
        learning_rate=3e-3,
        device="cpu",
        random_state=0,
    )
    base_only = skebm.EnergyDensityEstimator(max_iter=0, **params).fit(X_train)
    est = skebm.EnergyDensityEstimator(max_iter=40, **params).fit(X_train)
    assert isinstance(est.energy_, CompositeEnergy)
    gap = true - est.score_samples(X_test)
    stderr = gap.std(ddof=1) / np.sqrt(len(gap))
    assert np.mean(true - base_only.score_samples(X_test)) > 0.5
    assert gap.mean() < 0.05 + 3 * stderr, (gap.mean(), stderr)
    assert np.isfinite(est.score(X_test))


def test_maximum_likelihood_trains_an_analytic_energy_composed_with_the_base():
    """``loss="ml"`` fits a learnable two-component Gaussian-mixture energy on top of
    a one-Gaussian base, so the model is q(x) * exp(-E(x)) / Z with Z from the
    loss's shifted quadrature grid. Same target and KL estimate as the composite
    test above: the trained model must be within 0.05 nats (plus 3 standard errors)
    of the truth, where the base alone is more than 0.5 nats away."""
    rng = np.random.RandomState(0)
    X_train, X_test = _two_gaussians(2000, rng), _two_gaussians(2000, rng)
    true = _two_gaussians_log_density(X_test)
    params = dict(
        energy="gaussian_mixture",
        energy_params={"n_components": 2},
        loss="ml",
        base="gaussian",
        partition="grid",
        learning_rate=0.05,
        device="cpu",
        random_state=0,
    )
    base_only = skebm.EnergyDensityEstimator(max_iter=0, **params).fit(X_train)
    est = skebm.EnergyDensityEstimator(max_iter=30, **params).fit(X_train)
    assert isinstance(est.energy_, GaussianMixtureEnergy)
    assert np.mean(true - base_only.score_samples(X_test)) > 0.5
    gap = true - est.score_samples(X_test)
    stderr = gap.std(ddof=1) / np.sqrt(len(gap))
    assert gap.mean() < 0.05 + 3 * stderr, (gap.mean(), stderr)


# -- ConvEnergy --------------------------------------------------------------------


def test_conv_energy_reads_rows_as_images():
    energy = ConvEnergy(2 * 5 * 6, image_shape=(2, 5, 6), channels=(4, 6))
    _perturbed(energy)
    images = torch.randn(3, 2, 5, 6, generator=torch.Generator().manual_seed(0))
    rows = images.reshape(3, -1)
    torch.testing.assert_close(energy(rows), energy.layers(images).squeeze(-1))
    x = rows.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(x).sum(), x)
    assert grad.shape == rows.shape


def test_conv_energy_starts_at_zero_and_defaults_to_square_grey_images():
    energy = ConvEnergy(64)
    assert energy.image_shape == (1, 8, 8)
    assert torch.equal(energy(torch.rand(4, 64)), torch.zeros(4))
    assert all(not isinstance(m, nn.ReLU) for m in energy.modules()), (
        "smooth activations by default"
    )
    n_parameters = sum(p.numel() for p in energy.parameters())
    assert n_parameters < 10_000, "small by default"


def test_conv_energy_shape_errors_teach():
    with pytest.raises(ValueError, match=r"holds 48 values but the data have 64"):
        ConvEnergy(64, image_shape=(3, 4, 4))
    with pytest.raises(ValueError, match="not a square number.*image_shape"):
        ConvEnergy(10)
    with pytest.raises(ValueError, match="three positive ints"):
        ConvEnergy(64, image_shape=(8, 8))
    with pytest.raises(ValueError, match="odd"):
        ConvEnergy(64, kernel_size=2)
    with pytest.raises(ValueError, match=r"holds 48 values but the data have 64"):
        quick_estimator(energy="conv", energy_params={"image_shape": (3, 4, 4)}).fit(
            np.random.RandomState(0).rand(20, 64)
        )


def _digits(n_train=None, seed=0):
    """8x8 digits in [0, 1]: pixel (0..16) plus U(0, 1) dequantisation, over 17."""
    X = load_digits().data
    X = (X + np.random.RandomState(seed).uniform(size=X.shape)) / 17.0
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
    return (X_train if n_train is None else X_train[:n_train]), X_test


def test_conv_energy_on_digits_trains_and_samples_rows():
    """A fast version of the digits comparison (examples/plot_conv_digits.py).

    After 6 short NCE epochs on 600 images (every row trained on, the trained
    weights kept: no early stopping, no averaging) the conv model must beat its
    own base on held-out digits by 3 nats per image. The untrained model
    is its base exactly (log Z = 0); the trained one's log Z comes from a small
    AIS run, whose reported standard error (measured 0.15) must stay under 0.5,
    so the margin is over 6 standard errors. AIS's downward bias in log Z
    (upward in the score) was 0.2 nats between this AIS size and the default one
    on the full data, far below the margin.
    """
    X_train, X_test = _digits(n_train=600)
    params = dict(
        energy="conv",
        base="gaussian",
        batch_size=64,
        learning_rate=1e-2,
        early_stopping=False,
        ema_decay=0.0,
        sample_steps=5,
        partition="ais",
        partition_params={"n_chains": 256, "n_temperatures": 50},
        random_state=0,
        device="cpu",
    )
    base_only = skebm.EnergyDensityEstimator(max_iter=0, **params).fit(X_train)
    est = skebm.EnergyDensityEstimator(max_iter=6, **params).fit(X_train)
    assert isinstance(est.energy_, ConvEnergy)
    assert est.log_partition_stderr_ < 0.5
    assert est.score(X_test) > base_only.score(X_test) + 3.0
    samples = est.sample(6, random_state=0)
    assert samples.shape == (6, 64) and np.all(np.isfinite(samples))


# -- acceptance: user modules in scikit-learn's machinery -------------------------


@pytest.mark.parametrize("form", ["class", "instance"])
def test_user_module_in_grid_search_with_processes(moons, form):
    """A user's nn.Module subclass, as class or instance, in GridSearchCV(Pipeline)
    with n_jobs=2 (loky worker processes import tests.user_energies)."""
    if form == "class":
        energy = SoftplusFeatureEnergy
        est = quick_estimator(energy=energy, energy_params={"width": 4}, random_state=0)
        grid = {"energydensityestimator__energy__width": [2, 6]}
    else:
        energy = SoftplusFeatureEnergy(2, width=4)
        before, hash_before = _state(energy), joblib.hash(energy)
        est = quick_estimator(energy=energy, energy_params=None, random_state=0)
        grid = {"energydensityestimator__energy": [energy, SoftplusFeatureEnergy(2, 6)]}
    pipe = make_pipeline(StandardScaler(), est)
    search = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(moons)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.all(np.isfinite(scores))
    best = search.best_estimator_[-1]
    assert isinstance(best.energy_, SoftplusFeatureEnergy)
    widths = (2, 6) if form == "class" else (4, 6)
    assert best.energy_.hidden.out_features in widths
    # Fitting the pipeline itself (no clone in between) never trains the
    # instance passed in.
    fitted = pipe.fit(moons)
    if form == "instance":
        assert fitted[-1].energy is energy and fitted[-1].energy_ is not energy
        _assert_same_state(energy, before)
        assert joblib.hash(energy) == hash_before
    # clone of a fitted estimator is unfitted.
    unfitted = clone(fitted[-1])
    assert not hasattr(unfitted, "energy_")
    with pytest.raises(NotFittedError):
        check_is_fitted(unfitted)
    assert np.isfinite(fitted.score(moons))


@pytest.mark.slow
def test_hybrid_estimator_passes_sklearn_checks():
    """The estimator's own contracts hold with a hybrid energy built by name."""
    from sklearn.utils.estimator_checks import check_estimator

    est = quick_estimator(
        energy="hybrid", energy_params={"network_params": {"hidden_layer_sizes": (8,)}}
    )
    check_estimator(est)


# -- plugins -----------------------------------------------------------------------

ENERGY_PLUGIN = """
    import torch
    from torch import nn

    import skebm


    class RadialEnergy(nn.Module):
        def __init__(self, n_features, power=2.0):
            super().__init__()
            self.power = power
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return self.scale * x.norm(dim=-1) ** self.power * 0.1


    @skebm.hookimpl
    def skebm_register_energies(register):
        register("radial", RadialEnergy)
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SKEBM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    yield tmp_path
    sys.modules.pop("skebm_energies_plugin", None)


def test_energy_shipped_by_a_plugin_is_found_by_name(site, moons):
    write_distribution(
        site,
        "skebm-energies-toy",
        "0.2",
        {"radial": "skebm_energies_plugin"},
        {"skebm_energies_plugin": ENERGY_PLUGIN},
    )
    record = next(c for c in skebm.list_energies() if c.name == "radial")
    assert (record.distribution, record.version) == ("skebm-energies-toy", "0.2")
    est = quick_estimator(
        energy="radial", energy_params={"power": 1.5}, random_state=0
    ).fit(moons)
    assert type(est.energy_).__name__ == "RadialEnergy" and est.energy_.power == 1.5
    assert np.isfinite(est.score(moons))
    # Composites take plugin energies by name too.
    composite = CompositeEnergy(2, ["radial", "gaussian"])
    assert type(composite.energies[0]).__name__ == "RadialEnergy"


# -- devices -----------------------------------------------------------------------


@cuda
def test_composite_and_conv_energies_train_on_cuda(moons):
    X_train, _ = _digits(n_train=200)
    conv = quick_estimator(
        energy="conv", energy_params=None, device="cuda", random_state=0
    ).fit(X_train)
    assert next(conv.energy_.parameters()).device.type == "cuda"
    assert conv.sample(3, random_state=0).shape == (3, 64)
    hybrid = quick_estimator(
        energy="hybrid", energy_params=None, device="cuda", random_state=0
    ).fit(moons)
    assert hybrid.energy_.fixed_weights.device.type == "cuda"
    assert np.isfinite(hybrid.score(moons))


# -- scale_output_: the strength fit chooses ----------------------------------------


@pytest.mark.parametrize(
    "energy",
    [MLPEnergy(4, (8,)), ConvEnergy(16, channels=(2,))],
    ids=["mlp", "conv"],
)
def test_scale_output_multiplies_the_energy_and_its_gradient(energy):
    energy = _perturbed(energy)
    x = torch.randn(6, 4 if isinstance(energy, MLPEnergy) else 16)
    x.requires_grad_(True)
    before = energy(x)
    (grad_before,) = torch.autograd.grad(before.sum(), x)
    energy.scale_output_(0.25)
    after = energy(x)
    (grad_after,) = torch.autograd.grad(after.sum(), x)
    torch.testing.assert_close(after, 0.25 * before)
    torch.testing.assert_close(grad_after, 0.25 * grad_before)
