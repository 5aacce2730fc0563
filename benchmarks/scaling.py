"""How fit, score_samples and sample scale with the number of rows.

1. Fit: seconds of a one-epoch fit (standardisation, BIC base, AIS) and of each
   further epoch, for 1k .. 100k two-moons rows with the default estimator.
2. Memory: peak memory of ``score_samples`` on n rows and of ``sample(n)``, each in a
   fresh process (so nothing earlier hides a peak): the growth of the resident-set
   high-water mark during the call (and, on CUDA, the allocator's peak), next to the
   size of the call's output array. Both work in fixed-size chunks, so the peak beyond
   the output should not grow with n.

    python benchmarks/scaling.py                  # CPU, up to 5,000,000 rows
    python benchmarks/scaling.py --device cuda
    python benchmarks/scaling.py --quick          # seconds; smoke test
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from skebm import EnergyDensityEstimator
from skebm.datasets import make_two_moons

_CHILD = r"""
import json, pickle, resource, sys, time
import numpy as np, torch
path, method, n, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(path, "rb") as f:
    est = pickle.load(f)
est.set_params(sample_steps=steps)
rng = np.random.RandomState(0)
X = rng.normal(size=(n, est.n_features_in_)) if method == "score_samples" else None
cuda = est.device_.type == "cuda"
if cuda:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before_gpu = torch.cuda.memory_allocated()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
if method == "score_samples":
    out = est.score_samples(X)
else:
    out = est.sample(n, random_state=0)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gpu = (torch.cuda.max_memory_allocated() - before_gpu) / 2**20 if cuda else None
print(json.dumps({"seconds": seconds, "rss_growth_mb": peak - before,
                  "output_mb": out.nbytes / 2**20, "gpu_peak_mb": gpu}))
"""


def fit_scaling(sizes, device, epochs, compile=False):
    # One-time costs (imports torch.optim pulls in, allocator warm-up) first.
    EnergyDensityEstimator(
        max_iter=1, random_state=0, device=device, compile=compile
    ).fit(make_two_moons(300, random_state=0))
    print(f"compile={compile}")
    print("| rows | fit s (max_iter=1) | per further epoch s | epochs/s |")
    print("|---:|---:|---:|---:|")
    for n in sizes:
        X = make_two_moons(n, random_state=0)
        times = {}
        # Differences of fits with 1 and 1 + epochs epochs: both pay the fixed
        # part (base, log Z) and any compilation or graph capture, which cancel.
        for max_iter in (1, 1 + epochs):
            est = EnergyDensityEstimator(
                max_iter=max_iter, random_state=0, device=device, compile=compile
            )
            start = time.perf_counter()
            est.fit(X)
            times[max_iter] = time.perf_counter() - start
        per_epoch = (times[1 + epochs] - times[1]) / epochs
        print(
            f"| {n:,} | {times[1]:.2f} | {per_epoch:.3f} | {1 / per_epoch:.1f} |",
            flush=True,
        )


def memory_scaling(sizes, device, steps):
    est = EnergyDensityEstimator(max_iter=2, random_state=0, device=device)
    est.fit(make_two_moons(2000, random_state=0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pkl"
        path.write_bytes(pickle.dumps(est))
        print(
            f"| method | rows | seconds | output MB | peak RSS growth MB | "
            f"growth beyond output MB | CUDA peak MB |  ({steps} sampler steps)"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for method in ("score_samples", "sample"):
            for n in sizes:
                result = json.loads(
                    subprocess.run(
                        [
                            sys.executable,
                            "-c",
                            _CHILD,
                            str(path),
                            method,
                            str(n),
                            str(steps),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                beyond = result["rss_growth_mb"] - result["output_mb"]
                gpu = result["gpu_peak_mb"]
                print(
                    f"| {method} | {n:,} | {result['seconds']:.2f} | "
                    f"{result['output_mb']:.1f} | {result['rss_growth_mb']:.1f} | "
                    f"{beyond:.1f} | {'-' if gpu is None else f'{gpu:.1f}'} |",
                    flush=True,
                )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--sample-steps",
        type=int,
        default=2,
        help="sampler steps in the memory runs (memory does not depend on it)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--compile", action="store_true", help="also time fits with compile=True"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory part")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, "
        f"threads {torch.get_num_threads()}, "
        f"peak RSS before run {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}"
    )
    if args.quick:
        fit_scaling([500], args.device, epochs=1)
        memory_scaling([1000, 10_000], args.device, steps=1)
    else:
        for compile in (False, True) if args.compile else (False,):
            fit_scaling(
                [1_000, 10_000, 100_000], args.device, epochs=5, compile=compile
            )
        if not args.no_memory:
            memory_scaling(
                [100_000, 1_000_000, 5_000_000], args.device, steps=args.sample_steps
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
