"""Fast paths: compiled energy gradients, and CUDA graphs of whole loops.

Small energy networks are launch-bound: each sampler step is a handful of tiny
kernels, and the host spends more time dispatching them than the device running them.
Two levers remove that overhead without changing the maths:

* :func:`compile_value_and_grad` compiles an energy's value-and-gradient with
  ``torch.compile`` (fused kernels; on the CPU this is the only lever), and
  :func:`compile_langevin_update` a whole Langevin move (gradient and update in one
  compiled function): the kernels of the fast-gradient protocol
  (:mod:`skebm.fast_gradient`). :func:`attach_compiled_kernels` adds both to an
  energy.
* On CUDA, :class:`CapturedSampling` records a sampler's whole ``n_steps`` loop as one
  CUDA graph, and :class:`CapturedTrainingStep` records a whole training step (the
  loss with its MCMC, backward and a capturable Adam step). Replays run at kernel time.
  The estimator's ``torch.Generator`` is registered with the graph, so the noise comes
  from the same stream, in the same order, as in eager mode.

Warm-up and capture execute the step a few times; the generator state and every trained
tensor are saved before and restored after, in place, so the first replay continues
exactly where eager execution would be. Graphs are specialised to shapes: callers keep
one per shape (:class:`AcceleratedSampler` and the training loop do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from skebm.acceleration.compiled import (
    attach_compiled_kernels,
    compile_langevin_update,
    compile_value_and_grad,
    compiled_energy,
)
from skebm.acceleration.cuda_graphs import (
    CapturedSampling,
    CapturedTrainingStep,
    cuda_graphs_available,
)

__all__ = [
    "AcceleratedSampler",
    "CapturedSampling",
    "CapturedTrainingStep",
    "FastPath",
    "attach_compiled_kernels",
    "choose_fast_path",
    "compile_langevin_update",
    "compile_value_and_grad",
    "cuda_graphs_available",
]


@dataclass(frozen=True)
class FastPath:
    """How a fit or a ``sample`` call runs (see :func:`choose_fast_path`)."""

    #: Record training steps and sampling loops as CUDA graphs.
    cuda_graphs: bool
    #: Compile the energy's sampler kernels (without graphs).
    compiled_kernels: bool


def choose_fast_path(device: torch.device, compile: bool) -> FastPath:
    """The one decision between eager, compiled and captured execution.

    ``compile=False`` runs eagerly. ``compile=True`` captures CUDA graphs where
    they are available (CUDA with generator-aware graphs) and compiles the
    energy's kernels elsewhere (the CPU, MPS).
    """
    graphs = compile and cuda_graphs_available(device)
    return FastPath(cuda_graphs=graphs, compiled_kernels=compile and not graphs)


class AcceleratedSampler:
    """Run a sampler on one energy through the fastest path available.

    On CUDA (with generator-aware graphs) each distinct ``(n_chains, d, dtype,
    n_steps)`` is captured once as a :class:`CapturedSampling` and replayed
    afterwards; the energy's gradient is compiled first when ``compile=True``. On the
    CPU the energy's gradient is compiled. Results equal the eager sampler's
    (bit-identical where the kernels are the same, otherwise to float tolerance).

    Parameters
    ----------
    sampler : BaseSampler
    energy : nn.Module
    compile : bool, default=True
        Compile the energy's value-and-gradient.
    cuda_graphs : bool, default=True
        Capture whole loops on CUDA.

    Examples
    --------
    >>> import torch
    >>> from skebm.acceleration import AcceleratedSampler
    >>> from skebm.energies import GaussianEnergy
    >>> from skebm.samplers import Langevin
    >>> fast = AcceleratedSampler(Langevin(0.1), GaussianEnergy(2), compile=False)
    >>> fast.sample(torch.zeros(5, 2), n_steps=10,
    ...             generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        sampler,
        energy: nn.Module,
        *,
        compile: bool = True,
        cuda_graphs: bool = True,
    ):
        self.sampler = sampler
        self.energy = compiled_energy(energy) if compile else energy
        self.cuda_graphs = cuda_graphs
        self._graphs: dict = {}

    def sample(
        self,
        x0: torch.Tensor,
        *,
        n_steps: int,
        generator: torch.Generator | None = None,
        return_info: bool = False,
    ):
        """Like :meth:`BaseSampler.sample` for the bound energy."""
        if (
            self.cuda_graphs
            and generator is not None
            and n_steps > 0
            and cuda_graphs_available(x0.device)
        ):
            key = (tuple(x0.shape), x0.dtype, x0.device, n_steps)
            captured = self._graphs.get(key)
            if captured is None:
                captured = CapturedSampling(
                    self.sampler, self.energy, x0, n_steps=n_steps
                )
                self._graphs[key] = captured
            x, info = captured.run(x0, generator)
            return (x, info) if return_info else x
        return self.sampler.sample(
            self.energy,
            x0,
            n_steps=n_steps,
            generator=generator,
            return_info=return_info,
        )
