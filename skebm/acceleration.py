"""Fast paths: compiled energy gradients, and CUDA graphs of whole loops.

Small energy networks are launch-bound: each sampler step is a handful of tiny
kernels, and the host spends more time dispatching them than the device running them.
Two levers remove that overhead without changing the maths:

* :func:`compile_value_and_grad` compiles an energy's value-and-gradient with
  ``torch.compile`` (fused kernels; on the CPU this is the only lever), and
  :func:`compile_langevin_update` a whole Langevin move (gradient and update in one
  compiled function). Any energy may carry ``value_and_grad(x) -> (E(x), ∇E(x))`` and
  ``langevin_update(x, noise, step, noise_scale)`` attributes; samplers go through
  :func:`skebm.samplers.energy_and_grad` and :func:`skebm.samplers.langevin_update`,
  which use them when present. :func:`attach_compiled_kernels` adds both.
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

import functools
import shutil
import warnings
from collections.abc import Callable

import torch
from torch import nn

from skebm.exceptions import SkebmWarning
from skebm.samplers._base import langevin_move

__all__ = [
    "AcceleratedSampler",
    "CapturedSampling",
    "CapturedTrainingStep",
    "attach_compiled_kernels",
    "compile_langevin_update",
    "compile_value_and_grad",
    "cuda_graphs_available",
]


def cuda_graphs_available(device: torch.device) -> bool:
    """Whether whole loops can be captured on ``device``: CUDA, and a torch whose
    graphs take a user generator (``CUDAGraph.register_generator_state``)."""
    return (
        device.type == "cuda"
        and torch.cuda.is_available()
        and hasattr(torch.cuda.CUDAGraph, "register_generator_state")
    )


def _compiler_available(device: torch.device) -> bool:
    # Inductor needs a C++ compiler for CPU kernels (Triton for CUDA ships with torch).
    return device.type == "cuda" or any(
        shutil.which(cc) for cc in ("c++", "g++", "clang++", "cc", "gcc")
    )


def _parameters_and_buffers(energy: nn.Module) -> tuple[dict, dict]:
    params = {
        name: p.detach() for name, p in energy.named_parameters(remove_duplicate=False)
    }
    return params, dict(energy.named_buffers(remove_duplicate=False))


def _compiled_or_eager(compiled: Callable, eager: Callable) -> Callable:
    """Call ``compiled``; if it ever fails to compile, warn once and use ``eager``."""
    state = {"fn": compiled}

    def call(*args):
        try:
            return state["fn"](*args)
        except Exception as exc:  # compilation is an optimisation, never a failure
            if state["fn"] is eager:
                raise
            warnings.warn(
                f"torch.compile failed ({type(exc).__name__}: {exc}); using the eager "
                "gradient instead.",
                SkebmWarning,
                stacklevel=3,
            )
            state["fn"] = eager
            return eager(*args)

    return call


def _own_kernel(energy: nn.Module, name: str) -> Callable | None:
    """The energy class's hand-written ``name`` method bound to ``energy``, when it
    is plain tensor code that ``torch.compile`` traces (``has_closed_form_gradient``).
    Compiled as is, it fuses further than the autograd graph of ``forward``."""
    if not getattr(energy, "has_closed_form_gradient", False):
        return None
    return functools.partial(getattr(type(energy), name), energy)


def _eager_value_and_grad(energy, x, params, buffers):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        values = torch.func.functional_call(energy, (params, buffers), (x,))
        (grad,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), grad


def compile_value_and_grad(
    energy: nn.Module, *, backend: str | Callable = "inductor"
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A compiled ``x -> (E(x), ∇ₓE(x))`` for an energy module.

    The module's current parameters and buffers are passed to the compiled function
    on every call (``torch.func.functional_call``), so in-place training updates are
    seen without recompiling; an energy with a closed-form gradient
    (``has_closed_form_gradient``) has its own ``value_and_grad`` compiled instead,
    reading the parameters in place. A second input shape compiles a shape-generic
    version once (torch.compile's automatic dynamic shapes); a new dtype compiles
    again. If compilation fails (no C++ compiler, unsupported platform), the eager
    gradient is used from then on, with a :class:`~skebm.exceptions.SkebmWarning`.

    Parameters
    ----------
    energy : nn.Module
        Maps ``(batch, d)`` to ``(batch,)``.
    backend : str or callable, default="inductor"
        ``torch.compile`` backend.

    Returns
    -------
    value_and_grad : callable
        Returns detached energies ``(batch,)`` and gradients ``(batch, d)``.

    Examples
    --------
    >>> import torch
    >>> from skebm.acceleration import compile_value_and_grad
    >>> from skebm.energies import GaussianEnergy
    >>> energy = GaussianEnergy(2)
    >>> value_and_grad = compile_value_and_grad(energy, backend="eager")
    >>> value, grad = value_and_grad(torch.ones(3, 2))
    >>> value.tolist(), grad[0].tolist()
    ([1.0, 1.0, 1.0], [1.0, 1.0])
    """

    own = _own_kernel(energy, "value_and_grad")
    if own is not None:
        return _compiled_or_eager(torch.compile(own, backend=backend), own)

    def total(x, params, buffers):
        values = torch.func.functional_call(energy, (params, buffers), (x,))
        return values.sum(), values

    grad_and_value = torch.func.grad_and_value(total, has_aux=True)

    def value_and_grad_of(x, params, buffers):
        grad, (_, values) = grad_and_value(x, params, buffers)
        return values, grad

    call = _compiled_or_eager(
        torch.compile(value_and_grad_of, backend=backend),
        functools.partial(_eager_value_and_grad, energy),
    )

    def value_and_grad(x):
        values, grad = call(x.detach(), *_parameters_and_buffers(energy))
        return values.detach(), grad

    return value_and_grad


def compile_langevin_update(
    energy: nn.Module, *, backend: str | Callable = "inductor"
) -> Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]:
    """A compiled Langevin move ``x - step·∇ₓE(x) + noise_scale·noise``.

    The gradient and the update are one compiled function, so the update fuses into
    the gradient's last kernel and the energy's value (not needed by the move) is
    never computed. The noise is drawn by the caller, from its own generator, so the
    random stream is the eager one. ``step`` and ``noise_scale`` enter the compiled
    function as 0-d tensors on ``x``'s device, never as constants or host scalars:
    a step-size schedule does not recompile, and a CUDA graph that records the move
    copies nothing from the host. An energy with a closed-form gradient
    (``has_closed_form_gradient``, e.g. :class:`~skebm.energies.MLPEnergy`) has its
    own ``langevin_update`` compiled instead of the autograd graph of ``forward``.
    Parameters, shapes and the fallback on compilation failure behave as in
    :func:`compile_value_and_grad`.

    Parameters
    ----------
    energy : nn.Module
        Maps ``(batch, d)`` to ``(batch,)``.
    backend : str or callable, default="inductor"
        ``torch.compile`` backend.

    Returns
    -------
    langevin_update : callable
        ``(x, noise, step, noise_scale) -> x'``, the signature
        :func:`skebm.samplers.langevin_update` looks for on an energy.

    Examples
    --------
    >>> import torch
    >>> from skebm.acceleration import compile_langevin_update
    >>> from skebm.energies import GaussianEnergy
    >>> update = compile_langevin_update(GaussianEnergy(2), backend="eager")
    >>> update(torch.ones(1, 2), torch.zeros(1, 2), 0.25, 1.0).tolist()
    [[0.75, 0.75]]
    """

    def as_tensors(x, step, noise_scale):
        return (
            torch.full((), value, dtype=x.dtype, device=x.device)
            for value in (step, noise_scale)
        )

    own = _own_kernel(energy, "langevin_update")
    if own is not None:
        own_call = _compiled_or_eager(torch.compile(own, backend=backend), own)

        def own_update(x, noise, step, noise_scale):
            return own_call(x, noise, *as_tensors(x, step, noise_scale))

        return own_update

    def total(x, params, buffers):
        return torch.func.functional_call(energy, (params, buffers), (x,)).sum()

    grad = torch.func.grad(total)

    def move(x, noise, step, noise_scale, params, buffers):
        return x - step * grad(x, params, buffers) + noise_scale * noise

    def eager_move(x, noise, step, noise_scale, params, buffers):
        _, gradient = _eager_value_and_grad(energy, x, params, buffers)
        return langevin_move(x, gradient, noise, step, noise_scale)

    call = _compiled_or_eager(torch.compile(move, backend=backend), eager_move)

    def langevin_update(x, noise, step, noise_scale):
        return call(
            x.detach(),
            noise,
            *as_tensors(x, step, noise_scale),
            *_parameters_and_buffers(energy),
        )

    return langevin_update


def attach_compiled_kernels(
    energy: nn.Module, *, backend: str | Callable = "inductor"
) -> None:
    """Give ``energy`` compiled ``value_and_grad`` and ``langevin_update`` attributes.

    The module is modified in place (its parameters are untouched); every sampler
    then uses the compiled kernels for it. See :func:`compile_value_and_grad` and
    :func:`compile_langevin_update`.

    Parameters
    ----------
    energy : nn.Module
    backend : str or callable, default="inductor"
        ``torch.compile`` backend.
    """
    energy.value_and_grad = compile_value_and_grad(energy, backend=backend)
    energy.langevin_update = compile_langevin_update(energy, backend=backend)


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
        self.energy = _compiled(energy) if compile else energy
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


class _EnergyWithGradient(nn.Module):
    """An energy module plus its compiled sampler kernels (the module is shared)."""

    def __init__(self, energy: nn.Module):
        super().__init__()
        self.module = energy
        self.value_and_grad = compile_value_and_grad(energy)
        self.langevin_update = compile_langevin_update(energy)

    def forward(self, x):
        return self.module(x)


def _compiled(energy: nn.Module) -> nn.Module:
    """``energy`` with compiled sampler kernels, which replace any hand-written ones
    (an MLP's, a closed form's): compiled kernels fuse what those launch apart."""
    if isinstance(energy, _EnergyWithGradient):
        return energy
    if not _compiler_available(next(energy.parameters(), torch.empty(0)).device):
        warnings.warn(
            "No C++ compiler found: torch.compile is skipped on the CPU.",
            SkebmWarning,
            stacklevel=3,
        )
        return energy
    return _EnergyWithGradient(energy)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        t
        for state in optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t)
    ]


class CapturedTrainingStep:
    """One optimisation step of a loss, recorded as a CUDA graph.

    The step is ``zero_grad; loss(model, x, sampler, generator, state).backward();
    optimizer.step()`` for a fixed batch shape; the optimizer must be built with
    ``capturable=True``. Warm-up runs on a side stream; parameters, buffers, the
    loss state, the optimizer state and the generator are restored in place after
    capture, so replays continue the eager trajectory. Optimizer state created by the
    warm-up is zeroed, which is a fresh state for Adam (the optimizer skebm uses).

    Parameters
    ----------
    loss, sampler : strategies
    model : ResidualEnergy
    state : nn.Module or None
        The loss state (replay buffer, log-normaliser).
    optimizer : torch.optim.Optimizer
    generator : torch.Generator
        A CUDA generator, registered with the graph.
    like : Tensor of shape (batch, d)
        Fixes the batch shape.
    max_grad_norm : float or None, default=None
        Clip the total gradient norm before the optimizer step, as in eager mode.
    """

    def __init__(
        self,
        *,
        loss,
        sampler,
        model: nn.Module,
        state: nn.Module | None,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        like: torch.Tensor,
        max_grad_norm: float | None = None,
    ):
        self.static_x = like.detach().clone()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        modules = [m for m in (model.energy, state) if m is not None]
        trained = [t for m in modules for t in [*m.parameters(), *m.buffers()]]
        snapshot = _TensorSnapshot(trained + _optimizer_tensors(optimizer))
        rng = generator.get_state()

        def step():
            optimizer.zero_grad(set_to_none=True)
            value = loss(
                model, self.static_x, sampler=sampler, generator=generator, state=state
            )
            value.backward()
            if max_grad_norm is not None:  # no host sync: capturable
                nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            return value.detach()

        _on_side_stream(step, repeats=3)
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(generator)
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.static_value = step()
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
