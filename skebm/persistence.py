"""A safe file format for fitted estimators: loading one runs no code.

``pickle`` and ``joblib`` files can execute arbitrary code when loaded, so they
must only be loaded from trusted sources. :func:`save` writes a zip archive with
two members instead:

``skebm.json``
    the estimator's parameters and its plain fitted attributes (floats, arrays,
    lists) as JSON, plus the skebm version, the device and the components used;
``tensors.pt``
    the tensors (network weights, base density, loss state, optimiser state,
    random-generator state), written by ``torch.save`` and read back with
    ``torch.load(weights_only=True)``, whose restricted unpickler accepts tensors
    and plain containers only.

Nothing in the file names code to import. Losses, samplers and energies given as
objects are stored as their registered name (see :mod:`skebm.plugins`) plus
``get_params()``, schedules as the name of one of skebm's schedule classes, and
all are looked up when loading: only code already installed (skebm and the
plugins the user installed) can be reached. What cannot be stored that way
(lambdas, unregistered classes, module instances, torch distributions) makes
:func:`save` raise :class:`~skebm.exceptions.UnsafeToSaveError`, naming the
alternative: pickle or joblib, which trust the file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zipfile
from typing import Any

import numpy as np
import torch
from torch import nn

from skebm._components import build_energy
from skebm._version import __version__
from skebm.bases import BASE_CLASSES, BaseDensity
from skebm.exceptions import (
    DeviceWarning,
    UnknownComponentError,
    UnsafeToSaveError,
    VersionWarning,
)
from skebm.losses import BaseLoss
from skebm.plugins import get_registry
from skebm.samplers import BaseSampler, schedules
from skebm.utils._torch import make_generator, resolve_device, resolve_dtype

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]

FORMAT = "skebm-estimator"
FORMAT_VERSION = 1

_METADATA = "skebm.json"
_TENSORS = "tensors.pt"

#: Fitted attributes stored in the tensor file; every other one goes to JSON.
_TENSOR_ATTRIBUTES = (
    "energy_",
    "base_",
    "_loss_state",
    "_optimizer_state",
    "_train_rng_state",
)
#: Fitted attributes rebuilt from the parameters and the device when loading.
_REBUILT_ATTRIBUTES = ("loss_", "sampler_", "device_")

_STRATEGY_KINDS = {"loss": BaseLoss, "sampler": BaseSampler}
_ARRAY_KINDS = "biufUO"  # bool, int, uint, float, str, object (of str)

_USE_PICKLE = (
    "use pickle or joblib instead: they store any object, but run code from the "
    "file when loading, so load such files only from sources you trust."
)


# -- JSON encoding of parameters and attributes -----------------------------------


def _registered(kind: str, obj: Any) -> dict | None:
    """The registry record of the class or factory ``obj``, or None."""
    for comp in get_registry().components(kind):
        if comp.cls is obj:
            return {
                "kind": kind,
                "name": comp.name if comp.builtin else comp.qualified_name,
                "distribution": comp.distribution,
                "version": comp.version,
            }
    return None


def _encode(value: Any, where: str) -> Any:
    """A JSON-serialisable form of ``value``; non-JSON types become tagged dicts.

    ``where`` names the value in error messages (``"loss.noise"``).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {
            "__dict__": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        }
    if (
        isinstance(value, np.ndarray)
        and value.dtype.kind in _ARRAY_KINDS
        and (value.dtype.kind != "O" or all(isinstance(v, str) for v in value.flat))
    ):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    for kind, base_class in _STRATEGY_KINDS.items():
        if isinstance(value, base_class):
            return {"__component__": _encode_strategy(kind, value, where)}
    if isinstance(value, schedules.BaseSchedule):
        return {"__schedule__": _encode_schedule(value, where)}
    if isinstance(value, nn.Module):
        raise UnsafeToSaveError(
            f"Cannot save {where}: a {type(value).__name__} instance, whose "
            "construction cannot be recorded. Register its class as an energy (hook "
            "skebm_register_energies) and pass energy='<name>' with energy_params, "
            "or " + _USE_PICKLE
        )
    if callable(value):
        record = _registered("energy", value)
        if record is None:
            label = getattr(value, "__qualname__", repr(value))
            raise UnsafeToSaveError(
                f"Cannot save {where}: {label} is not a registered energy, and the "
                "file may not name code to import. Register it (hook "
                "skebm_register_energies) and pass its name, or " + _USE_PICKLE
            )
        return {"__component_class__": record}
    raise UnsafeToSaveError(
        f"Cannot save {where}: a {type(value).__qualname__} cannot be stored as "
        "JSON or tensors; " + _USE_PICKLE
    )


def _encode_strategy(kind: str, strategy: Any, where: str) -> dict:
    record = _registered(kind, type(strategy))
    if record is None:
        hook = "skebm_register_losses" if kind == "loss" else "skebm_register_samplers"
        raise UnsafeToSaveError(
            f"Cannot save {where}: {type(strategy).__qualname__} is not a registered "
            f"{kind}. Register it through a plugin (hook {hook}) so it can be "
            "restored by name, or " + _USE_PICKLE
        )
    params = strategy.get_params(deep=False)
    return {
        **record,
        "params": {k: _encode(v, f"{where}.{k}") for k, v in params.items()},
    }


def _encode_schedule(schedule, where: str) -> dict:
    cls = type(schedule)
    if getattr(schedules, cls.__name__, None) is not cls:
        raise UnsafeToSaveError(
            f"Cannot save {where}: the schedule {cls.__qualname__} is not one of "
            "skebm.samplers.schedules; " + _USE_PICKLE
        )
    params = schedule.get_params(deep=False)
    return {
        "class": cls.__name__,
        "params": {k: _encode(v, f"{where}.{k}") for k, v in params.items()},
    }


def _decode(value: Any) -> Any:
    """Invert :func:`_encode`; names are resolved through the registry only."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = next(iter(value), None)
    if tag == "__tuple__":
        return tuple(_decode(v) for v in value[tag])
    if tag == "__dict__":
        return {k: _decode(v) for k, v in value[tag].items()}
    if tag == "__device__":
        return torch.device(value[tag])
    if tag == "__ndarray__":
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"Unsupported array dtype {value['dtype']!r} in the file.")
        return np.asarray(value[tag], dtype=dtype)
    if tag == "__component__":
        record = value[tag]
        if record["kind"] not in _STRATEGY_KINDS:
            raise ValueError(f"Unknown component kind {record['kind']!r} in the file.")
        cls = get_registry().get(record["kind"], record["name"])
        return cls(**{k: _decode(v) for k, v in record["params"].items()})
    if tag == "__component_class__":
        return get_registry().get("energy", value[tag]["name"])
    if tag == "__schedule__":
        record = value[tag]
        cls = getattr(schedules, record["class"], None)
        if not (isinstance(cls, type) and issubclass(cls, schedules.BaseSchedule)):
            raise ValueError(f"Unknown schedule {record['class']!r} in the file.")
        return cls(**{k: _decode(v) for k, v in record["params"].items()})
    raise ValueError(f"Unrecognised value in the file, with keys {sorted(value)}.")


# -- saving ------------------------------------------------------------------------


def _component_records(estimator) -> dict:
    """Where the energy, loss and sampler come from, for messages when loading."""
    records = {}
    for kind in ("energy", "loss", "sampler"):
        spec = getattr(estimator, kind)
        if isinstance(spec, str):
            try:
                spec = get_registry().get(kind, spec)
            except ValueError:
                records[kind] = {"kind": kind, "name": getattr(estimator, kind)}
                continue
        elif not isinstance(spec, type) and kind != "energy":
            spec = type(spec)
        records[kind] = _registered(kind, spec) or {}
    return records


def save(estimator, path) -> None:
    """Write ``estimator`` to ``path`` in skebm's safe format.

    The file restores the estimator exactly: the same ``score_samples``, the same
    ``sample`` for a given ``random_state``, and a warm start that continues as
    the original would.

    Parameters
    ----------
    estimator : EnergyDensityEstimator
        Fitted or not.
    path : str or path-like
        The file to write (by convention ``*.skebm``); overwritten if present.

    Raises
    ------
    UnsafeToSaveError
        When a parameter cannot be restored without running code from the file
        (a lambda, an unregistered class, a module instance, a torch
        distribution); the message names the parameter and the alternative.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import skebm
    >>> X = np.random.RandomState(0).normal(size=(200, 2))
    >>> est = skebm.EnergyDensityEstimator(
    ...     max_iter=2,
    ...     energy_params={"hidden_layer_sizes": (16,)},
    ...     partition_params={"n_chains": 64, "n_temperatures": 10},
    ...     random_state=0,
    ... ).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.skebm")
    >>> est.save(path)
    >>> loaded = skebm.load(path)
    >>> bool(np.array_equal(loaded.score_samples(X), est.score_samples(X)))
    True
    """
    params = estimator.get_params(deep=False)
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skebm_version": __version__,
        "class": type(estimator).__name__,
        "params": {k: _encode(v, k) for k, v in params.items()},
        "components": _component_records(estimator),
        "fitted": hasattr(estimator, "energy_"),
    }
    tensors: dict[str, Any] = {}
    if metadata["fitted"]:
        state = estimator.__getstate__()  # tensors on the CPU, whatever the device
        skipped = {
            *params,
            *_TENSOR_ATTRIBUTES,
            *_REBUILT_ATTRIBUTES,
            "_skebm_version",
        }
        metadata.update(
            attributes={k: _encode(v, k) for k, v in state.items() if k not in skipped},
            device=str(estimator.device_),
            dtype=str(estimator._dtype()).removeprefix("torch."),
            base_class=type(estimator.base_).__name__,
        )
        loss_state = state["_loss_state"]
        tensors = {
            "energy": state["energy_"].state_dict(),
            "base": state["base_"].state_dict(),
            "loss_state": None if loss_state is None else loss_state.state_dict(),
            "optimizer": state["_optimizer_state"],
            "train_rng_state": state["_train_rng_state"],
        }
        # Rebuild once now, so that a file save() writes always loads.
        _restore_fitted(_new_estimator(metadata), metadata, tensors, "cpu")
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    with zipfile.ZipFile(os.fspath(path), "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_METADATA, json.dumps(metadata, indent=1))
        zf.writestr(_TENSORS, buffer.getvalue())


# -- loading -----------------------------------------------------------------------


def _read(path) -> tuple[dict, dict]:
    name = os.fspath(path)
    try:
        with zipfile.ZipFile(name) as zf:
            if not {_METADATA, _TENSORS} <= set(zf.namelist()):
                raise ValueError(
                    f"{name!r} is not a skebm model file: it lacks {_METADATA} and "
                    f"{_TENSORS}."
                )
            metadata = json.loads(zf.read(_METADATA))
            raw_tensors = zf.read(_TENSORS)
    except zipfile.BadZipFile as exc:
        raise ValueError(
            f"{name!r} is not a skebm model file (not a zip archive). A pickle or "
            "joblib file must be loaded with pickle or joblib, and only if you trust "
            "its source."
        ) from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{name!r} is not a skebm model file.")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{name!r} uses format version {metadata['format_version']}; this skebm "
            f"({__version__}) reads up to {FORMAT_VERSION}. Upgrade skebm."
        )
    try:
        tensors = torch.load(
            io.BytesIO(raw_tensors), map_location="cpu", weights_only=True
        )
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"Refusing to load {name!r}: its tensor part holds objects other than "
            "tensors and plain containers, which could run code. It was not written "
            "by skebm's save, or it was altered; nothing from it was executed. "
            f"(torch: {str(exc).splitlines()[0]})"
        ) from exc
    return metadata, tensors


def _new_estimator(metadata: dict):
    from skebm.estimator import EnergyDensityEstimator

    if metadata.get("class") != EnergyDensityEstimator.__name__:
        raise ValueError(
            f"The file holds a {metadata.get('class')!r}; skebm.load restores "
            "EnergyDensityEstimator only."
        )
    params = {k: _decode(v) for k, v in metadata["params"].items()}
    estimator = EnergyDensityEstimator(**params)
    estimator._validate_params()
    return estimator


def _empty_base(name: str, state: dict, n_features: int) -> BaseDensity:
    """A base density of the stored class and shapes, to load ``state`` into."""
    if name not in BASE_CLASSES:
        raise ValueError(f"Unknown base density {name!r} in the file.")
    return BASE_CLASSES[name]._empty(state, n_features)


def _load_state(module: nn.Module, state: dict, what: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"The stored {what} does not fit the module built from the parameters "
            "(were energy, energy_params or the loss's parameters changed after fit, "
            "or does the loss state depend on the number of training rows?). Refit, "
            f"or {_USE_PICKLE} {exc}"
        ) from exc


def _on_device(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _on_device(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_device(v, device) for v in value)
    return value


def _restore_fitted(estimator, metadata: dict, tensors: dict, device) -> None:
    """Set the fitted attributes of ``estimator`` from the file's contents."""
    device = torch.device(device)
    dtype = resolve_dtype(metadata["dtype"])
    for name, value in metadata["attributes"].items():
        setattr(estimator, name, _decode(value))
    n_features = estimator.n_features_in_
    estimator.device_ = device
    base = _empty_base(metadata["base_class"], tensors["base"], n_features)
    base = base.to(device, dtype)
    _load_state(base, tensors["base"], "base density")
    estimator.base_ = base
    energy = build_energy(
        estimator.energy,
        estimator.energy_params,
        n_features=n_features,
        seed=0,
        device=device,
        dtype=dtype,
    )
    _load_state(energy, tensors["energy"], "energy")
    estimator.energy_ = energy
    estimator._resolve_strategies()
    estimator._loss_state = None
    if tensors["loss_state"] is not None:
        state = estimator.loss_.init_state(
            estimator._model(),
            torch.zeros((2, n_features), device=device, dtype=dtype),
            generator=make_generator(device, 0),
        )
        if state is None:
            raise ValueError(
                f"The file holds a loss state, but {type(estimator.loss_).__name__} "
                "creates none."
            )
        _load_state(state, tensors["loss_state"], "loss state")
        estimator._loss_state = state
    estimator._optimizer_state = _on_device(tensors["optimizer"], device)
    # A generator state belongs to one device type (CPU and CUDA states differ).
    same_type = torch.device(metadata["device"]).type == device.type
    estimator._train_rng_state = tensors["train_rng_state"] if same_type else None


def _describe(records: dict) -> str:
    described = []
    for kind, record in records.items():
        if not record:
            continue
        text = f"{kind} {record['name']!r}"
        if record.get("distribution"):
            text += f" from {record['distribution']} {record.get('version') or ''}"
        described.append(text.rstrip())
    return ", ".join(described) or "no plugin components"


def warn_loaded_on_cpu(fitted_on, *, stacklevel: int) -> None:
    """Warn that a model fitted on an unavailable device was loaded on the CPU."""
    warnings.warn(
        f"This model was fitted on {fitted_on}, which is not available here; it "
        "was loaded on the CPU. Scoring and sampling work as they are; to continue "
        "training here, first set_params(device='cpu').",
        DeviceWarning,
        stacklevel=stacklevel + 1,
    )


def load(path, *, device: str | None = None):
    """Load an estimator written by :func:`save` (``EnergyDensityEstimator.save``).

    Loading runs no code from the file: parameters come from JSON, tensors from
    ``torch.load(weights_only=True)``, and strategies and energies are looked up
    by their registered names among the installed plugins.

    Parameters
    ----------
    path : str or path-like
    device : str, default=None
        Where to put the model (``"cpu"``, ``"cuda"``, ...). ``None``: the device
        it was fitted on, or the CPU with a :class:`~skebm.exceptions.DeviceWarning`
        when that device is not available here.

    Returns
    -------
    estimator : EnergyDensityEstimator

    Raises
    ------
    ValueError
        When the file is not a skebm model file, or its tensor part holds
        anything but tensors and plain containers (a file crafted to run code is
        refused before anything in it runs).
    UnknownComponentError
        When the model needs a loss, sampler or energy whose plugin is not
        installed; the message names it and its distribution.
    """
    metadata, tensors = _read(path)
    saved = metadata.get("skebm_version")
    if saved != __version__:
        warnings.warn(
            f"This model was saved with skebm {saved} and is loaded with skebm "
            f"{__version__}; results may differ.",
            VersionWarning,
            stacklevel=2,
        )
    try:
        estimator = _new_estimator(metadata)
        if not metadata["fitted"]:
            return estimator
        if device is not None:
            target = resolve_device(device)
        else:
            try:
                target = resolve_device(metadata["device"])
            except ValueError:
                warn_loaded_on_cpu(metadata["device"], stacklevel=2)
                target = torch.device("cpu")
        _restore_fitted(estimator, metadata, tensors, target)
    except UnknownComponentError as exc:
        raise UnknownComponentError(
            f"This model needs a component that is not available here (it was saved "
            f"with: {_describe(metadata.get('components', {}))}). Install the plugin "
            "that provides it, or let it load (see SKEBM_DISABLE_PLUGIN_AUTOLOAD and "
            f"SKEBM_LOAD_PLUGINS). {exc}"
        ) from exc
    return estimator
