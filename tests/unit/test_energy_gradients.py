"""Hand-written energy gradients (the samplers' fast path) equal autograd's."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal
from torch.utils._python_dispatch import TorchDispatchMode

from skebm.bases import BaseDensity, GaussianMixtureDensity, StandardNormalDensity
from skebm.energies import MLPEnergy, ResidualEnergy
from skebm.energies.mlp import ACTIVATIONS
from skebm.fast_gradient import langevin_move
from skebm.samplers import MALA, Langevin, energy_and_grad, langevin_update
from skebm.utils._torch import autograd_value_and_grad


def _mlp(n_features, hidden, activation="silu", dtype=torch.float32, seed=0, **params):
    torch.manual_seed(seed)
    mlp = MLPEnergy(n_features, hidden, activation=activation, **params).to(dtype)
    nn.init.normal_(mlp.layers[-1].weight, std=0.5)
    nn.init.normal_(mlp.layers[-1].bias, std=0.5)
    return mlp


def _tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}


@pytest.mark.parametrize("fourier", [0, 5], ids=["plain", "fourier"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("hidden", [(), (16,), (32, 8, 4)], ids=str)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_closed_form_gradient_equals_autograd(activation, hidden, dtype, fourier):
    energy = _mlp(3, hidden, activation, dtype, fourier_features=fourier)
    assert energy._closed_form_plan() is not None
    # Wide inputs reach every branch (ReLU's kink, softplus's linear threshold).
    x = 4 * torch.randn(64, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    value, grad = energy.value_and_grad(x)
    expected_value, expected_grad = autograd_value_and_grad(energy, x)
    torch.testing.assert_close(value, expected_value, **_tolerance(dtype))
    torch.testing.assert_close(grad, expected_grad, **_tolerance(dtype))
    assert not value.requires_grad and not grad.requires_grad
    noise = torch.randn_like(x)
    expected_move = x - 0.1 * expected_grad + 0.3 * noise
    # Numbers and 0-d tensors (as compiled callers pass them) take different paths.
    for step, scale in [(0.1, 0.3), (torch.tensor(0.1, dtype=dtype), 0.3)]:
        torch.testing.assert_close(
            energy.langevin_update(x, noise, step, scale),
            expected_move,
            **_tolerance(dtype),
        )


def test_fourier_features_are_the_input_and_its_sines_and_cosines():
    torch.manual_seed(0)
    energy = MLPEnergy(2, (8,), fourier_features=3, fourier_scale=2.0)
    B = energy.features.frequencies
    assert B.shape == (2, 3) and not B.requires_grad
    assert "features.frequencies" in energy.state_dict()  # saved with the weights
    x = torch.randn(5, 2)
    features = energy.features(x)
    torch.testing.assert_close(
        features, torch.cat([x, torch.sin(x @ B), torch.cos(x @ B)], 1)
    )
    assert energy.layers[0].in_features == 2 + 2 * 3
    assert energy(x).abs().max().item() == 0.0  # still starts at exactly zero
    assert (
        "features.frequencies"
        not in MLPEnergy(2, (8,), fourier_features=0).state_dict()
    )


def test_mlp_closed_form_gradient_is_not_a_view_of_the_weights():
    energy = _mlp(2, ())
    _, grad = energy.value_and_grad(torch.zeros(4, 2))
    grad.add_(1.0)  # callers may modify it
    assert not torch.equal(energy.layers[-1].weight[0], grad[0])


def test_changed_mlps_fall_back_to_autograd():
    class Shifted(MLPEnergy):
        def forward(self, x):
            return super().forward(x) + x.pow(2).sum(-1)

    shifted = Shifted(2, (8,))
    edited = _mlp(2, (8,))
    edited.layers.insert(1, nn.LayerNorm(8))
    for energy in (shifted, edited):
        assert energy._closed_form_plan() is None
        x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
        value, grad = energy.value_and_grad(x)
        torch.testing.assert_close(grad, autograd_value_and_grad(energy, x)[1])
        torch.testing.assert_close(value, energy(x).detach())


def _random_mixture(n_components, n_features, dtype, seed=0):
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_components, n_features, n_features))
    covariances = factors @ factors.transpose(0, 2, 1) + 0.1 * np.eye(n_features)
    return GaussianMixtureDensity(
        rng.uniform(0.2, 1.0, n_components),
        rng.normal(size=(n_components, n_features)),
        covariances,
    ).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    "base",
    [
        lambda dtype: StandardNormalDensity(3).to(dtype),
        lambda dtype: _random_mixture(1, 3, dtype),
        lambda dtype: _random_mixture(5, 3, dtype),
    ],
    ids=["standard", "gaussian", "mixture"],
)
def test_base_closed_form_gradient_equals_autograd(base, dtype):
    base = base(dtype)
    assert base.has_closed_form_gradient
    # Far points too: the mixture's responsibilities must not underflow to NaN.
    z = 3 * torch.randn(256, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))
    z[0] = 40.0
    log_q, grad = base.log_prob_and_grad(z)
    expected = BaseDensity.log_prob_and_grad(base, z)  # the autograd default
    torch.testing.assert_close(log_q, expected[0], **_tolerance(dtype))
    torch.testing.assert_close(grad, expected[1], **_tolerance(dtype))
    assert torch.isfinite(grad).all()
    grad_only = base.grad_log_prob(z.requires_grad_(True))
    torch.testing.assert_close(grad_only, expected[1], **_tolerance(dtype))
    assert not grad_only.requires_grad


def test_mixture_density_and_gradient_match_torch_distributions():
    base = _random_mixture(4, 3, torch.float64)
    reference = MixtureSameFamily(
        Categorical(logits=base.log_weights),
        MultivariateNormal(base.means, scale_tril=base.scale_tril),
    )
    z = 2 * torch.randn(128, 3, dtype=torch.float64)
    expected_log_q, expected_grad = autograd_value_and_grad(reference.log_prob, z)
    log_q, grad = base.log_prob_and_grad(z)
    torch.testing.assert_close(base.log_prob(z), expected_log_q)
    torch.testing.assert_close(log_q, expected_log_q)
    torch.testing.assert_close(grad, expected_grad)
    torch.testing.assert_close(base.grad_log_prob(z), expected_grad)


def test_mixture_rebuilds_what_it_derives_when_loaded():
    fitted = _random_mixture(4, 3, torch.float64, seed=0)
    state = fitted.state_dict()
    assert "_whitening" not in state  # derived from precision_tril, not saved
    loaded = _random_mixture(4, 3, torch.float64, seed=1)
    loaded.load_state_dict(state)
    z = torch.randn(64, 3, dtype=torch.float64)
    torch.testing.assert_close(loaded.log_prob(z), fitted.log_prob(z))
    torch.testing.assert_close(loaded.grad_log_prob(z), fitted.grad_log_prob(z))


def _base():
    return GaussianMixtureDensity(
        [0.4, 0.6], [[0.0, 0.0], [1.5, -1.0]], [np.eye(2), 0.3 * np.eye(2)]
    ).float()


class _AutogradOnly(nn.Module):
    """An energy without a hand-written gradient."""

    def __init__(self):
        super().__init__()
        self.mlp = _mlp(2, (16,))

    def forward(self, x):
        return self.mlp(x)


class _ComputeOps(TorchDispatchMode):
    """Counts the aten ops that run a kernel (views and aliases excluded)."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        alias = func._schema.returns[0].alias_info if func._schema.returns else None
        if alias is None or alias.is_write:
            self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def test_mlp_langevin_move_runs_fewer_kernels_than_autograd():
    # Each kernel is a launch: on a GPU, a small network's step costs about its
    # number of launches, eager or in a CUDA graph.
    energy = _mlp(2, (128, 128), fourier_features=0)
    x, noise = torch.randn(256, 2), torch.randn(256, 2)
    with _ComputeOps() as hand_written:
        energy.langevin_update(x, noise, 0.01, 0.1)
    with _ComputeOps() as autograd:
        langevin_move(x, autograd_value_and_grad(energy, x)[1], noise, 0.01, 0.1)
    # The output layer's value and the last activation are skipped, and the
    # output row is broadcast (no outer product): on torch 2.13, addmm x2, silu,
    # silu_backward x2, mm x2, add and add_.
    assert sum(hand_written.counts.values()) <= 9
    assert "ones_like" not in hand_written.counts
    # Autograd (torch 2.13): 13 kernels, adding ones_like, the output layer, the
    # outer product and the last activation.
    assert sum(autograd.counts.values()) >= sum(hand_written.counts.values()) + 4


def test_mixture_gradient_is_a_few_kernels_for_any_number_of_components():
    # One product whitens the batch for every component, a softmax weighs them
    # and one product maps back: no per-component kernels, no logsumexp.
    z = torch.randn(256, 2)
    totals = []
    for n_components in (1, 9):
        base = _random_mixture(n_components, 2, torch.float32)
        with _ComputeOps() as ops:
            base.grad_log_prob(z)
        # On torch 2.13: mm x2, sub, mul x2, sum, add and _softmax.
        assert "logsumexp" not in ops.counts
        totals.append(sum(ops.counts.values()))
    assert totals[0] == totals[1] <= 8


@pytest.mark.parametrize("energy", [_mlp(2, (16, 16)), _AutogradOnly()], ids=repr)
@pytest.mark.parametrize("with_base", [True, False])
def test_residual_gradient_and_move_equal_autograd(energy, with_base):
    model = ResidualEnergy(energy, _base() if with_base else None)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    expected_value, expected_grad = autograd_value_and_grad(model, x)
    value, grad = energy_and_grad(model, x)
    torch.testing.assert_close(value, expected_value)
    torch.testing.assert_close(grad, expected_grad)
    torch.testing.assert_close(
        langevin_update(model, x, noise, 0.05, 0.2),
        x - 0.05 * expected_grad + 0.2 * noise,
    )


@pytest.mark.parametrize("sampler", [Langevin(0.05), MALA(0.05)], ids=repr)
def test_samplers_on_the_closed_form_follow_the_autograd_chains(sampler):
    model = ResidualEnergy(_mlp(2, (16, 16)), _base())
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))

    def autograd_only(x):  # a plain callable: no fast path
        return model(x)

    chains = [
        sampler.sample(e, x0, n_steps=50, generator=torch.Generator().manual_seed(3))
        for e in (model, autograd_only)
    ]
    torch.testing.assert_close(chains[0], chains[1], rtol=1e-4, atol=1e-4)
