"""The component index: names, collisions, look-up, did-you-mean.

:class:`ComponentIndex` holds what the plugins registered (see
:mod:`skebm.plugins`, which loads them) and applies skebm's naming policy:
built-in names are reserved (a plugin component with a built-in's name is
reachable only by its qualified name ``"<distribution>:<name>"``), and a bare
name registered by two plugins is ambiguous. :data:`COMPONENT_KINDS` is the one
table of component kinds that the registry, the model files, the command line
and the estimator's parameters iterate.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skebm.exceptions import AmbiguousComponentError, UnknownComponentError

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "COMPONENT_KINDS",
    "Component",
    "ComponentIndex",
    "ComponentKind",
    "check_kind",
    "normalise",
    "registration_problem",
]

BUILTIN_DISTRIBUTION = "skebm"


@dataclass(frozen=True)
class ComponentKind:
    """A kind of component that plugins register: every site that handles
    components (the registry, the model files, the command line, the
    estimator's parameters) iterates :data:`COMPONENT_KINDS`."""

    #: The estimator parameter that names one (``loss``, ``sampler``, ``energy``).
    name: str
    #: Used in messages and by ``list_<plural>``.
    plural: str
    #: The hook that registers them (see :mod:`skebm.hookspecs`).
    hook: str
    #: What a registered class must subclass, as ``"module:Class"`` (by name:
    #: the strategies' modules import the registry's users); None: any class or
    #: factory.
    base_class_path: str | None

    @property
    def base_class(self) -> type | None:
        """The class :attr:`base_class_path` names, or None."""
        if self.base_class_path is None:
            return None
        module, _, name = self.base_class_path.partition(":")
        return getattr(importlib.import_module(module), name)


#: Every kind, by name.
COMPONENT_KINDS = {
    kind.name: kind
    for kind in (
        ComponentKind(
            name="loss",
            plural="losses",
            hook="skebm_register_losses",
            base_class_path="skebm.losses:BaseLoss",
        ),
        ComponentKind(
            name="sampler",
            plural="samplers",
            hook="skebm_register_samplers",
            base_class_path="skebm.samplers:BaseSampler",
        ),
        ComponentKind(
            name="energy",
            plural="energies",
            hook="skebm_register_energies",
            base_class_path=None,
        ),
    )
}


def check_kind(kind: str) -> None:
    """Raise unless ``kind`` is one of :data:`COMPONENT_KINDS`."""
    if kind not in COMPONENT_KINDS:
        raise ValueError(
            f"kind must be one of {sorted(COMPONENT_KINDS)}, got {kind!r}."
        )


_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def normalise(name: str) -> str:
    """A distribution or entry-point name, compared case- and separator-blind."""
    return re.sub(r"[-_.]+", "-", name).lower()


def registration_problem(kind: str, name: Any, component: Any) -> str | None:
    """Why ``register(name, component)`` is refused for ``kind``, or None."""
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        return (
            f"the name {name!r} is not valid (letters, digits, '-', '_', '.'; no ':')"
        )
    base = COMPONENT_KINDS[kind].base_class
    if base is not None and not (
        isinstance(component, type) and issubclass(component, base)
    ):
        return f"{component!r} is not a subclass of {base.__name__}"
    if base is None and not callable(component):
        return f"{component!r} is not callable"
    return None


@dataclass(frozen=True)
class Component:
    """A registered loss, sampler or energy.

    Attributes
    ----------
    kind : {"loss", "sampler", "energy"}
    name : str
        The bare name users pass, e.g. ``"langevin"``.
    cls : type or callable
        The strategy class (or, for energies, a module class or factory).
    plugin : str
        The plugin that registered it (an entry-point name, or a built-in module).
    distribution : str
        The distribution that ships the plugin (``"skebm"`` for built-ins).
    version : str or None
        That distribution's version.
    """

    kind: str
    name: str
    cls: Any
    plugin: str
    distribution: str
    version: str | None

    @property
    def qualified_name(self) -> str:
        """``"<distribution>:<name>"``, unique even when bare names collide."""
        return f"{self.distribution}:{self.name}"

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description."""
        cls = self.cls
        qualname = getattr(cls, "__qualname__", None)
        return {
            "kind": self.kind,
            "name": self.name,
            "qualified_name": self.qualified_name,
            "class": f"{cls.__module__}.{qualname}" if qualname else repr(cls),
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
        }

    def _describe(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"'{self.name}' ({self.distribution}{version})"


class ComponentIndex:
    """The registered components by kind and bare name, built-ins first.

    Parameters
    ----------
    components : list of Component
        In registration order (built-ins first).
    warn : callable
        Called with a message for every registration the policy sets aside (a
        duplicate, a plugin's use of a built-in name).
    """

    def __init__(self, components: list[Component], *, warn: Callable[[str], None]):
        self._by_kind: dict[str, dict[str, list[Component]]] = {
            kind: {} for kind in COMPONENT_KINDS
        }
        qualified: set[tuple[str, str]] = set()
        for comp in components:
            if (comp.kind, comp.qualified_name) in qualified:
                warn(
                    f"{comp.distribution} registered {comp.kind} {comp.name!r} twice; "
                    "the second registration was ignored."
                )
                continue
            qualified.add((comp.kind, comp.qualified_name))
            by_name = self._by_kind[comp.kind].setdefault(comp.name, [])
            if by_name and by_name[0].builtin:
                warn(
                    f"skebm plugin {comp.plugin!r} ({comp.distribution}) registered "
                    f"{comp.kind} {comp.name!r}, a name reserved by skebm's built-in "
                    f"{comp.kind}; it is available only as {comp.qualified_name!r}."
                )
            by_name.append(comp)

    def components(self, kind: str) -> list[Component]:
        """All components of one kind, built-ins first."""
        check_kind(kind)
        return [c for comps in self._by_kind[kind].values() for c in comps]

    def get(self, kind: str, name: str, *, why_missing: str = "") -> Any:
        """The class (or factory) registered as ``name`` (bare or qualified);
        ``why_missing`` ends the message of an unknown name."""
        index = self._by_kind[kind]
        if ":" in name:
            dist, _, bare = name.partition(":")
            for comp in index.get(bare, []):
                if normalise(comp.distribution) == normalise(dist):
                    return comp.cls
            raise self._unknown(kind, name, why_missing)
        matches = index.get(name, [])
        if not matches:
            raise self._unknown(kind, name, why_missing)
        if matches[0].builtin:
            return matches[0].cls
        if len(matches) > 1:
            spellings = ", ".join(
                f"{c.qualified_name!r} ({c.distribution} {c.version})" for c in matches
            )
            raise AmbiguousComponentError(
                f"The {kind} name {name!r} is registered by several plugins: "
                f"{spellings}. Pass one of these qualified names instead."
            )
        return matches[0].cls

    def _unknown(self, kind: str, name: str, why_missing: str) -> UnknownComponentError:
        comps = self.components(kind)
        available = ", ".join(c._describe() for c in comps) or "none"
        message = (
            f"Unknown {kind} {name!r}. Available {COMPONENT_KINDS[kind].plural}: "
            f"{available}."
        )
        close = difflib.get_close_matches(
            name.partition(":")[2] or name, sorted({c.name for c in comps}), n=1
        )
        if close:
            message += f" Did you mean {close[0]!r}?"
        return UnknownComponentError(message + why_missing)
