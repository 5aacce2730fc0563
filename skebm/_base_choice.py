"""Which of its candidate models ``base="auto"`` keeps, from their held-out rows.

Each candidate base has its own trained energy and is scored on the same held-out
rows, so two candidates' scores can be compared row by row (a paired difference).
The model with the best mean is kept, with one exception: the most flexible base,
the mixture on Gaussianised features, has to beat the best of the others by more
than the standard error of that paired difference. On the 2-D shapes of
``benchmarks/quality.py`` it was worse on the test rows than the better of the
other two almost always, by 0.005-0.04 nats per row, yet sometimes came out first
on the held-out rows by a few thousandths; where it earns its place (digits, skewed
or heavy-tailed features) it wins by far more than the standard error
(``docs/density-quality.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["choose_base"]

#: Bases kept only where their held-out rows beat every other candidate's by more
#: than the standard error of the paired difference.
_NEEDS_MARGIN = frozenset({"gaussianized"})


def choose_base(
    held_out: Mapping[str, np.ndarray], reliable: Mapping[str, bool]
) -> str:
    """The candidate to keep.

    Parameters
    ----------
    held_out : mapping of str to ndarray of shape (n_rows,)
        Each candidate's per-row log-likelihoods of the same held-out rows, in the
        order the candidates were fitted.
    reliable : mapping of str to bool
        Whether each candidate's ``log Z`` rests on enough effective draws or
        chains; unreliable candidates are kept only when every candidate is.

    Returns
    -------
    str
        The kept candidate: among the reliable ones, the best mean held-out
        log-likelihood (the first on ties; a non-finite mean ranks last), unless
        that is a base in ``_NEEDS_MARGIN`` whose mean exceeds the best other
        candidate's by no more than the standard error of the difference.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> gmm = rng.normal(-2.0, 1.0, size=500)
    >>> spread = rng.normal(0.0, 0.1, size=500)
    >>> close = gmm + 0.001 + spread - spread.mean()  # ahead by 0.001 ± 0.0045
    >>> choose_base({"gmm": gmm, "gaussianized": close}, {"gmm": True,
    ...     "gaussianized": True})
    'gmm'
    >>> choose_base({"gmm": gmm, "gaussian": close}, {"gmm": True, "gaussian": True})
    'gaussian'
    """
    eligible = [kind for kind in held_out if reliable[kind]] or list(held_out)
    best = _best_mean(held_out, eligible)
    others = [kind for kind in eligible if kind not in _NEEDS_MARGIN]
    if best not in _NEEDS_MARGIN or not others:
        return best
    runner_up = _best_mean(held_out, others)
    if not math.isfinite(_mean(held_out, runner_up)):
        return best
    difference = np.asarray(held_out[best]) - np.asarray(held_out[runner_up])
    stderr = difference.std(ddof=1) / math.sqrt(difference.size)
    return best if difference.mean() > stderr else runner_up


def _best_mean(held_out: Mapping[str, np.ndarray], kinds: list[str]) -> str:
    """The first of ``kinds`` with the highest mean."""
    return max(kinds, key=lambda kind: _mean(held_out, kind))


def _mean(held_out: Mapping[str, np.ndarray], kind: str) -> float:
    """The mean held-out log-likelihood, ``-inf`` where it is not finite."""
    value = float(np.mean(held_out[kind]))
    return value if math.isfinite(value) else -math.inf
