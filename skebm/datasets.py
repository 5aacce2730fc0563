"""Toy 2-D densities for examples, tests and benchmarks (scikit-learn style).

Every generator takes ``n_samples`` and ``random_state`` and returns an ndarray of
shape ``(n_samples, 2)``: density estimation needs no labels.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_moons
from sklearn.utils import check_random_state

__all__ = [
    "TOY_DATASETS",
    "make_checkerboard",
    "make_eight_gaussians",
    "make_pinwheel",
    "make_rings",
    "make_swiss_roll_2d",
    "make_two_moons",
]


def make_two_moons(n_samples=1000, *, noise=0.1, random_state=None):
    """Two interleaving half circles with Gaussian noise.

    Parameters
    ----------
    n_samples : int, default=1000
    noise : float, default=0.1
        Standard deviation of the Gaussian noise.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)

    Examples
    --------
    >>> from skebm.datasets import make_two_moons
    >>> make_two_moons(5, random_state=0).shape
    (5, 2)
    """
    X, _ = make_moons(n_samples, noise=noise, random_state=random_state)
    return X


def make_eight_gaussians(n_samples=1000, *, radius=2.0, std=0.2, random_state=None):
    """Eight isotropic Gaussians evenly spaced on a circle.

    Parameters
    ----------
    n_samples : int, default=1000
    radius : float, default=2.0
    std : float, default=0.2
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    """
    rng = check_random_state(random_state)
    angles = 2 * np.pi * rng.randint(8, size=n_samples) / 8
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres + std * rng.standard_normal((n_samples, 2))


def make_pinwheel(
    n_samples=1000,
    *,
    n_arms=5,
    radial_std=0.3,
    tangential_std=0.1,
    rate=0.25,
    random_state=None,
):
    """A pinwheel of curved arms (Johnson et al., 2016).

    Parameters
    ----------
    n_samples : int, default=1000
    n_arms : int, default=5
    radial_std, tangential_std : float, default=0.3, 0.1
    rate : float, default=0.25
        How strongly each arm curls.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    """
    rng = check_random_state(random_state)
    arm = rng.randint(n_arms, size=n_samples)
    features = rng.standard_normal((n_samples, 2)) * [radial_std, tangential_std]
    features[:, 0] += 1.0
    angle = 2 * np.pi * arm / n_arms + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotations = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    return 2 * np.einsum("ni,nji->nj", features, rotations)


def make_swiss_roll_2d(n_samples=1000, *, noise=0.5, random_state=None):
    """A 2-D spiral: the Swiss roll seen from its axis, scaled by 1/5.

    Parameters
    ----------
    n_samples : int, default=1000
    noise : float, default=0.5
        Standard deviation of the Gaussian noise before scaling.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    """
    rng = check_random_state(random_state)
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n_samples))
    X = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    return (X + noise * rng.standard_normal((n_samples, 2))) / 5.0


def make_rings(n_samples=1000, *, radii=(1.0, 2.0, 3.0), noise=0.08, random_state=None):
    """Concentric circles with radial Gaussian noise (points spread evenly).

    Parameters
    ----------
    n_samples : int, default=1000
    radii : tuple of float, default=(1.0, 2.0, 3.0)
    noise : float, default=0.08
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    """
    rng = check_random_state(random_state)
    radii = np.asarray(radii, dtype=float)
    ring = rng.choice(len(radii), size=n_samples, p=radii / radii.sum())
    angle = rng.uniform(0, 2 * np.pi, size=n_samples)
    r = radii[ring] + noise * rng.standard_normal(n_samples)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


def make_checkerboard(n_samples=1000, *, random_state=None):
    """Uniform on the dark squares of a 4x4 checkerboard over [-2, 2]².

    Parameters
    ----------
    n_samples : int, default=1000
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    """
    rng = check_random_state(random_state)
    x1 = rng.uniform(-2, 2, size=n_samples)
    x2 = rng.uniform(0, 1, size=n_samples) + rng.randint(2, size=n_samples) * 2 - 2
    x2 += np.floor(x1) % 2
    return np.stack([x1, x2], axis=1)


#: Name -> generator, for benchmarks and examples.
TOY_DATASETS = {
    "two_moons": make_two_moons,
    "eight_gaussians": make_eight_gaussians,
    "pinwheel": make_pinwheel,
    "swiss_roll_2d": make_swiss_roll_2d,
    "rings": make_rings,
    "checkerboard": make_checkerboard,
}
