"""Random state stays local: fit and sample never use or move torch's or numpy's
global generators, and fits in concurrent threads are reproducible."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from skebm.datasets import make_two_moons
from skebm.utils._torch import local_random_state
from tests._helpers import cuda, small_estimator

X = make_two_moons(200, random_state=0)


def _global_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002


def _assert_untouched(before):
    torch_state, numpy_state = _global_states()
    assert torch.equal(torch_state, before[0])
    np.testing.assert_array_equal(numpy_state, before[1])


@pytest.mark.parametrize("random_state", [None, 0])
@pytest.mark.parametrize("loss", ["nce", "pcd"])
def test_fit_and_sample_leave_the_global_generators_alone(random_state, loss):
    before = _global_states()
    est = small_estimator(loss=loss, random_state=random_state).fit(X)
    est.sample(5, random_state=random_state)
    _assert_untouched(before)


def test_nce_with_a_torch_distribution_as_noise_leaves_them_alone():
    noise = torch.distributions.MultivariateNormal(torch.zeros(2), 4 * torch.eye(2))
    before = _global_states()
    small_estimator(loss_params={"noise": noise}, random_state=0).fit(X)
    _assert_untouched(before)


def test_random_state_none_gives_fresh_streams():
    a, b = local_random_state(None), local_random_state(None)
    assert a.randint(2**31) != b.randint(2**31)


def _fit(seed, loss):
    return small_estimator(loss=loss, random_state=seed).fit(X).score_samples(X[:20])


@pytest.mark.parametrize("loss", ["nce", "pcd"])
def test_fits_in_threads_equal_serial_fits(loss):
    seeds = list(range(6))
    serial = [_fit(seed, loss) for seed in seeds]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(_fit, seeds * 2, [loss] * 12))
    for i, scores in enumerate(threaded):
        np.testing.assert_array_equal(scores, serial[i % len(seeds)])


@cuda
def test_a_cuda_fit_leaves_the_global_cuda_generators_alone():
    states = [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
    small_estimator(device="cuda", random_state=0).fit(X)
    for i, state in enumerate(states):
        assert torch.equal(torch.cuda.get_rng_state(i), state)
