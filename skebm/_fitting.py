"""How :class:`~skebm.EnergyDensityEstimator` fits: the procedure behind ``fit``
and ``partial_fit``.

One call of :func:`fit_estimator`:

1. checks every option and the data, before any fitted attribute changes;
2. on a new model, standardises the data and draws its seeds (:func:`_initialize`);
   on a warm start or ``partial_fit``, re-reads the strategies;
3. holds out ``validation_fraction`` of the rows (:func:`_split`);
4. fits each candidate base, trains an energy on each that may compete and keeps
   the model the held-out rows favour (:func:`_fit_bases`,
   :func:`skebm._base_choice.choose_base`); a
   continuation trains the kept model (:func:`_fit_model`);
5. estimates ``log Z`` and reports divergence, an unreliable ``log Z`` or no
   convergence.

Every function takes the :class:`~skebm.EnergyDensityEstimator` being fitted
and sets its fitted attributes; this module never imports :mod:`skebm.estimator`,
so imports run one way. Any error rolls the estimator back to its state before
the call (:func:`skebm._fitted_state.roll_back`). The estimator's public class,
its parameters and inference live in :mod:`skebm.estimator`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from skebm._base_choice import choose_base
from skebm._components import build_energy
from skebm._fitted_state import roll_back, snapshot
from skebm._heldout import HeldOutLikelihood
from skebm._training import run_epochs
from skebm._validation import check_options, check_standardisation, validate_samples
from skebm.acceleration import attach_compiled_kernels, choose_fast_path
from skebm.bases import BASE_PARAMS, fit_base, refit_base
from skebm.exceptions import DivergenceError, PartitionWarning
from skebm.partition import estimate_log_partition
from skebm.utils._torch import (
    local_random_state,
    make_generator,
    new_seed,
    resolve_device,
    resolve_dtype,
)

__all__ = ["fit_estimator"]

#: The bases ``base="auto"`` tries, each with its own trained energy.
_AUTO_BASES = ("gaussian", "gmm", "gaussianized")

#: Fewest held-out rows for early stopping; with fewer, all rows train.
_MIN_VALIDATION = 5

#: Base draws of the importance-sampling ``log Z`` that early stopping uses.
_VALIDATION_DRAWS = 8192

#: Fewest effective draws (importance sampling) or chains (AIS) of a trusted
#: ``log Z``; with fewer, a trained energy is dropped.
_MIN_PARTITION_ESS = 10

#: Held-out rows on which ``scale_output_`` is checked to scale the energy (one
#: batch, so memory stays bounded however many rows are held out).
_SCALE_PROBE_ROWS = 1024

#: Largest shortfall (nats per row) of a base's held-out score to the best base's
#: for ``base="auto"`` to train an energy on it where ``log Z`` is sampled.
_MAX_BASE_GAP = 5.0

#: What one candidate base's fit produces (kept for the best candidate).
_MODEL_ATTRIBUTES = (
    "_partition_reliable",
    "_energy_dropped",
    "base_kind_",
    "base_",
    "energy_",
    "loss_",
    "sampler_",
    "_loss_state",
    "_optimizer_state",
    "_train_rng_state",
    "loss_curve_",
    "n_iter_",
    "log_partition_",
    "log_partition_stderr_",
    "validation_scores_",
    "best_validation_score_",
    "base_validation_score_",
    "energy_scale_",
)


def fit_estimator(estimator, X, *, n_epochs: int, incremental: bool):
    """Fit, or raise and leave the estimator exactly as it was: the new state
    is built in place and rolled back on any error (an interrupt keeps the
    partly trained model, as documented)."""
    saved = snapshot(estimator)
    try:
        return _fit_or_raise(estimator, X, n_epochs=n_epochs, incremental=incremental)
    except Exception:
        roll_back(estimator, saved)
        raise


def _fit_or_raise(estimator, X, *, n_epochs: int, incremental: bool):
    first = not hasattr(estimator, "energy_") or not (
        estimator.warm_start or incremental
    )
    check_options(estimator)
    X = validate_samples(estimator, X, reset=first, ensure_min_samples=2)
    if first:
        _initialize(estimator, X)
    else:
        _prepare_continuation(estimator)
    Z_train, Z_valid = _split(
        estimator, (X - estimator.mean_) / estimator.scale_, incremental
    )
    if first:
        result = _fit_bases(estimator, Z_train, Z_valid, n_epochs, incremental)
    else:
        result, _ = _fit_model(estimator, Z_train, Z_valid, n_epochs, incremental)
    if result.interrupted:
        warnings.warn(
            "Training interrupted by user; the partly trained model is kept.",
            stacklevel=3,
        )
    if estimator._energy_dropped or not estimator._partition_reliable:
        outcome = (
            "the trained energy was dropped: the model is its base density, "
            "whose log Z is exact"
            if estimator._energy_dropped
            else "score_samples and score may be off by more than "
            "log_partition_stderr_ says"
        )
        warnings.warn(
            "The estimate of log Z rested on fewer than "
            f"{_MIN_PARTITION_ESS} effective importance-sampling draws or "
            f"annealed-importance chains, so {outcome}. Raise "
            "partition_params['n_draws'] (importance sampling), 'n_chains' or "
            "'n_temperatures' (AIS), or use a base density closer to the data.",
            PartitionWarning,
            stacklevel=3,
        )
    if result.diverged_epoch is not None or not math.isfinite(estimator.log_partition_):
        when = (
            f"at epoch {result.diverged_epoch}: the loss exploded, or the loss, "
            "the weights or the held-out log-likelihood became non-finite"
            if result.diverged_epoch is not None
            else f"to a model whose log Z is {estimator.log_partition_}"
        )
        raise DivergenceError(
            f"Training diverged {when}. The estimator was left as it was before "
            "this call. Try a smaller learning_rate, a smaller sampler "
            "step_size, or more regularisation (e.g. loss_params={'alpha': 0.1} "
            "for contrastive divergence)."
        )
    if (
        estimator.tol is not None
        and Z_valid is None
        and not result.converged
        and n_epochs > 0
        and not incremental
    ):
        warnings.warn(
            f"Maximum iterations ({n_epochs}) reached and the loss did not "
            f"improve by tol={estimator.tol} less than "
            f"{estimator.n_iter_no_change} times in a row; consider increasing "
            "max_iter.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return estimator


def _initialize(estimator, X: np.ndarray) -> None:
    """Start a new model: device, standardisation, seeds, the validation rows."""
    rng = local_random_state(estimator.random_state)
    (
        estimator._base_seed,
        estimator._energy_seed,
        estimator._train_seed,
        estimator._partition_seed,
        estimator._split_seed,
    ) = (new_seed(rng) for _ in range(5))
    estimator.device_ = resolve_device(estimator.device)
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
    check_standardisation(mean, scale)
    estimator.mean_ = mean
    estimator.scale_ = np.where(
        scale
        > 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(estimator.mean_)),
        scale,
        1.0,
    )


def _split(estimator, Z: np.ndarray, incremental: bool):
    """The training rows and, with early stopping, the held-out rows.

    Returns ``(Z_train, Z_valid)``; ``Z_valid`` is None when there is no
    validation (``early_stopping=False``, ``partial_fit``, or fewer than
    ``_MIN_VALIDATION`` held-out rows).
    """
    n_valid = math.ceil(estimator.validation_fraction * Z.shape[0])
    if (
        incremental
        or not estimator.early_stopping
        or n_valid < _MIN_VALIDATION
        or Z.shape[0] - n_valid < 2
    ):
        return Z, None
    order = np.random.RandomState(estimator._split_seed).permutation(Z.shape[0])
    return Z[order[n_valid:]], Z[order[:n_valid]]


def _base_kinds(estimator, validated: bool) -> tuple[str, ...]:
    if estimator.base != "auto":
        return (estimator.base,)
    return _AUTO_BASES if validated else ("gmm",)


def _fit_bases(
    estimator,
    Z_train,
    Z_valid,
    n_epochs: int,
    incremental: bool,
):
    """Fit every candidate base, train an energy on each that may compete, and
    keep the model :func:`~skebm._base_choice.choose_base` picks from their
    held-out rows (the best mean, the Gaussianised base only by a margin).

    Where ``log Z`` is sampled (``d > 2``), a base whose own held-out score is
    more than ``_MAX_BASE_GAP`` nats per row below the best base's is not
    refined: the energy would have to make up more than sampling from the base
    can reliably normalise.
    """
    dtype = resolve_dtype(estimator.dtype)
    bases = {}
    for kind in _base_kinds(estimator, Z_valid is not None):
        bases[kind] = fit_base(
            kind,
            Z_train,
            _base_params(estimator, kind),
            random_state=estimator._base_seed,
            Z_valid=Z_valid,
        ).to(estimator.device_, dtype)
    if len(bases) > 1 and not _exact_partition(estimator):
        alone = {
            kind: _held_out(estimator, Z_valid, base).base_score
            for kind, base in bases.items()
        }
        top = max(alone.values())
        bases = {k: b for k, b in bases.items() if alone[k] >= top - _MAX_BASE_GAP}
    fitted, held_out, reliable = {}, {}, {}
    for kind, base in bases.items():
        _initialize_model(estimator, kind, base, Z_train)
        name = type(estimator).__name__
        if len(bases) > 1:
            name += f", base {kind!r}"
        result, held_out[kind] = _fit_model(
            estimator, Z_train, Z_valid, n_epochs, incremental, name
        )
        fitted[kind] = result, {a: getattr(estimator, a) for a in _MODEL_ATTRIBUTES}
        # A model whose log Z rests on a handful of draws or chains may score far
        # better than it is: it is kept only when nothing else is left.
        reliable[kind] = estimator._partition_reliable
        if result.interrupted or result.diverged_epoch is not None:
            break
    kept = choose_base(held_out, reliable) if len(fitted) > 1 else next(iter(fitted))
    best_result, best_state = fitted[kept]
    for attribute, value in best_state.items():
        setattr(estimator, attribute, value)
    estimator.base_scores_ = (
        {kind: state["best_validation_score_"] for kind, (_, state) in fitted.items()}
        if Z_valid is not None
        else None
    )
    if Z_valid is not None and estimator.base_kind_ != "standard":
        _refit_base(estimator, np.concatenate([Z_train, Z_valid]))
    return best_result


#: What :func:`_refit_base` changes, and restores where ``log Z`` turns unreliable.
_REFITTED_ATTRIBUTES = (
    "base_",
    "log_partition_",
    "log_partition_stderr_",
    "_partition_reliable",
)


def _base_params(estimator, kind: str) -> dict:
    """The entries of ``base_params`` that base ``kind`` takes (with ``"auto"``,
    each candidate reads its own)."""
    return {
        key: value
        for key, value in (estimator.base_params or {}).items()
        if key in BASE_PARAMS[kind]
    }


def _refit_base(estimator, Z_all) -> None:
    """Refit the kept base to every row, held-out ones included, then compute
    ``log Z`` again: the energy stays, the base sees 10 % more data (as
    ``GridSearchCV`` refits the best model). The held-out scores stay those
    measured before. Where ``log Z`` under the refitted base rests on too few
    effective draws or chains, the model stays as it was validated, base and
    ``log Z``."""
    validated = {a: getattr(estimator, a) for a in _REFITTED_ATTRIBUTES}
    params = _base_params(estimator, estimator.base_kind_)
    estimator.base_ = refit_base(estimator.base_, Z_all, params).to(
        estimator.device_, estimator._dtype()
    )
    _estimate_partition(estimator)
    if not estimator._partition_reliable:
        for attribute, value in validated.items():
            setattr(estimator, attribute, value)


def _exact_partition(estimator) -> bool:
    """Whether ``log Z`` comes from quadrature (exact) rather than sampling."""
    return estimator.partition == "grid" or (
        estimator.partition == "auto" and estimator.n_features_in_ <= 2
    )


def _fit_model(
    estimator, Z_train, Z_valid, n_epochs: int, incremental: bool, name: str = ""
):
    """Train the current model on the rows ``Z_train``, then estimate ``log Z``."""
    train = torch.as_tensor(Z_train, dtype=estimator._dtype()).to(estimator.device_)
    validation = _held_out(estimator, Z_valid, estimator.base_)
    result = _train(
        estimator,
        train,
        n_epochs,
        validation,
        incremental,
        name or type(estimator).__name__,
    )
    estimator.energy_scale_ = _shrink_energy(estimator, validation, result)
    _estimate_partition(estimator)
    estimator._energy_dropped = False
    if not estimator._partition_reliable and not incremental:
        _drop_energy(estimator)
    return result, _record_validation(estimator, result, validation)


def _shrink_energy(estimator, validation, result) -> float:
    """Scale the trained energy by the factor in ``[0, 1]`` that the held-out
    rows favour (:meth:`HeldOutLikelihood.best_scale`), and return it.

    Early stopping picks the epoch; this picks the strength. An energy that
    learned the training rows too closely scores better on held-out rows when
    shrunk towards the base, and its ``log Z`` is easier to estimate. Energies
    without ``scale_output_``, fits without held-out rows and diverged ones are
    left as they are (factor 1), and so is an energy whose ``scale_output_`` does
    not multiply its values on (up to ``_SCALE_PROBE_ROWS`` of) the held-out rows
    by the factor (a subclass whose ``forward`` adds terms outside the layer it
    scales).
    """
    energy = estimator.energy_
    scale_output = getattr(energy, "scale_output_", None)
    if validation is None or scale_output is None or result.diverged_epoch is not None:
        return 1.0
    factor = validation.best_scale(energy)
    if factor == 1.0:
        return factor
    trained = {k: v.clone() for k, v in energy.state_dict().items()}
    probe = validation.rows[:_SCALE_PROBE_ROWS]
    with torch.no_grad():
        before = energy(probe)
        scale_output(factor)
        after = energy(probe)
    if torch.allclose(after, factor * before, rtol=1e-4, atol=1e-5):
        return factor
    energy.load_state_dict(trained)
    return 1.0


def _new_energy(estimator, dtype: torch.dtype):
    """The energy as ``fit`` first builds it (the same seed every time)."""
    return build_energy(
        estimator.energy,
        estimator.energy_params,
        n_features=estimator.n_features_in_,
        seed=estimator._energy_seed,
        device=estimator.device_,
        dtype=dtype,
    )


def _drop_energy(estimator) -> None:
    """Fall back to the base when ``log Z`` cannot be trusted.

    When the energy starts at zero (the default MLP does), its untrained self
    replaces it: the model is then its base, whose ``log Z`` is exactly 0.
    Other energies are kept (``fit`` warns).
    """
    untrained = _new_energy(estimator, estimator._dtype())
    probe = estimator.base_.sample(256, generator=make_generator(estimator.device_, 0))
    with torch.no_grad():
        if not bool((untrained(probe) == 0).all()):
            return
    estimator.energy_, estimator.energy_scale_ = untrained, 1.0
    estimator.log_partition_, estimator.log_partition_stderr_ = 0.0, 0.0
    estimator._partition_reliable, estimator._energy_dropped = True, True


def _initialize_model(estimator, kind: str, base, Z_train) -> None:
    """Energy, strategies and training state for one candidate base."""
    dtype = resolve_dtype(estimator.dtype)
    estimator.base_kind_ = kind
    estimator.base_ = base
    estimator.energy_ = _new_energy(estimator, dtype)
    estimator._resolve_strategies()
    estimator._optimizer_state = None
    estimator.loss_curve_ = []
    generator = make_generator(estimator.device_, estimator._train_seed)
    estimator._loss_state = estimator.loss_.init_state(
        estimator._model(),
        torch.as_tensor(Z_train, dtype=dtype).to(estimator.device_),
        generator=generator,
    )
    estimator._train_rng_state = generator.get_state()


def _held_out(estimator, Z_valid, base) -> HeldOutLikelihood | None:
    if Z_valid is None:
        return None
    return HeldOutLikelihood(
        base,
        torch.as_tensor(Z_valid, dtype=base._reference().dtype).to(estimator.device_),
        n_draws=_VALIDATION_DRAWS,
        generator=make_generator(estimator.device_, estimator._split_seed),
        offset=-float(np.log(estimator.scale_).sum()),
    )


def _record_validation(estimator, result, validation) -> np.ndarray | None:
    """The validation curve and the final model's held-out score (with the
    estimator's own ``log Z``); returns the score of each held-out row."""
    if validation is None:
        estimator.validation_scores_ = None
        estimator.best_validation_score_ = None
        estimator.base_validation_score_ = None
        return None
    estimator.validation_scores_ = [result.initial_score, *result.validation_scores]
    estimator.base_validation_score_ = float(validation.base_score)
    rows = validation.log_likelihoods(estimator.energy_, estimator.log_partition_)
    estimator.best_validation_score_ = float(rows.mean())
    return rows.cpu().numpy()


def _prepare_continuation(estimator) -> None:
    """Re-read hyper-parameters for a warm start; keep the trained state."""
    previous_loss = type(estimator.loss_)
    estimator._resolve_strategies()
    if type(estimator.loss_) is not previous_loss:
        raise ValueError(
            f"warm_start cannot switch the loss from {previous_loss.__name__} to "
            f"{type(estimator.loss_).__name__}; set warm_start=False to start anew."
        )
    device = resolve_device(estimator.device)
    if device != estimator.device_:
        estimator._move_to(device)


def _batch_size(estimator, n_samples: int) -> int:
    if estimator.batch_size == "auto":
        return min(256, n_samples)
    if estimator.batch_size > n_samples:
        warnings.warn(
            f"batch_size={estimator.batch_size} is larger than the {n_samples} "
            f"samples; using {n_samples}.",
            UserWarning,
            stacklevel=4,
        )
        return n_samples
    return estimator.batch_size


def _train(
    estimator, Z: torch.Tensor, n_epochs: int, validation, incremental: bool, name: str
):
    params = list(estimator.energy_.parameters())
    if estimator._loss_state is not None:
        params += list(estimator._loss_state.parameters())
    model = estimator._model()
    path = choose_fast_path(estimator.device_, estimator.compile)
    if path.compiled_kernels:
        attach_compiled_kernels(model)
    optimizer = torch.optim.Adam(
        params, lr=estimator.learning_rate, capturable=path.cuda_graphs
    )
    if estimator._optimizer_state is not None:
        optimizer.load_state_dict(estimator._optimizer_state)
        for group in optimizer.param_groups:
            group["lr"] = estimator.learning_rate
    generator = make_generator(estimator.device_)
    if estimator._train_rng_state is None:
        generator.manual_seed(estimator._train_seed)
    else:
        generator.set_state(estimator._train_rng_state)
    result = run_epochs(
        model=model,
        loss=estimator.loss_,
        sampler=estimator.sampler_,
        loss_state=estimator._loss_state,
        optimizer=optimizer,
        X=Z,
        batch_size=_batch_size(estimator, Z.shape[0]),
        n_epochs=n_epochs,
        generator=generator,
        max_grad_norm=estimator.max_grad_norm,
        tol=estimator.tol,
        n_iter_no_change=estimator.n_iter_no_change,
        best_loss=min(estimator.loss_curve_, default=float("inf")),
        validation=validation,
        ema_decay=0.0 if incremental else estimator.ema_decay,
        verbose=estimator.verbose,
        first_epoch=len(estimator.loss_curve_) + 1,
        name=name,
        capture=path.cuda_graphs,
    )
    estimator.loss_curve_ = [*estimator.loss_curve_, *result.losses]
    estimator.n_iter_ = result.n_epochs
    estimator._optimizer_state = optimizer.state_dict()
    estimator._train_rng_state = generator.get_state()
    return result


def _estimate_partition(estimator) -> None:
    generator = make_generator(estimator.device_, estimator._partition_seed)
    estimate = estimate_log_partition(
        estimator._model(),
        estimator.partition,
        estimator.partition_params,
        generator=generator,
    )
    estimator.log_partition_ = estimate.log_partition
    estimator.log_partition_stderr_ = estimate.stderr
    ess = estimate.effective_sample_size
    estimator._partition_reliable = ess is None or ess >= _MIN_PARTITION_ESS
