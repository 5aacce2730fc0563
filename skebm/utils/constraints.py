"""The parameter-constraint vocabulary for strategy authors.

A loss or sampler may declare ``_parameter_constraints`` (as scikit-learn's
estimators do), checked by ``_validate_params`` before it is used:

>>> from numbers import Real
>>> from skebm.utils.constraints import Interval, StrOptions
>>> constraints = {
...     "step_size": [Interval(Real, 0, None, closed="neither")],
...     "kind": [StrOptions({"fast", "exact"})],
... }

The classes are scikit-learn's (private there, see
scikit-learn/scikit-learn#25088); this module is skebm's stable name for them, so
plugins import nothing private and a change in scikit-learn is absorbed here.
Declaring constraints is optional: parameters not listed are not checked.
"""

from skebm.utils._sklearn_compat import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
)

__all__ = ["HasMethods", "Interval", "InvalidParameterError", "StrOptions"]
