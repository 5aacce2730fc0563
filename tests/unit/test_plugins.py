"""The registry: built-ins through hooks, guarded loading, collisions, messages.

Unit tests use private registries with in-memory plugins; the entry-point tests
write real ``*.dist-info`` folders under ``tmp_path`` and put them on ``sys.path``,
so ``importlib.metadata`` finds them exactly as it finds installed packages.
"""

import sys
import warnings

import pytest

import skebm
from skebm.exceptions import (
    AmbiguousComponentError,
    PluginLoadError,
    PluginWarning,
    UnknownComponentError,
)
from skebm.losses import NoiseContrastiveEstimation
from skebm.plugins import Registry, get_registry
from skebm.samplers import Langevin
from tests._helpers import GOOD_PLUGIN, write_distribution


class ToySampler(Langevin):
    """A sampler shipped by a test plugin."""


class OtherToySampler(Langevin):
    """Another plugin's sampler with the same name."""


def _plugin(hook, *pairs):
    """An in-memory plugin object implementing one registration hook."""

    class Plugin:
        pass

    def impl(register):
        for name, cls in pairs:
            register(name, cls)

    impl.__name__ = hook
    setattr(Plugin, hook, staticmethod(skebm.hookimpl(impl)))
    return Plugin()


def test_builtins_are_registered_through_the_hooks():
    registry = Registry(load_entry_points=False)
    builtins = [p for p in registry.plugins if p.status == "builtin"]
    assert {p.name for p in builtins} == {
        "skebm.losses._builtin",
        "skebm.samplers._builtin",
        "skebm.energies._builtin",
    }
    assert registry.get("loss", "nce") is NoiseContrastiveEstimation
    assert registry.get("sampler", "skebm:langevin") is Langevin
    names = {c.name for c in registry.components("sampler")}
    assert {"langevin", "mala"} <= names


def test_list_functions_return_records():
    record = next(c for c in skebm.list_samplers() if c.name == "langevin")
    assert record.cls is Langevin
    assert record.distribution == "skebm" and record.version == skebm.__version__
    assert record.plugin == "skebm.samplers._builtin"
    assert record.as_dict()["class"] == "skebm.samplers.langevin.Langevin"
    assert "nce" in [c.name for c in skebm.list_losses()]
    assert "mlp" in [c.name for c in skebm.list_energies()]


def test_in_memory_plugin_is_found_by_name():
    registry = Registry(load_entry_points=False)
    registry.add_plugin(
        _plugin("skebm_register_samplers", ("toy", ToySampler)),
        "toy-plugin",
        version="1.2",
    )
    assert registry.get("sampler", "toy") is ToySampler
    assert registry.get("sampler", "toy-plugin:toy") is ToySampler
    info = next(p for p in registry.plugins if p.name == "toy-plugin")
    assert info.components == ["sampler:toy"] and info.status == "loaded"


def _add_two_toy_samplers(registry) -> None:
    """Two plugins, ``dist-a`` 1 and ``dist-b`` 2, each registering sampler "toy"."""
    for dist, version, cls in (
        ("dist-a", "1", ToySampler),
        ("dist-b", "2", OtherToySampler),
    ):
        registry.add_plugin(
            _plugin("skebm_register_samplers", ("toy", cls)), dist, version=version
        )


def test_two_plugins_claiming_a_name_make_it_ambiguous():
    registry = Registry(load_entry_points=False)
    _add_two_toy_samplers(registry)
    with pytest.raises(AmbiguousComponentError) as info:
        registry.get("sampler", "toy")
    message = str(info.value)
    assert "'dist-a:toy' (dist-a 1)" in message
    assert "'dist-b:toy' (dist-b 2)" in message
    assert registry.get("sampler", "dist-b:toy") is OtherToySampler


def test_builtin_names_are_reserved():
    registry = Registry(load_entry_points=False)
    registry.add_plugin(
        _plugin("skebm_register_samplers", ("langevin", ToySampler)), "squatter"
    )
    with pytest.warns(PluginWarning, match="reserved by skebm's built-in"):
        assert registry.get("sampler", "langevin") is Langevin
    assert registry.get("sampler", "squatter:langevin") is ToySampler


def test_a_hook_that_raises_is_isolated_and_attributed():
    class Broken:
        @staticmethod
        @skebm.hookimpl
        def skebm_register_samplers(register):
            register("half", ToySampler)
            raise RuntimeError("boom")

    registry = Registry(load_entry_points=False)
    registry.add_plugin(Broken(), "broken", version="0.1")
    registry.add_plugin(_plugin("skebm_register_samplers", ("toy", ToySampler)), "ok")
    with pytest.warns(
        PluginWarning,
        match=r"'broken' \(broken 0.1\) raised in "
        r"skebm_register_samplers: RuntimeError: boom",
    ):
        assert registry.get("sampler", "toy") is ToySampler
    with pytest.raises(UnknownComponentError, match="failed to load: broken 0.1"):
        registry.get("sampler", "half")


def test_strict_mode_raises():
    class Broken:
        @staticmethod
        @skebm.hookimpl
        def skebm_register_samplers(register):
            raise RuntimeError("boom")

    registry = Registry(load_entry_points=False, strict=True)
    registry.add_plugin(Broken(), "broken")
    with pytest.raises(PluginLoadError, match="boom"):
        registry.get("sampler", "langevin")


def test_misspelled_hook_is_reported():
    with pytest.warns(
        PluginWarning,
        match="unknown hook 'skebm_register_sampler'.*"
        "Did you mean 'skebm_register_samplers'",
    ):
        Registry(load_entry_points=False).add_plugin(
            _plugin("skebm_register_sampler", ("toy", ToySampler)), "typo"
        )


def test_invalid_components_are_rejected():
    registry = Registry(load_entry_points=False)
    registry.add_plugin(
        _plugin(
            "skebm_register_losses",
            ("bad:name", NoiseContrastiveEstimation),
            ("not-a-loss", ToySampler),
        ),
        "sloppy",
    )
    with pytest.warns(PluginWarning) as record:
        names = {c.name for c in registry.components("loss")}
    messages = " ".join(str(w.message) for w in record)
    assert "'bad:name'" in messages and "not a subclass of BaseLoss" in messages
    assert "bad:name" not in names and "not-a-loss" not in names


# -- entry points -----------------------------------------------------------------


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SKEBM_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    yield tmp_path
    for module in ("skebm_good_plugin", "skebm_broken_plugin"):
        sys.modules.pop(module, None)


def _install_good(site):
    """A working plugin distribution: ``skebm-good 1.0``, sampler ``"good"``."""
    write_distribution(
        site,
        "skebm-good",
        "1.0",
        {"good": "skebm_good_plugin"},
        {"skebm_good_plugin": GOOD_PLUGIN},
    )


def _install_broken(site):
    """A distribution whose entry point raises on import: ``skebm-broken 0.3``."""
    write_distribution(
        site,
        "skebm-broken",
        "0.3",
        {"broken": "skebm_broken_plugin"},
        {"skebm_broken_plugin": "raise ImportError('missing dep')"},
    )


def _install_good_and_broken(site):
    _install_good(site)
    _install_broken(site)


def test_entry_point_plugins_load_and_a_broken_one_only_warns(site):
    _install_good_and_broken(site)
    with pytest.warns(PluginWarning) as record:
        registry = Registry()
    assert len(record) == 1
    message = str(record[0].message)
    assert (
        "'broken' (skebm-broken 0.3) failed to import: ImportError: missing dep"
        in message
    )
    assert registry.get("sampler", "good").__name__ == "GoodSampler"
    good = next(c for c in registry.components("sampler") if c.name == "good")
    assert (good.distribution, good.version) == ("skebm-good", "1.0")


def test_estimator_uses_entry_point_plugin(site, moons):
    from tests._helpers import small_estimator

    _install_good(site)
    est = small_estimator(sampler="good", random_state=0).fit(moons)
    assert type(est.sampler_).__name__ == "GoodSampler"
    assert est.sample(3, random_state=0).shape == (3, 2)


def test_strict_env_raises_on_broken_plugin(site, monkeypatch):
    _install_broken(site)
    monkeypatch.setenv("SKEBM_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="skebm-broken 0.3"):
        get_registry()


def test_disable_autoload_env(site, monkeypatch):
    _install_good(site)
    monkeypatch.setenv("SKEBM_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(
        UnknownComponentError, match="not loaded because SKEBM_DISABLE_PLUGIN_AUTOLOAD"
    ):
        get_registry().get("sampler", "good")


def test_allowlist_env(site, monkeypatch):
    _install_good_and_broken(site)
    monkeypatch.setenv("SKEBM_LOAD_PLUGINS", "skebm-good")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the broken plugin is not even imported
        assert get_registry().get("sampler", "good").__name__ == "GoodSampler"


def test_duplicate_entry_point_names_are_reported_not_dropped(site):
    _install_good(site)
    write_distribution(
        site,
        "skebm-good-fork",
        "2.0",
        {"good": "skebm_good_fork"},
        {"skebm_good_fork": GOOD_PLUGIN},
    )
    with pytest.warns(PluginWarning, match="entry point 'good'.*same name"):
        registry = Registry()
    with pytest.raises(AmbiguousComponentError, match="skebm-good-fork:good"):
        registry.get("sampler", "good")
    sys.modules.pop("skebm_good_fork", None)


def test_loading_is_lazy(site):
    """Importing skebm and building estimators loads no plugin; lookup does."""
    import subprocess

    _install_broken(site)
    code = (
        "import warnings; warnings.simplefilter('error');"
        "import skebm; skebm.EnergyDensityEstimator(sampler='whatever');"
        "print('ok')"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    env.pop("SKEBM_DISABLE_PLUGIN_AUTOLOAD", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "ok"


# -- messages -----------------------------------------------------------------------


def test_unknown_name_lists_what_is_available_and_what_failed():
    class Broken:
        @staticmethod
        @skebm.hookimpl
        def skebm_register_samplers(register):
            raise RuntimeError("boom")

    registry = Registry(load_entry_points=False)
    registry.add_plugin(
        _plugin("skebm_register_samplers", ("toy", ToySampler)),
        "toy-plugin",
        distribution="skebm-toy",
        version="1.2",
    )
    registry.add_plugin(Broken(), "broken", distribution="skebm-broken", version="0.1")
    with pytest.warns(PluginWarning, match="boom"):
        registry.components("sampler")
    with pytest.raises(UnknownComponentError) as info:
        registry.get("sampler", "tyo")
    message = str(info.value)
    assert message.startswith("Unknown sampler 'tyo'. Available samplers: ")
    assert f"'langevin' (skebm {skebm.__version__})" in message
    assert "'toy' (skebm-toy 1.2)" in message
    assert "Did you mean 'toy'?" in message
    assert (
        "Plugins that failed to load: skebm-broken 0.1 (RuntimeError: boom)" in message
    )


def test_unknown_qualified_name_is_reported():
    with pytest.raises(UnknownComponentError, match="Unknown loss 'other:nce'"):
        Registry(load_entry_points=False).get("loss", "other:nce")


def test_estimator_reports_ambiguous_names_and_accepts_qualified_ones(moons):
    from tests._helpers import small_estimator

    registry = get_registry()
    _add_two_toy_samplers(registry)
    with pytest.raises(AmbiguousComponentError) as info:
        small_estimator(sampler="toy").fit(moons)
    assert str(info.value) == (
        "The sampler name 'toy' is registered by several plugins: 'dist-a:toy' "
        "(dist-a 1), 'dist-b:toy' (dist-b 2). Pass one of these qualified names "
        "instead."
    )
    est = small_estimator(sampler="dist-b:toy", random_state=0).fit(moons)
    assert type(est.sampler_) is OtherToySampler


def test_plugin_without_marked_hooks_is_reported():
    class Unmarked:
        @staticmethod
        def skebm_register_samplers(register):
            register("toy", ToySampler)

    with pytest.warns(
        PluginWarning,
        match="implements no skebm hook.*skebm_register_samplers is defined but "
        "not marked with @skebm.hookimpl",
    ):
        Registry(load_entry_points=False).add_plugin(Unmarked(), "unmarked")


def test_hook_with_wrong_arguments_is_reported():
    class WrongArguments:
        @staticmethod
        @skebm.hookimpl
        def skebm_register_samplers(add):
            add("toy", ToySampler)

    with pytest.warns(
        PluginWarning,
        match=r"could not be registered: PluginValidationError: "
        r".*Argument\(s\) \{'add'\} are declared in the hookimpl",
    ):
        Registry(load_entry_points=False).add_plugin(WrongArguments(), "wrong")


def test_a_repeated_problem_warns_once():
    registry = Registry(load_entry_points=False)
    registry.add_plugin(
        _plugin("skebm_register_samplers", ("langevin", ToySampler)), "squatter"
    )
    with pytest.warns(PluginWarning) as record:
        registry.components("sampler")
        registry.add_plugin(
            _plugin("skebm_register_losses", ("toy-loss", NoiseContrastiveEstimation)),
            "other",
        )
        registry.components("sampler")
    assert len(record) == 1


# -- broken packages beside working ones (entry points) ------------------------------


def test_a_fit_with_a_working_plugin_survives_a_broken_one(site, moons):
    from tests._helpers import small_estimator

    _install_good_and_broken(site)
    with pytest.warns(PluginWarning) as record:
        est = small_estimator(sampler="good", random_state=0).fit(moons)
    assert [str(w.message) for w in record] == [
        "skebm plugin 'broken' (skebm-broken 0.3) failed to import: ImportError: "
        "missing dep. Other plugins are unaffected; set SKEBM_STRICT_PLUGINS=1 to "
        "raise instead."
    ]
    assert type(est.sampler_).__name__ == "GoodSampler"
    assert est.sample(5, random_state=0).shape == (5, 2)


def test_strict_mode_makes_the_fit_raise(site, monkeypatch, moons):
    from tests._helpers import small_estimator

    _install_good_and_broken(site)
    monkeypatch.setenv("SKEBM_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match=r"'broken' \(skebm-broken 0.3\)"):
        small_estimator(sampler="good").fit(moons)


def test_allowlist_naming_nothing_installed_is_reported(site, monkeypatch):
    _install_good_and_broken(site)
    monkeypatch.setenv("SKEBM_LOAD_PLUGINS", "skebm-god")
    with pytest.warns(
        PluginWarning,
        match=r"SKEBM_LOAD_PLUGINS names 'skebm-god', which matches no installed "
        r"skebm plugin\. Installed entry points: .*good \(skebm-good\)",
    ):
        get_registry()


def test_trace_prints_loading_and_registration(site, monkeypatch, capsys):
    _install_good(site)
    monkeypatch.setenv("SKEBM_TRACE_PLUGINS", "1")
    get_registry().get("sampler", "good")
    err = capsys.readouterr().err
    assert "[skebm plugins] loading entry point 'good' of skebm-good 1.0" in err
    assert (
        "[skebm plugins] skebm_register_samplers of 'good' (skebm-good) "
        "registered ['good']" in err
    )


# -- python -m skebm plugins ----------------------------------------------------------


def test_cli_lists_plugins_versions_and_failures(site, capsys):
    import json

    from skebm.__main__ import main

    _install_good_and_broken(site)
    with pytest.warns(PluginWarning, match="skebm-broken"):
        assert main(["plugins"]) == 0
    listing = json.loads(capsys.readouterr().out)
    plugins = {p["distribution"]: p for p in listing["plugins"]}
    assert plugins["skebm-good"]["version"] == "1.0"
    assert plugins["skebm-good"]["status"] == "loaded"
    assert plugins["skebm-good"]["components"] == ["sampler:good"]
    assert plugins["skebm-broken"]["status"] == "failed"
    assert plugins["skebm-broken"]["error"] == "ImportError: missing dep"
    assert "skebm" not in plugins  # built-ins only with --all
    good = next(c for c in listing["components"] if c["name"] == "good")
    assert good["class"] == "skebm_good_plugin.GoodSampler"
    assert good["qualified_name"] == "skebm-good:good"


def test_cli_all_includes_builtins(capsys):
    import json

    from skebm.__main__ import main

    assert main(["plugins", "--all"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {p["status"] for p in listing["plugins"]} == {"builtin"}
    names = {(c["kind"], c["name"]) for c in listing["components"]}
    assert {("sampler", "langevin"), ("loss", "nce"), ("energy", "mlp")} <= names


def test_unknown_name_lists_plugins_that_failed_to_import(site):
    _install_good_and_broken(site)
    with pytest.warns(PluginWarning, match="skebm-broken"):
        registry = Registry()
    with pytest.raises(UnknownComponentError) as info:
        registry.get("loss", "no-such-loss")
    assert str(info.value).endswith(
        "Plugins that failed to load: skebm-broken 0.3 (ImportError: missing dep)."
    )
