"""Fast paths give the same results as eager mode.

CPU tests use the "eager"/"aot_eager" compile backends (no C++ compiler needed) to
check the tracing and plumbing, and inductor when a compiler is present. CUDA tests
(graph capture) skip without a GPU; the lead runs them on a lent one.
"""

import shutil

import numpy as np
import pytest
import torch

from skebm._training import run_epochs
from skebm.acceleration import (
    AcceleratedSampler,
    CapturedSampling,
    compile_langevin_update,
    compile_value_and_grad,
)
from skebm.bases import GaussianMixtureDensity
from skebm.energies import MLPEnergy, ResidualEnergy
from skebm.losses import ContrastiveDivergence, NoiseContrastiveEstimation
from skebm.samplers import (
    MALA,
    Langevin,
    LinearSchedule,
    energy_and_grad,
    langevin_update,
)
from tests._helpers import cuda, small_estimator

HAS_COMPILER = any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def _mlp(d=2, hidden=(32, 32), seed=0):
    torch.manual_seed(seed)
    mlp = MLPEnergy(d, hidden)
    torch.nn.init.normal_(mlp.layers[-1].weight, std=0.2)
    return mlp


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_value_and_grad_matches_autograd(backend):
    energy = _mlp()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    value_and_grad = compile_value_and_grad(energy, backend=backend)
    value, grad = value_and_grad(x)
    expected_value, expected_grad = energy_and_grad(energy, x)
    torch.testing.assert_close(value, expected_value)
    torch.testing.assert_close(grad, expected_grad)
    # Training updates parameters in place: the compiled function sees them.
    with torch.no_grad():
        energy.layers[-1].bias.add_(1.0)
    torch.testing.assert_close(value_and_grad(x)[0], expected_value + 1.0)


BACKENDS = ["eager", "aot_eager"] + (["inductor"] if HAS_COMPILER else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_langevin_update_matches_the_eager_move(backend):
    energy = _mlp()
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    update = compile_langevin_update(energy, backend=backend)
    for step in (0.01, 0.3):  # a new float is an input, not a stale constant
        expected = langevin_update(energy, x, noise, step, 0.5)
        torch.testing.assert_close(update(x, noise, step, 0.5), expected)
    with torch.no_grad():  # in-place training updates are seen
        energy.layers[-1].weight.mul_(2.0)
    expected = langevin_update(energy, x, noise, 0.3, 0.5)
    torch.testing.assert_close(update(x, noise, 0.3, 0.5), expected)


def _recording_backend():
    """A ``torch.compile`` backend that runs graphs as traced, and their list."""
    graphs = []

    def backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    return backend, graphs


def test_a_step_size_schedule_compiles_the_langevin_update_once():
    backend, graphs = _recording_backend()
    energy = _mlp()
    energy.langevin_update = compile_langevin_update(energy, backend=backend)
    schedule = LinearSchedule(0.05, 0.001)
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    Langevin(schedule).sample(
        energy, x0, n_steps=20, generator=torch.Generator().manual_seed(2)
    )
    # Step sizes are tensor inputs: 20 values, one compilation.
    assert len(graphs) == 1


def test_an_energys_closed_form_gradient_is_what_gets_compiled():
    backend, graphs = _recording_backend()
    # The estimator's model: the MLP over a Gaussian-mixture base, both closed forms.
    base = GaussianMixtureDensity(
        [0.3, 0.7], [[0.0, 0.0], [2.0, 1.0]], [np.eye(2), 0.5 * np.eye(2)]
    ).float()
    energy = ResidualEnergy(_mlp(), base)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    update = compile_langevin_update(energy, backend=backend)
    torch.testing.assert_close(
        update(x, noise, 0.1, 0.2), langevin_update(energy, x, noise, 0.1, 0.2)
    )
    # The traced graph is the hand-written pass (MLPEnergy's explicit backward op),
    # not autograd's graph of forward.
    targets = {str(node.target) for node in graphs[-1].graph.nodes}
    assert any("silu_backward" in target for target in targets)


def test_langevin_uses_an_energys_fused_update():
    calls = []

    class Quadratic(torch.nn.Module):
        def forward(self, x):
            return 0.5 * x.pow(2).sum(-1)

        def langevin_update(self, x, noise, step, noise_scale):
            calls.append(step)
            return x - step * x + noise_scale * noise

    x0 = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    fused = Langevin(0.1).sample(
        Quadratic(), x0, n_steps=4, generator=torch.Generator().manual_seed(1)
    )
    eager = Langevin(0.1).sample(
        lambda x: 0.5 * x.pow(2).sum(-1),
        x0,
        n_steps=4,
        generator=torch.Generator().manual_seed(1),
    )
    assert calls == [0.1] * 4
    torch.testing.assert_close(fused, eager)


def test_samplers_use_an_energys_value_and_grad():
    calls = []

    class Quadratic(torch.nn.Module):
        def forward(self, x):
            return 0.5 * x.pow(2).sum(-1)

        def value_and_grad(self, x):
            calls.append(x.shape)
            return 0.5 * x.pow(2).sum(-1), x

    g = torch.Generator().manual_seed(0)
    MALA(0.1).sample(Quadratic(), torch.zeros(8, 3), n_steps=4, generator=g)
    assert len(calls) == 5  # the start and one per step: gradients are reused


def test_accelerated_sampler_on_cpu_equals_eager():
    energy = _mlp()
    x0 = torch.randn(128, 2, generator=torch.Generator().manual_seed(1))
    sampler = Langevin(0.01)
    eager = sampler.sample(
        energy, x0, n_steps=20, generator=torch.Generator().manual_seed(2)
    )
    fast = AcceleratedSampler(sampler, energy, compile=False).sample(
        x0, n_steps=20, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(fast, eager, rtol=0, atol=0)


def _assert_compile_matches_eager(X, n_samples, **params):
    """Fitted with and without ``compile=True``: the same loss curve, scores and
    samples within float32 tolerance."""
    eager = small_estimator(**params).fit(X)
    fast = small_estimator(compile=True, **params).fit(X)
    np.testing.assert_allclose(fast.loss_curve_, eager.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(
        fast.score_samples(X), eager.score_samples(X), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        fast.sample(n_samples, random_state=0),
        eager.sample(n_samples, random_state=0),
        atol=1e-3,
    )


@pytest.mark.slow
@pytest.mark.skipif(not HAS_COMPILER, reason="inductor needs a C++ compiler on CPU")
def test_estimator_compile_matches_eager_on_cpu(moons):
    _assert_compile_matches_eager(
        moons,
        50,
        loss="cd",
        loss_params={"n_steps": 3},
        sampler="langevin",
        random_state=0,
    )


# -- CUDA: graph capture -----------------------------------------------------------


def _cuda_generator(seed):
    return torch.Generator(device="cuda").manual_seed(seed)


@cuda
@pytest.mark.parametrize(
    "sampler", [Langevin(0.01), MALA(0.01, target_accept=0.5)], ids=repr
)
def test_captured_sampling_reproduces_eager_bit_for_bit(sampler):
    energy = _mlp().cuda()
    x0 = torch.randn(512, 2, device="cuda", generator=_cuda_generator(0))
    eager_g, graph_g = _cuda_generator(1), _cuda_generator(1)
    captured = CapturedSampling(sampler, energy, x0, n_steps=30)
    for _ in range(2):  # consecutive calls continue the same random stream
        expected = sampler.sample(energy, x0, n_steps=30, generator=eager_g)
        got, _ = captured.run(x0, graph_g)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # Another generator with the same seed reproduces the first call: one graph
    # serves every generator.
    first = sampler.sample(energy, x0, n_steps=30, generator=_cuda_generator(1))
    torch.testing.assert_close(
        captured.run(x0, _cuda_generator(1))[0], first, rtol=0, atol=0
    )


@cuda
def test_captured_compiled_langevin_matches_eager():
    energy = _mlp().cuda()
    x0 = torch.randn(512, 2, device="cuda", generator=_cuda_generator(0))
    sampler = Langevin(LinearSchedule(0.02, 0.005))
    fast = AcceleratedSampler(sampler, energy, compile=True)
    for seed in (1, 2):  # the second call replays the graph captured by the first
        expected = sampler.sample(
            energy, x0, n_steps=30, generator=_cuda_generator(seed)
        )
        got = fast.sample(x0, n_steps=30, generator=_cuda_generator(seed))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@cuda
@pytest.mark.parametrize(
    "loss",
    [
        ContrastiveDivergence(n_steps=5, alpha=0.01),
        ContrastiveDivergence(n_steps=5, persistent=True, buffer_size=1000),
        NoiseContrastiveEstimation(noise_ratio=4),
    ],
    ids=repr,
)
def test_captured_training_matches_eager(loss):
    base = (
        GaussianMixtureDensity(
            [0.3, 0.7], [[0.0, 0.0], [2.0, 1.0]], [np.eye(2), 0.5 * np.eye(2)]
        )
        .float()
        .cuda()
    )
    X = base.sample(1000, generator=_cuda_generator(0))
    results = []
    for capture in (False, True):
        energy = _mlp().cuda()
        model = ResidualEnergy(energy, base)
        g = _cuda_generator(3)
        state = loss.init_state(model, X, generator=g)
        params = list(energy.parameters()) + (list(state.parameters()) if state else [])
        optimizer = torch.optim.Adam(params, lr=1e-3, capturable=True)
        result = run_epochs(
            model=model,
            loss=loss,
            sampler=Langevin(0.01),
            loss_state=state,
            optimizer=optimizer,
            X=X,
            batch_size=128,
            n_epochs=2,
            generator=g,
            capture=capture,
        )
        results.append(
            (
                result.losses,
                torch.cat([p.detach().flatten() for p in energy.parameters()]),
            )
        )
    (eager_losses, eager_params), (graph_losses, graph_params) = results
    np.testing.assert_allclose(graph_losses, eager_losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graph_params, eager_params, rtol=1e-5, atol=1e-6)


@cuda
def test_estimator_compile_on_cuda_matches_eager(moons):
    params = dict(
        loss="pcd",
        loss_params={"n_steps": 3},
        sampler="langevin",
        random_state=0,
        device="cuda",
    )
    _assert_compile_matches_eager(moons, 300, **params)
