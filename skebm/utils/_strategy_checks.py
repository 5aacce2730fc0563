"""Contract checks of sampler and loss strategies: the plugin author kit.

Each check takes a strategy instance and raises ``AssertionError`` with a message
that says what is wrong and how to fix it. :mod:`skebm.utils.estimator_checks`
combines them with scikit-learn's estimator checks and skebm's density checks.

Statistical checks compare against closed forms with tolerances derived from the
sample size: the final states of independent chains are independent draws, so a
mean has standard error ``sqrt(Σ_ii / n)`` and a covariance entry
``sqrt((Σ_ii Σ_jj + Σ_ij²) / n)``; a check allows ``n_se`` standard errors. The
seeds are fixed, so every check is deterministic.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator
from functools import partial

import numpy as np
import torch
from joblib import hash as joblib_hash
from sklearn.base import clone
from torch import nn

from skebm.bases import GaussianMixtureDensity
from skebm.energies.analytic import GaussianEnergy
from skebm.energies.mlp import MLPEnergy
from skebm.energies.residual import ResidualEnergy
from skebm.estimator import EnergyDensityEstimator
from skebm.losses import BaseLoss, ContrastiveDivergence
from skebm.samplers import MALA, BaseSampler
from skebm.utils._torch import seeded_construction

__all__ = [
    "GAUSSIAN_COVARIANCE",
    "GAUSSIAN_MEAN",
    "check_loss_fits_gaussian",
    "check_loss_in_estimator",
    "check_loss_output",
    "check_loss_reproducibility",
    "check_sampler_gaussian_moments",
    "check_sampler_in_estimator",
    "check_sampler_output",
    "check_sampler_reproducibility",
    "check_strategy_parameters",
    "default_loss_sampler",
    "kit_estimator",
    "strategy_checks",
]

#: The 2-d Gaussian target of the statistical checks.
GAUSSIAN_MEAN = np.array([0.5, -0.5])
GAUSSIAN_COVARIANCE = np.array([[1.0, 0.5], [0.5, 0.75]])

#: A configuration of EnergyDensityEstimator small enough for the ~60 fits of
#: scikit-learn's checks and skebm's density checks.
KIT_ESTIMATOR = {
    "energy_params": {"hidden_layer_sizes": (16,), "fourier_features": 8},
    "base": "gaussian",
    "max_iter": 3,
    "sample_steps": 5,
    "partition_params": {
        "n_draws": 4096,
        "n_chains": 64,
        "n_temperatures": 10,
        "n_points": 101,
    },
    "device": "cpu",
}

_DTYPES = (torch.float32, torch.float64)


def _devices() -> list[torch.device]:
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        # With its index: a tensor's device is always indexed, and
        # torch.device("cuda") != torch.device("cuda:0").
        devices.append(torch.device("cuda", torch.cuda.current_device()))
    return devices


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _name(strategy) -> str:
    return type(strategy).__name__


def default_loss_sampler() -> BaseSampler:
    """The sampler the loss checks give losses that need one: an exact MALA."""
    return MALA(step_size=0.05, target_accept=None)


def kit_estimator(strategy, **params):
    """An :class:`~skebm.EnergyDensityEstimator` that uses ``strategy``.

    A sampler is used for training too (contrastive divergence with 2 steps), so
    scikit-learn's checks, which never call ``sample``, exercise it.

    Parameters
    ----------
    strategy : BaseSampler or BaseLoss
    **params
        Estimator parameters overriding the small default configuration.

    Examples
    --------
    >>> from skebm.samplers import MALA
    >>> from skebm.utils.estimator_checks import kit_estimator
    >>> kit_estimator(MALA(step_size=0.1)).sampler
    MALA(step_size=0.1)
    """
    if isinstance(strategy, BaseSampler):
        defaults = {"sampler": strategy, "loss": ContrastiveDivergence(n_steps=2)}
    elif isinstance(strategy, BaseLoss):
        defaults = {"loss": strategy}
    else:
        raise TypeError(
            f"Expected a BaseSampler or BaseLoss instance, got {strategy!r}; pass an "
            "instance (e.g. MySampler()), not the class."
        )
    return EnergyDensityEstimator(**{**KIT_ESTIMATOR, **defaults, **params})


class _GlobalRandomState:
    """Snapshot of every global random state a strategy must leave alone."""

    def __init__(self):
        self.torch = torch.random.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        self.numpy = joblib_hash(np.random.get_state())  # noqa: NPY002 (the global one)
        self.python = random.getstate()

    def assert_unchanged(self, what: str) -> None:
        after = _GlobalRandomState()
        changed = [
            name
            for name, same in [
                ("torch", torch.equal(self.torch, after.torch)),
                ("torch.cuda", all(map(torch.equal, self.cuda, after.cuda))),
                ("numpy", self.numpy == after.numpy),
                ("random", self.python == after.python),
            ]
            if not same
        ]
        assert not changed, (
            f"{what} changed the global random state of {', '.join(changed)}. Draw "
            "all randomness from the generator argument, e.g. torch.randn(shape, "
            "generator=generator, device=x.device, dtype=x.dtype)."
        )


# -- both kinds ------------------------------------------------------------------


def check_strategy_parameters(strategy) -> None:
    """``get_params``, ``set_params``, ``clone``, ``repr`` and pickle work, and
    the constructor stores its arguments and nothing else (public)."""
    name = _name(strategy)
    params = strategy.get_params(deep=False)
    names = type(strategy)._get_param_names()
    assert sorted(params) == sorted(names), (
        f"{name}.get_params() returned {sorted(params)}, but the constructor takes "
        f"{sorted(names)}. Store every constructor argument unchanged as an "
        "attribute of the same name."
    )
    extra = sorted(
        key for key in vars(strategy) if key not in names and not key.startswith("_")
    )
    assert not extra, (
        f"{name} sets {extra} besides its parameters. A strategy only stores its "
        "constructor arguments; compute derived values where they are used."
    )
    for copy, how in [
        (clone(strategy), "clone"),
        (pickle.loads(pickle.dumps(strategy)), "a pickle round trip"),
    ]:
        assert type(copy) is type(strategy), f"{how} changed the type of {name}"
        assert joblib_hash(copy.get_params(deep=False)) == joblib_hash(params), (
            f"{how} of {name} changed its parameters."
        )
    assert strategy.set_params(**params) is strategy, "set_params must return self"
    assert repr(strategy).startswith(name), f"repr of {name}: {strategy!r}"
    strategy._validate_params()


# -- samplers --------------------------------------------------------------------


def _assert_tensor_like(x, like: torch.Tensor, what: str) -> None:
    assert isinstance(x, torch.Tensor), f"{what} returned {type(x).__name__}"
    assert x.shape == like.shape, (
        f"{what} has shape {tuple(x.shape)}, expected {tuple(like.shape)}"
    )
    assert x.dtype == like.dtype, (
        f"{what} has dtype {x.dtype} for input {like.dtype}; create tensors with "
        "dtype=x.dtype."
    )
    assert x.device == like.device, (
        f"{what} is on {x.device} for input on {like.device}; create tensors with "
        "device=x.device."
    )


def check_sampler_output(sampler) -> None:
    """Shapes, dtype and device are preserved; inputs are not modified; works for
    plain callables and modules (parameters restored), under ``no_grad``, with
    ``n_steps=0``, and ``return_info`` gives a dict of tensors."""
    name = _name(sampler)
    for device in _devices():
        for dtype in _DTYPES:
            for n_features in (1, 3):
                what = f"{name}.sample ({dtype}, {device}, d={n_features})"
                with seeded_construction(0):
                    energy = GaussianEnergy(n_features).to(device, dtype)
                x0 = torch.randn(
                    (16, n_features), generator=_generator(device, 1), device=device
                ).to(dtype)
                start = x0.clone()
                x, info = sampler.sample(
                    energy,
                    x0,
                    n_steps=3,
                    generator=_generator(device, 0),
                    return_info=True,
                )
                _assert_tensor_like(x, x0, what)
                assert torch.isfinite(x).all(), f"{what} returned non-finite values"
                assert not x.requires_grad, f"{what} must return detached states"
                assert torch.equal(x0, start), f"{what} modified x0 in place"
                assert isinstance(info, dict), f"{what} info is not a dict"
                for key, value in info.items():
                    assert isinstance(value, torch.Tensor), (
                        f"{what} info[{key!r}] is {type(value).__name__}; keep "
                        "diagnostics as tensors (no host synchronisation)."
                    )
                    assert value.device == x0.device, f"{what} info[{key!r}] device"
                for param in energy.parameters():
                    assert param.requires_grad, f"{what} left parameters frozen"
                    assert param.grad is None, (
                        f"{what} accumulated parameter gradients; take gradients "
                        "with respect to x only (skebm.fast_gradient.energy_and_grad)."
                    )
                same = sampler.sample(energy, x0, n_steps=0)
                assert torch.equal(same, x0), f"{what} with n_steps=0 moved x0"
                with torch.no_grad():
                    y = sampler.sample(
                        lambda z: 0.5 * (z * z).sum(-1),
                        x0,
                        n_steps=2,
                        generator=_generator(device, 0),
                    )
                _assert_tensor_like(y, x0, f"{what} under torch.no_grad()")


def check_sampler_reproducibility(sampler) -> None:
    """The same generator seed gives identical chains, another seed others; the
    global random states and the sampler itself are unchanged (stateless)."""
    name = _name(sampler)
    energy = GaussianEnergy(
        2, mean=GAUSSIAN_MEAN, covariance=GAUSSIAN_COVARIANCE, learnable=False
    )
    x0 = torch.zeros(64, 2)
    before = joblib_hash(vars(sampler))
    random_state = _GlobalRandomState()
    runs = [
        sampler.sample(energy, x0, n_steps=5, generator=_generator(x0.device, seed))
        for seed in (0, 0, 1)
    ]
    random_state.assert_unchanged(f"{name}.sample")
    assert torch.equal(runs[0], runs[1]), (
        f"{name}.sample gave different chains for the same generator seed; use "
        "only the generator argument for randomness."
    )
    assert not torch.equal(runs[0], runs[2]), (
        f"{name}.sample gave identical chains for different seeds; is the "
        "generator used at all?"
    )
    assert joblib_hash(vars(sampler)) == before, (
        f"{name}.sample changed the sampler's attributes. Samplers are stateless: "
        "keep run state in local variables of _run."
    )


def _assert_moments(x: np.ndarray, mean, cov, n_se: float, what: str) -> None:
    n = len(x)
    se_mean = np.sqrt(np.diag(cov) / n)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    got_mean, got_cov = x.mean(0), np.cov(x.T)
    bad_mean = np.abs(got_mean - mean) > n_se * se_mean
    bad_cov = np.abs(got_cov - cov) > n_se * se_cov
    assert not (bad_mean.any() or bad_cov.any()), (
        f"{what}: mean {np.round(got_mean, 3).tolist()} (target {mean.tolist()}, "
        f"allowed ± {np.round(n_se * se_mean, 3).tolist()}), covariance "
        f"{np.round(got_cov, 3).tolist()} (target {cov.tolist()}, allowed ± "
        f"{np.round(n_se * se_cov, 3).tolist()}); {n_se} standard errors of "
        f"{n} independent draws."
    )


def check_sampler_gaussian_moments(
    sampler, *, n_chains: int = 4000, n_steps: int = 500, n_se: float = 5.0
) -> None:
    """Chains started at ``N(0, I)`` reach a correlated Gaussian target: the mean
    and covariance of their final states match within ``n_se`` standard errors.

    The target has mean ``GAUSSIAN_MEAN`` and covariance ``GAUSSIAN_COVARIANCE``
    (eigenvalues 1.39 and 0.36), so a sampler that does not move, or moves with
    the wrong noise scale, fails. A slow sampler needs a larger ``n_steps`` or
    step size; an unadjusted sampler's bias must be below the tolerance.
    """
    energy = GaussianEnergy(
        2, mean=GAUSSIAN_MEAN, covariance=GAUSSIAN_COVARIANCE, learnable=False
    ).double()
    x0 = torch.randn((n_chains, 2), generator=_generator(torch.device("cpu"), 0))
    x = sampler.sample(
        energy, x0.double(), n_steps=n_steps, generator=_generator(x0.device, 1)
    )
    _assert_moments(
        x.numpy(),
        GAUSSIAN_MEAN,
        GAUSSIAN_COVARIANCE,
        n_se,
        f"{_name(sampler)} after {n_steps} steps from N(0, I) (increase n_steps or "
        "the step size if the chains have not converged)",
    )


def _check_strategy_in_estimator(strategy, fitted_attribute: str) -> None:
    """``strategy`` trains inside ``EnergyDensityEstimator``, which clones it (into
    ``fitted_attribute``) and leaves it unchanged; the fitted model scores and
    samples."""
    before = joblib_hash(strategy.get_params(deep=True))
    X = np.random.RandomState(0).normal(size=(100, 2)) * [1.0, 0.5] + 3.0
    est = kit_estimator(strategy, random_state=0).fit(X)
    fitted = getattr(est, fitted_attribute)
    assert type(fitted) is type(strategy) and fitted is not strategy
    assert np.all(np.isfinite(est.loss_curve_)), est.loss_curve_
    assert np.isfinite(est.score(X))
    draws = est.sample(20, random_state=0)
    assert draws.shape == (20, 2) and np.all(np.isfinite(draws))
    assert joblib_hash(strategy.get_params(deep=True)) == before


def check_sampler_in_estimator(sampler) -> None:
    """The sampler trains (contrastive divergence) and samples inside
    ``EnergyDensityEstimator``, which clones it and leaves it unchanged."""
    _check_strategy_in_estimator(sampler, "sampler_")


# -- losses ----------------------------------------------------------------------


def _loss_model(device, dtype, *, energy=None) -> ResidualEnergy:
    """A learned energy on a wide Gaussian base ``N(0, 4 I)`` (the estimator always
    has a base; a wide one leaves the energy the work)."""
    if energy is None:
        with seeded_construction(0):
            energy = MLPEnergy(2, hidden_layer_sizes=(8,))
    base = GaussianMixtureDensity([1.0], [[0.0, 0.0]], [4.0 * np.eye(2)])
    return ResidualEnergy(energy, base).to(device, dtype)


def _gaussian_data(n: int, *, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return rng.multivariate_normal(GAUSSIAN_MEAN, GAUSSIAN_COVARIANCE, size=n)


def _loss_value(loss, model, x, sampler, seed, state):
    return loss(
        model, x, sampler=sampler, generator=_generator(x.device, seed), state=state
    )


def check_loss_output(loss, *, sampler=None) -> None:
    """The loss of a batch is a finite scalar on the batch's device and dtype that
    back-propagates into the energy; ``init_state`` returns ``None`` or a module
    on that device and dtype; the batch and the model's parameters are left as
    they were; a loss that needs a sampler says so when it gets none."""
    name = _name(loss)
    sampler = default_loss_sampler() if sampler is None else sampler
    for device in _devices():
        for dtype in _DTYPES:
            what = f"{name} ({dtype}, {device})"
            model = _loss_model(device, dtype)
            X = torch.as_tensor(_gaussian_data(64), device=device, dtype=dtype)
            start = X.clone()
            state = loss.init_state(model, X, generator=_generator(device, 0))
            assert state is None or isinstance(state, nn.Module), (
                f"{what}.init_state returned {type(state).__name__}; return None or "
                "an nn.Module holding the state."
            )
            if state is not None:
                for tensor in [*state.parameters(), *state.buffers()]:
                    if tensor.is_floating_point():
                        assert (tensor.device, tensor.dtype) == (device, dtype), (
                            f"{what}.init_state made a tensor on {tensor.device} "
                            f"with {tensor.dtype}; follow X's device and dtype."
                        )
            value = _loss_value(loss, model, X[:32], sampler, 0, state)
            assert isinstance(value, torch.Tensor) and value.ndim == 0, (
                f"{what} must return a scalar tensor, got {value!r}"
            )
            assert (value.device, value.dtype) == (device, dtype), (
                f"{what} returned a tensor on {value.device} with {value.dtype}"
            )
            assert torch.isfinite(value), f"{what} returned {value}"
            assert value.requires_grad, (
                f"{what} returned a tensor without gradient: compute it from the "
                "model's energy, outside torch.no_grad()."
            )
            value.backward()
            grads = [p.grad for p in model.energy.parameters()]
            assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), (
                f"{what}: the loss does not depend on the energy's parameters"
            )
            assert all(g is None or torch.isfinite(g).all() for g in grads), (
                f"{what}: non-finite parameter gradients"
            )
            assert all(p.requires_grad for p in model.energy.parameters()), (
                f"{what} left the energy's parameters frozen"
            )
            assert torch.equal(X, start), f"{what} modified the batch in place"
    if loss.requires_sampler:
        try:
            loss(_loss_model("cpu", torch.float32), torch.zeros(4, 2))
        except ValueError:
            pass
        else:
            raise AssertionError(
                f"{name} has requires_sampler=True but ran without a sampler"
            )


def check_loss_reproducibility(loss, *, sampler=None) -> None:
    """The same generator seed gives the same loss and gradients; the global
    random states, the loss and the sampler are unchanged (stateless)."""
    name = _name(loss)
    sampler = default_loss_sampler() if sampler is None else sampler
    X = torch.as_tensor(_gaussian_data(64), dtype=torch.float32)
    before = joblib_hash((vars(loss), vars(sampler)))
    random_state = _GlobalRandomState()
    results = []
    for _ in range(2):
        model = _loss_model("cpu", torch.float32)
        state = loss.init_state(model, X, generator=_generator(X.device, 0))
        value = _loss_value(loss, model, X[:32], sampler, 1, state)
        value.backward()
        results.append([value.detach()] + [p.grad for p in model.energy.parameters()])
    random_state.assert_unchanged(f"{name}")
    assert all(
        (a is None and b is None) or torch.equal(a, b) for a, b in zip(*results)
    ), (
        f"{name} gave different values or gradients for the same generator seed; "
        "use only the generator argument for randomness."
    )
    assert joblib_hash((vars(loss), vars(sampler))) == before, (
        f"{name} changed its own or the sampler's attributes. Losses are "
        "stateless: keep state in the module returned by init_state."
    )


def _fitted_gaussian(energy: GaussianEnergy, base: GaussianMixtureDensity):
    """Mean and covariance of ``q·exp(-E)`` for a Gaussian energy and base."""
    with torch.no_grad():
        base_precision = torch.linalg.inv(base.scale_tril[0] @ base.scale_tril[0].T)
        base_shift = base_precision @ base.means[0]
        energy_precision = energy.precision().to(base_precision)
        precision = energy_precision + base_precision
        covariance = torch.linalg.inv(precision)
        mean = covariance @ (energy_precision @ energy.mean.to(base_shift) + base_shift)
    return mean.numpy(), covariance.numpy()


def check_loss_fits_gaussian(
    loss,
    *,
    sampler=None,
    n_samples: int = 4000,
    n_epochs: int = 30,
    learning_rate: float = 0.05,
    batch_size: int = 200,
    n_se: float = 6.0,
) -> None:
    """Training a Gaussian energy with the loss recovers a Gaussian's mean and
    covariance within ``n_se`` standard errors of the maximum-likelihood estimate.

    The model is ``q·exp(-E)`` with ``q = N(0, 4 I)`` and a learnable quadratic
    ``E``; data are ``n_samples`` draws of the 2-d target. Adam's learning rate
    decays linearly to 5% so the final iterate settles. ``n_se=6`` leaves room for
    a loss that is up to four times less efficient than maximum likelihood.
    """
    name = _name(loss)
    sampler = default_loss_sampler() if sampler is None else sampler
    X = torch.as_tensor(_gaussian_data(n_samples))
    energy = GaussianEnergy(2).double()
    model = _loss_model("cpu", torch.float64, energy=energy)
    generator = _generator(X.device, 0)
    state = loss.init_state(model, X, generator=generator)
    params = list(energy.parameters()) + (
        list(state.parameters()) if state is not None else []
    )
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    n_updates = n_epochs * -(-n_samples // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: max(0.05, 1.0 - t / n_updates)
    )
    for _ in range(n_epochs):
        order = torch.randperm(n_samples, generator=generator)
        for batch in X[order].split(batch_size):
            optimizer.zero_grad()
            loss(
                model, batch, sampler=sampler, generator=generator, state=state
            ).backward()
            optimizer.step()
            schedule.step()
    mean, covariance = _fitted_gaussian(energy, model.base)
    n = n_samples
    se_mean = np.sqrt(np.diag(GAUSSIAN_COVARIANCE) / n)
    diag = np.diag(GAUSSIAN_COVARIANCE)
    se_cov = np.sqrt((np.outer(diag, diag) + GAUSSIAN_COVARIANCE**2) / n)
    ok = np.all(np.abs(mean - GAUSSIAN_MEAN) <= n_se * se_mean) and np.all(
        np.abs(covariance - GAUSSIAN_COVARIANCE) <= n_se * se_cov
    )
    assert ok, (
        f"{name} fitted mean {np.round(mean, 3).tolist()} (target "
        f"{GAUSSIAN_MEAN.tolist()}, allowed ± {np.round(n_se * se_mean, 3).tolist()}) "
        f"and covariance {np.round(covariance, 3).tolist()} (target "
        f"{GAUSSIAN_COVARIANCE.tolist()}, allowed ± "
        f"{np.round(n_se * se_cov, 3).tolist()}) on {n} samples after {n_epochs} "
        "epochs. A biased loss (e.g. a regulariser or short-run chains) fails here; "
        "an under-trained one may need more epochs."
    )


def check_loss_in_estimator(loss) -> None:
    """The loss trains inside ``EnergyDensityEstimator``, which clones it and
    leaves it unchanged; the fitted model scores and samples."""
    _check_strategy_in_estimator(loss, "loss_")


def strategy_checks(
    strategy, *, n_steps: int = 500, n_epochs: int = 30, sampler=None
) -> Iterator:
    """Yield the contract checks of a sampler or a loss, each taking the strategy.

    ``n_steps`` is the sampler's budget in the Gaussian check; ``sampler`` (the
    sampler a loss that needs one runs) and ``n_epochs`` apply to losses.
    """
    yield check_strategy_parameters
    if isinstance(strategy, BaseSampler):
        yield check_sampler_output
        yield check_sampler_reproducibility
        yield partial(check_sampler_gaussian_moments, n_steps=n_steps)
        yield check_sampler_in_estimator
    elif isinstance(strategy, BaseLoss):
        yield partial(check_loss_output, sampler=sampler)
        yield partial(check_loss_reproducibility, sampler=sampler)
        yield partial(check_loss_fits_gaussian, sampler=sampler, n_epochs=n_epochs)
        yield check_loss_in_estimator
    else:
        raise TypeError(
            f"Expected a BaseSampler or BaseLoss instance, got {strategy!r}; pass an "
            "instance (e.g. MySampler()), not the class."
        )
