"""Turn the estimator's ``loss``/``sampler``/``energy`` parameters into components.

Each may be a registered name with a ``*_params`` dict, or an object: a strategy
instance (cloned), an ``nn.Module`` instance (deep-copied), an ``nn.Module`` class
or a factory ``f(n_features, **params)``. Parameters are never mutated; errors
name the parameter, list what is valid and suggest the closest spelling.
"""

from __future__ import annotations

import copy
import difflib
import inspect

import torch
from sklearn.base import clone
from torch import nn

from skebm.plugins import COMPONENT_KINDS, get_registry
from skebm.utils._sklearn_compat import InvalidParameterError
from skebm.utils._torch import seeded_construction

__all__ = [
    "build_energy",
    "check_energy_output",
    "construct_energy",
    "describe_energy",
    "resolve_strategy",
]


def _check_keys(params: dict, valid: list[str], *, owner: str, target: str) -> None:
    unknown = [key for key in params if key not in valid]
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InvalidParameterError(
        f"{owner} got an unexpected key {key!r} for {target}.{hint} "
        f"Valid keys: {', '.join(sorted(valid)) or 'none'}."
    )


def resolve_strategy(spec, params: dict | None, *, kind: str):
    """A fresh, validated strategy instance for a ``loss`` or ``sampler`` parameter.

    Parameters
    ----------
    spec : str or strategy instance
        A registered (bare or qualified) name, or an instance (cloned).
    params : dict or None
        Constructor parameters for a name; must be empty for an instance.
    kind : {"loss", "sampler"}
        A kind of :data:`skebm.plugins.COMPONENT_KINDS` with a base class.
    """
    base_class = COMPONENT_KINDS[kind].base_class
    owner = f"{kind}_params"
    if isinstance(spec, str):
        cls = get_registry().get(kind, spec)
        params = dict(params or {})
        _check_keys(
            params,
            cls._get_param_names(),
            owner=owner,
            target=f"{kind}={spec!r} ({cls.__name__})",
        )
        strategy = cls(**params)
    elif isinstance(spec, base_class):
        if params:
            raise ValueError(
                f"{owner} can only be used with a registered {kind} name; set "
                f"parameters on the {type(spec).__name__} instance instead."
            )
        strategy = clone(spec)
    else:
        raise TypeError(
            f"{kind} must be a registered name or a {base_class.__name__} instance, "
            f"got {spec!r}."
        )
    strategy._validate_params()
    return strategy


def _accepted_keywords(factory) -> list[str] | None:
    """Keyword names ``factory`` accepts besides ``n_features`` (None: any)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    names = []
    for i, param in enumerate(signature.parameters.values()):
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if i == 0 or param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        names.append(param.name)
    return names


def construct_energy(spec, params: dict | None, *, n_features: int) -> nn.Module:
    """Construct the energy named or made by ``spec`` for ``n_features`` inputs.

    ``spec`` is a registered name, an ``nn.Module`` class or a factory
    ``f(n_features, **params)``; module *instances* are the caller's business
    (:func:`build_energy` deep-copies them, a
    :class:`~skebm.energies.CompositeEnergy` holds them). ``params`` is
    deep-copied first, so a module passed inside it is never trained in place.
    Misspelled keys get a "Did you mean" error. Uses the global torch RNG for
    weights, like any module construction; see :func:`build_energy`.
    """
    params = copy.deepcopy(dict(params or {}))
    if isinstance(spec, str):
        factory = get_registry().get("energy", spec)
    elif callable(spec) and not isinstance(spec, nn.Module):
        factory = spec
    else:
        raise TypeError(
            "energy must be a registered name, an nn.Module class or instance, "
            f"or a factory f(n_features, **energy_params); got {spec!r}."
        )
    description = describe_energy(spec)
    accepted = _accepted_keywords(factory)
    if accepted is not None:
        _check_keys(params, accepted, owner="energy_params", target=description)
    module = factory(n_features, **params)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"{description} must produce a torch.nn.Module, got "
            f"{type(module).__name__}."
        )
    return module


def describe_energy(spec) -> str:
    """How an energy specification is named in error messages."""
    if isinstance(spec, nn.Module):
        return f"the {type(spec).__name__} instance"
    if isinstance(spec, str):
        return f"energy={spec!r}"
    return f"energy={getattr(spec, '__name__', spec)!r}"


def check_energy_output(
    module: nn.Module,
    *,
    n_features: int,
    description: str,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Raise a clear ValueError unless ``module`` maps ``(2, d)`` to ``(2,)``.

    The probe batch is zeros on ``device``/``dtype`` (by default those of the
    module's first parameter or buffer, else torch's defaults).
    """
    reference = next(iter([*module.parameters(), *module.buffers()]), None)
    if device is None:
        device = reference.device if reference is not None else torch.device("cpu")
    if dtype is None:
        floating = reference is not None and reference.is_floating_point()
        dtype = reference.dtype if floating else torch.get_default_dtype()
    with torch.no_grad():
        probe = module(torch.zeros((2, n_features), device=device, dtype=dtype))
    if not isinstance(probe, torch.Tensor) or tuple(probe.shape) != (2,):
        shape = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe)
        raise ValueError(
            f"{description} must map a (batch, {n_features}) tensor to a (batch,) "
            f"tensor of energies; for a batch of 2 it returned {shape}. Squeeze the "
            "last dimension of a (batch, 1) output."
        )


def build_energy(
    spec,
    params: dict | None,
    *,
    n_features: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> nn.Module:
    """Build the energy network for ``n_features`` inputs on ``device``/``dtype``.

    An instance is deep-copied (never trained in place); anything else goes
    through :func:`construct_energy`, run with the global torch RNG seeded by
    ``seed`` and restored afterwards, so weights are reproducible and the
    caller's RNG is untouched. The output shape is checked on a probe batch.
    """
    if isinstance(spec, nn.Module):
        if params:
            raise ValueError(
                "energy_params can only be used when energy is a name, a class or a "
                "factory; configure the module instance directly."
            )
        module = copy.deepcopy(spec)
    else:
        with seeded_construction(seed):
            module = construct_energy(spec, params, n_features=n_features)
    module = module.to(device=device, dtype=dtype)
    check_energy_output(
        module,
        n_features=n_features,
        description=describe_energy(spec),
        device=device,
        dtype=dtype,
    )
    return module
