"""The fitted state of :class:`~skebm.estimator.EnergyDensityEstimator`, listed once.

``fit`` sets three kinds of attributes:

* **tensor attributes**, :data:`TENSOR_ATTRIBUTES`: modules and containers of
  tensors. Pickling copies them to the CPU, a device change moves them
  (:func:`move_fitted`), and the safe file format (:mod:`skebm.persistence`)
  writes them to its tensor member under the key given here and rebuilds them
  with :func:`restore_fitted`;
* **rebuilt attributes**, :data:`REBUILT_ATTRIBUTES`: made again from the
  parameters when a file is loaded;
* **plain attributes**, :data:`PLAIN_ATTRIBUTES`: numbers, strings, arrays,
  lists and dicts of them, which pickling keeps as they are and the file stores
  as JSON; each with the check a value read from a file must pass.

Adding a fitted attribute is a change here only: to :data:`TENSOR_ATTRIBUTES`
(and to :func:`restore_fitted` if it is a module) or to
:data:`PLAIN_ATTRIBUTES` with its check, and to :data:`ADDED_ATTRIBUTES` with the
value that files and pickles written before it mean.
``tests/unit/test_fitted_state.py`` checks that every attribute a fit sets is
listed, so a missed entry fails loudly.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from torch import nn

from skebm._components import build_energy, construct_energy
from skebm._version import __version__
from skebm.bases import BASE_CLASSES, BASE_PARAMS
from skebm.exceptions import DeviceWarning, VersionWarning
from skebm.utils._torch import make_generator

#: Names of the base densities ``base_kind_`` may hold.
BASE_KINDS = frozenset(BASE_PARAMS) - {"auto"}

#: Fitted attributes that hold tensors, with their key in a model file.
TENSOR_ATTRIBUTES = {
    "energy_": "energy",
    "base_": "base",
    "_loss_state": "loss_state",
    "_optimizer_state": "optimizer",
    "_train_rng_state": "train_rng_state",
}


def _seed(value, n_features) -> bool:
    return isinstance(value, int) and 0 <= value < 2**32


def _finite(value, n_features) -> bool:
    return isinstance(value, float | int) and math.isfinite(value)


def _optional_finite(value, n_features) -> bool:
    return value is None or _finite(value, n_features)


def _finite_list(value, n_features) -> bool:
    return isinstance(value, list) and all(_finite(v, n_features) for v in value)


def _per_feature(positive: bool):
    def check(value, n_features) -> bool:
        return (
            isinstance(value, np.ndarray)
            and value.dtype == np.float64
            and value.shape == (n_features,)
            and bool(np.isfinite(value).all())
            and (not positive or bool((value > 0).all()))
        )

    return check


def _names(value, n_features) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.dtype.kind in "UO"
        and value.shape == (n_features,)
        and all(isinstance(v, str) for v in value)
    )


def _flag(value, n_features) -> bool:
    return isinstance(value, bool)


#: Plain fitted attributes and what a value read from a file must be (given
#: ``n_features_in_``); a file naming any other attribute is refused.
PLAIN_ATTRIBUTES = {
    "n_features_in_": lambda v, d: isinstance(v, int) and 1 <= v <= MAX_FEATURES,
    "feature_names_in_": _names,
    "mean_": _per_feature(positive=False),
    "scale_": _per_feature(positive=True),
    "log_partition_": _finite,
    "log_partition_stderr_": lambda v, d: _finite(v, d) and v >= 0,
    "n_iter_": lambda v, d: isinstance(v, int) and v >= 0,
    "loss_curve_": _finite_list,
    "base_kind_": lambda v, d: v in BASE_KINDS,
    "base_scores_": lambda v, d: (
        v is None
        or (
            isinstance(v, dict)
            and all(k in BASE_KINDS and _finite(s, d) for k, s in v.items())
        )
    ),
    "validation_scores_": lambda v, d: v is None or _finite_list(v, d),
    "best_validation_score_": _optional_finite,
    "base_validation_score_": _optional_finite,
    "energy_scale_": lambda v, d: isinstance(v, float) and 0.0 <= v <= 1.0,
    "_partition_reliable": _flag,
    "_energy_dropped": _flag,
    "_base_seed": _seed,
    "_energy_seed": _seed,
    "_train_seed": _seed,
    "_partition_seed": _seed,
    "_split_seed": _seed,
}

#: Attributes of earlier versions, ignored when a file holds them.
_RETIRED_ATTRIBUTES = ("diverged_",)

#: Attributes newer than some files and pickles, and the value one without them
#: means.
ADDED_ATTRIBUTES = {"energy_scale_": 1.0}

#: Most features a model file may declare.
MAX_FEATURES = 2**20


def checked_plain(plain: dict) -> dict:
    """``plain`` (the plain attributes read from a file) without retired ones and
    with the defaults of :data:`ADDED_ATTRIBUTES` it lacks, after checking every
    name and value against :data:`PLAIN_ATTRIBUTES`.

    Raises
    ------
    ValueError
        Naming the first attribute that is unknown, missing or invalid.
    """
    plain = {
        **ADDED_ATTRIBUTES,
        **{k: v for k, v in plain.items() if k not in _RETIRED_ATTRIBUTES},
    }
    unknown = sorted(set(plain) - set(PLAIN_ATTRIBUTES))
    if unknown:
        raise ValueError(f"The file sets unknown fitted attributes {unknown}.")
    n_features = plain.get("n_features_in_")
    if not PLAIN_ATTRIBUTES["n_features_in_"](n_features, None):
        raise ValueError(f"Invalid n_features_in_ {n_features!r} in the file.")
    for name, check in PLAIN_ATTRIBUTES.items():
        if name == "feature_names_in_" and name not in plain:
            continue
        if name not in plain or not check(plain[name], n_features):
            raise ValueError(
                f"Missing or invalid fitted attribute {name!r} in the file."
            )
    return plain


#: Fitted attributes rebuilt from the parameters (and the device) on loading.
REBUILT_ATTRIBUTES = ("loss_", "sampler_", "device_")

#: The way out when a model cannot be stored in skebm's safe format.
USE_PICKLE = (
    "use pickle or joblib instead: they store any object, but run code from the "
    "file when loading, so load such files only from sources you trust."
)

#: The random-generator state belongs to one device type (CPU and CUDA differ).
_DEVICE_BOUND = "_train_rng_state"


def snapshot(estimator) -> dict:
    """Everything a ``fit`` may change: the estimator's attributes, fitted ones
    deep-copied (training changes modules in place), parameters as they are."""
    params = estimator.get_params(deep=False)
    state = vars(estimator)
    # One deepcopy call, so objects shared between attributes stay shared.
    fitted = copy.deepcopy({k: v for k, v in state.items() if k not in params})
    return {name: state[name] if name in params else fitted[name] for name in state}


def roll_back(estimator, saved: dict) -> None:
    """Put ``estimator`` back in the state :func:`snapshot` saved."""
    state = vars(estimator)
    state.clear()
    state.update(saved)


def map_tensors(value, fn):
    """``value`` with ``fn`` applied to every tensor in nested dicts, lists and
    tuples (an optimiser's state, say); anything else is returned as it is."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(map_tensors(v, fn) for v in value)
    return value


def _on(value, device, *, copy_modules: bool):
    if isinstance(value, nn.Module):
        return (copy.deepcopy(value) if copy_modules else value).to(device)
    return map_tensors(value, lambda t: t.detach().to(device))


def cpu_state(state: dict) -> dict:
    """A copy of an estimator's ``__dict__`` with its tensor attributes on the CPU
    (the estimator itself is left as it is): what pickling stores."""
    state = dict(state)
    device = state.get("device_")
    if device is None or device.type == "cpu":
        return state
    for name in TENSOR_ATTRIBUTES:
        if name in state and name != _DEVICE_BOUND:
            state[name] = _on(state[name], "cpu", copy_modules=True)
    return state


def move_fitted(estimator, device: torch.device) -> None:
    """Move ``estimator``'s tensor attributes to ``device`` in place."""
    state = vars(estimator)
    for name in TENSOR_ATTRIBUTES:
        if name != _DEVICE_BOUND:
            state[name] = _on(state[name], device, copy_modules=False)
    if device.type != estimator.device_.type:
        estimator._train_rng_state = None
    estimator.device_ = device


def file_contents(state: dict, params) -> tuple[dict, dict]:
    """What a model file stores of the fitted ``state`` (an estimator's
    ``__dict__`` on the CPU): the plain attributes, for JSON, and the tensor
    attributes by their file keys, modules as ``state_dict``."""
    skipped = {*params, *TENSOR_ATTRIBUTES, *REBUILT_ATTRIBUTES, "_skebm_version"}
    plain = {k: v for k, v in state.items() if k not in skipped}
    tensors = {}
    for name, key in TENSOR_ATTRIBUTES.items():
        value = state[name]
        tensors[key] = value.state_dict() if isinstance(value, nn.Module) else value
    return plain, tensors


def restore_fitted(
    estimator,
    plain: dict,
    tensors: dict,
    *,
    base_class: str,
    dtype: torch.dtype,
    device: torch.device,
    fitted_on: torch.device,
) -> None:
    """Set the fitted state of a new ``estimator`` (built from the saved
    parameters) from a file's contents, on ``device``.

    Raises
    ------
    ValueError
        When the stored tensors do not fit what the parameters build.
    """
    plain = checked_plain(plain)
    map_tensors(tensors, _check_dense)
    _check_energy_shapes(estimator, plain["n_features_in_"], tensors["energy"])
    for name, value in plain.items():
        setattr(estimator, name, value)
    n_features = estimator.n_features_in_
    estimator.device_ = device
    if base_class not in BASE_CLASSES:
        raise ValueError(f"Unknown base density {base_class!r} in the file.")
    base = BASE_CLASSES[base_class]._empty(tensors["base"], n_features)
    estimator.base_ = _loaded(base.to(device, dtype), tensors["base"], "base density")
    energy = build_energy(
        estimator.energy,
        estimator.energy_params,
        n_features=n_features,
        seed=0,
        device=device,
        dtype=dtype,
    )
    estimator.energy_ = _loaded(energy, tensors["energy"], "energy")
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
        estimator._loss_state = _loaded(state, tensors["loss_state"], "loss state")
    estimator._optimizer_state = _on(tensors["optimizer"], device, copy_modules=False)
    same_type = fitted_on.type == device.type
    estimator._train_rng_state = tensors["train_rng_state"] if same_type else None


def _check_dense(tensor: torch.Tensor) -> torch.Tensor:
    """Refuse a stored tensor larger than its storage (a zero-stride view), so a
    model is never bigger than the bytes of its file."""
    if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
        raise ValueError(
            f"The file holds a tensor of shape {tuple(tensor.shape)} on a storage "
            f"of {tensor.untyped_storage().nbytes()} bytes."
        )
    return tensor


def _check_energy_shapes(estimator, n_features: int, stored: dict) -> None:
    """Compare the stored energy's tensors with what its parameters build, on
    the meta device (nothing allocated), before building it for real."""
    try:
        with torch.device("meta"):
            probe = construct_energy(
                estimator.energy, estimator.energy_params, n_features=n_features
            )
        expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    except Exception:  # an energy that cannot be built on meta: checked when built
        return
    found = {k: tuple(v.shape) for k, v in stored.items() if torch.is_tensor(v)}
    if expected != found:
        raise ValueError(
            "The stored energy does not fit the module its parameters build "
            "(were energy or energy_params changed after fit?): "
            f"{len(found)} tensors stored, {len(expected)} expected, or their shapes "
            "differ."
        )


def _loaded(module: nn.Module, state: dict, what: str) -> nn.Module:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"The stored {what} does not fit the module built from the parameters "
            "(were energy, energy_params or the loss's parameters changed after fit, "
            "or does the loss state depend on the number of training rows?). Refit, "
            f"or {USE_PICKLE} {exc}"
        ) from exc
    return module


def warn_other_version(saved, *, stacklevel: int) -> None:
    """Warn when a model saved by another skebm version is loaded."""
    if saved is not None and saved != __version__:
        warnings.warn(
            f"This model was saved with skebm {saved} and is loaded with skebm "
            f"{__version__}; results may differ.",
            VersionWarning,
            stacklevel=stacklevel + 1,
        )


def warn_loaded_on_cpu(fitted_on, *, stacklevel: int) -> None:
    """Warn that a model fitted on an unavailable device was loaded on the CPU."""
    warnings.warn(
        f"This model was fitted on {fitted_on}, which is not available here; it "
        "was loaded on the CPU. Scoring and sampling work as they are; to continue "
        "training here, first set_params(device='cpu').",
        DeviceWarning,
        stacklevel=stacklevel + 1,
    )
