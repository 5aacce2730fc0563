"""Langevin throughput in chain-steps per second against the number of chains.

For 2-D (MLP 2-128-128-1) and 64-D (MLP 64-256-256-1) energies, runs ``--steps``
Langevin steps for 1e3 .. 1e6 chains with skebm's eager sampler and, on CUDA, with
its fast paths (the whole loop as one CUDA graph; and compiled gradient kernels inside
the graph). Each entry is the median of ``--repeats`` timed runs after a warm-up
(which also compiles and captures).

    python benchmarks/throughput.py --device cuda
    python benchmarks/throughput.py --device cpu --max-chains 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from speed import make_mlp  # the same energies as benchmarks/speed.py

from skebm.acceleration import AcceleratedSampler, cuda_graphs_available
from skebm.samplers import Langevin


def _time(fn, device, repeats):
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-chains", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sampler = Langevin(0.01)
    paths = {"eager": None}
    if cuda_graphs_available(device):
        paths["CUDA graph"] = False
        paths["CUDA graph + compiled kernels"] = True
    print(
        f"torch {torch.__version__}, device {device}, {args.steps} Langevin steps, "
        f"median of {args.repeats}"
    )
    print(
        "| energy | chains | "
        + " | ".join(f"{p} (chain-steps/s)" for p in paths)
        + " |"
    )
    print("|---|---:|" + "---:|" * len(paths))
    for d, hidden in [(2, (128, 128)), (64, (256, 256))]:
        energy = make_mlp(d, hidden).to(device)
        fast = {
            name: AcceleratedSampler(sampler, energy, compile=compile)
            for name, compile in paths.items()
            if compile is not None
        }
        n = 1000
        while n <= args.max_chains:
            x0 = torch.randn(n, d, device=device)
            g = torch.Generator(device=device).manual_seed(0)
            rates = []
            for name in paths:
                if name == "eager":

                    def run(x0=x0, g=g, energy=energy):
                        sampler.sample(energy, x0, n_steps=args.steps, generator=g)

                else:

                    def run(f=fast[name], x0=x0, g=g):
                        f.sample(x0, n_steps=args.steps, generator=g)

                seconds = _time(run, device, args.repeats)
                rates.append(n * args.steps / seconds)
            print(
                f"| MLP {d}-{'-'.join(map(str, hidden))}-1 | {n:,} | "
                + " | ".join(f"{r:.2e}" for r in rates)
                + " |",
                flush=True,
            )
            n *= 10
    return 0


if __name__ == "__main__":
    sys.exit(main())
