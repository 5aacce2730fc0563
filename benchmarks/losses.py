"""Which loss, base and sampler should EnergyDensityEstimator use by default?

Every built-in loss, with each base density (``gmm``, ``gaussian``, ``standard``)
and, where a sampler matters (contrastive divergence), with Langevin and MALA, is
fitted on the toy data sets of :mod:`skebm.datasets`. Each set has 5,000 training
rows and 5,000 held-out rows (one draw of 10,000 with ``random_state=0``, split in
half). The table reports the held-out mean log-likelihood from the estimator's
``score`` (nats per row, higher is better), the fit time, and two baselines fitted
on the same rows: ``KernelDensity`` with its bandwidth chosen by 5-fold
cross-validation and ``GaussianMixture`` with its number of components chosen by
5-fold cross-validation.

To fit in about an hour on 2 cores the run is pruned in two stages:

1. *screen*: every combination on two contrasting sets (two moons: smooth and
   curved; checkerboard: flat with sharp edges);
2. *final*: the best ``--leaders`` eligible combinations of the screen (fit under
   60 s on every screening set, usable in any dimension: not the d <= 2 grid of
   ``"ml"``), and the current default, on all six toy sets and on ``digits``, with
   the baselines.

``digits`` is scikit-learn's 8x8 digits (64 features, 1,797 rows), dequantised
with uniform noise in [0, 1) (a density on integers is not a density on R^64) and
split 1,000 training / 797 held-out rows: a default is used on more than 2-D toy
sets, and what wins in 2-D need not survive 64 dimensions.

The recommended default is the final combination with the best mean held-out
log-likelihood (the mean over the seven sets, so the same ranking as its mean gain
over KernelDensity) whose fit took under 60 s on every set.

    python benchmarks/losses.py                  # the full run (about an hour)
    python benchmarks/losses.py --jobs 6         # parallel fits (2 threads each)
    python benchmarks/losses.py --quick          # seconds; smoke test
    python benchmarks/losses.py --screen-from results.json   # final stage only

Fit times are seconds of ``fit`` (base density, training and the log Z estimate):
CPU seconds with ``--threads 1`` (a fit on one quiet core, even on a busy
machine), wall-clock seconds otherwise. No result here is asserted anywhere:
benchmarks print, tests do not time.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from _machine import describe_machine  # benchmarks/_machine.py, beside this script
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KernelDensity
from threadpoolctl import threadpool_limits

from skebm import EnergyDensityEstimator
from skebm.datasets import TOY_DATASETS

SCREEN_SETS = ("two_moons", "checkerboard")
TIME_LIMIT_S = 60.0
BASES = ("gmm", "gaussian", "standard")
SAMPLERS = ("langevin", "mala")
#: Epochs per fit: contrastive divergence runs 10 sampler steps per batch, so it
#: gets a quarter of the epochs (about the same compute as the other losses).
EPOCHS = {"cd": 50, "pcd": 50}
DEFAULT_EPOCHS = 200
SLOW_LOSSES = ("cd", "pcd", "sm", "ml")


@dataclass(frozen=True)
class Candidate:
    """One estimator configuration."""

    loss: str
    base: str
    sampler: str = "mala"
    learning_rate: float = 3e-3
    loss_params: tuple = ()
    max_iter: int = DEFAULT_EPOCHS

    @property
    def name(self) -> str:
        params = "".join(f", {k}={v}" for k, v in self.loss_params)
        sampler = f" + {self.sampler}" if self.loss in ("cd", "pcd") else ""
        return (
            f"{self.loss}{params} / base {self.base}{sampler} / "
            f"lr {self.learning_rate:g} / {self.max_iter} ep"
        )

    @property
    def any_dimension(self) -> bool:
        """Usable in any dimension (maximum likelihood's grid needs d <= 2)."""
        return self.loss != "ml"

    def estimator(self, **overrides) -> EnergyDensityEstimator:
        params = dict(
            loss=self.loss,
            loss_params=dict(self.loss_params) or None,
            base=self.base,
            sampler=self.sampler,
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            random_state=0,
            device="cpu",
        )
        return EnergyDensityEstimator(**{**params, **overrides})


#: The estimator's defaults before this benchmark chose new ones (reference row).
PREVIOUS_DEFAULT = Candidate("nce", "gmm", learning_rate=1e-3)


def screen_candidates() -> list[Candidate]:
    """Every loss with every base; contrastive divergence with every sampler."""
    out = [
        PREVIOUS_DEFAULT,
        # Longer training of the previous default's family (fits have headroom).
        Candidate("nce", "gmm", max_iter=400),
        Candidate("nce", "gmm", loss_params=(("noise_ratio", 10),), max_iter=400),
    ]
    for base in BASES:
        out += [
            Candidate("nce", base),
            Candidate("nce", base, loss_params=(("noise_ratio", 10),)),
            Candidate("ml", base),
            Candidate("sm", base),
            Candidate("sm", base, loss_params=(("method", "hutchinson"),)),
            Candidate("dsm", base, loss_params=(("sigma", 0.1),)),
        ]
        for loss in ("cd", "pcd"):
            out += [
                Candidate(loss, base, sampler, max_iter=EPOCHS[loss])
                for sampler in SAMPLERS
            ]
    return out


@dataclass
class Settings:
    n_train: int = 5000
    n_test: int = 5000
    screen_sets: tuple = SCREEN_SETS
    final_sets: tuple = (*TOY_DATASETS, "digits")
    leaders: int = 4
    threads: int = 2
    estimator_overrides: dict = field(default_factory=dict)
    kde_bandwidths: int = 40
    gmm_components: tuple = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40)
    cv: int = 5
    quick: bool = False


def quick_settings() -> Settings:
    return Settings(
        n_train=300,
        n_test=300,
        screen_sets=("two_moons",),
        final_sets=("two_moons", "digits"),
        leaders=1,
        estimator_overrides=dict(
            max_iter=2,
            energy_params={"hidden_layer_sizes": (16,)},
            base_params={"max_components": 3},
            partition_params={"n_draws": 4096, "n_chains": 64, "n_temperatures": 10},
        ),
        kde_bandwidths=4,
        gmm_components=(1, 2),
        cv=2,
        quick=True,
    )


DIGITS_TRAIN = 1000


def load(name: str, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        X = load_digits().data
        X = X + np.random.RandomState(0).uniform(size=X.shape)  # dequantise
        X = X[np.random.RandomState(1).permutation(len(X))]
        n_train = min(DIGITS_TRAIN, settings.n_train)
        return X[:n_train], X[n_train : n_train + settings.n_test]
    X = TOY_DATASETS[name](settings.n_train + settings.n_test, random_state=0)
    return X[: settings.n_train], X[settings.n_train :]


def _fit_candidate(candidate: Candidate, dataset: str, settings: Settings) -> dict:
    X_train, X_test = load(dataset, settings)
    overrides = dict(settings.estimator_overrides)
    if candidate.base != "gmm":
        overrides.pop("base_params", None)
    if settings.quick:
        overrides["max_iter"] = min(candidate.max_iter, overrides["max_iter"])
    try:
        est = candidate.estimator(**overrides).fit(X_train)
        heldout = est.score(X_test)
        log_z_stderr = est.log_partition_stderr_
        error = None
    except Exception as exc:  # a diverged or failed fit is a result, not a crash
        heldout, log_z_stderr, error = float("nan"), float("nan"), repr(exc)
    return dict(heldout=heldout, log_z_stderr=log_z_stderr, error=error)


def _fit_kde(dataset: str, settings: Settings) -> dict:
    X_train, X_test = load(dataset, settings)
    scale = X_train.std(0).mean()
    search = GridSearchCV(
        KernelDensity(),
        {"bandwidth": scale * np.logspace(-2, 0, settings.kde_bandwidths)},
        cv=settings.cv,
    ).fit(X_train)
    return dict(
        heldout=search.best_estimator_.score(X_test) / len(X_test),
        detail=f"bandwidth {search.best_params_['bandwidth']:.3g}",
    )


def _fit_gmm(dataset: str, settings: Settings) -> dict:
    X_train, X_test = load(dataset, settings)
    search = GridSearchCV(
        GaussianMixture(covariance_type="full", random_state=0),
        {"n_components": list(settings.gmm_components)},
        cv=settings.cv,
    ).fit(X_train)
    return dict(
        heldout=search.best_estimator_.score(X_test),
        detail=f"{search.best_params_['n_components']} components",
    )


def run_job(job: tuple) -> tuple:
    """One fit in a worker process: ``(kind, dataset, candidate, settings)``.

    Records the wall-clock seconds and the CPU seconds of the process; with one
    thread (torch and BLAS) the CPU seconds are what the fit takes on a quiet
    core, whatever else runs on the machine.
    """
    kind, dataset, candidate, settings = job
    torch.set_num_threads(settings.threads)
    fit = {"kde": _fit_kde, "gmm": _fit_gmm}.get(kind)
    wall, cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(settings.threads):
        if fit is None:
            result = _fit_candidate(candidate, dataset, settings)
        else:
            result = fit(dataset, settings)
    result["wall_s"] = time.perf_counter() - wall
    result["cpu_s"] = time.process_time() - cpu
    result["fit_s"] = result["cpu_s" if settings.threads == 1 else "wall_s"]
    return job[:3], result


def run_all(jobs: list[tuple], n_workers: int) -> dict:
    if n_workers <= 1:
        return dict(run_job(job) for job in jobs)
    with ProcessPoolExecutor(n_workers) as pool:
        # The longest fits first, so the pool does not end waiting on one of them.
        order = sorted(jobs, key=lambda j: j[0] == "ebm" and j[2].loss in SLOW_LOSSES)
        return dict(pool.map(run_job, order[::-1]))


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def quick_candidates() -> list[Candidate]:
    """One configuration per loss, covering every base and sampler."""
    return [
        PREVIOUS_DEFAULT,
        Candidate("nce", "standard"),
        Candidate("ml", "gaussian"),
        Candidate("sm", "standard", loss_params=(("method", "hutchinson"),)),
        Candidate("dsm", "gmm"),
        Candidate("cd", "standard", "mala", max_iter=EPOCHS["cd"]),
        Candidate("pcd", "gaussian", "langevin", max_iter=EPOCHS["pcd"]),
    ]


def screen(settings: Settings, n_workers: int) -> tuple[list[dict], dict]:
    candidates = quick_candidates() if settings.quick else screen_candidates()
    jobs = [
        ("ebm", dataset, candidate, settings)
        for candidate in candidates
        for dataset in settings.screen_sets
    ]
    results = run_all(jobs, n_workers)
    rows = []
    for candidate in candidates:
        per_set = {d: results[("ebm", d, candidate)] for d in settings.screen_sets}
        rows.append(
            dict(
                candidate=candidate,
                per_set=per_set,
                mean=_mean(r["heldout"] for r in per_set.values()),
                max_fit_s=max(r["fit_s"] for r in per_set.values()),
            )
        )
    rows.sort(key=lambda r: -np.nan_to_num(r["mean"], nan=-np.inf))
    return rows, results


def screen_from(path: str) -> list[dict]:
    """The screen rows of an earlier run's ``--json`` file (best first)."""
    with open(path) as f:
        stored = json.load(f)["screen"]
    rows = []
    for row in stored:
        fields = dict(row["candidate"])
        fields["loss_params"] = tuple(tuple(p) for p in fields["loss_params"])
        rows.append(
            dict(
                candidate=Candidate(**fields),
                per_set=row["per_set"],
                mean=row["mean"],
                max_fit_s=max(r["fit_s"] for r in row["per_set"].values()),
            )
        )
    return rows


def eligible(row: dict) -> bool:
    return (
        row["candidate"].any_dimension
        and row["max_fit_s"] < TIME_LIMIT_S
        and np.isfinite(row["mean"])
    )


def final(settings: Settings, leaders: list[Candidate], n_workers: int) -> dict:
    jobs = [("kde", d, None, settings) for d in settings.final_sets]
    jobs += [("gmm", d, None, settings) for d in settings.final_sets]
    jobs += [("ebm", d, c, settings) for c in leaders for d in settings.final_sets]
    return run_all(jobs, n_workers)


def _format_screen(rows: list[dict], settings: Settings) -> str:
    sets = settings.screen_sets
    head = "| combination | " + " | ".join(sets) + " | mean | max fit s | eligible |"
    lines = [head, "|" + "---|" * (len(sets) + 4)]
    for row in rows:
        cells = [
            f"{row['per_set'][d]['heldout']:.4f} ({row['per_set'][d]['fit_s']:.0f} s)"
            for d in sets
        ]
        reason = (
            "yes"
            if eligible(row)
            else (
                "no (d <= 2 only)"
                if not row["candidate"].any_dimension
                else "no (fit >= 60 s)"
                if row["max_fit_s"] >= TIME_LIMIT_S
                else "no (failed)"
            )
        )
        lines.append(
            f"| {row['candidate'].name} | "
            + " | ".join(cells)
            + f" | {row['mean']:.4f} | {row['max_fit_s']:.0f} | {reason} |"
        )
    return "\n".join(lines)


def _format_final(results: dict, leaders: list[Candidate], settings: Settings):
    sets = settings.final_sets
    head = "| method | " + " | ".join(sets) + " | mean | max fit s |"
    lines = [head, "|" + "---|" * (len(sets) + 3)]
    summary = []
    for label, key in [
        ("KernelDensity, CV bandwidth", "kde"),
        ("GaussianMixture, CV components", "gmm"),
    ]:
        rs = [results[(key, d, None)] for d in sets]
        cells = [f"{r['heldout']:.4f}" for r in rs]
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {_mean(r['heldout'] for r in rs):.4f} | "
            f"{max(r['fit_s'] for r in rs):.0f} |"
        )
    for candidate in leaders:
        rs = [results[("ebm", d, candidate)] for d in sets]
        kde = [results[("kde", d, None)]["heldout"] for d in sets]
        cells = [
            f"{r['heldout']:.4f} ({r['heldout'] - k:+.3f})" for r, k in zip(rs, kde)
        ]
        mean = _mean(r["heldout"] for r in rs)
        max_fit = max(r["fit_s"] for r in rs)
        summary.append((candidate, mean, max_fit))
        lines.append(
            f"| {candidate.name} | "
            + " | ".join(cells)
            + f" | {mean:.4f} | {max_fit:.0f} |"
        )
    return "\n".join(lines), summary


def _environment(n_workers: int, threads: int) -> str:
    return describe_machine(f"{n_workers} parallel fit(s) x {threads} torch threads")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds; smoke test")
    parser.add_argument("--jobs", type=int, default=1, help="parallel fits")
    parser.add_argument("--threads", type=int, default=2, help="torch threads/fit")
    parser.add_argument("--leaders", type=int, default=None)
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument(
        "--screen-from",
        default=None,
        help="take the screen from an earlier run's --json file; run the final only",
    )
    args = parser.parse_args(argv)
    settings = quick_settings() if args.quick else Settings()
    settings.threads = args.threads
    if args.leaders is not None:
        settings.leaders = args.leaders
    begin = time.perf_counter()
    print(_environment(args.jobs, args.threads), flush=True)
    print(
        f"{settings.n_train} training / {settings.n_test} held-out rows per set; "
        "held-out mean log-likelihood (nats per row), fit seconds in brackets ("
        + ("CPU seconds, one thread" if settings.threads == 1 else "wall clock")
        + ")\n"
    )

    if args.screen_from:
        rows = screen_from(args.screen_from)
        settings.screen_sets = tuple(rows[0]["per_set"])
    else:
        rows, _ = screen(settings, args.jobs)
    print(f"## Screen ({', '.join(settings.screen_sets)})\n")
    print(_format_screen(rows, settings), flush=True)

    leaders = [row["candidate"] for row in rows if eligible(row)][: settings.leaders]
    if PREVIOUS_DEFAULT not in leaders:
        leaders.append(PREVIOUS_DEFAULT)
    final_results = final(settings, leaders, args.jobs)
    table, summary = _format_final(final_results, leaders, settings)
    print("\n## Final (all sets; EBM cells: held-out LL (difference to KDE))\n")
    print(table)

    fast = [s for s in summary if s[2] < TIME_LIMIT_S and np.isfinite(s[1])]
    best = max(fast, key=lambda s: s[1]) if fast else None
    if best is not None:
        print(f"\nRecommended default: {best[0].name} (mean {best[1]:.4f})")
    total = time.perf_counter() - begin
    print(f"\n{_environment(args.jobs, args.threads)}; total {total:.0f} s")
    out = dict(
        screen=[
            dict(candidate=asdict(r["candidate"]), per_set=r["per_set"], mean=r["mean"])
            for r in rows
        ],
        final={
            f"{k[0]}|{k[1]}|{k[2].name if k[2] else ''}": v
            for k, v in final_results.items()
        },
        recommended=asdict(best[0]) if best else None,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
