"""EnergyDensityEstimator: energy-based density estimation with sklearn semantics."""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from torch import nn

from skebm._components import build_energy, resolve_strategy
from skebm._fitted_state import (
    cpu_state,
    move_fitted,
    roll_back,
    snapshot,
    warn_loaded_on_cpu,
    warn_other_version,
)
from skebm._heldout import HeldOutLikelihood
from skebm._model_file import write as write_model_file
from skebm._progress import SamplingProgress
from skebm._training import run_epochs
from skebm._validation import (
    check_options,
    check_standardisation,
    validate_samples,
)
from skebm._version import __version__
from skebm.acceleration import (
    AcceleratedSampler,
    attach_compiled_kernels,
    choose_fast_path,
)
from skebm.bases import BASE_PARAMS, fit_base, refit_base
from skebm.energies.residual import ResidualEnergy
from skebm.exceptions import DivergenceError, PartitionWarning
from skebm.losses import BaseLoss
from skebm.partition import estimate_log_partition
from skebm.samplers import BaseSampler
from skebm.utils._sklearn_compat import (
    Interval,
    StrOptions,
    _fit_context,
)
from skebm.utils._torch import (
    evaluate_in_chunks,
    frozen_parameters,
    local_random_state,
    make_generator,
    new_seed,
    resolve_device,
    resolve_dtype,
)

__all__ = ["EnergyDensityEstimator"]

#: Chains run at once by ``sample``; memory is bounded by one chunk.
SAMPLE_CHUNK = 16384

#: Parameters that take sub-parameters through ``set_params(<name>__<key>=...)``.
_STRATEGY_PARAMS = ("energy", "loss", "sampler")

#: The bases ``base="auto"`` tries, each with its own trained energy.
_AUTO_BASES = ("gaussian", "gmm", "gaussianized")

#: Fewest held-out rows for early stopping; with fewer, all rows train.
_MIN_VALIDATION = 5

#: Base draws of the importance-sampling ``log Z`` that early stopping uses.
_VALIDATION_DRAWS = 8192

#: Fewest effective AIS chains for a ``log Z`` that ``base="auto"`` trusts.
_MIN_PARTITION_ESS = 10

#: Largest shortfall (nats per row) of a base's held-out score to the best base's
#: for ``base="auto"`` to train an energy on it where ``log Z`` comes from AIS.
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
)


class EnergyDensityEstimator(DensityMixin, BaseEstimator):
    """Energy-based density estimator.

    Learns a density ``p(x) = q(x) exp(-E(x)) / Z`` where ``q`` is a normalised
    base density fitted to the data and ``E`` a neural energy initialised at zero,
    so an untrained model equals its base. The data are standardised internally;
    all results are in the user's units.

    By default ``fit`` holds out ``validation_fraction`` of the rows, as
    ``MLPRegressor`` does with ``early_stopping=True``: it trains an energy on
    each candidate base (a Gaussian, a Gaussian mixture and a mixture on
    Gaussianised features), stops each when its held-out log-likelihood stops
    improving, keeps the best epoch, and keeps the base and energy that score best
    on the held-out rows. ``log Z`` is then computed once (exact quadrature in
    ``d <= 2``, annealed importance sampling beyond), so :meth:`score_samples` is
    a normalised, deterministic log-density and :meth:`score` a mean
    log-likelihood that ``GridSearchCV`` can compare across models.

    Training losses and MCMC samplers are strategies, chosen by registered name
    (``loss="pcd", loss_params={"n_steps": 20}``) or as instances
    (``loss=ContrastiveDivergence(n_steps=20)``); plugins add names.

    Parameters
    ----------
    energy : str, nn.Module, nn.Module class or callable, default="mlp"
        The learned energy ``E``: a registered name (``"mlp"``, the analytic
        ``"gaussian"``, ``"gaussian_mixture"``, ``"double_well"``,
        ``"rosenbrock"``, or a plugin's), a module instance (deep-copied at fit,
        never trained in place), a module class or a factory
        ``f(n_features, **energy_params)``.
        It must map a ``(batch, n_features)`` tensor to a ``(batch,)`` tensor.
    energy_params : dict, default=None
        Keyword arguments of the energy's class or factory, e.g.
        ``{"hidden_layer_sizes": (64, 64)}``.
    base : {"auto", "gmm", "gaussianized", "gaussian", "standard"}, default="auto"
        The base density ``q``, fitted to the standardised training rows: a
        Gaussian mixture (components chosen on the held-out rows, or by BIC
        without them), the same mixture on features Gaussianised one at a time
        (:class:`~skebm.bases.GaussianizedMixtureDensity`), one full-covariance
        Gaussian, or ``N(0, I)``. ``"auto"`` tries ``"gaussian"``, ``"gmm"`` and
        ``"gaussianized"``, each with its own trained energy, and keeps the model
        that scores best on the held-out rows (without held-out rows it is
        ``"gmm"``). Where ``log Z`` comes from AIS (``d > 2``), a candidate base
        more than 5 nats per row below the best one is not refined, and a model
        whose ``log Z`` rests on fewer than 10 effective AIS chains is kept only
        when nothing else is left.
    base_params : dict, default=None
        Options of the base, see :func:`skebm.bases.fit_base` (e.g.
        ``{"n_components": 10}``); with ``"auto"`` they apply to the mixtures.
    loss : str or BaseLoss, default="nce"
        Training loss: a registered name (``"nce"``, ``"cd"``, ``"pcd"``, ``"sm"``,
        ``"dsm"``, ``"ml"``, or a plugin's) or a
        :class:`~skebm.losses.BaseLoss` instance.
    loss_params : dict, default=None
        Constructor parameters of a named loss.
    sampler : str or BaseSampler, default="mala"
        MCMC sampler for losses that sample and for :meth:`sample`: a registered
        name (``"langevin"``, ``"mala"``, ``"hmc"``, or a plugin's) or a
        :class:`~skebm.samplers.BaseSampler` instance.
    sampler_params : dict, default=None
        Constructor parameters of a named sampler.
    sample_steps : int, default=100
        Sampler steps run by :meth:`sample` from exact base draws.
    partition : {"auto", "ais", "grid"}, default="auto"
        How ``log Z`` is estimated at the end of ``fit``: annealed importance
        sampling from the base, or exact quadrature (``d <= 2`` only); ``"auto"``
        is quadrature where it applies and AIS elsewhere.
    partition_params : dict, default=None
        Options of the ``log Z`` estimator, see
        :func:`skebm.partition.ais_log_partition` and
        :func:`skebm.partition.grid_log_partition`; with ``"auto"`` keys of either
        are accepted and each method reads its own.
    max_iter : int, default=300
        Most epochs per call to :meth:`fit` (per candidate base).
    batch_size : int or "auto", default="auto"
        Rows per optimisation step; ``"auto"`` is ``min(256, n_samples)``.
    learning_rate : float, default=3e-3
        Adam's learning rate; with early stopping it is halved after every
        ``n_iter_no_change // 3`` epochs without improvement.
    max_grad_norm : float or None, default=None
        Clip the norm of the gradient of all trained parameters (energy and loss
        state together) to this value before each optimiser step; ``None`` does
        not clip.
    tol : float or None, default=None
        With early stopping: an epoch improves when its held-out log-likelihood
        beats the best by more than ``tol`` (``None``: 0). Without: stop when the
        training loss has not improved by ``tol`` for ``n_iter_no_change`` epochs,
        and ``None`` always runs ``max_iter`` epochs (contrastive losses are not
        monotone).
    n_iter_no_change : int, default=30
        Epochs without improvement before training stops.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows (when that is at least 5
        rows) to choose the base, the epoch and when to stop, as described above.
        ``partial_fit`` never holds rows out.
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping.
    ema_decay : float, default=0.99
        Decay per step of the moving average of the energy's weights (Polyak
        averaging, warmed up over the first steps) that is validated and kept;
        ``0`` keeps the trained weights themselves. ``partial_fit`` does not
        average.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"mps"``. Checked at fit.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the networks and of training; inputs of any real dtype are
        cast. Results are returned as float64.
    compile : bool, default=False
        Opt-in fast path. On CUDA, each training step (the loss with its MCMC,
        backward and Adam) and each ``sample`` loop are recorded as CUDA graphs and
        replayed, which removes the launch overhead that dominates small networks
        (see docs/performance.md). Elsewhere, the energy's gradient and the
        Langevin move used by every sampler step are compiled with
        ``torch.compile``. Results match
        eager mode (bit-identical where the kernels are the same, else to float
        tolerance). The first epoch and each ``sample`` call pay for capture or
        compilation.
    warm_start : bool, default=False
        Continue from the fitted energy, optimizer state, loss state (persistent
        chains) and random stream instead of starting anew. The standardisation
        and base density stay those of the first fit; with early stopping the
        rows passed are split again.
    random_state : int, RandomState instance or None, default=None
        Seeds a local ``torch.Generator`` in :meth:`fit`; torch's and numpy's
        global random states are not used. The same int gives the same model on
        the same device.
    verbose : int, default=0
        ``0`` is silent. ``1`` shows a progress bar over the epochs with the
        current loss (tqdm when installed, else a text bar on stderr), and one over
        the energy evaluations of :meth:`sample` calls that last more than a
        second. ``2`` prints a line per epoch and per chunk of samples instead.

    Attributes
    ----------
    energy_ : nn.Module
        The trained energy ``E``, acting on standardised inputs.
    base_ : skebm.bases.BaseDensity
        The fitted base density ``q``, on standardised inputs.
    base_kind_ : str
        Which base that is (``"gaussian"``, ``"gmm"``, ...): the one ``"auto"``
        kept.
    base_scores_ : dict or None
        With ``base="auto"`` and held-out rows: the held-out mean log-likelihood
        of the model trained on each candidate base (those not refined are
        absent); ``None`` without held-out rows.
    validation_scores_ : list of float or None
        Held-out mean log-likelihood (nats per row, user units) of the kept
        base's model before training and after every epoch (``log Z`` by
        importance sampling); ``None`` without held-out rows.
    best_validation_score_ : float or None
        Held-out mean log-likelihood of the final model, with ``log_partition_``.
    base_validation_score_ : float or None
        Held-out mean log-likelihood of the base alone: the gap to
        ``best_validation_score_`` is what the energy learned.
    loss_ : BaseLoss
        The loss used (a fresh instance, never the ``loss`` parameter itself).
    sampler_ : BaseSampler
        The sampler used.
    device_ : torch.device
        Where the fitted model lives.
    mean_, scale_ : ndarray of shape (n_features_in_,)
        The internal standardisation ``z = (x - mean_) / scale_``.
    log_partition_ : float
        Estimate of ``log Z = log E_q[exp(-E)]`` in the standardised space.
    log_partition_stderr_ : float
        Its standard error (for ``partition="grid"``: the quadrature error
        estimate).
    n_iter_ : int
        Epochs run by the last call to :meth:`fit` on the kept base (1 after
        :meth:`partial_fit`).
    loss_curve_ : list of float
        Mean training loss of every epoch, across warm starts.
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during :term:`fit`. Defined only when ``X`` has
        feature names that are all strings.

    See Also
    --------
    sklearn.neighbors.KernelDensity : Kernel density estimation.
    sklearn.mixture.GaussianMixture : Gaussian mixture density.

    Notes
    -----
    ``score_samples`` is computed in fixed-size zero-padded chunks, so a row's
    value does not depend on the other rows passed with it, and no randomness is
    used after ``fit``. ``sample`` starts chains at exact draws of the base and runs
    ``sample_steps`` steps of the sampler. How the defaults were chosen, and where
    they lose to ``KernelDensity``, ``GaussianMixture`` or a normalizing flow, is
    measured by ``benchmarks/quality.py`` (see docs/density-quality.md).

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from skebm import EnergyDensityEstimator
    >>> X, _ = make_moons(500, noise=0.1, random_state=0)
    >>> est = EnergyDensityEstimator(max_iter=5, random_state=0).fit(X)
    >>> est.score_samples(X[:3]).shape
    (3,)
    >>> round(est.score(X), 1) > -2.0
    True
    >>> est.sample(4, random_state=0).shape
    (4, 2)
    >>> sorted(est.base_scores_)  # the candidate bases, scored on held-out rows
    ['gaussian', 'gaussianized', 'gmm']
    """

    _parameter_constraints: dict = {
        "energy": [str, nn.Module, callable],
        "energy_params": [dict, None],
        "base": [StrOptions({"auto", "gmm", "gaussianized", "gaussian", "standard"})],
        "base_params": [dict, None],
        "loss": [str, BaseLoss],
        "loss_params": [dict, None],
        "sampler": [str, BaseSampler],
        "sampler_params": [dict, None],
        "sample_steps": [Interval(Integral, 0, None, closed="left")],
        "partition": [StrOptions({"auto", "ais", "grid"})],
        "partition_params": [dict, None],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither"), None],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "ema_decay": [Interval(Real, 0, 1, closed="left")],
        "device": [str],
        "dtype": [StrOptions({"float32", "float64"})],
        "compile": ["boolean"],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        energy="mlp",
        energy_params=None,
        base="auto",
        base_params=None,
        loss="nce",
        loss_params=None,
        sampler="mala",
        sampler_params=None,
        sample_steps=100,
        partition="auto",
        partition_params=None,
        max_iter=300,
        batch_size="auto",
        learning_rate=3e-3,
        max_grad_norm=None,
        tol=None,
        n_iter_no_change=30,
        early_stopping=True,
        validation_fraction=0.1,
        ema_decay=0.99,
        device="auto",
        dtype="float32",
        compile=False,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.energy = energy
        self.energy_params = energy_params
        self.base = base
        self.base_params = base_params
        self.loss = loss
        self.loss_params = loss_params
        self.sampler = sampler
        self.sampler_params = sampler_params
        self.sample_steps = sample_steps
        self.partition = partition
        self.partition_params = partition_params
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_grad_norm = max_grad_norm
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.ema_decay = ema_decay
        self.device = device
        self.dtype = dtype
        self.compile = compile
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # -- parameters ----------------------------------------------------------------

    def set_params(self, **params):
        """Set parameters; ``sampler__step_size=...`` also works for a named sampler.

        When ``energy``, ``loss`` or ``sampler`` is a registered name (or the
        energy a module class or factory), ``<name>__<key>=value`` is stored as
        ``<name>_params[key] = value`` (in a new dict), so ``GridSearchCV`` can
        search ``sampler__step_size`` or ``energy__width`` whatever form the
        component takes. For instances the usual nested ``set_params`` applies.

        Returns
        -------
        self : EnergyDensityEstimator
        """
        for name in _STRATEGY_PARAMS:
            if name in params:
                super().set_params(**{name: params.pop(name)})
            prefix = f"{name}__"
            nested = {
                k[len(prefix) :]: params.pop(k)
                for k in list(params)
                if k.startswith(prefix)
            }
            if nested and _built_from_params(getattr(self, name)):
                merged = {**(getattr(self, f"{name}_params") or {}), **nested}
                super().set_params(**{f"{name}_params": merged})
            elif nested:
                super().set_params(**{f"{prefix}{k}": v for k, v in nested.items()})
        return super().set_params(**params)

    # -- fitting -------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the density to ``X``: ``max_iter`` epochs, then estimate ``log Z``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; at least 2 rows.
        y : None
            Ignored. This parameter exists only for compatibility with
            :class:`~sklearn.pipeline.Pipeline`.

        Returns
        -------
        self : EnergyDensityEstimator
            The fitted estimator.

        Raises
        ------
        DivergenceError
            When training produced non-finite values (loss, weights, held-out
            score or ``log Z``).

        Any error leaves the estimator as it was before the call (parameters,
        fitted attributes and scores); an interrupt (``KeyboardInterrupt``)
        keeps the partly trained model with a warning.
        """
        return self._fit(X, n_epochs=self.max_iter, incremental=False)

    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y=None):
        """Train for one epoch on ``X``, continuing from the current state.

        The first call initialises the model (standardisation, base density) from
        this ``X``; later calls keep them. ``log Z`` is re-estimated after each call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : EnergyDensityEstimator
        """
        return self._fit(X, n_epochs=1, incremental=True)

    def _fit(self, X, *, n_epochs: int, incremental: bool):
        """Fit, or raise and leave the estimator exactly as it was: the new state
        is built in place and rolled back on any error (an interrupt keeps the
        partly trained model, as documented)."""
        saved = snapshot(self)
        try:
            return self._fit_or_raise(X, n_epochs=n_epochs, incremental=incremental)
        except Exception:
            roll_back(self, saved)
            raise

    def _fit_or_raise(self, X, *, n_epochs: int, incremental: bool):
        first = not hasattr(self, "energy_") or not (self.warm_start or incremental)
        check_options(self)
        X = validate_samples(self, X, reset=first, ensure_min_samples=2)
        if first:
            self._initialize(X)
        else:
            self._prepare_continuation()
        Z_train, Z_valid = self._split((X - self.mean_) / self.scale_, incremental)
        if first:
            result = self._fit_bases(Z_train, Z_valid, n_epochs, incremental)
        else:
            result = self._fit_model(Z_train, Z_valid, n_epochs, incremental)
        if result.interrupted:
            warnings.warn(
                "Training interrupted by user; the partly trained model is kept.",
                stacklevel=3,
            )
        if self._energy_dropped or not self._partition_reliable:
            outcome = (
                "the trained energy was dropped: the model is its base density, "
                "whose log Z is exact"
                if self._energy_dropped
                else "score_samples and score may be off by more than "
                "log_partition_stderr_ says"
            )
            warnings.warn(
                "The estimate of log Z rested on fewer than "
                f"{_MIN_PARTITION_ESS} effective annealed-importance chains, so "
                f"{outcome}. Raise partition_params['n_chains'] or "
                "'n_temperatures', or use a base density closer to the data.",
                PartitionWarning,
                stacklevel=3,
            )
        if result.diverged_epoch is not None or not math.isfinite(self.log_partition_):
            when = (
                f"at epoch {result.diverged_epoch}: the loss exploded, or the loss, "
                "the weights or the held-out log-likelihood became non-finite"
                if result.diverged_epoch is not None
                else f"to a model whose log Z is {self.log_partition_}"
            )
            raise DivergenceError(
                f"Training diverged {when}. The estimator was left as it was before "
                "this call. Try a smaller learning_rate, a smaller sampler "
                "step_size, or more regularisation (e.g. loss_params={'alpha': 0.1} "
                "for contrastive divergence)."
            )
        if (
            self.tol is not None
            and Z_valid is None
            and not result.converged
            and n_epochs > 0
            and not incremental
        ):
            warnings.warn(
                f"Maximum iterations ({n_epochs}) reached and the loss did not "
                f"improve by tol={self.tol} less than {self.n_iter_no_change} times "
                "in a row; consider increasing max_iter.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _initialize(self, X: np.ndarray) -> None:
        """Start a new model: device, standardisation, seeds, the validation rows."""
        rng = local_random_state(self.random_state)
        (
            self._base_seed,
            self._energy_seed,
            self._train_seed,
            self._partition_seed,
            self._split_seed,
        ) = (new_seed(rng) for _ in range(5))
        self.device_ = resolve_device(self.device)
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            mean = X.mean(axis=0, dtype=np.float64)
            scale = X.std(axis=0, dtype=np.float64)
        check_standardisation(mean, scale)
        self.mean_ = mean
        self.scale_ = np.where(
            scale > 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(self.mean_)),
            scale,
            1.0,
        )

    def _split(self, Z: np.ndarray, incremental: bool):
        """The training rows and, with early stopping, the held-out rows.

        Returns ``(Z_train, Z_valid)``; ``Z_valid`` is None when there is no
        validation (``early_stopping=False``, ``partial_fit``, or fewer than
        ``_MIN_VALIDATION`` held-out rows).
        """
        n_valid = math.ceil(self.validation_fraction * Z.shape[0])
        if (
            incremental
            or not self.early_stopping
            or n_valid < _MIN_VALIDATION
            or Z.shape[0] - n_valid < 2
        ):
            return Z, None
        order = np.random.RandomState(self._split_seed).permutation(Z.shape[0])
        return Z[order[n_valid:]], Z[order[:n_valid]]

    def _base_kinds(self, validated: bool) -> tuple[str, ...]:
        if self.base != "auto":
            return (self.base,)
        return _AUTO_BASES if validated else ("gmm",)

    def _fit_bases(self, Z_train, Z_valid, n_epochs: int, incremental: bool):
        """Fit every candidate base, train an energy on each that may compete, and
        keep the model with the best held-out log-likelihood.

        Where ``log Z`` comes from AIS (``d > 2``), a base whose own held-out score
        is more than ``_MAX_BASE_GAP`` nats per row below the best base's is not
        refined: the energy would have to make up more than AIS can reliably
        normalise.
        """
        dtype = resolve_dtype(self.dtype)
        bases = {}
        for kind in self._base_kinds(Z_valid is not None):
            params = {
                key: value
                for key, value in (self.base_params or {}).items()
                if key in BASE_PARAMS[kind]
            }
            bases[kind] = fit_base(
                kind, Z_train, params, random_state=self._base_seed, Z_valid=Z_valid
            ).to(self.device_, dtype)
        if len(bases) > 1 and not self._exact_partition():
            alone = {
                kind: self._held_out(Z_valid, base).base_score
                for kind, base in bases.items()
            }
            top = max(alone.values())
            bases = {k: b for k, b in bases.items() if alone[k] >= top - _MAX_BASE_GAP}
        best, best_state, best_result = (False, -math.inf), None, None
        scores = {}
        for kind, base in bases.items():
            self._initialize_model(kind, base, Z_train)
            name = type(self).__name__
            if len(bases) > 1:
                name += f", base {kind!r}"
            result = self._fit_model(Z_train, Z_valid, n_epochs, incremental, name)
            scores[kind] = self.best_validation_score_
            # A model whose log Z rests on a handful of AIS chains may score far
            # better than it is: it is kept only when nothing else is left.
            score = (self._partition_reliable, self.best_validation_score_ or 0.0)
            if best_state is None or score > best:
                best = score
                best_state = {name: getattr(self, name) for name in _MODEL_ATTRIBUTES}
                best_result = result
            if result.interrupted or result.diverged_epoch is not None:
                break
        for name, value in best_state.items():
            setattr(self, name, value)
        self.base_scores_ = scores if Z_valid is not None else None
        if Z_valid is not None and self.base_kind_ != "standard":
            self._refit_base(np.concatenate([Z_train, Z_valid]))
        return best_result

    def _refit_base(self, Z_all) -> None:
        """Refit the kept base to every row, held-out ones included, then compute
        ``log Z`` again: the energy stays, the base sees 10 % more data (as
        ``GridSearchCV`` refits the best model). The held-out scores stay those
        measured before."""
        params = {
            key: value
            for key, value in (self.base_params or {}).items()
            if key in BASE_PARAMS[self.base_kind_]
        }
        dtype = self._dtype()
        self.base_ = refit_base(self.base_, Z_all, params).to(self.device_, dtype)
        self._estimate_partition()
        if not self._partition_reliable:
            self._drop_energy()

    def _exact_partition(self) -> bool:
        """Whether ``log Z`` comes from quadrature (exact) rather than AIS."""
        return self.partition == "grid" or (
            self.partition == "auto" and self.n_features_in_ <= 2
        )

    def _fit_model(
        self, Z_train, Z_valid, n_epochs: int, incremental: bool, name: str = ""
    ):
        """Train the current model on the rows ``Z_train``, then estimate ``log Z``."""
        train = torch.as_tensor(Z_train, dtype=self._dtype()).to(self.device_)
        validation = self._held_out(Z_valid, self.base_)
        result = self._train(
            train, n_epochs, validation, incremental, name or type(self).__name__
        )
        self._estimate_partition()
        self._energy_dropped = False
        if not self._partition_reliable and not incremental:
            self._drop_energy()
        self._record_validation(result, validation)
        return result

    def _drop_energy(self) -> None:
        """Fall back to the base when ``log Z`` cannot be trusted.

        When the energy starts at zero (the default MLP does), its untrained self
        replaces it: the model is then its base, whose ``log Z`` is exactly 0.
        Other energies are kept (``fit`` warns).
        """
        untrained = build_energy(
            self.energy,
            self.energy_params,
            n_features=self.n_features_in_,
            seed=self._energy_seed,
            device=self.device_,
            dtype=self._dtype(),
        )
        probe = self.base_.sample(256, generator=make_generator(self.device_, 0))
        with torch.no_grad():
            if not bool((untrained(probe) == 0).all()):
                return
        self.energy_ = untrained
        self.log_partition_, self.log_partition_stderr_ = 0.0, 0.0
        self._partition_reliable, self._energy_dropped = True, True

    def _initialize_model(self, kind: str, base, Z_train) -> None:
        """Energy, strategies and training state for one candidate base."""
        dtype = resolve_dtype(self.dtype)
        self.base_kind_ = kind
        self.base_ = base
        self.energy_ = build_energy(
            self.energy,
            self.energy_params,
            n_features=self.n_features_in_,
            seed=self._energy_seed,
            device=self.device_,
            dtype=dtype,
        )
        self._resolve_strategies()
        self._optimizer_state = None
        self.loss_curve_ = []
        generator = make_generator(self.device_, self._train_seed)
        self._loss_state = self.loss_.init_state(
            self._model(),
            torch.as_tensor(Z_train, dtype=dtype).to(self.device_),
            generator=generator,
        )
        self._train_rng_state = generator.get_state()

    def _held_out(self, Z_valid, base) -> HeldOutLikelihood | None:
        if Z_valid is None:
            return None
        return HeldOutLikelihood(
            base,
            torch.as_tensor(Z_valid, dtype=base._reference().dtype).to(self.device_),
            n_draws=_VALIDATION_DRAWS,
            generator=make_generator(self.device_, self._split_seed),
            offset=-float(np.log(self.scale_).sum()),
        )

    def _record_validation(self, result, validation) -> None:
        """The validation curve and the final model's held-out score (with the
        estimator's own ``log Z``)."""
        if validation is None:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.base_validation_score_ = None
            return
        self.validation_scores_ = [result.initial_score, *result.validation_scores]
        self.base_validation_score_ = float(validation.base_score)
        self.best_validation_score_ = float(
            validation.log_likelihoods(self.energy_, self.log_partition_).mean()
        )

    def _resolve_strategies(self) -> None:
        self.loss_ = resolve_strategy(self.loss, self.loss_params, kind="loss")
        self.sampler_ = resolve_strategy(
            self.sampler, self.sampler_params, kind="sampler"
        )

    def _prepare_continuation(self) -> None:
        """Re-read hyper-parameters for a warm start; keep the trained state."""
        previous_loss = type(self.loss_)
        self._resolve_strategies()
        if type(self.loss_) is not previous_loss:
            raise ValueError(
                f"warm_start cannot switch the loss from {previous_loss.__name__} to "
                f"{type(self.loss_).__name__}; set warm_start=False to start anew."
            )
        device = resolve_device(self.device)
        if device != self.device_:
            self._move_to(device)

    def _model(self) -> ResidualEnergy:
        return ResidualEnergy(self.energy_, self.base_)

    def _dtype(self) -> torch.dtype:
        return self.base_._reference().dtype

    def _batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            return min(256, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(
                f"batch_size={self.batch_size} is larger than the {n_samples} "
                f"samples; using {n_samples}.",
                UserWarning,
                stacklevel=4,
            )
            return n_samples
        return self.batch_size

    def _train(
        self, Z: torch.Tensor, n_epochs: int, validation, incremental: bool, name: str
    ):
        params = list(self.energy_.parameters())
        if self._loss_state is not None:
            params += list(self._loss_state.parameters())
        model = self._model()
        path = choose_fast_path(self.device_, self.compile)
        if path.compiled_kernels:
            attach_compiled_kernels(model)
        optimizer = torch.optim.Adam(
            params, lr=self.learning_rate, capturable=path.cuda_graphs
        )
        if self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate
        generator = make_generator(self.device_)
        if self._train_rng_state is None:
            generator.manual_seed(self._train_seed)
        else:
            generator.set_state(self._train_rng_state)
        result = run_epochs(
            model=model,
            loss=self.loss_,
            sampler=self.sampler_,
            loss_state=self._loss_state,
            optimizer=optimizer,
            X=Z,
            batch_size=self._batch_size(Z.shape[0]),
            n_epochs=n_epochs,
            generator=generator,
            max_grad_norm=self.max_grad_norm,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            best_loss=min(self.loss_curve_, default=float("inf")),
            validation=validation,
            ema_decay=0.0 if incremental else self.ema_decay,
            verbose=self.verbose,
            first_epoch=len(self.loss_curve_) + 1,
            name=name,
            capture=path.cuda_graphs,
        )
        self.loss_curve_ = [*self.loss_curve_, *result.losses]
        self.n_iter_ = result.n_epochs
        self._optimizer_state = optimizer.state_dict()
        self._train_rng_state = generator.get_state()
        return result

    def _estimate_partition(self) -> None:
        generator = make_generator(self.device_, self._partition_seed)
        estimate = estimate_log_partition(
            self._model(), self.partition, self.partition_params, generator=generator
        )
        self.log_partition_ = estimate.log_partition
        self.log_partition_stderr_ = estimate.stderr
        ess = estimate.effective_sample_size
        self._partition_reliable = ess is None or ess >= _MIN_PARTITION_ESS

    # -- inference -----------------------------------------------------------------

    def score_samples(self, X):
        """Log-density of each row of ``X``, normalised, in ``X``'s units.

        ``log p(x) = log q(z) - E(z) - log_partition_ - Σ log scale_`` with
        ``z = (x - mean_) / scale_``. Deterministic: no randomness is used and a
        row's value does not depend on the rows passed with it. Rows so far from
        the data that their log-density is below the floating-point range (``z``
        beyond ``sqrt`` of the largest float of ``dtype``, about 1.8e19 for
        float32) get ``-inf``; the result is never NaN.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self)
        return self._log_density(X, self._model(), self.log_partition_)

    def base_score_samples(self, X):
        """Log-density of each row of ``X`` under the base density alone.

        ``log q(z) - Σ log scale_``: what the model scores without its energy,
        normalised and in ``X``'s units, so ``score_samples(X) -
        base_score_samples(X)`` is what the energy adds at each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self)
        return self._log_density(X, lambda z: -self.base_.log_prob(z), 0.0)

    def _log_density(self, X, total_energy, log_partition: float) -> np.ndarray:
        X = validate_samples(self, X, reset=False)
        dtype = self._dtype()
        # Beyond sqrt(max float) the base's -|z|²/2 overflows: the density
        # underflows to zero there, so those rows get -inf (never NaN).
        limit = math.sqrt(torch.finfo(dtype).max)

        def log_density(z):
            return torch.where(z.abs().amax(-1) > limit, -math.inf, -total_energy(z))

        def standardise(rows):
            with np.errstate(over="ignore"):
                return (rows - self.mean_) / self.scale_

        unnormalised = evaluate_in_chunks(
            log_density, X, device=self.device_, dtype=dtype, transform=standardise
        )
        return unnormalised - log_partition - np.log(self.scale_).sum()

    def score(self, X, y=None):
        """Mean log-likelihood of ``X`` per row (nats), comparable across models.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        log_likelihood : float
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted density.

        Chains start at exact draws of the base density and run ``sample_steps``
        steps of the sampler, in chunks of bounded size.

        Parameters
        ----------
        n_samples : int, default=1
            Number of rows to draw (at least 1).
        random_state : int, RandomState instance or None, default=None
            Seed of this call (``self.random_state`` is not used): the same int
            gives the same rows.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_), float64
        """
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral):
            raise TypeError(
                f"n_samples must be an integer, got {type(n_samples).__name__} "
                f"{n_samples!r}."
            )
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        rng = local_random_state(random_state)
        generator = make_generator(self.device_, new_seed(rng))
        model = self._model()
        fast = None
        if self.compile:
            path = choose_fast_path(self.device_, self.compile)
            fast = AcceleratedSampler(
                self.sampler_,
                model,
                compile=path.compiled_kernels,
                cuda_graphs=path.cuda_graphs,
            )
        out = np.empty((int(n_samples), self.n_features_in_), dtype=np.float64)
        progress = SamplingProgress(
            name=type(self).__name__,
            n_chunks=-(-n_samples // SAMPLE_CHUNK),
            verbose=self.verbose,
        )
        with frozen_parameters(model), progress:
            for start in range(0, n_samples, SAMPLE_CHUNK):
                size = min(SAMPLE_CHUNK, n_samples - start)
                z = self.base_.sample(size, generator=generator)
                if fast is None:
                    z = self.sampler_.sample(
                        progress.wrap(model),
                        z,
                        n_steps=self.sample_steps,
                        generator=generator,
                    )
                else:  # a captured or compiled loop: progress counts chunks
                    z = fast.sample(z, n_steps=self.sample_steps, generator=generator)
                rows = z.to("cpu", torch.float64).numpy()
                out[start : start + size] = rows * self.scale_ + self.mean_
                progress.chunk_done(size)
        return out

    # -- persistence ---------------------------------------------------------------

    def save(self, path):
        """Write the estimator to ``path`` in skebm's safe format.

        The same as :func:`skebm.save` ``(self, path)``; :func:`skebm.load` reads
        the file back.

        Parameters
        ----------
        path : str or path-like
        """
        write_model_file(self, path)

    def __getstate__(self):
        state = cpu_state(super().__getstate__())  # a copy: the model stays put
        state["_skebm_version"] = __version__
        return state

    def __setstate__(self, state):
        warn_other_version(state.pop("_skebm_version", None), stacklevel=2)
        super().__setstate__(state)
        device = state.get("device_")
        if device is None or device.type == "cpu":
            return
        try:
            target = resolve_device(str(device))
        except ValueError:
            warn_loaded_on_cpu(device, stacklevel=2)
            target = torch.device("cpu")
        self._move_to(target)

    def _move_to(self, device: torch.device) -> None:
        """Move the fitted tensors to ``device`` (the random stream is re-seeded)."""
        move_fitted(self, device)


def _built_from_params(spec) -> bool:
    """Whether a component is built from its ``*_params`` dict at fit (a name, or
    an energy class or factory) rather than being an instance."""
    return isinstance(spec, str) or (
        callable(spec) and not isinstance(spec, nn.Module | BaseEstimator)
    )
