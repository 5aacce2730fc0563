"""EnergyDensityEstimator: energy-based density estimation with sklearn semantics.

This module is the estimator's public surface: its parameters, scoring, sampling
and pickling. What ``fit`` does step by step is in :mod:`skebm._fitting`; the
fitted attributes are listed once in :mod:`skebm._fitted_state`.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from skebm._chain_starts import independence_starts
from skebm._components import resolve_strategy
from skebm._fitted_state import (
    ADDED_ATTRIBUTES,
    cpu_state,
    move_fitted,
    warn_loaded_on_cpu,
    warn_other_version,
)
from skebm._fitting import fit_estimator
from skebm._model_file import write as write_model_file
from skebm._progress import SamplingProgress
from skebm._validation import (
    validate_samples,
)
from skebm._version import __version__
from skebm.acceleration import (
    AcceleratedSampler,
    choose_fast_path,
)
from skebm.energies.residual import ResidualEnergy
from skebm.losses import BaseLoss
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
)

__all__ = ["EnergyDensityEstimator"]

#: Chains run at once by ``sample``; memory is bounded by one chunk.
SAMPLE_CHUNK = 16384

#: Independence Metropolis-Hastings steps (base draws proposed) each chain of
#: ``sample`` takes before the sampler's own steps (:mod:`skebm._chain_starts`).
_START_STEPS = 16

#: Parameters that take sub-parameters through ``set_params(<name>__<key>=...)``.
_STRATEGY_PARAMS = ("energy", "loss", "sampler")


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
        Gaussian mixture (covariance structure and components chosen on the
        held-out rows, or by BIC without them; the average of up to 8 EM runs
        from different starts; a share of 1e-4 of wide Gaussians keeps its tails
        heavy beyond the data, :func:`~skebm.bases.with_tails`), the same
        mixture on features Gaussianised one at a time
        (:class:`~skebm.bases.GaussianizedMixtureDensity`), one full-covariance
        Gaussian, or ``N(0, I)``. ``"auto"`` tries ``"gaussian"``,
        ``"gmm"`` and ``"gaussianized"``, each with its own trained energy, and
        keeps the model that scores best on the held-out rows; the Gaussianised
        one, the most flexible, only where it beats the others by more than the
        standard error of the paired difference (without held-out rows it is
        ``"gmm"``). Where ``log Z`` is sampled (``d > 2``), a
        candidate base more than 5 nats per row below the best one is not
        refined, and a model whose ``log Z`` rests on fewer than 10 effective
        draws or chains is kept only when nothing else is left.
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
    partition : {"auto", "importance", "ais", "grid"}, default="auto"
        How ``log Z`` is estimated at the end of ``fit``: plain importance
        sampling from the base, annealed importance sampling (AIS) from the base,
        or exact quadrature (``d <= 2`` only). ``"auto"`` is quadrature where it
        applies; elsewhere importance sampling, or AIS where the importance
        weights rest on fewer than 100 effective draws (the model is then far
        from its base).
    partition_params : dict, default=None
        Options of the ``log Z`` estimator, see
        :func:`skebm.partition.importance_log_partition`,
        :func:`skebm.partition.ais_log_partition` and
        :func:`skebm.partition.grid_log_partition`; with ``"auto"`` keys of each
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
    n_iter_no_change : int, default=20
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
        rows passed are split again, and the energy continues from its scaled
        self (``energy_scale_`` of the previous fit), which the new fit scales
        again.
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
        The fitted base density ``q``, on standardised inputs. With held-out
        rows it is refitted to every row at the end of ``fit`` (the energy
        stays), unless ``log Z`` under the refitted base would rest on fewer
        than 10 effective draws or chains: the validated base is then kept.
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
        importance sampling), before ``energy_scale_`` is applied; ``None``
        without held-out rows.
    best_validation_score_ : float or None
        Held-out mean log-likelihood of the final model, with ``log_partition_``.
    base_validation_score_ : float or None
        Held-out mean log-likelihood of the base alone: the gap to
        ``best_validation_score_`` is what the energy learned.
    energy_scale_ : float
        The factor in ``[0, 1]`` by which the end of ``fit`` multiplied the
        trained energy (already applied to ``energy_``): the strength whose
        model scored best on the held-out rows, with ``log Z`` estimated for
        each. Below 1 where the energy learned the training rows more closely
        than held-out rows support. 1 without held-out rows, for energies
        without a ``scale_output_`` method, where ``fit`` dropped the energy,
        and after :meth:`partial_fit` (which scales nothing; the energy keeps
        any earlier factor).
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
        "partition": [StrOptions({"auto", "importance", "ais", "grid"})],
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
        n_iter_no_change=20,
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
        return fit_estimator(self, X, n_epochs=self.max_iter, incremental=False)

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
        return fit_estimator(self, X, n_epochs=1, incremental=True)

    # -- the fitted model ----------------------------------------------------------

    def _resolve_strategies(self) -> None:
        self.loss_ = resolve_strategy(self.loss, self.loss_params, kind="loss")
        self.sampler_ = resolve_strategy(
            self.sampler, self.sampler_params, kind="sampler"
        )

    def _model(self) -> ResidualEnergy:
        return ResidualEnergy(self.energy_, self.base_)

    def _dtype(self) -> torch.dtype:
        return self.base_._reference().dtype

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

        Each chain starts at a draw of the base density, takes 16 independence
        Metropolis-Hastings steps (fresh base draws proposed, accepted by the
        ratio of their ``exp(-E)``), which move it out of regions the model does
        not favour, then runs ``sample_steps`` steps of the sampler; in chunks of
        bounded size.

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
                z = independence_starts(
                    model.energy if fast else progress.wrap(model.energy),
                    self.base_,
                    size,
                    n_steps=_START_STEPS,
                    generator=generator,
                )
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
        if "energy_" in state:  # fitted by a version without the newer attributes
            state = {**ADDED_ATTRIBUTES, **state}
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
