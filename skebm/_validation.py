"""Input and option checks of the estimator, with errors that say what to do.

scikit-learn's ``validate_data`` catches every malformed ``X``; most of its
messages already say what to do, and those that do not get a hint appended here
(the original text is kept, so code matching on it still works). Options given as
dicts (``partition_params``, ``base_params``) are checked before any training, so
a misspelled key fails in milliseconds rather than after ``max_iter`` epochs.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from skebm._components import _check_keys
from skebm.bases import BASE_PARAMS
from skebm.partition import PARTITION_METHODS
from skebm.utils._sklearn_compat import validate_data

__all__ = ["check_options", "check_standardisation", "validate_samples"]

_ENCODE_HINT = (
    "X must contain numbers only: encode text or categorical columns first (for "
    "example with sklearn.preprocessing.OneHotEncoder or OrdinalEncoder)."
)

#: (exception type, pattern of scikit-learn's or numpy's message, hint to append)
_HINTS = (
    (
        ValueError,
        r"^Input X contains infinity",
        "Drop or impute the rows with infinite values, e.g. "
        "X[np.isfinite(X).all(axis=1)].",
    ),
    (
        ValueError,
        r"^Found array with dim \d+",
        "Reshape X to (n_samples, n_features), e.g. X.reshape(len(X), -1).",
    ),
    (ValueError, r"^Complex data not supported", None),
    (TypeError, r"argument must be .*string.* number", _ENCODE_HINT),
    (ValueError, r"could not convert string to float", _ENCODE_HINT),
    (
        ValueError,
        r"^X has \d+ features, but",
        "Pass the same columns, in the same order, as at fit.",
    ),
)

_COMPLEX_HINT = (
    "Complex data not supported: X has a complex dtype. Pass the real part "
    "(X.real) or the real and imaginary parts as separate features "
    "(np.hstack([X.real, X.imag]))."
)


def validate_samples(estimator, X, *, reset: bool, ensure_min_samples: int = 1):
    """``validate_data`` for a float array, with hints appended to its errors.

    Parameters
    ----------
    estimator : EnergyDensityEstimator
    X : array-like
    reset : bool
        True at the start of a fit (records ``n_features_in_``).
    ensure_min_samples : int, default=1

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64 or float32
    """
    if isinstance(X, torch.Tensor):
        X = _tensor_to_numpy(X)
    try:
        return validate_data(
            estimator,
            X,
            dtype=[np.float64, np.float32],
            ensure_min_samples=ensure_min_samples,
            reset=reset,
        )
    except (TypeError, ValueError) as exc:
        message = str(exc)
        for kind, pattern, hint in _HINTS:
            if isinstance(exc, kind) and re.search(pattern, message):
                if hint is None:  # the original message dumps the whole array
                    raise type(exc)(_COMPLEX_HINT) from exc
                raise type(exc)(f"{message.rstrip()} {hint}") from exc
        raise


def _tensor_to_numpy(X: torch.Tensor) -> np.ndarray:
    """A tensor as a NumPy array on the CPU: detached (gradients are not taken
    through scoring), floating dtypes numpy lacks (bfloat16) as float32."""
    X = X.detach().cpu()
    if X.is_floating_point() and X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32)
    return X.resolve_conj().numpy()


def check_standardisation(mean: np.ndarray, scale: np.ndarray) -> None:
    """Raise when the data's mean or spread overflows float64.

    Values of about 1e154 and more have squares beyond the float64 range, so their
    standard deviation is infinite and the data cannot be standardised.
    """
    if np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)):
        return
    bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(scale)))
    raise ValueError(
        f"X is too large to standardise: the mean or standard deviation of "
        f"feature(s) {bad.tolist()} overflows float64 (values of about 1e154 and "
        "more). Rescale X first, e.g. divide those features by their largest "
        "absolute value, or take a logarithm."
    )


def check_options(estimator) -> None:
    """Check the keys of ``partition_params`` and ``base_params`` before training.

    Raises
    ------
    InvalidParameterError
        For an unknown key, with the closest valid spelling.
    """
    if estimator.partition == "auto":
        methods = list(PARTITION_METHODS.values())
        target = (
            "partition='auto' (grid quadrature in d <= 2, importance sampling "
            "or AIS elsewhere)"
        )
    else:
        methods = [PARTITION_METHODS[estimator.partition]]
        target = f"partition={estimator.partition!r} ({methods[0][0].__name__})"
    _check_keys(
        estimator.partition_params or {},
        [key for _, keys in methods for key in keys],
        owner="partition_params",
        target=target,
    )
    _check_keys(
        estimator.base_params or {},
        list(BASE_PARAMS[estimator.base]),
        owner="base_params",
        target=f"base={estimator.base!r}",
    )
