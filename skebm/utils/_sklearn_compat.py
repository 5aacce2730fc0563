"""The one place where skebm imports scikit-learn's private helpers.

``_fit_context`` and the parameter-constraint classes are private scikit-learn API
(scikit-learn/scikit-learn#25088); keeping every such import here means a change in
scikit-learn is fixed in one file.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
)
from sklearn.utils.validation import validate_data

__all__ = [
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "_fit_context",
    "validate_data",
]
