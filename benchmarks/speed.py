"""Speed of skebm's samplers and training step against bare torch loops and peers.

Workloads (float32, MLP energies with SiLU, same weights and seeds everywhere):

(a) Langevin, MLP 2-128-128-1, 10,000 chains x 200 steps, step 0.01
(b) one CD epoch: 8,192 two-moons rows, batch 256, k=10 Langevin from noise, Adam 1e-3
(c) Langevin, MLP 64-256-256-1, 2,000 chains x 200 steps
(d) Langevin, MLP as (a), 256 chains x 1,000 steps (per-step overhead)
(e) MALA as (a) with 200 steps, (f) HMC as (a) with 50 trajectories of 4 leapfrog steps

Every implementation of a workload runs the same maths; "parity" is the largest
difference of its output (or trained weights) from the bare loop's. Runs are
interleaved round-robin with a rotating order; the table reports medians and ratios to
the bare loop measured in the same run. Peers (torchebm, ebmkit) are used when
installed (``pip install "skebm[bench]"``).

    python benchmarks/speed.py                 # CPU, eager (+ --compile for compiled)
    python benchmarks/speed.py --device cuda   # adds CUDA-graph rows
    python benchmarks/speed.py --quick         # seconds; smoke test

No result here is asserted anywhere: benchmarks print, tests do not time.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from skebm._training import run_epochs
from skebm.acceleration import (
    AcceleratedSampler,
    attach_compiled_kernels,
    cuda_graphs_available,
)
from skebm.datasets import make_two_moons
from skebm.energies import MLPEnergy, ResidualEnergy
from skebm.losses import ContrastiveDivergence
from skebm.samplers import HMC, MALA, Langevin

STEP = 0.01


@dataclass
class Workload:
    key: str
    title: str
    n_features: int
    hidden: tuple[int, ...]
    n_chains: int
    n_steps: int
    kind: str = "langevin"  # langevin | mala | hmc | cd
    implementations: dict[str, Callable] = field(default_factory=dict)


def make_mlp(n_features, hidden, seed=0) -> nn.Module:
    """skebm's MLP with a random (not zero) output layer, so gradients are real."""
    torch.manual_seed(seed)
    mlp = MLPEnergy(n_features, hidden, fourier_features=0)
    out = mlp.layers[-1]
    nn.init.normal_(out.weight, std=1.0 / math.sqrt(hidden[-1]))
    return mlp


# -- bare loops: the reference maths, written by hand ---------------------------------


def bare_langevin(energy, x, n_steps, generator, step=STEP):
    noise = math.sqrt(2 * step)
    for _ in range(n_steps):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x)
        x = (
            x
            - step * grad
            + noise
            * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        )
    return x.detach()


def _value_grad(energy, x):
    x = x.detach().requires_grad_(True)
    value = energy(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), grad


def bare_mala(energy, x, n_steps, generator, step=STEP):
    value, grad = _value_grad(energy, x)
    for _ in range(n_steps):
        noise = torch.randn(
            x.shape, generator=generator, device=x.device, dtype=x.dtype
        )
        y = x - step * grad + math.sqrt(2 * step) * noise
        value_y, grad_y = _value_grad(energy, y)
        back = x - y + step * grad_y
        log_alpha = (
            value
            - value_y
            - (back * back).sum(-1) / (4 * step)
            + 0.5 * (noise * noise).sum(-1)
        )
        u = torch.rand(value.shape, generator=generator, device=x.device, dtype=x.dtype)
        accept = torch.log(u) < log_alpha
        x = torch.where(accept[:, None], y, x)
        value = torch.where(accept, value_y, value)
        grad = torch.where(accept[:, None], grad_y, grad)
    return x


def bare_hmc(energy, x, n_steps, generator, step=STEP, n_leapfrog=4):
    value, grad = _value_grad(energy, x)
    for _ in range(n_steps):
        p = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        h0 = value + 0.5 * (p * p).sum(-1)
        q, g = x, grad
        p = p - 0.5 * step * g
        for i in range(n_leapfrog):
            q = q + step * p
            v_new, g = _value_grad(energy, q)
            p = p - (step if i < n_leapfrog - 1 else 0.5 * step) * g
        h1 = v_new + 0.5 * (p * p).sum(-1)
        u = torch.rand(value.shape, generator=generator, device=x.device, dtype=x.dtype)
        accept = torch.log(u) < h0 - h1
        x = torch.where(accept[:, None], q, x)
        value = torch.where(accept, v_new, value)
        grad = torch.where(accept[:, None], g, grad)
    return x


def bare_cd_training(energy, X, generator, n_epochs, *, batch=256, k=10, lr=1e-3):
    """CD from noise; returns the seconds of each epoch."""
    optimizer = torch.optim.Adam(energy.parameters(), lr=lr)
    seconds = []
    for _ in range(n_epochs):
        start = time.perf_counter()
        order = torch.randperm(X.shape[0], generator=generator, device=X.device)
        for begin in range(0, X.shape[0], batch):
            x = X[order[begin : begin + batch]]
            x0 = torch.randn(
                x.shape, generator=generator, device=X.device, dtype=X.dtype
            )
            for p in energy.parameters():
                p.requires_grad_(False)
            negatives = bare_langevin(energy, x0, k, generator)
            for p in energy.parameters():
                p.requires_grad_(True)
            optimizer.zero_grad(set_to_none=True)
            e = energy(torch.cat([x, negatives]))
            loss = e[: x.shape[0]].mean() - e[x.shape[0] :].mean()
            loss.backward()
            optimizer.step()
        _synchronise(X.device)
        seconds.append(time.perf_counter() - start)
    return seconds


# -- skebm ----------------------------------------------------------------------------


def skebm_cd_training(
    energy,
    X,
    generator,
    n_epochs,
    *,
    compile=False,
    compiled_kernels=True,
    batch=256,
    k=10,
    lr=1e-3,
):
    """skebm's training loop on the same work; returns the seconds of each epoch.

    ``compile=True`` is the estimator's fast path (captured training steps on CUDA);
    ``compiled_kernels=False`` keeps eager kernels inside the captured steps.
    """
    capture = compile and cuda_graphs_available(X.device)
    model = ResidualEnergy(energy)
    if compile and compiled_kernels:
        attach_compiled_kernels(model)
    optimizer = torch.optim.Adam(energy.parameters(), lr=lr, capturable=capture)
    result = run_epochs(
        model=model,
        loss=ContrastiveDivergence(n_steps=k, alpha=0.0),
        sampler=Langevin(STEP),
        loss_state=None,
        optimizer=optimizer,
        X=X,
        batch_size=batch,
        n_epochs=n_epochs,
        generator=generator,
        capture=capture,
    )
    return result.seconds


# -- peers ----------------------------------------------------------------------------


def _peer_epochs(loss_of_batch, energy, X, generator, n_epochs, *, batch=256):
    """A peer's CD training (Adam 1e-3); returns the seconds of each epoch."""
    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-3)
    seconds = []
    for _ in range(n_epochs):
        start = time.perf_counter()
        order = torch.randperm(X.shape[0], generator=generator, device=X.device)
        for begin in range(0, X.shape[0], batch):
            optimizer.zero_grad(set_to_none=True)
            loss_of_batch(X[order[begin : begin + batch]]).backward()
            optimizer.step()
        _synchronise(X.device)
        seconds.append(time.perf_counter() - start)
    return seconds


@functools.cache
def _torchebm_wrapper() -> type:
    """A torchebm ``BaseModel`` around a module (its samplers want one); the
    class is made once, outside every timed run."""
    from torchebm.core import BaseModel

    class Wrapped(BaseModel):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, x):
            return self.module(x)

    return Wrapped


def _torchebm_model(module: nn.Module):
    return _torchebm_wrapper()(module)


def peer_implementations(kind: str) -> dict[str, Callable]:
    found: dict[str, Callable] = {}
    if kind == "langevin":
        try:
            from torchebm.samplers import LangevinDynamics

            def torchebm_langevin(energy, x, n_steps, generator):
                model = _torchebm_model(energy).to(x.device)
                sampler = LangevinDynamics(
                    model, step_size=STEP, noise_scale=1.0, device=x.device
                )
                return sampler.sample(x=x, n_steps=n_steps, generator=generator)

            found["torchebm 0.8.9"] = torchebm_langevin
        except ImportError:
            pass
        try:
            from ebm.samplers import LangevinDynamics as EbmLangevin

            def ebmkit_langevin(energy, x, n_steps, generator):
                return EbmLangevin(step_size=STEP, steps=n_steps).sample(energy, x)

            found["ebmkit 0.16.0"] = ebmkit_langevin
        except ImportError:
            pass
    elif kind == "cd":
        try:
            from torchebm.losses import ContrastiveDivergence as TorchebmCD
            from torchebm.samplers import LangevinDynamics

            def torchebm_cd_training(energy, X, generator, n_epochs, **options):
                model = _torchebm_model(energy).to(X.device)
                sampler = LangevinDynamics(
                    model, step_size=STEP, noise_scale=1.0, device=X.device
                )
                loss_fn = TorchebmCD(
                    model=model, sampler=sampler, k_steps=10, energy_reg_weight=0.0
                )
                return _peer_epochs(
                    lambda x: loss_fn(x, generator=generator)[0],
                    energy,
                    X,
                    generator,
                    n_epochs,
                )

            found["torchebm 0.8.9"] = torchebm_cd_training
        except ImportError:
            pass
        try:
            from ebm.losses import ContrastiveDivergence as EbmCD
            from ebm.samplers import LangevinDynamics as EbmLangevin

            def ebmkit_cd_training(energy, X, generator, n_epochs):
                loss_fn = EbmCD(EbmLangevin(step_size=STEP, steps=10))
                return _peer_epochs(
                    lambda x: loss_fn(energy, x).loss, energy, X, generator, n_epochs
                )

            found["ebmkit 0.16.0"] = ebmkit_cd_training
        except ImportError:
            pass
    return found


# -- harness --------------------------------------------------------------------------


def workloads(quick: bool) -> list[Workload]:
    """The benchmark's work items; ``quick`` shrinks every size to a smoke test."""
    scale = 0.02 if quick else 1.0

    def n(value, minimum=8):
        return max(minimum, int(value * scale))

    return [
        Workload(
            "a", "Langevin 2-D, MLP 2-128-128-1", 2, (128, 128), n(10_000), n(200)
        ),
        Workload(
            "b",
            "one CD epoch, 8,192 moons rows, k=10",
            2,
            (128, 128),
            n(8192, 512),
            1,
            kind="cd",
        ),
        Workload(
            "c", "Langevin 64-D, MLP 64-256-256-1", 64, (256, 256), n(2000), n(200)
        ),
        Workload(
            "d", "Langevin 2-D, 256 chains x 1,000 steps", 2, (128, 128), 256, n(1000)
        ),
        Workload(
            "e", "MALA 2-D, MLP as (a)", 2, (128, 128), n(10_000), n(200), kind="mala"
        ),
        Workload(
            "f",
            "HMC 2-D, 4 leapfrog steps, MLP as (a)",
            2,
            (128, 128),
            n(10_000),
            n(50),
            kind="hmc",
        ),
    ]


def build(workload: Workload, device, compile: bool) -> dict[str, Callable]:
    """The implementations of a workload, by name (the bare loop first)."""
    if workload.kind == "cd":
        impls = {"bare torch loop": bare_cd_training, "skebm": skebm_cd_training}
        if compile:
            if cuda_graphs_available(device):
                impls["skebm CUDA graph, eager kernels"] = functools.partial(
                    skebm_cd_training, compile=True, compiled_kernels=False
                )
            impls["skebm compile=True"] = functools.partial(
                skebm_cd_training, compile=True
            )
        impls.update(peer_implementations("cd"))
        return impls
    bare = {"langevin": bare_langevin, "mala": bare_mala, "hmc": bare_hmc}
    if workload.kind == "langevin":
        sampler = Langevin(STEP)
    elif workload.kind == "mala":
        sampler = MALA(STEP, target_accept=None)
    else:
        sampler = HMC(STEP, n_leapfrog=4)
    impls = {
        "bare torch loop": bare[workload.kind],
        "skebm": lambda e, x, n, g: sampler.sample(e, x, n_steps=n, generator=g),
    }
    if compile:
        if cuda_graphs_available(device):
            impls["skebm CUDA graph, eager kernels"] = _fast_runner(sampler, False)
        impls["skebm compile=True"] = _fast_runner(sampler, True)
    if workload.kind == "langevin":
        impls.update(peer_implementations("langevin"))
    return impls


def _fast_runner(sampler, compile):
    """skebm's fast path, keeping one AcceleratedSampler (and its graphs) per energy,
    as a user's script would."""
    fast: dict = {}

    def run(energy, x, n_steps, generator):
        if id(energy) not in fast:
            fast[id(energy)] = AcceleratedSampler(sampler, energy, compile=compile)
        return fast[id(energy)].sample(x, n_steps=n_steps, generator=generator)

    return run


def _synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Epochs per timed run of the CD workload; its time is the median of the epochs
#: after the first (the first of the captured path includes the capture).
CD_EPOCHS = 3


def run_workload(workload, device, *, repeats, compile, seed=0):
    """Time every implementation (interleaved, rotating order) and compare outputs.

    Returns rows ``(name, median seconds, ratio to bare, parity, all times)``.
    """
    impls = build(workload, device, compile)
    mlp = make_mlp(workload.n_features, workload.hidden, seed).to(device)
    if workload.kind == "cd":
        X = torch.as_tensor(
            make_two_moons(workload.n_chains, random_state=0),
            dtype=torch.float32,
            device=device,
        )

        def call(name, fn, energy):
            energy = copy.deepcopy(mlp)  # every run trains the same start
            g = torch.Generator(device=device).manual_seed(seed)
            if name.startswith("ebmkit"):
                torch.manual_seed(seed)  # ebmkit draws from the global RNG
            seconds = fn(energy, X, g, CD_EPOCHS)
            weights = torch.cat([p.detach().flatten() for p in energy.parameters()])
            return weights, statistics.median(seconds[1:])
    else:
        x0 = torch.randn(
            (workload.n_chains, workload.n_features),
            generator=torch.Generator().manual_seed(1),
        ).to(device)

        def call(name, fn, energy):
            g = torch.Generator(device=device).manual_seed(seed)
            if name.startswith("ebmkit"):
                torch.manual_seed(seed)  # ebmkit draws from the global RNG
            _synchronise(device)
            start = time.perf_counter()
            out = fn(energy, x0, workload.n_steps, g)
            _synchronise(device)
            return out, time.perf_counter() - start

    names = list(impls)
    energies = {name: copy.deepcopy(mlp) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    outputs = {}
    for name in names:  # warm-up: compiles and captures; parity from its output
        outputs[name] = call(name, impls[name], energies[name])[0].detach().cpu()
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(call(name, impls[name], energies[name])[1])
    bare = statistics.median(times["bare torch loop"])
    return [
        (
            name,
            statistics.median(times[name]),
            statistics.median(times[name]) / bare,
            (outputs[name] - outputs["bare torch loop"]).abs().max().item(),
            times[name],
        )
        for name in names
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--compile", action="store_true", help="add skebm's compile=True fast path"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat")
    parser.add_argument("--only", default="", help="workload keys, e.g. 'ad'")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = 1 if args.quick else args.repeats
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, device "
        f"{device} ({name}), threads {torch.get_num_threads()}, repeats {repeats}"
    )
    print(
        "| work | implementation | median s | ratio to bare | parity vs bare "
        "| runs (s) |"
    )
    print("|---|---|---:|---:|---:|---|")
    start = time.perf_counter()
    for workload in workloads(args.quick):
        if args.only and workload.key not in args.only:
            continue
        for name, median, ratio, parity, runs in run_workload(
            workload, device, repeats=repeats, compile=args.compile
        ):
            print(
                f"| ({workload.key}) {workload.title} | {name} | {median:.3f} | "
                f"{ratio:.2f} | {parity:.1e} | "
                f"{', '.join(f'{t:.2f}' for t in runs)} |",
                flush=True,
            )
    print(f"total wall {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
