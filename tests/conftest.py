"""Shared fixtures. Third-party plugins installed on a developer machine never
affect results: autoload is off unless a test turns it on explicitly."""

import os

os.environ.setdefault("SKEBM_DISABLE_PLUGIN_AUTOLOAD", "1")
# Lets scikit-learn's check_array_api_input run instead of skipping (read by scipy
# at import, so it is set before anything imports scipy).
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest

from skebm.plugins import reset_registry


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Every test starts from a registry built under its own environment."""
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def moons():
    from skebm.datasets import make_two_moons

    return make_two_moons(600, noise=0.1, random_state=0)


@pytest.fixture
def rng():
    return np.random.RandomState(0)
