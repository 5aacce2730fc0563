"""Compiled kernels of the fast-gradient protocol (:mod:`skebm.fast_gradient`).

:func:`compile_value_and_grad` compiles an energy's value-and-gradient with
``torch.compile`` (fused kernels; on the CPU this is the only lever), and
:func:`compile_langevin_update` a whole Langevin move (gradient and update in one
compiled function). :func:`attach_compiled_kernels` adds both to an energy. A
compilation that fails warns once and falls back to the eager computation.
"""

from __future__ import annotations

import functools
import shutil
import warnings
from collections.abc import Callable

import torch
from torch import nn

from skebm.exceptions import SkebmWarning
from skebm.fast_gradient import ForwardingEnergy, langevin_move

__all__ = [
    "attach_compiled_kernels",
    "compile_langevin_update",
    "compile_value_and_grad",
    "compiled_energy",
]


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
        :func:`skebm.fast_gradient.langevin_update` looks for on an energy.

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


class _EnergyWithGradient(ForwardingEnergy):
    """An energy module plus its compiled sampler kernels (the module is shared),
    which replace the energy's own."""

    def __init__(self, energy: nn.Module):
        super().__init__(energy)
        self.value_and_grad = compile_value_and_grad(energy)
        self.langevin_update = compile_langevin_update(energy)


def compiled_energy(energy: nn.Module) -> nn.Module:
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
