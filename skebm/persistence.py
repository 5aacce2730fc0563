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

import os

import torch

from skebm import _model_file
from skebm._fitted_state import warn_loaded_on_cpu, warn_other_version
from skebm._model_file import FORMAT, FORMAT_VERSION
from skebm.estimator import EnergyDensityEstimator
from skebm.exceptions import ModelFileError, UnknownComponentError
from skebm.utils._torch import resolve_device

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]


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
    >>> skebm.save(est, path)
    >>> loaded = skebm.load(path)
    >>> bool(np.array_equal(loaded.score_samples(X), est.score_samples(X)))
    True
    """
    _model_file.write(estimator, path)


def load(path, *, device: str | None = None):
    """Load an estimator written by :func:`save`.

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
    ModelFileError
        A ``ValueError``: when the file is not a skebm model file, is damaged, or
        exceeds the size limits of :mod:`skebm._model_file`, or its tensor part
        holds anything but tensors and plain containers (a file crafted to run
        code is refused before anything in it runs). The message names the file.
    UnknownComponentError
        When the model needs a loss, sampler or energy whose plugin is not
        installed; the message names it and its distribution.
    """
    name = os.fspath(path)
    try:
        metadata, tensors = _model_file.read(path)
    except (
        FileNotFoundError,
        IsADirectoryError,
        PermissionError,
        MemoryError,  # not damage: the machine ran out
        ModelFileError,
    ):
        raise
    except Exception as exc:
        raise _damaged(name, exc) from exc
    warn_other_version(metadata.get("skebm_version"), stacklevel=2)
    try:
        estimator = _model_file.build(metadata, EnergyDensityEstimator)
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
        _model_file.restore(estimator, metadata, tensors, target)
    except UnknownComponentError as exc:
        saved_with = _model_file.describe(metadata.get("components", {}))
        raise UnknownComponentError(
            "This model needs a component that is not available here (it was saved "
            f"with: {saved_with}). Install the plugin "
            "that provides it, or let it load (see SKEBM_DISABLE_PLUGIN_AUTOLOAD and "
            f"SKEBM_LOAD_PLUGINS). {exc}"
        ) from exc
    except (MemoryError, ModelFileError):
        raise
    except Exception as exc:
        raise _damaged(name, exc) from exc
    return estimator


def _damaged(name: str, exc: BaseException) -> ModelFileError:
    return ModelFileError(
        f"{name!r} is damaged or is not a skebm model file: "
        f"{type(exc).__name__}: {str(exc)[:300]}"
    )
