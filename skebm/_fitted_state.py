"""The fitted state of :class:`~skebm.estimator.EnergyDensityEstimator`, listed once.

``fit`` sets three kinds of attributes:

* **tensor attributes**, :data:`TENSOR_ATTRIBUTES`: modules and containers of
  tensors. Pickling copies them to the CPU, a device change moves them
  (:func:`move_fitted`), and the safe file format (:mod:`skebm.persistence`)
  writes them to its tensor member under the key given here and rebuilds them
  with :func:`restore_fitted`;
* **rebuilt attributes**, :data:`REBUILT_ATTRIBUTES`: made again from the
  parameters when a file is loaded;
* every other attribute that ``fit`` sets (public ``name_`` and private
  ``_name``) is plain data (numbers, strings, arrays, lists and dicts of them),
  which pickling keeps as it is and the file stores as JSON.

Adding a fitted attribute that holds plain data needs no change anywhere; one
that holds tensors or a module is added to :data:`TENSOR_ATTRIBUTES` here, and
to :func:`restore_fitted` if it is a module. ``tests`` check that no other
fitted attribute holds a tensor, so a missed entry fails loudly.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from skebm._components import build_energy
from skebm._version import __version__
from skebm.bases import BASE_CLASSES
from skebm.exceptions import DeviceWarning, VersionWarning
from skebm.utils._torch import make_generator

#: Fitted attributes that hold tensors, with their key in a model file.
TENSOR_ATTRIBUTES = {
    "energy_": "energy",
    "base_": "base",
    "_loss_state": "loss_state",
    "_optimizer_state": "optimizer",
    "_train_rng_state": "train_rng_state",
}

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
