"""Soak test: many fit/score/sample rounds in one process leak neither memory
nor threads."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import warnings

import numpy as np
import pytest

from tests._helpers import small_estimator

ROUNDS = 200
WARM_UP = 20  # allocator pools, lazy imports and thread pools fill up first


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _settle() -> None:
    """Collect garbage and hand the C allocator's free pages back to the OS.

    Without ``malloc_trim`` glibc keeps freed arenas mapped, and the resident set
    size swings by tens of MiB between rounds with no live object behind it.
    """
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    malloc_trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)


def _one_round(rng: np.random.RandomState, seed: int) -> None:
    """Fit, score and sample a tiny model on data of a random shape."""
    n, d = rng.randint(20, 200), rng.randint(1, 5)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d)
    loss = ["nce", "cd", "pcd"][seed % 3]
    est = small_estimator(
        loss=loss,
        loss_params=None if loss == "nce" else {"n_steps": 2},
        sampler=["mala", "langevin"][seed % 2],
        dtype=["float32", "float64"][(seed // 2) % 2],
        max_iter=1,
        partition_params={
            "n_draws": 2048,
            "n_chains": 32,
            "n_temperatures": 5,
            "n_points": 101,
        },
        random_state=seed,
    ).fit(X)
    assert np.isfinite(est.score(X))
    assert np.isfinite(est.sample(int(rng.randint(1, 100)), random_state=seed)).all()


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"),
    reason="reads the resident set size and the thread count from Linux's /proc",
)
def test_repeated_rounds_grow_neither_memory_nor_threads():
    """After a warm-up, 200 rounds with varying shapes, losses, samplers, dtypes
    and seeds leave the resident set size within 5%, fewer new Python objects
    than rounds, and the OS thread count unchanged."""
    rng = np.random.RandomState(0)
    # Warnings are not recorded: pytest keeps every recorded one as a live object.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(WARM_UP):
            _one_round(rng, seed)
        _settle()
        rss_before, threads_before = _rss_bytes(), _os_threads()
        objects_before = len(gc.get_objects())
        for seed in range(WARM_UP, WARM_UP + ROUNDS):
            _one_round(rng, seed)
        _settle()
        rss_after, threads_after = _rss_bytes(), _os_threads()
        new_objects = len(gc.get_objects()) - objects_before
    growth = (rss_after - rss_before) / rss_before
    print(
        f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB "
        f"({100 * growth:+.2f}%) over {ROUNDS} rounds; {new_objects:+d} objects; "
        f"threads {threads_before} -> {threads_after}"
    )
    assert threads_after <= threads_before
    assert new_objects < ROUNDS
    assert growth < 0.05
