"""Plugins cannot take the host down: a distribution without a name, a plugin
that exits, one that prints, one whose hook looks names up while hooks run; each
is isolated with one PluginWarning (or PluginLoadError in strict mode), and the
CLI's JSON stays valid."""

import json
import os
import subprocess
import sys

import pytest

import skebm
from skebm.exceptions import PluginLoadError, PluginWarning
from skebm.plugins import Registry
from tests._helpers import GOOD_PLUGIN, write_distribution

HOSTILE = {
    "exits at import": "import sys\nsys.exit(3)\n",
    "exits in its hook": """
        import sys
        import skebm

        @skebm.hookimpl
        def skebm_register_samplers(register):
            sys.exit(4)
    """,
    "prints": """
        import skebm
        from skebm.samplers import Langevin
        print("hello from a plugin")

        @skebm.hookimpl
        def skebm_register_samplers(register):
            print("registering")
            register("printing", Langevin)
    """,
    "looks names up in its hook": """
        import skebm

        @skebm.hookimpl
        def skebm_register_samplers(register):
            register("again", skebm.plugins.get_registry().get("sampler", "mala"))
    """,
}


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SKEBM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    modules = []

    def install(name, source, *, metadata_name=True):
        module = f"skebm_{name.replace(' ', '_')}"
        modules.append(module)
        write_distribution(
            tmp_path, f"skebm-{module}", "1.0", {module: module}, {module: source}
        )
        if not metadata_name:
            dist_info = tmp_path / f"skebm_{module}-1.0.dist-info"
            (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nVersion: 1.0\n")
        return module

    yield install
    for module in modules:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_a_hostile_plugin_is_isolated_with_one_warning(site, hostile):
    site("good", GOOD_PLUGIN)
    site("hostile", HOSTILE[hostile])
    with pytest.warns(PluginWarning) if hostile != "prints" else _no_warning():
        samplers = {c.name for c in Registry().components("sampler")}
    assert {"langevin", "mala", "hmc", "good"} <= samplers


def test_strict_mode_raises_instead(site):
    site("hostile", HOSTILE["exits at import"])
    with pytest.raises(PluginLoadError, match="SystemExit"):
        Registry(strict=True)


def test_a_distribution_without_a_name_is_skipped_with_a_warning(site):
    site("good", GOOD_PLUGIN)
    site("nameless", GOOD_PLUGIN.replace('"good"', '"nameless"'), metadata_name=False)
    with pytest.warns(PluginWarning, match="no Name"):
        registry = Registry()
    samplers = {c.name for c in registry.components("sampler")}
    assert "good" in samplers and "nameless" not in samplers


def test_the_cli_prints_valid_json_whatever_plugins_do(site, tmp_path):
    for name, source in HOSTILE.items():
        site(name, source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    env.pop("SKEBM_DISABLE_PLUGIN_AUTOLOAD", None)
    done = subprocess.run(
        [sys.executable, "-m", "skebm", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    listed = json.loads(done.stdout)
    names = {c["name"] for c in listed["components"]}
    assert "printing" in names
    assert "hello from a plugin" in done.stderr


class _no_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error", PluginWarning)

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        return False


def test_skebm_still_fits_with_them_installed(site):
    for name, source in HOSTILE.items():
        site(name, source)
    skebm.plugins.reset_registry()
    with pytest.warns(PluginWarning):
        names = {c.name for c in skebm.list_samplers()}
    assert "printing" in names
