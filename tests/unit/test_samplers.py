"""Samplers against targets with known moments; contracts of the strategy API.

Tolerances: the final states of independent chains are independent draws, so a
mean has standard error sqrt(Σ_ii / n) and a covariance entry
sqrt((Σ_ii Σ_jj + Σ_ij²) / n); tests allow 5 standard errors. For whole chains,
the standard error of the average of a statistic f is sd(f) / sqrt(ESS(f)), with
the effective sample size estimated from the chains' autocorrelations
(:func:`effective_sample_size`).
"""

import math

import numpy as np
import pytest
import torch

from skebm.energies import GaussianEnergy, GaussianMixtureEnergy
from skebm.samplers import (
    HMC,
    MALA,
    CosineSchedule,
    ExponentialSchedule,
    Langevin,
    LinearSchedule,
)
from tests._helpers import small_estimator

COV = np.array([[1.0, 0.95], [0.95, 1.0]])
MEAN = np.array([1.0, -2.0])


def _gaussian_target(dtype=torch.float32):
    return GaussianEnergy(2, mean=MEAN, covariance=COV, learnable=False).to(dtype)


def _assert_moments(x, mean, cov, n_se=5.0):
    x = x.double().numpy()
    n = len(x)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < n_se * se_mean), (x.mean(0), mean)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(x.T) - cov) < n_se * se_cov), (np.cov(x.T), cov)


def test_mala_samples_correlated_gaussian_exactly():
    g = torch.Generator().manual_seed(0)
    x, info = MALA(step_size=0.05).sample(
        _gaussian_target(),
        torch.zeros(4000, 2),
        n_steps=600,
        generator=g,
        return_info=True,
    )
    _assert_moments(x, MEAN, COV)
    assert 0.4 < float(info["acceptance_rate"]) < 0.75


@pytest.mark.parametrize("step", [0.2, 0.02])
def test_langevin_matches_its_known_discretisation_bias(step):
    """ULA on N(0, 1) has stationary variance 1 / (1 - ε/2): the bias shrinks with
    ε, and a wrong noise scale (e.g. sqrt(ε) instead of sqrt(2ε)) would halve it."""
    g = torch.Generator().manual_seed(0)
    x = Langevin(step_size=step).sample(
        lambda x: 0.5 * x.pow(2).sum(-1),
        torch.zeros(20000, 1),
        n_steps=int(8 / step),
        generator=g,
    )
    expected = 1.0 / (1.0 - step / 2)
    se = expected * np.sqrt(2.0 / len(x))
    assert abs(float(x.var()) - expected) < 5 * se


@pytest.mark.parametrize(
    "sampler", [Langevin(0.01), MALA(0.01), HMC(0.05, n_leapfrog=3)], ids=repr
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampler_contract(sampler, dtype):
    energy = _gaussian_target(dtype)
    x0 = torch.zeros(16, 2, dtype=dtype)
    rng_state = torch.random.get_rng_state()
    a = sampler.sample(
        energy, x0, n_steps=5, generator=torch.Generator().manual_seed(3)
    )
    b = sampler.sample(
        energy, x0, n_steps=5, generator=torch.Generator().manual_seed(3)
    )
    assert a.shape == x0.shape and a.dtype == dtype
    assert torch.equal(a, b)
    assert torch.equal(rng_state, torch.random.get_rng_state())
    assert torch.equal(x0, torch.zeros(16, 2, dtype=dtype))
    unchanged = sampler.sample(energy, x0, n_steps=0)
    assert torch.equal(unchanged, x0)
    assert unchanged.data_ptr() != x0.data_ptr()  # a copy, never an alias


def test_sampler_freezes_and_restores_parameters():
    energy = GaussianEnergy(2)
    Langevin().sample(energy, torch.zeros(4, 2), n_steps=2)
    assert all(p.requires_grad for p in energy.parameters())
    assert all(p.grad is None for p in energy.parameters())


@pytest.mark.parametrize(
    "schedule, values",
    [
        (LinearSchedule(start=1.0, end=0.0), [1.0, 0.5, 0.0]),
        (ExponentialSchedule(start=1.0, end=0.01), [1.0, 0.1, 0.01]),
        (CosineSchedule(start=1.0, end=0.0), [1.0, 0.5, 0.0]),
        (LinearSchedule(start=1.0, end=0.0, n_steps=2), [1.0, 0.0, 0.0]),
    ],
)
def test_schedules(schedule, values):
    np.testing.assert_allclose([schedule(t, 3) for t in range(3)], values, atol=1e-12)


def test_langevin_accepts_a_step_size_schedule():
    g = torch.Generator().manual_seed(0)
    x = Langevin(step_size=LinearSchedule(start=0.1, end=0.001)).sample(
        lambda x: 0.5 * x.pow(2).sum(-1), torch.zeros(5000, 1), n_steps=300, generator=g
    )
    assert abs(float(x.var()) - 1.0) < 0.1


# -- exactness of MALA and HMC ---------------------------------------------------


def effective_sample_size(chains: np.ndarray) -> float:
    """ESS of a statistic recorded as ``chains[t, c]`` (draw t of chain c).

    Stan's multi-chain estimator (Gelman et al., BDA3, §11.5): autocorrelations
    from the within-chain autocovariances (FFT) and the between-chain variance,
    summed in pairs by Geyer's initial monotone sequence.
    """
    n, m = chains.shape
    centred = chains - chains.mean(0)
    spectrum = np.fft.rfft(centred, n=2 * n, axis=0)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum), axis=0)[:n] / n
    within = (autocovariance[0] * n / (n - 1)).mean()
    variance = (n - 1) / n * within + chains.mean(0).var(ddof=1)
    rho = 1.0 - (within - autocovariance.mean(1)) / variance
    pairs = rho[: 2 * (n // 2)].reshape(-1, 2).sum(1)
    positive = np.argmax(pairs <= 0) if np.any(pairs <= 0) else len(pairs)
    pairs = np.minimum.accumulate(pairs[:positive])
    tau = -1.0 + 2.0 * pairs.sum()
    return n * m / max(tau, 1.0 / math.log10(n * m))


def whiten(x: np.ndarray, mean, cov) -> np.ndarray:
    """``L⁻¹(x - μ)`` with ``Σ = L Lᵀ``: the target then has mean 0 and covariance
    I, so every direction (the narrow axis of a correlated Gaussian too) is
    checked with the same relative precision."""
    return np.linalg.solve(np.linalg.cholesky(cov), (x - mean)[..., None])[..., 0]


def moment_z_scores(draws: np.ndarray, mean, cov) -> np.ndarray:
    """|average - truth| / (sd / sqrt(ESS)) for the mean and covariance of the
    whitened draws: each coordinate z_i (truth 0) and each product z_i z_j (truth
    δ_ij). ``draws`` has shape (n_draws, n_chains, d)."""
    z = whiten(draws, mean, cov)
    d = z.shape[-1]
    statistics = [(z[..., i], 0.0) for i in range(d)] + [
        (z[..., i] * z[..., j], float(i == j)) for i in range(d) for j in range(i, d)
    ]
    return np.array(
        [
            abs(f.mean() - truth) / (f.std() / math.sqrt(effective_sample_size(f)))
            for f, truth in statistics
        ]
    )


def energy_test_pvalue(x: np.ndarray, y: np.ndarray, n_permutations=1000, seed=0):
    """Permutation p-value of the energy distance (Székely & Rizzo, 2013) between
    two independent samples: 2E|X-Y| - E|X-X'| - E|Y-Y'|, a statistic that is zero
    exactly when the distributions are equal."""
    pooled = torch.as_tensor(np.concatenate([x, y]), dtype=torch.float64)
    distances = torch.cdist(pooled, pooled)
    n, total = len(x), len(pooled)
    g = torch.Generator().manual_seed(seed)
    labels = torch.full((total,), 1.0 / n, dtype=torch.float64)
    labels[n:] = -1.0 / (total - n)
    orders = [torch.randperm(total, generator=g) for _ in range(n_permutations)]
    weights = torch.stack([labels] + [labels[order] for order in orders], dim=1)
    statistic = -(weights * (distances @ weights)).sum(0)
    exceed = (statistic[1:] >= statistic[0]).sum().item()
    return (exceed + 1) / (n_permutations + 1)


def two_sample_pvalue(draws: np.ndarray, exact: np.ndarray, mean, cov) -> float:
    """The energy test on whitened samples (the same affine map for both)."""
    return energy_test_pvalue(whiten(draws, mean, cov), whiten(exact, mean, cov))


MIXTURE = dict(
    weights=[0.3, 0.7],
    means=np.array([[-1.2, 0.0], [1.0, 0.8]]),
    covariances=np.array([[[0.5, 0.2], [0.2, 0.4]], [[0.3, -0.1], [-0.1, 0.5]]]),
)


def _mixture_moments():
    weights, means, covariances = (np.asarray(MIXTURE[k]) for k in MIXTURE)
    mean = weights @ means
    cov = sum(
        w * (c + np.outer(m - mean, m - mean))
        for w, m, c in zip(weights, means, covariances)
    )
    return mean, cov


TARGETS = {
    "gaussian_corr_0.95": lambda: (
        GaussianEnergy(2, mean=MEAN, covariance=COV, learnable=False),
        MEAN,
        COV,
    ),
    "gaussian_mixture": lambda: (
        GaussianMixtureEnergy(2, **MIXTURE, learnable=False),
        *_mixture_moments(),
    ),
}

#: Fixed-step kernels (no adaptation: every transition is exact).
KERNELS = {
    "mala": (MALA(step_size=0.04, target_accept=None), 5),
    "hmc": (HMC(step_size=0.15, n_leapfrog=8), 1),
}


def _run_chains(kernel, thin, energy, *, n_chains=1000, burn_in=100, n_draws=150):
    """Chains from an over-dispersed start N(0, 3²I), burnt in, then ``n_draws``
    draws every ``thin`` steps: returns draws (n_draws, n_chains, d)."""
    g = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(n_chains, 2, generator=g, dtype=torch.float64)
    energy = energy.double()
    x = kernel.sample(energy, x, n_steps=burn_in * thin, generator=g)
    draws = []
    for _ in range(n_draws):
        x = kernel.sample(energy, x, n_steps=thin, generator=g)
        draws.append(x)
    return torch.stack(draws).numpy()


def _exact_draws(energy, n=1000):
    return energy.double().sample(n, generator=torch.Generator().manual_seed(1)).numpy()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_mcmc_samples_exactly(kernel, target):
    """Moments within 5 ESS-based standard errors, and the final states of the
    1,000 independent chains indistinguishable from 1,000 exact draws
    (energy-distance permutation test, not rejected at 1%)."""
    energy, mean, cov = TARGETS[target]()
    sampler, thin = KERNELS[kernel]
    draws = _run_chains(sampler, thin, energy)
    assert moment_z_scores(draws, mean, cov).max() < 5
    assert two_sample_pvalue(draws[-1], _exact_draws(energy), mean, cov) > 0.01


def test_the_exactness_checks_detect_a_biased_sampler():
    """Power: unadjusted Langevin has a bias on the narrow axis of the correlated
    Gaussian (precision 20 there): its variance is 0.05 / (1 - 20ε/2), 1.67 times
    the target's at MALA's step ε = 0.04, which the moment check catches; at
    ε = 0.06 (2.5 times) the two-sample test rejects too."""
    energy, mean, cov = TARGETS["gaussian_corr_0.95"]()
    draws = _run_chains(Langevin(step_size=0.04), 5, energy)
    assert moment_z_scores(draws, mean, cov).max() > 10
    draws = _run_chains(Langevin(step_size=0.06), 5, energy, n_draws=1)
    assert two_sample_pvalue(draws[-1], _exact_draws(energy), mean, cov) < 0.01


def test_hmc_uses_one_gradient_per_leapfrog_step():
    """L gradient evaluations per transition, plus one at the start of a run."""
    calls = []
    target = _gaussian_target(torch.float64)

    def energy(x):
        calls.append(1)
        return target(x)

    HMC(step_size=0.1, n_leapfrog=7).sample(
        energy, torch.zeros(8, 2, dtype=torch.float64), n_steps=5
    )
    assert len(calls) == 5 * 7 + 1


def test_hmc_diagonal_mass_matches_the_target_scales():
    """A badly scaled target (sd 10 and 0.1): with M = Σ⁻¹ one step size fits both
    axes, and the chains recover the variances."""
    variances = np.array([100.0, 0.01])
    energy = GaussianEnergy(2, covariance=np.diag(variances), learnable=False).double()
    g = torch.Generator().manual_seed(0)
    x0 = energy.sample(2000, generator=g)
    x, info = HMC(step_size=0.3, n_leapfrog=5, mass=1 / variances).sample(
        energy, x0, n_steps=30, generator=g, return_info=True
    )
    se = variances * math.sqrt(2 / len(x))
    assert np.all(np.abs(x.var(0).numpy() - variances) < 5 * se)
    assert float(info["acceptance_rate"]) > 0.8


def test_hmc_rejects_non_finite_trajectories_and_reports_them():
    """An energy that is NaN right of 0.5: proposals landing there are rejected
    (never clamped or replaced) and counted as divergent; chains stay finite."""

    def energy(x):
        value = 0.5 * x.pow(2).sum(-1)
        return torch.where(x[:, 0] > 0.5, torch.full_like(value, float("nan")), value)

    x0 = torch.full((200, 1), -1.0)
    x, info = HMC(step_size=0.5, n_leapfrog=4).sample(
        energy,
        x0,
        n_steps=20,
        generator=torch.Generator().manual_seed(0),
        return_info=True,
    )
    assert torch.isfinite(x).all() and (x <= 0.5).all()
    assert 0 < float(info["divergence_rate"]) < 1
    assert float(info["acceptance_rate"]) <= 1 - float(info["divergence_rate"]) + 1e-6


def test_hmc_step_size_schedule_and_bad_mass():
    g = torch.Generator().manual_seed(0)
    x = HMC(step_size=LinearSchedule(start=0.5, end=0.1), n_leapfrog=5).sample(
        lambda x: 0.5 * x.pow(2).sum(-1), torch.zeros(4000, 1), n_steps=40, generator=g
    )
    assert abs(float(x.var()) - 1.0) < 5 * math.sqrt(2 / 4000)
    with pytest.raises(ValueError, match="one entry per feature"):
        HMC(mass=[1.0, 2.0, 3.0]).sample(
            _gaussian_target(), torch.zeros(3, 2), n_steps=1
        )


@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
def test_every_builtin_sampler_serves_the_estimator(sampler, moons):
    """Training (persistent CD) and ``sample`` with each registered sampler."""
    est = small_estimator(loss="pcd", sampler=sampler, random_state=0).fit(moons)
    draws = est.sample(50, random_state=0)
    assert draws.shape == (50, 2) and np.all(np.isfinite(draws))
