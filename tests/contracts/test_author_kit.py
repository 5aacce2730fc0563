"""The plugin author kit: every built-in strategy passes it, broken ones fail it.

The built-ins run the whole kit (strategy checks, scikit-learn's checks and the
density checks on an estimator using them). Each deliberately broken strategy
below violates one rule, and the test asserts that the matching check catches it
with a message that says what to fix; so the kit's checks can fail.
"""

import math
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from skebm.losses import (
    ContrastiveDivergence,
    NoiseContrastiveEstimation,
    PersistentContrastiveDivergence,
)
from skebm.samplers import MALA, Langevin, energy_and_grad
from skebm.utils.estimator_checks import (
    check_loss,
    check_loss_fits_gaussian,
    check_loss_output,
    check_loss_reproducibility,
    check_sampler,
    check_sampler_gaussian_moments,
    check_sampler_output,
    check_sampler_reproducibility,
    check_strategy_parameters,
    parametrize_with_plugin_checks,
    plugin_checks,
)

BUILTIN_STRATEGIES = [
    Langevin(),
    MALA(),
    NoiseContrastiveEstimation(),
    PersistentContrastiveDivergence(),
    # Short-run CD from the kit's wide base N(0, 4 I) learns a too narrow
    # Gaussian (the kit's Gaussian check fails for init="noise"); CD from the
    # data keeps the true parameters a fixed point.
    ContrastiveDivergence(init="data"),
]


@parametrize_with_plugin_checks(BUILTIN_STRATEGIES)
def test_builtin_strategies_pass_the_kit(subject, check):
    check(subject)


# -- broken samplers ----------------------------------------------------------------


class HalfNoiseLangevin(Langevin):
    """Noise sqrt(ε) instead of sqrt(2ε): samples a distribution half as wide."""

    def _run(self, energy, x, *, n_steps, generator):
        for _ in range(n_steps):
            _, grad = energy_and_grad(energy, x)
            x = (
                x
                - self.step_size * grad
                + math.sqrt(self.step_size) * self._noise(x, generator)
            )
        return x, {}


class GlobalRandomLangevin(Langevin):
    """Draws its noise from torch's global generator."""

    def _noise(self, x, generator):
        return torch.randn(x.shape, device=x.device, dtype=x.dtype)


class Float64Langevin(Langevin):
    """Returns float64 whatever the input."""

    def _run(self, energy, x, *, n_steps, generator):
        x, info = super()._run(energy, x, n_steps=n_steps, generator=generator)
        return x.double(), info


class StatefulLangevin(Langevin):
    """Remembers its last chains on the instance."""

    def _run(self, energy, x, *, n_steps, generator):
        x, info = super()._run(energy, x, n_steps=n_steps, generator=generator)
        self.last_chains_ = x
        return x, info


class IdleSampler(Langevin):
    """Never moves: fine for every contract check but the statistical one."""

    def _run(self, energy, x, *, n_steps, generator):
        return x.clone(), {}


class DerivedAttributeSampler(Langevin):
    """Stores a derived value in __init__."""

    def __init__(self, step_size=0.01, noise_scale=1.0):
        super().__init__(step_size=step_size, noise_scale=noise_scale)
        self.noise_std = math.sqrt(2 * step_size)


@pytest.mark.parametrize(
    "sampler, check, message",
    [
        pytest.param(
            HalfNoiseLangevin(0.05),
            check_sampler_gaussian_moments,
            "covariance",
            id="HalfNoiseLangevin",
        ),
        pytest.param(
            IdleSampler(),
            check_sampler_gaussian_moments,
            "have not converged",
            id="IdleSampler",
        ),
        pytest.param(
            GlobalRandomLangevin(),
            check_sampler_reproducibility,
            "global random",
            id="GlobalRandomLangevin",
        ),
        pytest.param(
            Float64Langevin(), check_sampler_output, "dtype", id="Float64Langevin"
        ),
        pytest.param(
            StatefulLangevin(),
            check_sampler_reproducibility,
            "stateless",
            id="StatefulLangevin",
        ),
        pytest.param(
            DerivedAttributeSampler(),
            check_strategy_parameters,
            "noise_std",
            id="DerivedAttributeSampler",
        ),
    ],
)
def test_broken_samplers_fail_the_matching_check(sampler, check, message):
    with pytest.raises(AssertionError, match=message):
        check(sampler)


# -- broken losses ------------------------------------------------------------------


class AscendingNCE(NoiseContrastiveEstimation):
    """NCE with the sign flipped: pushes the model away from the data."""

    def _loss(self, model, x, *, sampler, generator, state):
        return -super()._loss(
            model, x, sampler=sampler, generator=generator, state=state
        )


class DetachedNCE(NoiseContrastiveEstimation):
    """Returns a value that does not back-propagate."""

    def _loss(self, model, x, *, sampler, generator, state):
        return (
            super()
            ._loss(model, x, sampler=sampler, generator=generator, state=state)
            .detach()
        )


class GlobalRandomCNCE(NoiseContrastiveEstimation):
    """A conditional NCE whose noise comes from the global generator."""

    def _loss(self, model, x, *, sampler, generator, state):
        y = x + 0.5 * torch.randn(x.shape, dtype=x.dtype, device=x.device)
        return F.softplus(model(x) - model(y)).mean()


class NoBaseNCE(NoiseContrastiveEstimation):
    """Ignores the base density in the data term: a biased estimator."""

    def _loss(self, model, x, *, sampler, generator, state):
        batch = x.shape[0]
        c = state.log_normalizer
        y = model.base.sample(5 * batch, generator=generator)
        logits = torch.cat([-model(x), -model.energy(y)]) - c - math.log(5)
        return (
            F.softplus(-logits[:batch]).sum() + F.softplus(logits[batch:]).sum()
        ) / batch


@pytest.mark.parametrize(
    "loss, check, message",
    [
        pytest.param(
            AscendingNCE(), check_loss_fits_gaussian, "fitted mean", id="AscendingNCE"
        ),
        pytest.param(
            NoBaseNCE(), check_loss_fits_gaussian, "fitted mean", id="NoBaseNCE"
        ),
        pytest.param(
            DetachedNCE(), check_loss_output, "without gradient", id="DetachedNCE"
        ),
        pytest.param(
            GlobalRandomCNCE(),
            check_loss_reproducibility,
            "global random",
            id="GlobalRandomCNCE",
        ),
    ],
)
def test_broken_losses_fail_the_matching_check(loss, check, message):
    with pytest.raises(AssertionError, match=message):
        check(loss)


# -- the runners --------------------------------------------------------------------


def test_check_sampler_names_the_failed_check():
    with pytest.raises(AssertionError, match="check_sampler_reproducibility failed"):
        check_sampler(GlobalRandomLangevin(), sklearn_checks=False)


def test_check_loss_names_the_failed_check():
    with pytest.raises(AssertionError, match="check_loss_output failed"):
        check_loss(DetachedNCE(), sklearn_checks=False)


def test_runners_reject_classes_and_the_wrong_kind():
    with pytest.raises(TypeError, match=r"instance of Langevin \(e.g. Langevin\(\)\)"):
        check_sampler(Langevin)
    with pytest.raises(TypeError, match="Expected a BaseLoss instance"):
        check_loss(Langevin())
    with pytest.raises(TypeError, match="not the class"):
        parametrize_with_plugin_checks([MALA])


def test_plugin_checks_cover_strategy_sklearn_and_density_checks():
    names = [
        getattr(check, "__name__", None) or check.func.__name__
        for _, check in plugin_checks(MALA())
    ]
    assert "check_sampler_gaussian_moments" in names
    assert "check_estimators_pickle" in names  # scikit-learn's
    assert "check_sample_is_reproducible" in names  # skebm's density checks
    without = [c for _, c in plugin_checks(MALA(), sklearn_checks=False)]
    assert len(without) < len(names)


# -- the "Writing a plugin" guide (docs/) ----------------------------------------------


def _guide_files():
    """{path: source} of the guide's code blocks that start with '# <path>'."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    guide = (docs / "writing-a-plugin.md").read_text(encoding="utf-8")
    files = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", guide, flags=re.S):
        first, _, rest = block.partition("\n")
        path = first.removeprefix("# ").strip()
        if first.startswith("# ") and path.endswith((".py", ".toml")):
            files[path] = rest
    return files


def test_the_readme_plugin_guide_builds_a_working_plugin(tmp_path, monkeypatch):
    """The guide's files, laid out as a package and 'installed' (a dist-info with
    its pyproject's name, version and entry point), register a sampler that
    skebm finds by name and that passes the author kit."""
    import importlib

    from skebm.plugins import Registry
    from tests._helpers import write_distribution

    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")
    files = _guide_files()
    assert set(files) == {
        "src/skebm_rwm/sampler.py",
        "src/skebm_rwm/__init__.py",
        "src/skebm_rwm/plugin.py",
        "pyproject.toml",
        "tests/test_rwm.py",
    }
    project = tomllib.loads(files["pyproject.toml"])["project"]
    site = tmp_path / "site"
    (site / "skebm_rwm").mkdir(parents=True)
    for path, source in files.items():
        if path.startswith("src/"):
            (site / path.removeprefix("src/")).write_text(source)
    write_distribution(
        site, project["name"], project["version"], project["entry-points"]["skebm"], {}
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("SKEBM_DISABLE_PLUGIN_AUTOLOAD")
    try:
        registry = Registry(strict=True)
        sampler_cls = registry.get("sampler", "rwm")
        record = next(c for c in registry.components("sampler") if c.name == "rwm")
        assert (record.distribution, record.version) == ("skebm-rwm", "0.1.0")
        check_sampler(sampler_cls(), sklearn_checks=False)
        namespace = {}
        exec(compile(files["tests/test_rwm.py"], "test_rwm.py", "exec"), namespace)
        assert namespace["test_skebm_contract"].pytestmark[0].name == "parametrize"
    finally:
        for module in [m for m in sys.modules if m.startswith("skebm_rwm")]:
            del sys.modules[module]
        importlib.invalidate_caches()
