"""Density quality: skebm's default against the models a user would pick instead.

On data sets whose exact log-density is known (the 2-D shapes of
:mod:`skebm.datasets`, Neal's funnel and an uneven Gaussian mixture in 10-D) and on
scikit-learn's digits (64-D, dequantised, no exact density), every method is fitted
to the same training rows and scored on the same held-out rows:

* ``skebm``: ``EnergyDensityEstimator(random_state=0)``, the default;
* ``kde``: ``KernelDensity`` with its bandwidth chosen by 5-fold cross-validation;
* ``gmm``: ``GaussianMixture`` (full covariances) with its number of components
  chosen by 5-fold cross-validation;
* ``flow``: a zuko neural spline flow (5 transforms, hidden layers (128, 128))
  trained by maximum likelihood with Adam, the learning rate halved when the
  validation loss stalls and early stopping on a 10 % validation split (the best
  epoch is kept);
* ``true``: the exact log-density, where there is one.

The peers see the data standardised with the training mean and scale, as skebm
does internally (an isotropic kernel and a flow need it; a full-covariance mixture
does not care), and their log-densities are returned to the user's units by the
Jacobian, so every number is a log-likelihood of the same rows in the same units.
The cross-validation grids are extended until the chosen value is inside them.

For each set the table gives the held-out mean log-likelihood (nats per row), the
difference of every method to skebm with the paired standard error of that
difference (over the held-out rows), and the fit's CPU seconds (one thread: torch,
BLAS and OpenMP are limited to one thread per fit, so ``--jobs 2`` runs two fits
side by side on two cores). Below the tables:

* the verdict per set: skebm against the best peer (``win`` when above it by more
  than the paired standard error, ``tie`` when within it, ``loss`` below it) and
  against the true density;
* skebm's normalisation checked independently of its own ``log Z``: in 2-D the
  integral of ``exp(score_samples)`` over a grid, elsewhere plain importance
  sampling from the fitted base with four times the draws of skebm's own default
  estimate, on another random stream (unbiased for ``Z``), and an AIS ten times
  longer than the default AIS.

Sets are drawn with ``--seed`` (0 for reported results; develop on other seeds, so
that nothing is tuned on the rows reported).

    python benchmarks/quality.py                        # everything (about an hour)
    python benchmarks/quality.py --jobs 2               # two fits at a time
    python benchmarks/quality.py --sets rings,funnel_10d --methods skebm,gmm
    python benchmarks/quality.py --quick                # seconds; smoke test

No result here is asserted anywhere: benchmarks print, tests do not time.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch
from _machine import describe_machine  # benchmarks/_machine.py, beside this script
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity
from threadpoolctl import threadpool_limits

from skebm import EnergyDensityEstimator
from skebm.datasets import TOY_DATASETS, make_funnel, make_uneven_mixture

METHODS = ("skebm", "kde", "gmm", "flow", "true")
PEERS = ("kde", "gmm", "flow")
LABELS = {
    "skebm": "skebm default",
    "kde": "KernelDensity, CV bandwidth",
    "gmm": "GaussianMixture, CV components",
    "flow": "neural spline flow (zuko)",
    "true": "true density",
}

#: Name -> generator ``f(n_samples, random_state, return_log_density=True)``.
GENERATORS = {
    **TOY_DATASETS,
    "funnel_10d": partial(make_funnel, n_features=10),
    "mixture_10d": partial(make_uneven_mixture, n_features=10),
}
SETS = (*GENERATORS, "digits")


@dataclass
class Settings:
    """What a run fits; :func:`quick_settings` shrinks everything."""

    n_train: int = 5000
    n_test: int = 5000
    digits_train: int = 1000
    seed: int = 0
    sets: tuple = SETS
    methods: tuple = METHODS
    skebm_params: dict = field(default_factory=dict)
    cv: int = 5
    kde_bandwidths: tuple = tuple(np.logspace(-2, 0.5, 26))
    gmm_components: tuple = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60)
    flow_transforms: int = 5
    flow_hidden: tuple = (128, 128)
    flow_batch: int = 256
    flow_lr: float = 1e-3
    flow_patience: int = 30
    flow_max_epochs: int = 3000
    flow_max_seconds: float = 1800.0
    grid_points: int = 1500
    is_draws: int = 2**21
    cache: str | None = None
    quick: bool = False


def quick_settings() -> Settings:
    return Settings(
        n_train=300,
        n_test=300,
        digits_train=300,
        sets=("two_moons", "funnel_10d"),
        skebm_params=dict(
            max_iter=3,
            energy_params={"hidden_layer_sizes": (16,), "fourier_features": 8},
            base_params={"max_components": 3},
            partition_params={
                "n_draws": 4096,
                "n_chains": 64,
                "n_temperatures": 10,
                "n_points": 101,
            },
        ),
        cv=2,
        kde_bandwidths=(0.1, 0.3, 1.0),
        gmm_components=(1, 2, 3),
        flow_transforms=1,
        flow_hidden=(8,),
        flow_patience=2,
        flow_max_epochs=3,
        grid_points=100,
        is_draws=2000,
        quick=True,
    )


# -- data ------------------------------------------------------------------------


def load(name: str, settings: Settings):
    """``(X_train, X_test, log_density or None)`` for one set."""
    if name == "digits":
        X = load_digits().data
        X = X + np.random.RandomState(settings.seed).uniform(size=X.shape)
        X = X[np.random.RandomState(settings.seed + 1).permutation(len(X))]
        n = settings.digits_train
        return X[:n], X[n : n + settings.n_test], None
    X, log_density = GENERATORS[name](
        settings.n_train + settings.n_test,
        random_state=settings.seed,
        return_log_density=True,
    )
    return X[: settings.n_train], X[settings.n_train :], log_density


class Standardiser:
    """The training rows' mean and scale, and the Jacobian back to user units."""

    def __init__(self, X: np.ndarray):
        self.mean = X.mean(0)
        self.scale = X.std(0)
        self.log_jacobian = float(np.log(self.scale).sum())

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.scale


# -- methods ---------------------------------------------------------------------


def _search_inside(estimator, name: str, values: list, X, cv: int, grow):
    """GridSearchCV over ``values``, extended with ``grow(values, side)`` until the
    best value is not at an end of the grid that can still grow."""
    values = sorted(values)
    while True:
        search = GridSearchCV(estimator, {name: values}, cv=cv).fit(X)
        best = search.best_params_[name]
        side = "low" if best == values[0] else "high" if best == values[-1] else None
        more = grow(values, side) if side else []
        if not more:
            return search
        values = sorted({*values, *more})


def _fit_cross_validated(estimator, name, values, grow, X_train, X_test, settings):
    """The held-out log-density (user units) of ``estimator`` with ``name`` chosen
    by ``settings.cv``-fold CV on the standardised training rows, and the choice."""
    scaler = Standardiser(X_train)
    search = _search_inside(
        estimator, name, list(values), scaler(X_train), settings.cv, grow
    )
    log_density = search.best_estimator_.score_samples(scaler(X_test))
    return log_density - scaler.log_jacobian, search.best_params_[name]


def fit_kde(X_train, X_test, settings: Settings) -> dict:
    def grow(values, side):
        if side == "low":
            return [values[0] / 10 ** (0.1 * k) for k in range(1, 6)]
        return [values[-1] * 10 ** (0.1 * k) for k in range(1, 6)]

    log_density, bandwidth = _fit_cross_validated(
        KernelDensity(),
        "bandwidth",
        settings.kde_bandwidths,
        grow,
        X_train,
        X_test,
        settings,
    )
    return dict(
        log_density=log_density, detail=f"bandwidth {bandwidth:.3g} (standardised)"
    )


def fit_gmm(X_train, X_test, settings: Settings) -> dict:
    limit = len(X_train) * (settings.cv - 1) // settings.cv

    def grow(values, side):
        if side != "high":
            return []
        larger = (int(values[-1] * 1.25) + 1, int(values[-1] * 1.6))
        return [k for k in larger if k < limit]

    log_density, n_components = _fit_cross_validated(
        GaussianMixture(covariance_type="full", random_state=0),
        "n_components",
        settings.gmm_components,
        grow,
        X_train,
        X_test,
        settings,
    )
    return dict(log_density=log_density, detail=f"{n_components} components")


def fit_flow(X_train, X_test, settings: Settings) -> dict:
    import zuko  # the ``bench`` extra

    scaler = Standardiser(X_train)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # zuko initialises its networks from torch's global stream
    Z = torch.as_tensor(scaler(X_train), dtype=torch.float32)
    order = torch.randperm(len(Z), generator=generator)
    n_valid = max(1, len(Z) // 10)
    valid, train = Z[order[:n_valid]], Z[order[n_valid:]]
    flow = zuko.flows.NSF(
        features=Z.shape[1],
        transforms=settings.flow_transforms,
        hidden_features=settings.flow_hidden,
    )
    optimizer = torch.optim.Adam(flow.parameters(), lr=settings.flow_lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=settings.flow_patience // 3
    )

    def validation_loss() -> float:
        with torch.no_grad():
            return -flow().log_prob(valid).mean().item()

    best, best_state, stale, epochs = validation_loss(), None, 0, 0
    start = time.process_time()
    stopped = "max epochs"
    while epochs < settings.flow_max_epochs:
        epochs += 1
        perm = torch.randperm(len(train), generator=generator)
        for begin in range(0, len(train), settings.flow_batch):
            batch = train[perm[begin : begin + settings.flow_batch]]
            loss = -flow().log_prob(batch).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        current = validation_loss()
        plateau.step(current)
        if current < best:
            best, best_state, stale = current, copy.deepcopy(flow.state_dict()), 0
        else:
            stale += 1
        if stale >= settings.flow_patience:
            stopped = "patience"
            break
        if time.process_time() - start > settings.flow_max_seconds:
            stopped = "time budget"
            break
    if best_state is not None:
        flow.load_state_dict(best_state)
    with torch.no_grad():
        test = torch.as_tensor(scaler(X_test), dtype=torch.float32)
        log_density = torch.cat(
            [flow().log_prob(chunk) for chunk in test.split(4096)]
        ).double()
    return dict(
        log_density=log_density.numpy() - scaler.log_jacobian,
        detail=f"{epochs} epochs, stopped by {stopped}",
    )


def fit_skebm(X_train, X_test, settings: Settings) -> dict:
    est = EnergyDensityEstimator(random_state=0, device="cpu", **settings.skebm_params)
    start = time.process_time()
    est.fit(X_train)
    fit_cpu = time.process_time() - start
    return dict(
        log_density=est.score_samples(X_test),
        detail=_skebm_detail(est),
        fit_cpu_s=fit_cpu,
        normalisation=check_normalisation(est, settings),
    )


def _skebm_detail(est) -> str:
    mixture = getattr(est.base_, "inner", est.base_)
    runs = getattr(mixture, "n_members", 1)
    components = getattr(mixture, "n_member_components", 1) // runs
    covariance = getattr(mixture, "covariance_type", "full")
    tails = getattr(mixture, "n_tail", 0)
    return (
        f"base {est.base_kind_!r}: {runs} x {components} comp. ({covariance})"
        f"{f' + {tails} tails' if tails else ''}, "
        f"{est.n_iter_} epochs, energy scale {est.energy_scale_:.3f}, "
        f"log Z {est.log_partition_:.3f} ± {est.log_partition_stderr_:.3f}"
    )


def check_normalisation(est, settings: Settings) -> dict:
    """``log ∫ p`` computed without the estimator's own ``log Z``.

    2-D: midpoint quadrature of ``exp(score_samples)`` over the base's box (mean ±
    10 standard deviations of every component) in user units, on a grid other than
    the one ``partition="grid"`` uses (mean ± 6, 401 points). Higher dimension: the
    estimator's ``log_partition_`` against plain importance sampling from the
    fitted base (``settings.is_draws`` draws from a generator of its own) and
    against an AIS with ten times as many temperatures as the default AIS; the
    value reported is ``log_partition_`` minus the independent estimate (0 is
    right).
    """
    if est.n_features_in_ <= 2:
        low, high = est.base_.bounds(10.0)
        low, high = low * est.scale_ + est.mean_, high * est.scale_ + est.mean_
        n = settings.grid_points
        axes = [lo + (np.arange(n) + 0.5) * (hi - lo) / n for lo, hi in zip(low, high)]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
        log_cell = float(np.sum(np.log((high - low) / n)))
        values = est.score_samples(mesh)
        top = values.max()
        log_integral = float(top + np.log(np.exp(values - top).sum()) + log_cell)
        return dict(method="grid", error=log_integral, stderr=0.0)
    from skebm.partition import (
        PARTITION_METHODS,
        ais_log_partition,
        importance_log_partition,
    )

    model = est._model()
    generator = torch.Generator().manual_seed(12345)
    importance = importance_log_partition(
        model, generator=generator, n_draws=settings.is_draws
    )
    options = PARTITION_METHODS["ais"][1]
    params = {k: v for k, v in (est.partition_params or {}).items() if k in options}
    params["n_temperatures"] = 10 * params.get("n_temperatures", 200)
    long_ais = ais_log_partition(model, generator=generator, **params)
    return dict(
        method="importance sampling and 10x AIS",
        error=est.log_partition_ - importance.log_partition,
        stderr=math.hypot(importance.stderr, est.log_partition_stderr_),
        is_ess=importance.effective_sample_size,
        ais_error=est.log_partition_ - long_ais.log_partition,
        ais_stderr=math.hypot(long_ais.stderr, est.log_partition_stderr_),
    )


def fit_true(X_train, X_test, settings: Settings, log_density) -> dict:
    return dict(log_density=log_density(X_test), detail="exact")


FITS = {"skebm": fit_skebm, "kde": fit_kde, "gmm": fit_gmm, "flow": fit_flow}


def run_task(task: tuple) -> tuple:
    """One method on one set, in a worker limited to one thread.

    With ``settings.cache`` set, a peer's result is read from (or written to) that
    folder, keyed by set, method, seed and size: for development runs that vary
    skebm only. skebm itself is always fitted.
    """
    name, method, settings = task
    cached = None
    if settings.cache and method != "skebm":
        key = f"{name}-{method}-seed{settings.seed}-{settings.n_train}"
        cached = os.path.join(settings.cache, key + ".pkl")
        if os.path.exists(cached):
            with open(cached, "rb") as f:
                return task[:2], pickle.load(f)
    torch.set_num_threads(1)
    X_train, X_test, log_density = load(name, settings)
    if method == "true" and log_density is None:
        return task[:2], None
    wall, cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(1):
        if method == "true":
            result = fit_true(X_train, X_test, settings, log_density)
        else:
            result = FITS[method](X_train, X_test, settings)
    result["wall_s"] = time.perf_counter() - wall
    result.setdefault("fit_cpu_s", time.process_time() - cpu)
    if cached:
        os.makedirs(settings.cache, exist_ok=True)
        with open(cached, "wb") as f:
            pickle.dump(result, f)
    return task[:2], result


def run_all(tasks: list[tuple], n_jobs: int) -> dict:
    if n_jobs <= 1:
        return dict(map(run_task, tasks))
    with ProcessPoolExecutor(n_jobs) as pool:
        return dict(pool.map(run_task, tasks))


# -- report ----------------------------------------------------------------------


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of ``a - b`` and its standard error over the rows."""
    diff = a - b
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))


def verdict(diff: float, stderr: float) -> str:
    if diff > stderr:
        return "win"
    return "tie" if diff > -stderr else "loss"


def summarise(results: dict, settings: Settings) -> dict:
    """Per set: every method's mean and difference to skebm; the verdicts."""
    summary = {}
    for name in settings.sets:
        rows = {m: results.get((name, m)) for m in settings.methods}
        rows = {m: r for m, r in rows.items() if r is not None}
        entry = {"methods": {}}
        ours = rows.get("skebm")
        for method, r in rows.items():
            item = dict(
                mean=float(np.mean(r["log_density"])),
                fit_cpu_s=r["fit_cpu_s"] if method != "true" else None,
                detail=r["detail"],
            )
            if ours is not None and method != "skebm":
                item["skebm_minus"], item["stderr"] = paired(
                    ours["log_density"], r["log_density"]
                )
            entry["methods"][method] = item
        peers = [m for m in PEERS if m in rows]
        if ours is not None and peers:
            best = max(peers, key=lambda m: entry["methods"][m]["mean"])
            m = entry["methods"][best]
            entry["best_peer"] = best
            entry["verdict"] = verdict(m["skebm_minus"], m["stderr"])
        if ours is not None:
            entry["normalisation"] = ours["normalisation"]
        summary[name] = entry
    return summary


def format_report(summary: dict) -> str:
    lines = []
    for name, entry in summary.items():
        lines += [
            f"### {name}",
            "",
            "| method | held-out LL | skebm minus it | fit CPU s | detail |",
        ]
        lines.append("|---|---|---|---|---|")
        for method, m in entry["methods"].items():
            diff = (
                f"{m['skebm_minus']:+.4f} ± {m['stderr']:.4f}" if "stderr" in m else ""
            )
            cpu = f"{m['fit_cpu_s']:.1f}" if m["fit_cpu_s"] is not None else ""
            lines.append(
                f"| {LABELS[method]} | {m['mean']:.4f} | {diff} | {cpu} | "
                f"{m['detail']} |"
            )
        lines.append("")
    lines += [
        "### Verdict",
        "",
        "| set | skebm | best peer | skebm minus best peer | verdict | "
        "skebm minus true | fit CPU s | normalisation error (nats) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary.items():
        methods = entry["methods"]
        if "skebm" not in methods:
            continue
        ours = methods["skebm"]
        best = entry.get("best_peer")
        vs_best = (
            f"{methods[best]['skebm_minus']:+.4f} ± {methods[best]['stderr']:.4f}"
            if best
            else ""
        )
        vs_true = (
            f"{methods['true']['skebm_minus']:+.4f}" if "true" in methods else "n/a"
        )
        norm = entry["normalisation"]
        check = f"{norm['error']:+.4f}"
        if norm["method"] != "grid":
            check += (
                f" ± {norm['stderr']:.4f} (IS, ESS {norm['is_ess']:.0f}); "
                f"{norm['ais_error']:+.4f} ± {norm['ais_stderr']:.4f} (10x AIS)"
            )
        lines.append(
            f"| {name} | {ours['mean']:.4f} | {LABELS.get(best, '')} | {vs_best} | "
            f"{entry.get('verdict', '')} | {vs_true} | {ours['fit_cpu_s']:.1f} | "
            f"{check} |"
        )
    verdicts = [e.get("verdict") for e in summary.values() if "verdict" in e]
    if verdicts:
        counts = {v: verdicts.count(v) for v in ("win", "tie", "loss")}
        lines += [
            "",
            f"skebm against the best peer: {counts['win']} wins, {counts['tie']} ties, "
            f"{counts['loss']} losses of {len(verdicts)} sets.",
        ]
    return "\n".join(lines)


def environment(n_jobs: int) -> str:
    return describe_machine(f"{n_jobs} fit(s) at a time, one thread each")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds; smoke test")
    parser.add_argument("--jobs", type=int, default=1, help="fits at a time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data")
    parser.add_argument("--sets", default=None, help="comma-separated subset")
    parser.add_argument("--methods", default=None, help="comma-separated subset")
    parser.add_argument(
        "--skebm-params", default=None, help="JSON dict of estimator parameters"
    )
    parser.add_argument("--json", default=None, help="write the summary here")
    parser.add_argument(
        "--cache",
        default=None,
        help="folder to keep and reuse the peers' results (development runs only)",
    )
    args = parser.parse_args(argv)
    settings = quick_settings() if args.quick else Settings()
    settings = replace(settings, seed=args.seed, cache=args.cache)
    if args.sets:
        settings.sets = tuple(args.sets.split(","))
    if args.methods:
        settings.methods = tuple(args.methods.split(","))
    if args.skebm_params:
        settings.skebm_params = {
            **settings.skebm_params,
            **json.loads(args.skebm_params),
        }
    unknown = set(settings.sets) - set(SETS) | set(settings.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown sets or methods: {sorted(unknown)}")

    begin = time.perf_counter()
    print(environment(args.jobs), flush=True)
    print(
        f"data seed {settings.seed}; {settings.n_train} training / {settings.n_test} "
        f"held-out rows per set (digits: {settings.digits_train} / the rest); "
        f"skebm parameters {settings.skebm_params or 'default'}\n",
        flush=True,
    )
    # The slowest fits first, so that the pool does not end waiting on one of them.
    tasks = [
        (name, method, settings)
        for method in ("flow", "skebm", "gmm", "kde", "true")
        if method in settings.methods
        for name in settings.sets
    ]
    results = run_all(tasks, args.jobs)
    summary = summarise(results, settings)
    print(format_report(summary))
    print(f"\n{environment(args.jobs)}; total {time.perf_counter() - begin:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(settings=repr(settings), summary=summary), f, indent=1)
    return summary


if __name__ == "__main__":
    main()
