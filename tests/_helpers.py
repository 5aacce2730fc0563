"""Helpers shared by the tests: a small estimator configuration, the CUDA mark,
a fake plugin distribution on disk, and a loss that fails on cue."""

import textwrap

import pytest
import torch
from torch import nn

from skebm import EnergyDensityEstimator
from skebm.losses import BaseLoss

#: A configuration small enough for the 40+ fits of scikit-learn's checks.
SMALL = dict(
    energy_params={"hidden_layer_sizes": (16,), "fourier_features": 8},
    max_iter=3,
    sample_steps=5,
    partition_params={
        "n_draws": 4096,
        "n_chains": 64,
        "n_temperatures": 10,
        "n_points": 101,
    },
)


def small_estimator(**params) -> EnergyDensityEstimator:
    """An EnergyDensityEstimator that fits in tens of milliseconds."""
    return EnergyDensityEstimator(**{**SMALL, "device": "cpu", **params})


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def write_distribution(root, name, version, entry_points, modules):
    """Install a fake distribution under ``root``: dist-info plus modules."""
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = ["[skebm]"] + [f"{ep} = {target}" for ep, target in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    import skebm
    from skebm.samplers import Langevin

    class GoodSampler(Langevin):
        pass

    @skebm.hookimpl
    def skebm_register_samplers(register):
        register("good", GoodSampler)
"""


class FailingLoss(BaseLoss):
    """A loss that misbehaves on its ``fail_at``-th call (counted in its state)."""

    def __init__(self, fail_at=10, error=None):
        self.fail_at = fail_at
        self.error = error

    def init_state(self, model, X, *, generator):
        state = nn.Module()
        state.register_buffer("calls", torch.zeros(()))
        return state

    def _loss(self, model, x, *, sampler, generator, state):
        state.calls += 1
        if state.calls >= self.fail_at:
            if self.error is not None:
                raise self.error
            return model.energy(x).mean() * float("nan")
        return model.energy(x).mean()
