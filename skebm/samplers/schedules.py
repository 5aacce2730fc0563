"""Schedules for a sampler's step size or noise scale.

A schedule maps the step index ``t`` of a run of ``n_steps`` steps to a float.
Samplers accept a number (constant) or a schedule wherever a step size or noise
scale is expected. Schedules are scikit-learn estimators, so they clone and can be
grid-searched (``sampler__step_size__start``).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from sklearn.base import BaseEstimator

from skebm.utils._sklearn_compat import Interval

__all__ = [
    "BaseSchedule",
    "ConstantSchedule",
    "CosineSchedule",
    "ExponentialSchedule",
    "LinearSchedule",
    "schedule_value",
]


class BaseSchedule(BaseEstimator):
    """A value that changes with the step index.

    Subclasses implement :meth:`_at`, the value at fraction ``s`` in ``[0, 1]`` of
    the schedule's length; :meth:`__call__` handles the length.

    Parameters
    ----------
    start, end : float
        Values at the first and the last step of the schedule.
    n_steps : int or None
        Length of the schedule; after it the value stays at ``end``. ``None``
        stretches the schedule over each sampler run.
    """

    _parameter_constraints: dict = {
        "start": [Interval(Real, 0, None, closed="left")],
        "end": [Interval(Real, 0, None, closed="left")],
        "n_steps": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, start=0.01, end=0.001, n_steps=None):
        self.start = start
        self.end = end
        self.n_steps = n_steps

    def __call__(self, step: int, n_steps: int) -> float:
        """The value at step ``step`` of a run of ``n_steps`` steps."""
        length = self.n_steps if self.n_steps is not None else n_steps
        if length <= 1:
            return float(self.start)
        return float(self._at(min(step, length - 1) / (length - 1)))

    def _at(self, s: float) -> float:
        raise NotImplementedError


class ConstantSchedule(BaseSchedule):
    """Always ``value``.

    Examples
    --------
    >>> from skebm.samplers import ConstantSchedule
    >>> ConstantSchedule(0.1)(5, 10)
    0.1
    """

    _parameter_constraints: dict = {"value": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, value=0.01):
        self.value = value

    def __call__(self, step: int, n_steps: int) -> float:
        return float(self.value)


class LinearSchedule(BaseSchedule):
    """Linear interpolation from ``start`` to ``end``.

    Examples
    --------
    >>> from skebm.samplers import LinearSchedule
    >>> LinearSchedule(start=1.0, end=0.0)(5, 11)
    0.5
    """

    def _at(self, s):
        return self.start + s * (self.end - self.start)


class ExponentialSchedule(BaseSchedule):
    """Geometric decay from ``start`` to ``end`` (both must be positive).

    Examples
    --------
    >>> from skebm.samplers import ExponentialSchedule
    >>> round(ExponentialSchedule(start=1.0, end=0.01)(1, 3), 6)
    0.1
    """

    _parameter_constraints: dict = {
        **BaseSchedule._parameter_constraints,
        "start": [Interval(Real, 0, None, closed="neither")],
        "end": [Interval(Real, 0, None, closed="neither")],
    }

    def _at(self, s):
        return self.start * (self.end / self.start) ** s


class CosineSchedule(BaseSchedule):
    """Half-cosine annealing from ``start`` to ``end``.

    Examples
    --------
    >>> from skebm.samplers import CosineSchedule
    >>> CosineSchedule(start=1.0, end=0.0)(2, 5)
    0.5
    """

    def _at(self, s):
        return self.end + 0.5 * (self.start - self.end) * (1.0 + math.cos(math.pi * s))


def schedule_value(value, step: int, n_steps: int) -> float:
    """Evaluate a number-or-schedule parameter at ``step`` of ``n_steps``."""
    if isinstance(value, BaseSchedule):
        return value(step, n_steps)
    return float(value)
