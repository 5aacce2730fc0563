"""Data sets with known densities, for examples, tests and benchmarks.

Every generator takes ``n_samples`` and ``random_state`` and returns an ndarray of
shape ``(n_samples, n_features)``: density estimation needs no labels. With
``return_log_density=True`` it returns ``(X, log_density)`` instead, where
``log_density(X)`` is the exact log-density (natural log, per row) of the
distribution the rows are drawn from, with the same parameters. Exact means closed
form, or a one-dimensional integral computed by composite Gauss-Legendre
quadrature whose panels are narrower than the noise (relative error far below
1e-8), or, for the pinwheel, the change of variables over every root of a
one-dimensional equation.

The 2-D shapes are listed in :data:`TOY_DATASETS`; :func:`make_funnel` and
:func:`make_uneven_mixture` draw in any dimension.

Examples
--------
>>> import numpy as np
>>> from skebm.datasets import make_rings
>>> X, log_density = make_rings(1000, random_state=0, return_log_density=True)
>>> X.shape
(1000, 2)
>>> bool(np.isfinite(log_density(X)).all())
True
"""

from __future__ import annotations

import functools
import math

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array

__all__ = [
    "TOY_DATASETS",
    "make_banana",
    "make_checkerboard",
    "make_eight_gaussians",
    "make_funnel",
    "make_gaussian_grid",
    "make_pinwheel",
    "make_rings",
    "make_swiss_roll_2d",
    "make_two_moons",
    "make_uneven_mixture",
]

_LOG_2PI = math.log(2.0 * math.pi)
#: Rows evaluated at once by the quadrature-based densities (bounded memory).
_CHUNK = 512


def _rows(X, n_features: int) -> np.ndarray:
    X = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, the density {n_features}.")
    return X


def _log_normal(x: np.ndarray, mean: np.ndarray, std) -> np.ndarray:
    """``log N(x; mean, std²)`` elementwise."""
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * _LOG_2PI


def _logsumexp(a: np.ndarray, axis: int, b: np.ndarray | None = None) -> np.ndarray:
    """``log Σ b·exp(a)`` along ``axis`` (``b >= 0``), ``-inf`` when all terms are 0."""
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    terms = np.exp(a - top) if b is None else b * np.exp(a - top)
    with np.errstate(divide="ignore"):
        return np.log(terms.sum(axis)) + np.squeeze(top, axis)


def _gauss_legendre(low: float, high: float, n_panels: int, order: int = 8):
    """Nodes and weights of composite Gauss-Legendre quadrature on ``[low, high]``."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(low, high, n_panels + 1)
    half = np.diff(edges)[:, None] / 2
    centre = (edges[:-1] + edges[1:])[:, None] / 2
    return (centre + half * nodes).ravel(), (half * weights).ravel()


def _log_noisy_curve_density(X, curves, t_range, noise, max_speed) -> np.ndarray:
    """Log-density of ``c(t) + noise·N(0, I)``, ``c`` picked uniformly from ``curves``
    and ``t`` uniform on ``t_range``: a 1-D integral over ``t`` per curve.

    The panels are at most half a noise standard deviation long along the curve
    (``max_speed`` bounds ``|c'(t)|``), so the Gaussian bump is resolved.
    """
    low, high = t_range
    n_panels = max(64, math.ceil((high - low) * max_speed / (0.5 * noise)))
    t, weights = _gauss_legendre(low, high, n_panels)
    log_weights = np.log(weights / (high - low) / len(curves))
    centres = np.concatenate([curve(t) for curve in curves])  # (nodes, 2)
    log_w = np.tile(log_weights, len(curves))
    out = np.empty(X.shape[0])
    for start in range(0, X.shape[0], _CHUNK):
        x = X[start : start + _CHUNK]
        sq = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        log_terms = log_w - 0.5 * sq / noise**2
        out[start : start + _CHUNK] = _logsumexp(log_terms, axis=1)
    return out - X.shape[1] * (math.log(noise) + 0.5 * _LOG_2PI)


# -- two moons -------------------------------------------------------------------


def _upper_moon(t):
    return np.stack([np.cos(t), np.sin(t)], -1)


def _lower_moon(t):
    return np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], -1)


def _two_moons_log_density(X, *, noise):
    X = _rows(X, 2)
    return _log_noisy_curve_density(
        X, (_upper_moon, _lower_moon), (0.0, math.pi), noise, max_speed=1.0
    )


def make_two_moons(
    n_samples=1000, *, noise=0.1, random_state=None, return_log_density=False
):
    """Two interleaving half circles with Gaussian noise.

    Each row picks a moon with probability 1/2 and an angle uniformly on
    ``[0, π]``, independently (unlike :func:`sklearn.datasets.make_moons`, which
    spaces the angles evenly), so the rows are i.i.d. draws of one density.

    Parameters
    ----------
    n_samples : int, default=1000
    noise : float, default=0.1
        Standard deviation of the Gaussian noise (positive for a density).
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (a 1-D integral over the angle).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    log_density : callable, only when ``return_log_density`` is True

    Examples
    --------
    >>> from skebm.datasets import make_two_moons
    >>> make_two_moons(5, random_state=0).shape
    (5, 2)
    """
    rng = check_random_state(random_state)
    lower = rng.randint(2, size=n_samples).astype(bool)
    t = rng.uniform(0.0, math.pi, size=n_samples)
    X = np.where(lower[:, None], _lower_moon(t), _upper_moon(t))
    X = X + noise * rng.standard_normal((n_samples, 2))
    if not return_log_density:
        return X
    return X, functools.partial(_two_moons_log_density, noise=_positive(noise))


def _positive(noise) -> float:
    if not noise > 0:
        raise ValueError(f"The log-density needs noise > 0, got {noise}.")
    return float(noise)


# -- Gaussian mixtures in 2-D ----------------------------------------------------


def _isotropic_mixture_log_density(X, *, centres, std):
    X = _rows(X, centres.shape[1])
    sq = ((X[:, None, :] - centres[None]) ** 2).sum(-1)
    d = centres.shape[1]
    log_component = -0.5 * sq / std**2 - d * (math.log(std) + 0.5 * _LOG_2PI)
    return _logsumexp(log_component, axis=1) - math.log(len(centres))


def _isotropic_mixture(n_samples, centres, std, rng):
    which = rng.randint(len(centres), size=n_samples)
    return centres[which] + std * rng.standard_normal((n_samples, centres.shape[1]))


def make_eight_gaussians(
    n_samples=1000, *, radius=2.0, std=0.2, random_state=None, return_log_density=False
):
    """Eight isotropic Gaussians evenly spaced on a circle, equally weighted.

    Parameters
    ----------
    n_samples : int, default=1000
    radius : float, default=2.0
    std : float, default=0.2
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (closed form).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    log_density : callable, only when ``return_log_density`` is True
    """
    rng = check_random_state(random_state)
    angles = 2 * np.pi * np.arange(8) / 8
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    X = _isotropic_mixture(n_samples, centres, std, rng)
    if not return_log_density:
        return X
    return X, functools.partial(
        _isotropic_mixture_log_density, centres=centres, std=_positive(std)
    )


def make_gaussian_grid(
    n_samples=1000,
    *,
    n_per_side=5,
    spacing=1.0,
    std=0.1,
    random_state=None,
    return_log_density=False,
):
    """Equally weighted isotropic Gaussians on a square grid (25 by default).

    Parameters
    ----------
    n_samples : int, default=1000
    n_per_side : int, default=5
        Gaussians per row and per column of the grid.
    spacing : float, default=1.0
        Distance between neighbouring centres; the grid is centred at 0.
    std : float, default=0.1
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (closed form).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    log_density : callable, only when ``return_log_density`` is True
    """
    rng = check_random_state(random_state)
    axis = spacing * (np.arange(n_per_side) - (n_per_side - 1) / 2)
    centres = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    X = _isotropic_mixture(n_samples, centres, std, rng)
    if not return_log_density:
        return X
    return X, functools.partial(
        _isotropic_mixture_log_density, centres=centres, std=_positive(std)
    )


# -- pinwheel --------------------------------------------------------------------


def _rotate(x: np.ndarray, angle) -> np.ndarray:
    """Rotate each row of ``x`` (..., 2) by ``angle`` (broadcast)."""
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack(
        [cos * x[..., 0] - sin * x[..., 1], sin * x[..., 0] + cos * x[..., 1]], -1
    )


def _pinwheel_log_density(X, *, n_arms, radial_std, tangential_std, rate):
    """Change of variables ``x = 2 R(2πk/K + rate·exp(f₀)) f`` over every arm ``k``
    and every root.

    With ``y = R(-2πk/K) x / 2`` and ``θ(f₀) = rate·exp(f₀)``, the features are
    ``f = R(-θ(f₀)) y``, so ``f₀`` solves ``h(f₀) = f₀ - y₀ cos θ - y₁ sin θ = 0``;
    every root has ``|f₀| <= |y|``, and ``h`` is negative below and positive above
    that range. The Jacobian of ``f -> x`` is ``4 (1 - f₁ θ'(f₀)) = 4 h'(f₀)``.
    Roots are bracketed on a grid whose cells are at most 0.01 long and turn ``θ``
    by at most 0.05 rad, then refined by bisection. The grid stops 10 radial
    standard deviations beyond the arms' mean radius, where the density is below
    exp(-50) of its peak; one last bracket covers the rest, so there a pair of
    close roots can be missed.
    """
    X = _rows(X, 2)
    radii = np.linalg.norm(X, axis=1) / 2
    top = float(radii.max(initial=0.0)) + 1e-9
    cap = min(top, 1.0 + 10.0 * radial_std)
    grid = [-top]
    while grid[-1] < cap:
        grid.append(grid[-1] + min(0.01, 0.05 / (rate * math.exp(grid[-1]))))
    grid[-1] = cap
    if top > cap:
        grid.append(top)
    grid = np.asarray(grid)
    out = np.full(X.shape[0], -np.inf)
    for k in range(n_arms):
        Y = _rotate(X / 2, -2 * np.pi * k / n_arms)
        for start in range(0, X.shape[0], _CHUNK):
            y = Y[start : start + _CHUNK]

            def h(f0, y):
                theta = rate * np.exp(f0)
                return f0 - y[:, :1] * np.cos(theta) - y[:, 1:] * np.sin(theta)

            sign = np.signbit(h(grid[None, :], y))
            rows, cells = np.nonzero(sign[:, :-1] != sign[:, 1:])
            low, high, y_root = grid[cells, None], grid[cells + 1, None], y[rows]
            low_sign = np.signbit(h(low, y_root))
            for _ in range(60):
                mid = 0.5 * (low + high)
                left = np.signbit(h(mid, y_root)) == low_sign
                low, high = np.where(left, mid, low), np.where(left, high, mid)
            f0 = 0.5 * (low + high)[:, 0]
            theta = rate * np.exp(f0)
            f1 = -y_root[:, 0] * np.sin(theta) + y_root[:, 1] * np.cos(theta)
            with np.errstate(divide="ignore"):
                log_term = (
                    _log_normal(f0, 1.0, radial_std)
                    + _log_normal(f1, 0.0, tangential_std)
                    - np.log(np.abs(4.0 * (1.0 - f1 * theta)))
                    - math.log(n_arms)
                )
            np.logaddexp.at(out, start + rows, log_term)
    return out


def make_pinwheel(
    n_samples=1000,
    *,
    n_arms=5,
    radial_std=0.3,
    tangential_std=0.1,
    rate=0.25,
    random_state=None,
    return_log_density=False,
):
    """A pinwheel of curved arms (Johnson et al., 2016).

    Each row picks an arm ``k`` uniformly, draws features
    ``f ~ N((1, 0), diag(radial_std², tangential_std²))`` and returns
    ``2 R(2πk/n_arms + rate·exp(f₀)) f`` (``R`` a rotation).

    Parameters
    ----------
    n_samples : int, default=1000
    n_arms : int, default=5
    radial_std, tangential_std : float, default=0.3, 0.1
    rate : float, default=0.25
        How strongly each arm curls.
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (change of variables, summed over the
        roots of a 1-D equation).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    log_density : callable, only when ``return_log_density`` is True
    """
    rng = check_random_state(random_state)
    arm = rng.randint(n_arms, size=n_samples)
    features = rng.standard_normal((n_samples, 2)) * [radial_std, tangential_std]
    features[:, 0] += 1.0
    angle = 2 * np.pi * arm / n_arms + rate * np.exp(features[:, 0])
    X = 2 * _rotate(features, angle)
    if not return_log_density:
        return X
    return X, functools.partial(
        _pinwheel_log_density,
        n_arms=int(n_arms),
        radial_std=_positive(radial_std),
        tangential_std=_positive(tangential_std),
        rate=float(rate),
    )


# -- Swiss roll ------------------------------------------------------------------


def _spiral(t):
    return np.stack([t * np.cos(t), t * np.sin(t)], -1) / 5.0


def _swiss_roll_log_density(X, *, noise):
    X = _rows(X, 2)
    t_range = (1.5 * math.pi, 4.5 * math.pi)
    speed = math.hypot(1.0, t_range[1]) / 5.0  # |c'(t)| = sqrt(1 + t²) / 5
    return _log_noisy_curve_density(X, (_spiral,), t_range, noise / 5.0, speed)


def make_swiss_roll_2d(
    n_samples=1000, *, noise=0.5, random_state=None, return_log_density=False
):
    """A 2-D spiral: the Swiss roll seen from its axis, scaled by 1/5.

    ``t ~ U(1.5π, 4.5π)`` and ``x = ((t cos t, t sin t) + noise·N(0, I)) / 5``.

    Parameters
    ----------
    n_samples : int, default=1000
    noise : float, default=0.5
        Standard deviation of the Gaussian noise before scaling.
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (a 1-D integral over ``t``).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    log_density : callable, only when ``return_log_density`` is True
    """
    rng = check_random_state(random_state)
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n_samples))
    X = _spiral(t) + noise / 5.0 * rng.standard_normal((n_samples, 2))
    if not return_log_density:
        return X
    return X, functools.partial(_swiss_roll_log_density, noise=_positive(noise))


# -- rings -----------------------------------------------------------------------


def _rings_log_density(X, *, radii, noise):
    X = _rows(X, 2)
    r = np.linalg.norm(X, axis=1)[:, None]
    log_w = np.log(radii / radii.sum())
    # The signed radius R + noise·N(0, 1) at a uniform angle: |x| is folded normal.
    folded = np.logaddexp(_log_normal(r, radii, noise), _log_normal(-r, radii, noise))
    with np.errstate(divide="ignore"):
        return _logsumexp(log_w + folded, axis=1) - np.log(2 * np.pi * r[:, 0])


def make_rings(
    n_samples=1000,
    *,
    radii=(1.0, 2.0, 3.0),
    noise=0.08,
    random_state=None,
    return_log_density=False,
):
    """Concentric circles with radial Gaussian noise (points spread evenly).

    A ring is picked with probability proportional to its radius, the angle is
    uniform and the radius is the ring's plus ``noise·N(0, 1)``.

    Parameters
    ----------
    n_samples : int, default=1000
    radii : tuple of float, default=(1.0, 2.0, 3.0)
    noise : float, default=0.08
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (closed form).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    log_density : callable, only when ``return_log_density`` is True
    """
    rng = check_random_state(random_state)
    radii = np.asarray(radii, dtype=float)
    ring = rng.choice(len(radii), size=n_samples, p=radii / radii.sum())
    angle = rng.uniform(0, 2 * np.pi, size=n_samples)
    r = radii[ring] + noise * rng.standard_normal(n_samples)
    X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    if not return_log_density:
        return X
    return X, functools.partial(_rings_log_density, radii=radii, noise=_positive(noise))


# -- checkerboard ----------------------------------------------------------------


def _checkerboard_log_density(X):
    X = _rows(X, 2)
    cells = np.floor(X)
    inside = ((X >= -2) & (X < 2)).all(1)
    dark = (cells.sum(1) % 2 == 0) & inside
    return np.where(dark, -math.log(8.0), -np.inf)


def make_checkerboard(n_samples=1000, *, random_state=None, return_log_density=False):
    """Uniform on the dark squares of a 4x4 checkerboard over [-2, 2]².

    Parameters
    ----------
    n_samples : int, default=1000
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density: ``log(1/8)`` on the eight dark unit
        squares, ``-inf`` elsewhere.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    log_density : callable, only when ``return_log_density`` is True
    """
    rng = check_random_state(random_state)
    x1 = rng.uniform(-2, 2, size=n_samples)
    x2 = rng.uniform(0, 1, size=n_samples) + rng.randint(2, size=n_samples) * 2 - 2
    x2 += np.floor(x1) % 2
    X = np.stack([x1, x2], axis=1)
    return (X, _checkerboard_log_density) if return_log_density else X


# -- banana ----------------------------------------------------------------------


def _banana_log_density(X, *, curvature, noise):
    X = _rows(X, 2)
    ridge = curvature * (X[:, 0] ** 2 - 1.0)
    return _log_normal(X[:, 0], 0.0, 1.0) + _log_normal(X[:, 1], ridge, noise)


def make_banana(
    n_samples=1000,
    *,
    curvature=1.0,
    noise=0.25,
    random_state=None,
    return_log_density=False,
):
    """A curved ridge: ``x₀ ~ N(0, 1)``, ``x₁ = curvature·(x₀² - 1) + noise·N(0, 1)``.

    Parameters
    ----------
    n_samples : int, default=1000
    curvature : float, default=1.0
    noise : float, default=0.25
        Standard deviation of ``x₁`` around the ridge.
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (closed form).

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    log_density : callable, only when ``return_log_density`` is True
    """
    rng = check_random_state(random_state)
    x0 = rng.standard_normal(n_samples)
    x1 = curvature * (x0**2 - 1.0) + noise * rng.standard_normal(n_samples)
    X = np.stack([x0, x1], axis=1)
    if not return_log_density:
        return X
    return X, functools.partial(
        _banana_log_density, curvature=float(curvature), noise=_positive(noise)
    )


# -- any dimension ---------------------------------------------------------------


def _funnel_log_density(X, *, n_features, scale):
    X = _rows(X, n_features)
    v = X[:, 0]
    return _log_normal(v, 0.0, scale) + _log_normal(
        X[:, 1:], 0.0, np.exp(v / 2)[:, None]
    ).sum(1)


def make_funnel(
    n_samples=1000,
    *,
    n_features=10,
    scale=3.0,
    random_state=None,
    return_log_density=False,
):
    """Neal's funnel: ``v ~ N(0, scale²)``, then ``x_i ~ N(0, exp(v))`` for the rest.

    The first column is ``v``; the other ``n_features - 1`` columns shrink and widen
    with it by orders of magnitude (Neal, 2003).

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=10
        At least 2.
    scale : float, default=3.0
        Standard deviation of ``v``.
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (closed form).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    log_density : callable, only when ``return_log_density`` is True
    """
    if n_features < 2:
        raise ValueError(f"The funnel needs n_features >= 2, got {n_features}.")
    rng = check_random_state(random_state)
    v = scale * rng.standard_normal(n_samples)
    rest = np.exp(v / 2)[:, None] * rng.standard_normal((n_samples, n_features - 1))
    X = np.column_stack([v, rest])
    if not return_log_density:
        return X
    return X, functools.partial(
        _funnel_log_density, n_features=int(n_features), scale=_positive(scale)
    )


def _mixture_log_density(X, *, weights, means, scale_trils):
    X = _rows(X, means.shape[1])
    d = means.shape[1]
    log_components = []
    for weight, mean, tril in zip(weights, means, scale_trils):
        white = np.linalg.solve(tril, (X - mean).T)  # L^{-1} (x - mu)
        half_log_det = np.log(np.diag(tril)).sum()
        log_components.append(
            math.log(weight)
            - 0.5 * (white**2).sum(0)
            - half_log_det
            - 0.5 * d * _LOG_2PI
        )
    return _logsumexp(np.stack(log_components, 1), axis=1)


def make_uneven_mixture(
    n_samples=1000,
    *,
    n_features=10,
    weights=(0.4, 0.25, 0.15, 0.1, 0.06, 0.04),
    layout_seed=0,
    random_state=None,
    return_log_density=False,
):
    """A Gaussian mixture with uneven weights, scales and correlations.

    The components' means, covariances (random rotations of random spreads, each
    component at its own overall scale) and the weights are fixed by
    ``layout_seed``; ``random_state`` only draws the rows, so calls with different
    ``random_state`` sample one density.

    Parameters
    ----------
    n_samples : int, default=1000
    n_features : int, default=10
    weights : tuple of float, default=(0.4, 0.25, 0.15, 0.1, 0.06, 0.04)
        Component weights (normalised here).
    layout_seed : int, default=0
        Seed of the components' means and covariances.
    random_state : int, RandomState instance or None, default=None
    return_log_density : bool, default=False
        Also return the exact log-density (closed form).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    log_density : callable, only when ``return_log_density`` is True
    """
    weights = np.asarray(weights, dtype=float)
    weights = weights / weights.sum()
    layout = np.random.RandomState(layout_seed)
    k = len(weights)
    means = 3.0 * layout.standard_normal((k, n_features))
    scale_trils = []
    for _ in range(k):
        rotation, _ = np.linalg.qr(layout.standard_normal((n_features, n_features)))
        spread = np.exp(layout.uniform(-1.0, 0.5)) * np.exp(
            layout.uniform(-1.0, 1.0, n_features)
        )
        covariance = (rotation * spread**2) @ rotation.T
        scale_trils.append(np.linalg.cholesky(covariance))
    scale_trils = np.stack(scale_trils)
    rng = check_random_state(random_state)
    which = rng.choice(k, size=n_samples, p=weights)
    eps = rng.standard_normal((n_samples, n_features))
    X = means[which] + np.einsum("nij,nj->ni", scale_trils[which], eps)
    if not return_log_density:
        return X
    return X, functools.partial(
        _mixture_log_density, weights=weights, means=means, scale_trils=scale_trils
    )


#: The 2-D shapes: name -> generator, for benchmarks and examples.
TOY_DATASETS = {
    "two_moons": make_two_moons,
    "eight_gaussians": make_eight_gaussians,
    "pinwheel": make_pinwheel,
    "swiss_roll_2d": make_swiss_roll_2d,
    "rings": make_rings,
    "checkerboard": make_checkerboard,
    "gaussian_grid": make_gaussian_grid,
    "banana": make_banana,
}
