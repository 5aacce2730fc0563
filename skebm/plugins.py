"""The plugin loader and registry: built-in and third-party losses, samplers and
energies.

Components are registered through the pluggy hooks of :mod:`skebm.hookspecs`.
skebm's own components come from internal default plugins registered through the
same hooks; third-party ones from entry points in the group ``skebm``.

Loading is lazy (the first lookup, never ``import skebm``) and guarded: entry points
are loaded one at a time, and a plugin that fails to import or whose hook raises is
reported by one :class:`~skebm.exceptions.PluginWarning` naming its distribution,
version and error, while every other plugin still loads. Environment variables:

``SKEBM_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry point (built-ins only);
``SKEBM_LOAD_PLUGINS=a,b``
    load only these entry points or distributions;
``SKEBM_STRICT_PLUGINS=1``
    raise :class:`~skebm.exceptions.PluginLoadError` instead of warning;
``SKEBM_TRACE_PLUGINS=1``
    print every entry point loaded and every hook call, with what it
    registered, to stderr.

This module loads plugins and calls their hooks; :mod:`skebm._component_index`
holds what they registered and its naming policy. Name collisions are never
silent. Built-in names are reserved: a plugin component
with a built-in's name is reachable only by its qualified name
``"<distribution>:<name>"``. When two plugins register one name, the bare name is
ambiguous and looking it up raises an error listing the qualified names that work.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from skebm import hookspecs
from skebm._component_index import (
    BUILTIN_DISTRIBUTION,
    COMPONENT_KINDS,
    Component,
    ComponentIndex,
    ComponentKind,
    check_kind,
    normalise,
    registration_problem,
)
from skebm._version import __version__
from skebm.exceptions import (
    PluginLoadError,
    PluginWarning,
)

__all__ = [
    "COMPONENT_KINDS",
    "Component",
    "ComponentKind",
    "PluginInfo",
    "Registry",
    "get_registry",
    "list_energies",
    "list_losses",
    "list_samplers",
    "reset_registry",
]

ENTRY_POINT_GROUP = "skebm"

#: Modules holding skebm's own hook implementations, registered like any plugin.
BUILTIN_PLUGINS = (
    "skebm.losses._builtin",
    "skebm.samplers._builtin",
    "skebm.energies._builtin",
)


#: What a plugin may raise without taking the host down: any error, and
#: ``SystemExit`` (a plugin calling ``sys.exit``); ``KeyboardInterrupt`` still
#: interrupts.
_PLUGIN_ERRORS = (Exception, SystemExit)


@dataclass
class PluginInfo:
    """What happened to one plugin: where it came from and whether it loaded."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # "builtin", "loaded" or "failed"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "hooks": list(self.hooks),
            "components": list(self.components),
        }

    def _describe(self) -> str:
        dist = self.distribution or self.name
        version = f" {self.version}" if self.version else ""
        return f"{dist}{version} ({self.error})"

    def _origin(self) -> str:
        """``'name' (distribution version)``, for messages."""
        where = " ".join(str(p) for p in (self.distribution, self.version) if p)
        return f"{self.name!r} ({where})"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """Plugins and the components they register.

    Most code uses the process-wide registry through :func:`get_registry`. Tests and
    notebooks can build a private one, add in-memory plugins with
    :meth:`add_plugin`, and look components up with :meth:`get`.

    Parameters
    ----------
    load_entry_points : bool, default=None
        Load third-party plugins from entry points of the group ``skebm``. ``None``
        reads ``SKEBM_DISABLE_PLUGIN_AUTOLOAD``.
    strict : bool, default=None
        Raise :class:`~skebm.exceptions.PluginLoadError` when a plugin fails instead
        of warning. ``None`` reads ``SKEBM_STRICT_PLUGINS``.
    allowlist : iterable of str, default=None
        Load only these entry-point or distribution names. ``None`` reads
        ``SKEBM_LOAD_PLUGINS`` (comma-separated); unset means all.

    Examples
    --------
    >>> from skebm.plugins import Registry
    >>> registry = Registry(load_entry_points=False)
    >>> registry.get("sampler", "langevin").__name__
    'Langevin'
    """

    def __init__(
        self,
        *,
        load_entry_points: bool | None = None,
        strict: bool | None = None,
        allowlist: list[str] | None = None,
    ):
        if load_entry_points is None:
            load_entry_points = not _env_flag("SKEBM_DISABLE_PLUGIN_AUTOLOAD")
        if strict is None:
            strict = _env_flag("SKEBM_STRICT_PLUGINS")
        if allowlist is None and os.environ.get("SKEBM_LOAD_PLUGINS", "").strip():
            allowlist = os.environ["SKEBM_LOAD_PLUGINS"].split(",")
        self.strict = strict
        self.autoload = load_entry_points
        self.allowlist = (
            None
            if allowlist is None
            else {normalise(a.strip()) for a in allowlist if a.strip()}
        )
        self.trace = _env_flag("SKEBM_TRACE_PLUGINS")
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._warned: set[str] = set()
        self._plugins: dict[str, PluginInfo] = {}
        self._index: ComponentIndex | None = None
        self._collecting = False
        for module_name in BUILTIN_PLUGINS:
            self._register(
                importlib.import_module(module_name),
                key=module_name,
                info=PluginInfo(
                    module_name, BUILTIN_DISTRIBUTION, __version__, "builtin"
                ),
            )
        if load_entry_points:
            self._load_entry_points()

    # -- loading -------------------------------------------------------------------

    def add_plugin(
        self,
        plugin: Any,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register an in-memory plugin object or module (guarded like entry points).

        Parameters
        ----------
        plugin : module or object
            Anything with functions marked by :data:`skebm.hookimpl`.
        name : str
            The plugin's name.
        distribution, version : str, optional
            Where the plugin claims to come from; ``distribution`` defaults to
            ``name`` and is the prefix of its components' qualified names.

        Returns
        -------
        info : PluginInfo
        """
        info = PluginInfo(name, distribution or name, version, "loaded")
        self._register(plugin, key=f"{info.distribution}/{name}", info=info)
        return info

    def _load_entry_points(self) -> None:
        seen: dict[str, str] = {}
        installed: list[str] = []
        allowed: set[str] = set()
        for ep, dist_name, version in self._entry_points():
            installed.append(f"{ep.name} ({dist_name})")
            names = {normalise(ep.name), normalise(dist_name)}
            if self.allowlist is not None:
                allowed |= names & self.allowlist
                if not names & self.allowlist:
                    self._trace(f"skipping entry point {ep.name!r}: not allowlisted")
                    continue
            info = PluginInfo(ep.name, dist_name, version, "loaded")
            if ep.name in seen:
                self._warn(
                    f"skebm plugin entry point {ep.name!r} of {dist_name} {version} "
                    f"has the same name as one of {seen[ep.name]}; both are loaded. "
                    f"Their components are told apart by qualified names "
                    f"('<distribution>:<name>')."
                )
            seen.setdefault(ep.name, dist_name)
            self._trace(f"loading entry point {ep.name!r} of {dist_name} {version}")
            key = f"{dist_name}/{ep.name}"
            try:
                plugin = ep.load()
            except _PLUGIN_ERRORS as exc:  # a broken plugin must not break skebm
                self._plugins[key] = info  # listed, with its error
                self._fail(info, exc, "failed to import")
                continue
            self._register(plugin, key=key, info=info)
        unmatched = sorted((self.allowlist or set()) - allowed)
        if unmatched:
            self._warn(
                f"SKEBM_LOAD_PLUGINS names {', '.join(map(repr, unmatched))}, which "
                "matches no installed skebm plugin. Installed entry points: "
                f"{', '.join(installed) or 'none'}."
            )

    def _entry_points(self) -> list[tuple[Any, str, str | None]]:
        """``(entry point, distribution name, version)`` of every installed entry
        point in the group, first distribution of a name on ``sys.path`` only (as
        ``importlib.metadata.entry_points`` does). Distributions whose metadata
        cannot be read, or has no name, are skipped with one warning each,
        instead of breaking the whole listing."""
        found, seen = [], set()
        for dist in importlib.metadata.distributions():
            try:
                name = dist.metadata.get("Name")
                points = [
                    ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP
                ]
                version = dist.version
            except Exception as exc:
                self._warn(
                    f"An installed distribution's metadata could not be read "
                    f"({type(exc).__name__}: {exc}); its skebm plugins, if any, are "
                    "skipped."
                )
                continue
            if not isinstance(name, str) or not name.strip():
                if points:
                    self._warn(
                        "An installed distribution declares skebm entry points "
                        f"{sorted(ep.name for ep in points)} but its METADATA has no "
                        "Name; they are skipped."
                    )
                continue
            if normalise(name) in seen:
                continue
            seen.add(normalise(name))
            found += [(ep, name, version) for ep in points]
        return found

    def _register(self, plugin: Any, *, key: str, info: PluginInfo) -> None:
        self._plugins[key] = info
        self._index = None
        try:
            self._pm.register(plugin, name=key)
        except _PLUGIN_ERRORS as exc:
            self._fail(info, exc, "could not be registered")
            return
        callers = self._pm.get_hookcallers(plugin) or []
        info.hooks = sorted(caller.name for caller in callers)
        if not callers and info.status != "builtin":
            unmarked = [
                k.hook for k in COMPONENT_KINDS.values() if hasattr(plugin, k.hook)
            ]
            hint = (
                f"{unmarked[0]} is defined but not marked with @skebm.hookimpl"
                if unmarked
                else "mark its hook functions with @skebm.hookimpl, e.g. "
                "def skebm_register_samplers(register)"
            )
            self._warn(
                f"skebm plugin {info._origin()} implements no skebm hook, so it "
                f"registers nothing: {hint}."
            )
        for caller in callers:
            if caller.spec is None:
                hint = difflib.get_close_matches(
                    caller.name, [k.hook for k in COMPONENT_KINDS.values()], n=1
                )
                suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
                self._warn(
                    f"skebm plugin {info._origin()} implements unknown hook "
                    f"{caller.name!r}; it will never be called.{suggestion}"
                )

    def _fail(self, info: PluginInfo, exc: BaseException, what: str) -> None:
        info.status = "failed"
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        info.error = f"{type(exc).__name__}: {'; '.join(lines)}"
        message = (
            f"skebm plugin {info._origin()} {what}: {info.error}. Other plugins are "
            "unaffected; set SKEBM_STRICT_PLUGINS=1 to raise instead."
        )
        if self.strict:
            raise PluginLoadError(message) from exc
        warnings.warn(message, PluginWarning, stacklevel=4)

    def _warn(self, message: str) -> None:
        """Warn once per message (or raise in strict mode)."""
        if self.strict:
            raise PluginLoadError(message)
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, PluginWarning, stacklevel=4)

    def _trace(self, message: str) -> None:
        if self.trace:
            print(f"[skebm plugins] {message}", file=sys.stderr)

    # -- components ----------------------------------------------------------------

    def _collect(self) -> ComponentIndex:
        if self._index is not None:
            return self._index
        if self._collecting:
            raise PluginLoadError(
                "a skebm hook looked a component up while the plugins' hooks were "
                "being called; hooks must only call register(name, component)"
            )
        self._collecting = True
        try:
            self._index = self._build_index()
        finally:
            self._collecting = False
        return self._index

    def _build_index(self) -> ComponentIndex:
        collected: list[Component] = []
        for kind, hook_name in ((k.name, k.hook) for k in COMPONENT_KINDS.values()):
            hook = getattr(self._pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                info = self._plugins[impl.plugin_name]
                if info.status == "failed":
                    continue
                calls: list[tuple[Any, Any]] = []

                def register(name, component, _calls=calls):
                    _calls.append((name, component))

                try:
                    impl.function(**{arg: register for arg in impl.argnames})
                except _PLUGIN_ERRORS as exc:
                    self._fail(info, exc, f"raised in {hook_name}")
                    continue
                self._trace(
                    f"{hook_name} of {info.name!r} ({info.distribution}) registered "
                    f"{[name for name, _ in calls]}"
                )
                for name, component in calls:
                    if self._valid(kind, name, component, info):
                        collected.append(
                            Component(
                                kind,
                                name,
                                component,
                                info.name,
                                info.distribution,
                                info.version,
                            )
                        )
        failed = {
            (i.distribution, i.name)
            for i in self._plugins.values()
            if i.status == "failed"
        }
        kept = [c for c in collected if (c.distribution, c.plugin) not in failed]
        index = ComponentIndex(kept, warn=self._warn)
        for info in self._plugins.values():
            info.components = [
                f"{c.kind}:{c.name}"
                for c in collected
                if c.distribution == info.distribution and c.plugin == info.name
            ]
        return index

    def _valid(self, kind: str, name: Any, component: Any, info: PluginInfo) -> bool:
        problem = registration_problem(kind, name, component)
        if problem is None:
            return True
        self._warn(
            f"skebm plugin {info._origin()} tried to register {kind} {name!r}, "
            f"which was rejected: {problem}."
        )
        return False

    def components(self, kind: str) -> list[Component]:
        """All components of one kind, built-ins first."""
        return self._collect().components(kind)

    def get(self, kind: str, name: str) -> Any:
        """The class (or factory) registered as ``name``.

        ``name`` is a bare name (``"langevin"``) or a qualified one
        (``"skebm:langevin"``, ``"<distribution>:<name>"``).

        Raises
        ------
        UnknownComponentError
            No component has this name; the message lists those available, the
            plugins that failed to load and the environment that kept any out.
        AmbiguousComponentError
            Several plugins registered this name; the message lists the qualified
            names to use instead.
        """
        check_kind(kind)
        return self._collect().get(kind, name, why_missing=self._why_missing())

    def _why_missing(self) -> str:
        """What kept components out: failed plugins, the environment."""
        message = ""
        failed = [i for i in self._plugins.values() if i.status == "failed"]
        if failed:
            message += " Plugins that failed to load: " + "; ".join(
                i._describe() for i in failed
            )
            message += "."
        if not self.autoload:
            message += (
                " Third-party plugins were not loaded because "
                "SKEBM_DISABLE_PLUGIN_AUTOLOAD is set."
            )
        elif self.allowlist is not None:
            message += (
                " Only the plugins named in SKEBM_LOAD_PLUGINS were loaded: "
                f"{', '.join(sorted(self.allowlist)) or 'none'}."
            )
        return message

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, built-ins first, with status and errors."""
        self._collect()
        return list(self._plugins.values())


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built (and plugins loaded) on first call."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the process-wide registry; the next lookup reloads every plugin.

    Useful after installing a plugin in a running interpreter, or after changing
    the ``SKEBM_*`` environment variables.
    """
    global _REGISTRY
    _REGISTRY = None


def list_losses() -> list[Component]:
    """Every registered loss, built-ins first.

    Examples
    --------
    >>> from skebm import list_losses
    >>> "nce" in [c.name for c in list_losses()]
    True
    """
    return get_registry().components("loss")


def list_samplers() -> list[Component]:
    """Every registered sampler, built-ins first.

    Examples
    --------
    >>> from skebm import list_samplers
    >>> "langevin" in [c.name for c in list_samplers()]
    True
    """
    return get_registry().components("sampler")


def list_energies() -> list[Component]:
    """Every registered energy, built-ins first."""
    return get_registry().components("energy")
