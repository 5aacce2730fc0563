"""Writing and reading skebm's model files (the format is described in
:mod:`skebm.persistence`, which holds the public ``save`` and ``load``).

This module does not import the estimator: the estimator's ``save`` method uses
it, and :mod:`skebm.persistence` passes the class to build when loading.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from typing import Any

import numpy as np
import torch
from torch import nn

from skebm._fitted_state import (
    USE_PICKLE,
    file_contents,
    restore_fitted,
)
from skebm._version import __version__
from skebm.exceptions import ModelFileError, UnsafeToSaveError
from skebm.plugins import COMPONENT_KINDS, get_registry
from skebm.samplers import schedules
from skebm.utils._torch import resolve_dtype

__all__ = ["FORMAT", "FORMAT_VERSION", "build", "read", "restore", "write"]

FORMAT = "skebm-estimator"
FORMAT_VERSION = 1

_METADATA = "skebm.json"
_TENSORS = "tensors.pt"

_ARRAY_KINDS = "biufUO"  # bool, int, uint, float, str, object (of str)

#: Limits checked before anything in a file is read or built, so that a small file
#: cannot make ``load`` allocate much more than the model it describes: parsing
#: the JSON member allocates at most about ``100 * MAX_METADATA_VALUES`` bytes
#: plus six times the member's size (under 256 MiB), and the tensors are inflated
#: to a temporary file, never held twice (tested under an address-space cap).
MAX_METADATA_BYTES = 16 * 2**20
#: Most JSON values (numbers, strings, lists, objects) the metadata may hold,
#: counted from its separators before parsing. With the 16 MiB above, a model of
#: up to about 240,000 named features fits (measured: 70 bytes, 3 values each).
MAX_METADATA_VALUES = 1_000_000
MAX_TENSOR_BYTES = 2**31
#: Largest pickle inside the tensor member (``torch.save``'s ``data.pkl``: the
#: structure that holds the tensors, a few kB for any model). Unpickling can
#: allocate several times its size, so it is checked before ``torch.load``.
MAX_PICKLE_BYTES = 2**20
#: Most a member may inflate per stored byte (network weights barely compress).
MAX_INFLATION = 20.0
_SMALL_MEMBER = 2**20  # members below 1 MiB may compress better (JSON, tiny models)
#: Longest string in a stored array (feature names).
_MAX_STRING = 4096


# -- JSON encoding of parameters and attributes -----------------------------------


def _strategy_kinds() -> dict[str, type]:
    """Kinds whose instances are stored as a name plus ``get_params()``."""
    return {
        kind.name: kind.base_class
        for kind in COMPONENT_KINDS.values()
        if kind.base_class_path is not None
    }


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
    for kind, base_class in _strategy_kinds().items():
        if isinstance(value, base_class):
            return {"__component__": _encode_strategy(kind, value, where)}
    if isinstance(value, schedules.BaseSchedule):
        return {"__schedule__": _encode_schedule(value, where)}
    if isinstance(value, nn.Module):
        raise UnsafeToSaveError(
            f"Cannot save {where}: a {type(value).__name__} instance, whose "
            "construction cannot be recorded. Register its class as an energy (hook "
            "skebm_register_energies) and pass energy='<name>' with energy_params, "
            "or " + USE_PICKLE
        )
    if callable(value):
        record = _registered("energy", value)
        if record is None:
            label = getattr(value, "__qualname__", repr(value))
            raise UnsafeToSaveError(
                f"Cannot save {where}: {label} is not a registered energy, and the "
                "file may not name code to import. Register it (hook "
                "skebm_register_energies) and pass its name, or " + USE_PICKLE
            )
        return {"__component_class__": record}
    raise UnsafeToSaveError(
        f"Cannot save {where}: a {type(value).__qualname__} cannot be stored as "
        "JSON or tensors; " + USE_PICKLE
    )


def _encode_strategy(kind: str, strategy: Any, where: str) -> dict:
    record = _registered(kind, type(strategy))
    if record is None:
        hook = "skebm_register_losses" if kind == "loss" else "skebm_register_samplers"
        raise UnsafeToSaveError(
            f"Cannot save {where}: {type(strategy).__qualname__} is not a registered "
            f"{kind}. Register it through a plugin (hook {hook}) so it can be "
            "restored by name, or " + USE_PICKLE
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
            "skebm.samplers.schedules; " + USE_PICKLE
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
        dtype = np.dtype(str(value["dtype"]))
        if dtype.kind not in _ARRAY_KINDS or (
            dtype.kind == "U" and dtype.itemsize > 4 * _MAX_STRING
        ):
            raise ValueError(f"Unsupported array dtype {value['dtype']!r} in the file.")
        return np.asarray(value[tag], dtype=dtype)
    if tag == "__component__":
        record = value[tag]
        if record["kind"] not in _strategy_kinds():
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


def write(estimator, path) -> None:
    """Write ``estimator`` to ``path``; see :func:`skebm.persistence.save`."""
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
        # Pickling's state: tensors on the CPU, whatever the device.
        plain, tensors = file_contents(estimator.__getstate__(), params)
        metadata.update(
            attributes={k: _encode(v, k) for k, v in plain.items()},
            device=str(estimator.device_),
            dtype=str(estimator._dtype()).removeprefix("torch."),
            base_class=type(estimator.base_).__name__,
        )
        # Rebuild once now, so that a file save() writes always loads.
        restore(build(metadata, type(estimator)), metadata, tensors, "cpu")
    text = json.dumps(metadata, indent=1).encode("ascii")
    problem = _metadata_problem(text)
    if problem is not None:
        raise ValueError(
            f"This model cannot be written in skebm's file format: {problem}. "
            "Save it with pickle or joblib instead (and load it only from a "
            "trusted source)."
        )
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    with zipfile.ZipFile(os.fspath(path), "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_METADATA, text)
        zf.writestr(_TENSORS, buffer.getvalue())


# -- loading -----------------------------------------------------------------------


def _check_member(zf: zipfile.ZipFile, name: str, limit: int) -> None:
    """Refuse a member before reading it when it would inflate beyond ``limit``
    bytes or more than :data:`MAX_INFLATION` times its stored size."""
    info = zf.getinfo(name)
    inflation = info.file_size / max(info.compress_size, 1)
    if info.file_size > limit or (
        info.file_size > _SMALL_MEMBER and inflation > MAX_INFLATION
    ):
        raise ModelFileError(
            f"{zf.filename!r} is refused: its member {name} would inflate to "
            f"{info.file_size:,} bytes "
            f"({inflation:.0f} times its stored size); a model file's limits are "
            f"{limit:,} bytes and {MAX_INFLATION:.0f} times."
        )


def _metadata_problem(text: bytes) -> str | None:
    """Why the JSON member ``text`` is refused before parsing, or None.

    skebm writes ASCII JSON (non-ASCII characters escaped); the count of values
    bounds what parsing allocates.
    """
    if len(text) > MAX_METADATA_BYTES:
        return (
            f"its metadata holds {len(text):,} bytes (at most {MAX_METADATA_BYTES:,})"
        )
    if not text.isascii():
        return "its metadata is not ASCII JSON"
    n_values = 1 + sum(text.count(mark) for mark in (b",", b":", b"[", b"{"))
    if n_values > MAX_METADATA_VALUES:
        return (
            f"its metadata holds up to {n_values:,} values (at most "
            f"{MAX_METADATA_VALUES:,})"
        )
    return None


def _read_metadata(zf: zipfile.ZipFile) -> Any:
    text = zf.read(_METADATA)
    problem = _metadata_problem(text)
    if problem is not None:
        raise ModelFileError(f"{zf.filename!r} is refused: {problem}.")
    return json.loads(text)


def _check_tensor_archive(path: str, name: str) -> None:
    """Refuse a tensor member that is not ``torch.save``'s zip archive (the old
    format is one long pickle) or whose pickle exceeds :data:`MAX_PICKLE_BYTES`."""
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{name!r} is refused: its tensor part is not in torch.save's zip format."
        )
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".pkl") and info.file_size > MAX_PICKLE_BYTES:
                raise ModelFileError(
                    f"{name!r} is refused: the pickle in its tensor part holds "
                    f"{info.file_size:,} bytes (at most {MAX_PICKLE_BYTES:,})."
                )


def _read_tensors(zf: zipfile.ZipFile) -> Any:
    """The tensor member, inflated to a temporary file that ``torch.load`` reads,
    so that its bytes and its tensors are never both in memory."""
    with tempfile.TemporaryDirectory(prefix="skebm-") as folder:
        inflated = os.path.join(folder, _TENSORS)
        with zf.open(_TENSORS) as source, open(inflated, "wb") as target:
            shutil.copyfileobj(source, target, 2**20)
        _check_tensor_archive(inflated, zf.filename)
        try:
            return torch.load(inflated, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelFileError(
                f"Refusing to load {zf.filename!r}: its tensor part holds objects "
                "other than tensors and plain containers, which could run code. It "
                "was not written by skebm's save, or it was altered; nothing from it "
                f"was executed. (torch: {str(exc).splitlines()[0]})"
            ) from exc


def read(path) -> tuple[dict, dict]:
    """The metadata and tensors of a model file.

    Raises
    ------
    ModelFileError
        When it is not a skebm model file, or is damaged, or its members exceed
        the size limits.
    """
    name = os.fspath(path)
    if not zipfile.is_zipfile(name):
        raise ModelFileError(
            f"{name!r} is not a skebm model file (not a zip archive). A pickle or "
            "joblib file must be loaded with pickle or joblib, and only if you trust "
            "its source."
        )
    with zipfile.ZipFile(name) as zf:
        if not {_METADATA, _TENSORS} <= set(zf.namelist()):
            raise ModelFileError(
                f"{name!r} is not a skebm model file: it lacks {_METADATA} and "
                f"{_TENSORS}."
            )
        _check_member(zf, _METADATA, MAX_METADATA_BYTES)
        _check_member(zf, _TENSORS, MAX_TENSOR_BYTES)
        metadata = _read_metadata(zf)
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ModelFileError(f"{name!r} is not a skebm model file.")
        if metadata.get("format_version", 0) > FORMAT_VERSION:
            raise ModelFileError(
                f"{name!r} uses format version {metadata['format_version']}; this "
                f"skebm ({__version__}) reads up to {FORMAT_VERSION}. Upgrade skebm."
            )
        return metadata, _read_tensors(zf)


def build(metadata: dict, cls):
    """A new, unfitted ``cls`` with the file's parameters."""
    if metadata.get("class") != cls.__name__:
        raise ValueError(
            f"The file holds a {metadata.get('class')!r}; skebm.load restores "
            f"{cls.__name__} only."
        )
    params = {k: _decode(v) for k, v in metadata["params"].items()}
    estimator = cls(**params)
    estimator._validate_params()
    return estimator


def restore(estimator, metadata: dict, tensors: dict, device) -> None:
    """Set the fitted attributes of ``estimator`` from the file's contents."""
    restore_fitted(
        estimator,
        {name: _decode(value) for name, value in metadata["attributes"].items()},
        tensors,
        base_class=metadata["base_class"],
        dtype=resolve_dtype(metadata["dtype"]),
        device=torch.device(device),
        fitted_on=torch.device(metadata["device"]),
    )


def describe(records: dict) -> str:
    """The plugin components a file was saved with, in words."""
    described = []
    for kind, record in records.items():
        if not record:
            continue
        text = f"{kind} {record['name']!r}"
        if record.get("distribution"):
            text += f" from {record['distribution']} {record.get('version') or ''}"
        described.append(text.rstrip())
    return ", ".join(described) or "no plugin components"
