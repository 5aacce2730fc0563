"""
Writing and installing a plugin: a random-walk Metropolis sampler
=================================================================

Losses, samplers and energies reach skebm through pluggy hooks, and third-party
packages add their own with an entry point in the group ``skebm``. This example
writes such a package, ``skebm-rwm``, with a gradient-free random-walk Metropolis
sampler; installs it with pip (into a temporary folder, so your environment is
left as it was); finds it in the registry and in ``python -m skebm plugins``;
checks it with skebm's density-contract checks; and samples a fitted model with it
next to the built-in MALA.

The whole plugin is the three files written below: a
:class:`~skebm.samplers.BaseSampler` subclass, a module with a ``@skebm.hookimpl``
that registers it, and a ``pyproject.toml`` declaring the entry point.
"""

import importlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import skebm
from skebm import EnergyDensityEstimator
from skebm.datasets import make_two_moons
from skebm.plotting import plot_samples
from skebm.plugins import reset_registry
from skebm.utils.estimator_checks import density_checks

FAST = os.environ.get("SKEBM_EXAMPLES_FAST") == "1"
OUTPUT = Path(os.environ.get("SKEBM_EXAMPLES_OUTPUT", "."))
OUTPUT.mkdir(parents=True, exist_ok=True)

# %%
# The plugin's files. The sampler follows the strategy contract: all settings in
# ``__init__``, randomness only from the ``generator`` it is given, every chain
# moved at once as one tensor, and diagnostics kept as tensors.
SAMPLER = '''
"""A random-walk Metropolis sampler for skebm."""

import torch

from skebm.samplers import BaseSampler


class RandomWalkMetropolis(BaseSampler):
    """Gaussian random-walk proposals ``x + step_size * noise``, Metropolis
    accepted: exact for any step size, and needs no gradient."""

    def __init__(self, step_size=0.5):
        self.step_size = step_size

    def _run(self, energy, x, *, n_steps, generator):
        if not self.step_size > 0:
            raise ValueError(f"step_size must be positive, got {self.step_size!r}.")
        accepted = torch.zeros((), device=x.device, dtype=x.dtype)
        with torch.no_grad():
            value = energy(x)
            for _ in range(n_steps):
                proposal = x + self.step_size * self._noise(x, generator)
                value_p = energy(proposal)
                uniform = torch.rand(
                    value.shape, generator=generator, device=x.device, dtype=x.dtype
                )
                accept = torch.log(uniform) < value - value_p
                x = torch.where(accept.unsqueeze(-1), proposal, x)
                value = torch.where(accept, value_p, value)
                accepted = accepted + accept.to(x.dtype).mean()
        return x, {"acceptance_rate": accepted / max(n_steps, 1)}
'''

HOOKS = """
import skebm

from skebm_rwm import RandomWalkMetropolis


@skebm.hookimpl
def skebm_register_samplers(register):
    register("rwm", RandomWalkMetropolis)
"""

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "skebm-rwm"
version = "0.1.0"
description = "A random-walk Metropolis sampler for skebm"
dependencies = ["skebm"]

[project.entry-points.skebm]
rwm = "skebm_rwm.plugin"

[tool.setuptools]
packages = ["skebm_rwm"]
"""

workdir = Path(tempfile.mkdtemp(prefix="skebm-plugin-example-"))
package = workdir / "skebm-rwm"
(package / "skebm_rwm").mkdir(parents=True)
(package / "pyproject.toml").write_text(PYPROJECT)
(package / "skebm_rwm" / "__init__.py").write_text(textwrap.dedent(SAMPLER))
(package / "skebm_rwm" / "plugin.py").write_text(textwrap.dedent(HOOKS))

# %%
# Install it. In your own project this is ``pip install ./skebm-rwm`` (or its
# name on PyPI). Here ``--target`` installs into a temporary folder that only
# this process puts on its path; ``--no-deps`` keeps the installed skebm.
site = workdir / "site"
pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
subprocess.run([*pip, "--target", str(site), str(package)], check=True)
sys.path.insert(0, str(site))
importlib.invalidate_caches()
reset_registry()  # the registry is built lazily; rebuild it to see the new plugin

samplers = {c.name: c for c in skebm.list_samplers()}
print("samplers now registered:", ", ".join(samplers))
rwm = samplers["rwm"]
print(f"'rwm' comes from {rwm.distribution} {rwm.version} ({rwm.qualified_name})")

listing = subprocess.run(
    [sys.executable, "-m", "skebm", "plugins"],
    capture_output=True,
    text=True,
    check=True,
    env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])},
)
print("python -m skebm plugins:")
print(json.dumps(json.loads(listing.stdout)["plugins"], indent=2))

# %%
# Check the new sampler against skebm's density contract (reproducible samples,
# no side effects, a normalised density, pickling, ...) on a small estimator.
small = EnergyDensityEstimator(
    sampler="rwm",
    energy_params={"hidden_layer_sizes": (16,), "fourier_features": 8},
    max_iter=3,
    sample_steps=5,
    partition_params={
        "n_draws": 4096,
        "n_chains": 64,
        "n_temperatures": 10,
        "n_points": 101,
    },
    device="cpu",
)
for check in density_checks(small):
    check(small)
    print(f"  {check.__name__}: ok")

# %%
# Use it: the same model (NCE training does not use the sampler, so equal seeds
# give equal energies) sampled with MALA and with the plugin's sampler.
X = make_two_moons(2000, noise=0.1, random_state=0)
models = {
    name: EnergyDensityEstimator(
        sampler=name,
        sampler_params=params,
        max_iter=3 if FAST else 40,
        sample_steps=200,
        random_state=0,
    ).fit(X)
    for name, params in [("mala", None), ("rwm", {"step_size": 0.4})]
}
assert models["mala"].score(X) == models["rwm"].score(X)

# The acceptance rate of random-walk Metropolis against its step size, on N(0, I)
# in two dimensions (~0.23-0.44 is the usual target).
steps = np.geomspace(0.1, 5, 12)
generator = torch.Generator().manual_seed(0)
rates = []
for step in steps:
    sampler = rwm.cls(step_size=float(step))
    _, info = sampler.sample(
        lambda x: 0.5 * (x**2).sum(-1),
        torch.randn((2000, 2), generator=generator),
        n_steps=50,
        generator=generator,
        return_info=True,
    )
    rates.append(float(info["acceptance_rate"]))

fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
for ax, (name, model) in zip(axes, models.items()):
    plot_samples(model.sample(2000, random_state=1), X, ax=ax)
    ax.set_title(f"est.sample(2000) with sampler={name!r}")
axes[2].semilogx(steps, rates, marker="o")
axes[2].axhspan(0.23, 0.44, color="tab:green", alpha=0.15)
axes[2].set_xlabel("step_size")
axes[2].set_ylabel("acceptance rate")
axes[2].set_title("the plugin's sampler on N(0, I): acceptance vs step")
fig.savefig(OUTPUT / "plugin.png", dpi=80)
print(f"figure written to {OUTPUT / 'plugin.png'}")
