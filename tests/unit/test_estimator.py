"""EnergyDensityEstimator: parameters, strategies, warm start, faults, devices."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from skebm import EnergyDensityEstimator
from skebm.exceptions import DivergenceError, UnknownComponentError
from skebm.losses import ContrastiveDivergence, NoiseContrastiveEstimation
from skebm.samplers import MALA, Langevin
from skebm.utils._sklearn_compat import InvalidParameterError
from tests._helpers import FailingLoss, small_estimator


def test_untrained_model_is_its_base(moons):
    # AIS of a zero energy is exact: every chain has the same weight.
    est = small_estimator(
        max_iter=0, partition="ais", partition_params=None, random_state=0
    ).fit(moons)
    assert est.log_partition_ == 0.0
    assert est.log_partition_stderr_ == 0.0
    z = torch.as_tensor((moons - est.mean_) / est.scale_, dtype=torch.float32)
    with torch.no_grad():
        expected = est.base_.log_prob(z).double().numpy() - np.log(est.scale_).sum()
    np.testing.assert_allclose(est.score_samples(moons), expected, rtol=1e-6)
    np.testing.assert_array_equal(
        est.base_score_samples(moons), est.score_samples(moons)
    )


def test_base_score_samples_is_the_model_without_its_energy(moons):
    est = small_estimator(max_iter=5, base="gaussian", random_state=0).fit(moons)
    z = torch.as_tensor((moons - est.mean_) / est.scale_, dtype=torch.float32)
    with torch.no_grad():
        energy = est.energy_(z).double().numpy()
    np.testing.assert_allclose(
        est.score_samples(moons) - est.base_score_samples(moons),
        -energy - est.log_partition_,
        atol=1e-5,
    )


def test_score_is_mean_of_score_samples(moons):
    est = small_estimator(random_state=0).fit(moons)
    score = est.score(moons)
    assert isinstance(score, float)
    assert score == pytest.approx(est.score_samples(moons).mean(), rel=1e-12)


def test_scores_are_in_user_units(moons):
    """Scaling the data by c shifts every log-density by -d·log c (Jacobian)."""
    est = small_estimator(random_state=0).fit(moons)
    scaled = small_estimator(random_state=0).fit(10.0 * moons)
    np.testing.assert_allclose(
        scaled.score_samples(10.0 * moons),
        est.score_samples(moons) - 2 * np.log(10.0),
        atol=1e-4,
    )
    samples = scaled.sample(500, random_state=0)
    assert np.abs(samples.mean(0) - 10.0 * moons.mean(0)).max() < 2.0


def test_score_samples_independent_of_batching(moons):
    est = small_estimator(random_state=0).fit(moons)
    full = est.score_samples(moons)
    parts = np.concatenate(
        [est.score_samples(moons[i : i + 7]) for i in range(0, 600, 7)]
    )
    np.testing.assert_array_equal(full, parts)


def test_strategy_names_and_instances_are_equivalent(moons):
    by_name = small_estimator(
        loss="cd",
        loss_params={"n_steps": 3},
        sampler="langevin",
        sampler_params={"step_size": 0.02},
        random_state=0,
    ).fit(moons)
    by_instance = small_estimator(
        loss=ContrastiveDivergence(n_steps=3),
        sampler=Langevin(step_size=0.02),
        random_state=0,
    ).fit(moons)
    np.testing.assert_array_equal(
        by_name.score_samples(moons), by_instance.score_samples(moons)
    )
    assert by_name.loss_.get_params() == by_instance.loss_.get_params()


def test_parameters_are_never_mutated(moons):
    sampler = Langevin(step_size=0.02)
    energy = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1), nn.Flatten(0))
    before = [p.detach().clone() for p in energy.parameters()]
    params = {"n_steps": 3}
    est = small_estimator(
        loss="cd",
        loss_params=params,
        sampler=sampler,
        energy=energy,
        energy_params=None,
        random_state=0,
    ).fit(moons)
    assert est.sampler is sampler and est.sampler_ is not sampler
    assert est.energy is energy and est.energy_ is not energy
    assert params == {"n_steps": 3}
    for old, new in zip(before, energy.parameters()):
        assert torch.equal(old, new)


def test_set_params_on_named_strategies_goes_to_params_dict():
    est = EnergyDensityEstimator(
        sampler="langevin", sampler_params={"noise_scale": 1.0}
    )
    est.set_params(sampler__step_size=0.05, loss__noise_ratio=3)
    assert est.sampler_params == {"noise_scale": 1.0, "step_size": 0.05}
    assert est.loss_params == {"noise_ratio": 3}
    est.set_params(sampler=MALA(), sampler__step_size=0.2)
    assert est.sampler.step_size == 0.2


def test_unknown_strategy_name_lists_available(moons):
    with pytest.raises(UnknownComponentError) as info:
        small_estimator(sampler="malaa").fit(moons)
    message = str(info.value)
    assert "Unknown sampler 'malaa'" in message
    assert "'langevin' (skebm" in message and "'mala' (skebm" in message
    assert "Did you mean 'mala'?" in message


def test_misspelled_strategy_parameter_suggests_the_right_one(moons):
    with pytest.raises(InvalidParameterError, match="Did you mean 'n_steps'"):
        small_estimator(loss="cd", loss_params={"n_step": 3}).fit(moons)
    with pytest.raises(
        InvalidParameterError, match="Did you mean 'hidden_layer_sizes'"
    ):
        small_estimator(energy_params={"hidden_layer_size": (4,)}).fit(moons)


def test_invalid_strategy_value_raises_sklearn_error(moons):
    with pytest.raises(InvalidParameterError, match="step_size"):
        small_estimator(sampler=Langevin(step_size=-1.0)).fit(moons)


def test_params_dict_with_instance_is_an_error(moons):
    with pytest.raises(ValueError, match="loss_params can only be used"):
        small_estimator(
            loss=NoiseContrastiveEstimation(), loss_params={"noise_ratio": 2}
        ).fit(moons)


@pytest.mark.parametrize("form", ["class", "factory", "instance"])
def test_energy_forms(moons, form):
    class Quadratic(nn.Module):
        def __init__(self, n_features, width=4):
            super().__init__()
            self.linear = nn.Linear(n_features, width)

        def forward(self, x):
            return self.linear(x).pow(2).sum(-1) * 0.01

    spec = {
        "class": (Quadratic, {"width": 3}),
        "factory": (
            lambda n_features, width: Quadratic(n_features, width),
            {"width": 3},
        ),
        "instance": (Quadratic(2, 3), None),
    }[form]
    est = small_estimator(energy=spec[0], energy_params=spec[1], random_state=0)
    est.fit(moons)
    assert est.energy_.linear.out_features == 3
    assert np.isfinite(est.score(moons))


def test_energy_output_shape_is_checked(moons):
    with pytest.raises(
        ValueError, match=r"must map a \(batch, 2\) tensor to a \(batch,\)"
    ):
        small_estimator(
            energy=lambda n_features: nn.Linear(n_features, 1), energy_params=None
        ).fit(moons)


def test_warm_start_continues_training(moons):
    est = small_estimator(max_iter=2, warm_start=True, random_state=0).fit(moons)
    energy = est.energy_
    est.fit(moons)
    assert est.energy_ is energy
    assert len(est.loss_curve_) == 4 and est.n_iter_ == 2
    cold = clone(est).set_params(warm_start=False).fit(moons)
    assert len(cold.loss_curve_) == 2


def test_warm_start_equals_one_longer_fit(moons):
    """Resuming is exact: 2 + 3 warm epochs give the same model as 5 epochs (for
    plain training: early stopping and averaging keep a best epoch instead)."""
    plain = dict(early_stopping=False, ema_decay=0.0, random_state=0)
    long = small_estimator(max_iter=5, **plain).fit(moons)
    resumed = small_estimator(max_iter=2, warm_start=True, **plain).fit(moons)
    resumed.set_params(max_iter=3).fit(moons)
    np.testing.assert_array_equal(long.loss_curve_, resumed.loss_curve_)
    np.testing.assert_array_equal(
        long.score_samples(moons), resumed.score_samples(moons)
    )


def test_partial_fit_runs_one_epoch_and_checks_features(moons):
    est = small_estimator(random_state=0)
    assert est.partial_fit(moons) is est
    assert est.partial_fit(moons) is est
    assert len(est.loss_curve_) == 2 and est.n_iter_ == 1
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(moons[:, :1])


def test_batch_size_larger_than_data_is_clipped_with_warning(moons):
    with pytest.warns(UserWarning, match="batch_size=5000 is larger"):
        small_estimator(batch_size=5000).fit(moons)


def test_cuda_without_cuda_is_a_clear_error(moons):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA device.*Available devices: cpu"):
        small_estimator(device="cuda").fit(moons)


def test_unknown_device_is_a_clear_error(moons):
    with pytest.raises(ValueError, match="Unknown device 'tpu'. Available devices"):
        small_estimator(device="tpu").fit(moons)


def test_divergence_leaves_an_unfitted_estimator_unfitted(moons):
    # 600 rows, batch 256: 3 batches per epoch; the 7th call is in epoch 3.
    est = small_estimator(
        loss=FailingLoss(fail_at=7), max_iter=5, early_stopping=False, random_state=0
    )
    with pytest.raises(DivergenceError, match="diverged at epoch 3.*as it was"):
        est.fit(moons)
    assert not hasattr(est, "energy_")
    with pytest.raises(NotFittedError):
        est.score_samples(moons)


def test_keyboard_interrupt_keeps_partly_trained_model(moons):
    est = small_estimator(
        loss=FailingLoss(fail_at=7, error=KeyboardInterrupt()),
        max_iter=5,
        random_state=0,
    )
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(moons)
    assert len(est.loss_curve_) == 2
    assert np.isfinite(est.score(moons))


def test_tol_stops_early_and_warns_when_not_reached(moons):
    """Without early stopping, ``tol`` applies to the training loss."""
    plain = dict(early_stopping=False, random_state=0)
    est = small_estimator(max_iter=50, tol=10.0, n_iter_no_change=2, **plain)
    est.fit(moons)
    assert est.n_iter_ == 3  # the best epoch, then 2 without improvement
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning):
        small_estimator(max_iter=2, tol=0.0, n_iter_no_change=5, **plain).fit(moons)


def test_verbose_prints_one_line_per_epoch(moons, capsys):
    small_estimator(max_iter=2, verbose=2, base="gmm", random_state=0).fit(moons)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[EnergyDensityEstimator] epoch 1")
    assert "held-out=" in lines[0]


def test_verbose_names_each_candidate_base(moons, capsys):
    small_estimator(max_iter=2, verbose=2, random_state=0).fit(moons)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("[EnergyDensityEstimator, base 'gaussian'] epoch 1")
    assert lines[2].startswith("[EnergyDensityEstimator, base 'gmm'] epoch 1")
    assert lines[4].startswith("[EnergyDensityEstimator, base 'gaussianized'] epoch")


def test_global_rng_untouched(moons):
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the global RNG)
    est = small_estimator(loss="pcd", sampler="langevin", random_state=0).fit(moons)
    est.sample(10, random_state=0)
    est.score_samples(moons)
    assert torch.equal(torch_state, torch.random.get_rng_state())
    np.testing.assert_array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


def test_constant_feature_is_handled(rng):
    X = np.column_stack([rng.normal(size=200), np.full(200, 3.0)])
    est = small_estimator(random_state=0).fit(X)
    assert est.scale_[1] == 1.0
    assert np.all(np.isfinite(est.score_samples(X)))
    assert np.all(np.isfinite(est.sample(5, random_state=0)))


def test_float64_dtype_end_to_end(moons):
    est = small_estimator(dtype="float64", random_state=0).fit(moons)
    assert next(est.energy_.parameters()).dtype == torch.float64
    assert est.score_samples(moons).dtype == np.float64


def test_pickle_keeps_version_and_warns_on_mismatch(moons):
    from skebm.exceptions import VersionWarning

    est = small_estimator(random_state=0).fit(moons)
    state = est.__getstate__()
    assert state["_skebm_version"]
    state["_skebm_version"] = "0.0.0"
    loaded = EnergyDensityEstimator.__new__(EnergyDensityEstimator)
    with pytest.warns(VersionWarning, match="saved with skebm 0.0.0"):
        loaded.__setstate__(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.loads(pickle.dumps(est))


def test_clone_of_fitted_estimator_is_unfitted(moons):
    est = small_estimator(random_state=0).fit(moons)
    assert not hasattr(clone(est), "energy_")
