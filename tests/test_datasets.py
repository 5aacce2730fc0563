"""Toy data generators: shapes, determinism, and their defining geometry."""

import numpy as np
import pytest

from skebm.datasets import TOY_DATASETS, make_eight_gaussians, make_rings


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_shape_and_determinism(name):
    make = TOY_DATASETS[name]
    X = make(300, random_state=0)
    assert X.shape == (300, 2) and X.dtype == np.float64
    np.testing.assert_array_equal(X, make(300, random_state=0))
    assert not np.array_equal(X, make(300, random_state=1))


def test_eight_gaussians_sit_on_their_circle():
    X = make_eight_gaussians(4000, radius=2.0, std=0.01, random_state=0)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 2.0, atol=0.05)
    angles = np.round(np.arctan2(X[:, 1], X[:, 0]) / (np.pi / 4)) % 8
    assert set(angles) == set(range(8))


def test_rings_radii():
    X = make_rings(3000, radii=(1.0, 3.0), noise=0.0, random_state=0)
    r = np.linalg.norm(X, axis=1)
    assert set(np.round(r, 6)) == {1.0, 3.0}
    assert abs(np.mean(np.isclose(r, 3.0)) - 0.75) < 0.05
