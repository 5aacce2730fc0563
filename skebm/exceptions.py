"""Exceptions and warnings raised by skebm."""

from sklearn.exceptions import NotFittedError

__all__ = [
    "AmbiguousComponentError",
    "DeviceWarning",
    "DivergenceError",
    "ModelFileError",
    "NotFittedError",
    "PartitionWarning",
    "PluginLoadError",
    "PluginWarning",
    "SkebmWarning",
    "UnknownComponentError",
    "UnsafeToSaveError",
    "VersionWarning",
]


class SkebmWarning(UserWarning):
    """Base class of every warning skebm emits."""


class PluginWarning(SkebmWarning):
    """A plugin failed to load, or registered something that was rejected."""


class DeviceWarning(SkebmWarning):
    """A model was moved to another device than the one it was fitted on."""


class PartitionWarning(SkebmWarning):
    """The estimate of ``log Z`` rests on few effective importance-sampling draws
    or annealed-importance chains, so the normalised scores may be off by more
    than its standard error says."""


class VersionWarning(SkebmWarning):
    """A model was saved by another version of skebm than the one loading it."""


class DivergenceError(ValueError):
    """Training produced a non-finite loss, weights, held-out score or ``log Z``.

    The call that raises it leaves the estimator as it was before: a warm start
    keeps the model it started from, a first fit leaves it unfitted.
    """


class ModelFileError(ValueError):
    """A file given to :func:`skebm.load` is damaged or is not a skebm model file.

    The message names the file; the underlying error is chained as ``__cause__``.
    """


class UnknownComponentError(ValueError):
    """No loss, sampler or energy is registered under the requested name."""


class AmbiguousComponentError(ValueError):
    """Several plugins registered the requested name; a qualified name is needed."""


class UnsafeToSaveError(TypeError):
    """``save`` met a parameter it cannot store without pickling code (a lambda,
    an unregistered class, a module instance); pickle or joblib can store it."""


class PluginLoadError(RuntimeError):
    """A plugin failed to load while ``SKEBM_STRICT_PLUGINS=1`` is set."""
