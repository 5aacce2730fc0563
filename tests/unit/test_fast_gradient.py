"""The fast-gradient protocol (``skebm/fast_gradient.py``): every wrapper of an
energy passes it through, so wrapping never silently falls back to autograd."""

import importlib
import pkgutil

import pytest
import torch
from torch import nn

import skebm
from skebm._progress import _CountingEnergy
from skebm.acceleration.compiled import _EnergyWithGradient
from skebm.bases import StandardNormalDensity
from skebm.energies import GaussianEnergy, MLPEnergy, ResidualEnergy
from skebm.fast_gradient import (
    FastGradientEnergy,
    ForwardingEnergy,
    energy_and_grad,
    langevin_update,
)


class _Bar:
    def update(self, n):
        pass


#: How to wrap an energy with each ForwardingEnergy of skebm. A new wrapper
#: must be added here (the first test fails until it is).
WRAPPERS = {
    ResidualEnergy: lambda energy: ResidualEnergy(energy, StandardNormalDensity(2)),
    _CountingEnergy: lambda energy: _CountingEnergy(energy, _Bar()),
    # Replaces the wrapped energy's kernels by compiled ones (its forwarding of
    # the protocol is tested with the compiler in tests/unit/test_acceleration.py).
    _EnergyWithGradient: None,
}


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


class SpyEnergy(nn.Module):
    """A Gaussian energy with its own kernels, counting the calls that reach them."""

    has_closed_form_gradient = True

    def __init__(self):
        super().__init__()
        self.calls = {"value_and_grad": 0, "langevin_update": 0}

    def forward(self, x):
        return 0.5 * (x**2).sum(-1)

    def value_and_grad(self, x):
        self.calls["value_and_grad"] += 1
        return self(x).detach(), x.detach().clone()

    def langevin_update(self, x, noise, step, noise_scale):
        self.calls["langevin_update"] += 1
        return x - step * x + noise_scale * noise


def test_every_wrapper_in_skebm_is_listed():
    for module in pkgutil.walk_packages(skebm.__path__, "skebm."):
        importlib.import_module(module.name)
    found = {
        cls
        for cls in _subclasses(ForwardingEnergy)
        if cls.__module__.startswith("skebm")
    }
    assert found == set(WRAPPERS)


@pytest.mark.parametrize("wrapper", [w for w in WRAPPERS if WRAPPERS[w]], ids=repr)
def test_wrappers_reach_the_wrapped_energys_kernels(wrapper):
    spy = SpyEnergy()
    wrapped = WRAPPERS[wrapper](spy)
    x, noise = torch.randn(5, 2), torch.randn(5, 2)
    value, grad = energy_and_grad(wrapped, x)
    moved = langevin_update(wrapped, x, noise, 0.1, 0.3)
    assert spy.calls == {"value_and_grad": 1, "langevin_update": 1}
    assert wrapped.has_closed_form_gradient
    # and the results are those of autograd on the wrapper's forward
    x_ = x.clone().requires_grad_(True)
    (auto_grad,) = torch.autograd.grad(wrapped(x_).sum(), x_)
    torch.testing.assert_close(value, wrapped(x).detach())
    torch.testing.assert_close(grad, auto_grad)
    torch.testing.assert_close(moved, x - 0.1 * auto_grad + 0.3 * noise)


def test_a_wrapper_of_an_autograd_energy_uses_autograd():
    wrapped = ForwardingEnergy(GaussianEnergy(2))
    x = torch.randn(4, 2, requires_grad=True)
    value, grad = energy_and_grad(wrapped, x.detach())
    (expected,) = torch.autograd.grad(wrapped(x).sum(), x)
    torch.testing.assert_close(grad, expected)
    assert not value.requires_grad and not grad.requires_grad


def test_the_mlp_and_its_wrappers_implement_the_protocol():
    mlp = MLPEnergy(2)
    assert isinstance(mlp, FastGradientEnergy)
    assert isinstance(ResidualEnergy(mlp, StandardNormalDensity(2)), FastGradientEnergy)
    assert not isinstance(GaussianEnergy(2), FastGradientEnergy)
