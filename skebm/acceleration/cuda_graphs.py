"""CUDA graphs of whole loops: a sampler's ``n_steps`` loop and a training step.

:class:`CapturedSampling` records a sampler's whole loop as one CUDA graph, and
:class:`CapturedTrainingStep` records a training step (the loss with its MCMC,
backward and a capturable Adam step: the step that
:func:`skebm._training.make_train_step` builds, the same one eager training runs).
Replays run at kernel time. The caller's
``torch.Generator`` is registered with the graph, so the noise comes from the same
stream, in the same order, as in eager mode.

Warm-up and capture execute the step a few times; the generator state and every trained
tensor are saved before and restored after, in place, so the first replay continues
exactly where eager execution would be. Graphs are specialised to shapes: callers keep
one per shape (:class:`~skebm.acceleration.AcceleratedSampler` and the training loop
do).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["CapturedSampling", "CapturedTrainingStep", "cuda_graphs_available"]


def cuda_graphs_available(device: torch.device) -> bool:
    """Whether whole loops can be captured on ``device``: CUDA, and a torch whose
    graphs take a user generator (``CUDAGraph.register_generator_state``)."""
    return (
        device.type == "cuda"
        and torch.cuda.is_available()
        and hasattr(torch.cuda.CUDAGraph, "register_generator_state")
    )


class _TensorSnapshot:
    """In-place save/restore of tensors (graphs keep pointers: never rebind)."""

    def __init__(self, tensors: list[torch.Tensor]):
        self.tensors = tensors
        self.saved = [t.detach().clone() for t in tensors]

    def restore(self) -> None:
        with torch.no_grad():
            for tensor, saved in zip(self.tensors, self.saved):
                tensor.copy_(saved)


def _on_side_stream(fn: Callable[[], object], repeats: int) -> None:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(repeats):
            fn()
    torch.cuda.current_stream().wait_stream(stream)


class CapturedSampling:
    """A sampler's ``n_steps`` loop for one chain shape, recorded as a CUDA graph.

    The graph draws its noise from a generator of its own, registered with it. Each
    :meth:`run` hands the caller's generator state to it and hands the advanced state
    back, so a replay consumes the caller's random stream exactly as the eager loop
    would, and one graph serves any number of generators.

    Parameters
    ----------
    sampler : BaseSampler
    energy : callable
        The energy (an ``nn.Module`` is frozen while sampling, as in eager mode).
    like : Tensor of shape (n_chains, d)
        Fixes the shape, dtype and device of the chains.
    n_steps : int
    """

    def __init__(self, sampler, energy, like: torch.Tensor, *, n_steps: int):
        self.n_steps = n_steps
        self.static_x = like.detach().clone()
        self.generator = torch.Generator(device=like.device)
        self.generator.manual_seed(0)

        def run():
            return sampler.sample(
                energy,
                self.static_x,
                n_steps=n_steps,
                generator=self.generator,
                return_info=True,
            )

        _on_side_stream(run, repeats=2)
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(self.generator)
        with torch.cuda.graph(self.graph):
            self.static_out, self.static_info = run()

    def run(
        self, x0: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        """Replay from ``x0`` drawing from ``generator``; returns fresh tensors."""
        self.static_x.copy_(x0)
        self.generator.set_state(generator.get_state())
        self.graph.replay()
        generator.set_state(self.generator.get_state())
        return self.static_out.clone(), {
            k: v.clone() for k, v in self.static_info.items()
        }


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        t
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t)
    ]


class CapturedTrainingStep:
    """One optimisation step, recorded as a CUDA graph for one batch shape.

    ``step(batch)`` is the eager training step
    (:func:`skebm._training.make_train_step`: ``zero_grad``, the loss,
    ``backward``, clipping, ``optimizer.step()``); the optimizer must be built with
    ``capturable=True``. Warm-up runs on a side stream; the parameters and buffers
    of ``modules``, the optimizer state and the generator are restored in place
    after capture, so replays continue the eager trajectory. Optimizer state
    created by the warm-up is zeroed, which is a fresh state for Adam (the
    optimizer skebm uses).

    Parameters
    ----------
    step : callable
        ``step(batch) -> loss`` (a detached 0-d tensor).
    like : Tensor of shape (batch, d)
        Fixes the batch shape.
    modules : list of nn.Module
        Everything the step trains (the energy, the loss state).
    optimizer : torch.optim.Optimizer
    generator : torch.Generator
        The CUDA generator the step draws from, registered with the graph.
    """

    def __init__(
        self,
        step: Callable[[torch.Tensor], torch.Tensor],
        *,
        like: torch.Tensor,
        modules: list[nn.Module],
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ):
        self.static_x = like.detach().clone()
        trained = [t for m in modules for t in [*m.parameters(), *m.buffers()]]
        snapshot = _TensorSnapshot(trained + _optimizer_tensors(optimizer))
        rng = generator.get_state()

        def replayed_step():
            return step(self.static_x)

        _on_side_stream(replayed_step, repeats=3)
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(generator)
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.static_value = replayed_step()
        snapshot.restore()
        # Optimizer state created by the warm-up is reset to a fresh optimizer's,
        # which for Adam is all zeros (step 0, zero moments).
        existed = {id(t) for t in snapshot.tensors}
        with torch.no_grad():
            for t in _optimizer_tensors(optimizer):
                if id(t) not in existed:
                    t.zero_()
        generator.set_state(rng)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """One step on batch ``x``; returns the (graph-owned) loss tensor."""
        self.static_x.copy_(x)
        self.graph.replay()
        return self.static_value
