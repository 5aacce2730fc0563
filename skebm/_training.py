"""The epoch loop: mini-batches, optimiser steps, averaging, early stopping.

Inside an epoch nothing synchronises with the host: the epoch's loss is
accumulated as a tensor and read once at the end, together with a finiteness check
of the loss and of every trained tensor and, when there are held-out rows, their
log-likelihood. When the finiteness check fails, the parameters, optimiser state
and loss state are restored to the end of the last finite epoch and training stops;
the caller raises :class:`~skebm.exceptions.DivergenceError`.

With ``ema_decay > 0`` an exponential moving average of the energy's weights
(Polyak averaging) is kept beside the trained weights; it is what is validated and
what training ends with. With held-out rows (a
:class:`~skebm._heldout.HeldOutLikelihood`), the epoch with the best held-out
log-likelihood is kept (the untrained start included, so an energy that never helps
leaves the model equal to its base; an epoch whose importance-sampling ``log Z``
rests on fewer than 1 % effective draws does not count, since it may miss mass), the
learning rate is halved after every ``n_iter_no_change // 3`` epochs without
improvement, and training stops after ``n_iter_no_change`` of them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from skebm._heldout import HeldOutLikelihood
from skebm._progress import EpochProgress
from skebm.acceleration.cuda_graphs import CapturedTrainingStep

__all__ = ["EpochsResult", "TrainingSnapshot", "run_epochs"]


@dataclass
class EpochsResult:
    """What a call to :func:`run_epochs` did."""

    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    validation_scores: list[float] = field(default_factory=list)
    initial_score: float | None = None
    best_score: float | None = None
    best_epoch: int | None = None
    diverged_epoch: int | None = None
    interrupted: bool = False
    converged: bool = False

    @property
    def n_epochs(self) -> int:
        return len(self.losses)


class TrainingSnapshot:
    """A copy of every trained tensor, to roll back to after a divergence."""

    def __init__(self, modules: list[nn.Module], optimizer: torch.optim.Optimizer):
        self.modules = modules
        self.optimizer = optimizer
        self.save()

    def save(self) -> None:
        self._modules = [copy.deepcopy(m.state_dict()) for m in self.modules]
        self._optimizer = copy.deepcopy(self.optimizer.state_dict())

    def restore(self) -> None:
        for module, state in zip(self.modules, self._modules):
            module.load_state_dict(state)
        self.optimizer.load_state_dict(self._optimizer)


def _all_finite(modules: list[nn.Module]) -> torch.Tensor:
    flags = [
        torch.isfinite(t).all()
        for m in modules
        for t in [*m.parameters(), *m.buffers()]
        if t.is_floating_point()
    ]
    return torch.stack(flags).all() if flags else torch.tensor(True)


class _Averaging:
    """An exponential moving average of a module's parameters, updated in place
    with one fused kernel per step (no host synchronisation).

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` at step ``t``, so a
    short fit is not held back by the starting weights.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.module = copy.deepcopy(module).requires_grad_(False)
        self.decay = decay
        self.steps = 0
        self._source = list(module.parameters())
        self._target = list(self.module.parameters())

    def update(self) -> None:
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        if self._target:
            with torch.no_grad():
                torch._foreach_lerp_(self._target, self._source, 1.0 - decay)


#: Smallest effective-sample-size fraction of the held-out ``log Z``'s importance
#: weights for an epoch to count: below it the estimate may miss mass.
MIN_VALIDATION_ESS = 0.01

#: Training has exploded when the mean loss of two epochs in a row exceeds the
#: loss of this call's first batch (measured before any step) by
#: :data:`EXPLOSION` times its magnitude (at least 1), or one epoch's by
#: :data:`SUDDEN_EXPLOSION` times: a loss that rises by orders of magnitude while
#: the weights stay finite (a learning rate far too large). A single spike that
#: recovers (contrastive divergence on a few rows can jump from 0 to 1e3 and come
#: back) is not one; losses that fall, as score matching's may without bound,
#: never are.
EXPLOSION = 100.0
SUDDEN_EXPLOSION = 1e4


class _BestEpoch:
    """The best held-out score so far and the weights that scored it."""

    def __init__(self, module: nn.Module, score: float, tol: float):
        self.module, self.tol = module, tol
        self.score, self.epoch, self.stale = score, 0, 0
        self._state = copy.deepcopy(module.state_dict())

    def update(self, epoch: int, score: float, ess: float) -> None:
        """An epoch improves when it beats the best by more than ``tol`` with an
        importance-sampling estimate that does not rest on a few draws."""
        if score > self.score + self.tol and ess >= MIN_VALIDATION_ESS:
            self.score, self.epoch, self.stale = score, epoch, 0
            self._state = copy.deepcopy(self.module.state_dict())
        else:
            self.stale += 1

    def restore(self) -> None:
        self.module.load_state_dict(self._state)


def make_train_step(
    *,
    loss,
    sampler,
    model: nn.Module,
    state: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    max_grad_norm: float | None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The training step, ``step(batch) -> loss``: the one that eager training
    calls and that :class:`~skebm.acceleration.CapturedTrainingStep` records.

    ``zero_grad``; the loss of ``batch`` (with ``sampler``, ``generator`` and the
    loss ``state``); ``backward``; the gradient norm clipped to
    ``max_grad_norm`` (no host synchronisation, so it can be captured); an
    optimizer step. Returns the loss, detached.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def step(batch: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        value = loss(model, batch, sampler=sampler, generator=generator, state=state)
        value.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        return value.detach()

    return step


def run_epochs(
    *,
    model: nn.Module,
    loss,
    sampler,
    loss_state: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    batch_size: int,
    n_epochs: int,
    generator: torch.Generator,
    max_grad_norm: float | None = None,
    tol: float | None = None,
    n_iter_no_change: int = 10,
    best_loss: float = float("inf"),
    validation: HeldOutLikelihood | None = None,
    ema_decay: float = 0.0,
    verbose: int = 0,
    first_epoch: int = 1,
    name: str = "EnergyDensityEstimator",
    capture: bool = False,
) -> EpochsResult:
    """Train ``model`` for up to ``n_epochs`` epochs over the rows of ``X``.

    Parameters
    ----------
    model : ResidualEnergy
        The model; its learned energy's parameters are in ``optimizer``. On
        return the energy holds the weights training ends with (the averaged
        weights of the best epoch when validating).
    loss, sampler : strategies
    loss_state : nn.Module or None
        The loss's state; its parameters are in ``optimizer`` too.
    optimizer : torch.optim.Optimizer
    X : Tensor of shape (n_samples, d)
        Standardised training data on the training device.
    batch_size : int
    n_epochs : int
    generator : torch.Generator
        Drives the shuffling and the loss's randomness.
    max_grad_norm : float or None
        Clip the total gradient norm of the optimised parameters to this value
        before each step (no host synchronisation); ``None``: no clipping.
    tol, n_iter_no_change : float or None, int
        With ``validation``: an epoch improves when its held-out score beats the
        best by more than ``tol`` (``None``: 0); training stops after
        ``n_iter_no_change`` epochs without improvement. Without: the same rule on
        the training loss, and ``tol=None`` never stops.
    best_loss : float
        Best training loss so far (for ``tol`` without validation), carried
        across warm starts.
    validation : HeldOutLikelihood or None
        Held-out rows to select the epoch on (see the module docstring).
    ema_decay : float
        Decay of the moving average of the energy's weights per step; 0 trains
        and keeps the raw weights.
    verbose : int
        ``1`` shows a progress bar with the current loss, ``>= 2`` prints a
        line per epoch (see :class:`skebm._progress.EpochProgress`).
    first_epoch : int
        Number of the first epoch in messages (continues across warm starts).
    capture : bool
        Record each training step as a CUDA graph (one per batch shape) and replay
        it; needs a CUDA ``X`` and an optimizer built with ``capturable=True``. See
        :class:`skebm.acceleration.CapturedTrainingStep`.

    Returns
    -------
    EpochsResult
    """
    n_samples = X.shape[0]
    averaging = _Averaging(model.energy, ema_decay) if ema_decay > 0 else None
    kept = averaging.module if averaging is not None else model.energy
    trained = [m for m in (model.energy, loss_state) if m is not None]
    snapshot = TrainingSnapshot(
        trained + ([averaging.module] if averaging is not None else []), optimizer
    )
    result = EpochsResult()
    best = None
    if validation is not None:
        result.initial_score = float(validation(kept)[0])
        best = _BestEpoch(kept, result.initial_score, tol or 0.0)
    plateau = max(1, n_iter_no_change // 3)
    start_loss, rising = None, False
    no_improvement = 0
    step = make_train_step(
        loss=loss,
        sampler=sampler,
        model=model,
        state=loss_state,
        optimizer=optimizer,
        generator=generator,
        max_grad_norm=max_grad_norm,
    )
    captured: dict[int, CapturedTrainingStep] = {}

    def train_step(batch: torch.Tensor) -> torch.Tensor:
        if capture:
            graph = captured.get(batch.shape[0])
            if graph is None:
                graph = captured[batch.shape[0]] = CapturedTrainingStep(
                    step,
                    like=batch,
                    modules=trained,
                    optimizer=optimizer,
                    generator=generator,
                )
            value = graph.run(batch)
        else:
            value = step(batch)
        if averaging is not None:
            averaging.update()
        return value

    def finish() -> EpochsResult:
        if best is not None:
            best.restore()
            result.best_score, result.best_epoch = best.score, best.epoch
        if averaging is not None:
            model.energy.load_state_dict(averaging.module.state_dict())
        return result

    with EpochProgress(name=name, n_epochs=n_epochs, verbose=verbose) as progress:
        for epoch in range(first_epoch, first_epoch + n_epochs):
            start = time.perf_counter()
            try:
                order = torch.randperm(n_samples, generator=generator, device=X.device)
                total = torch.zeros((), device=X.device, dtype=torch.float64)
                for begin in range(0, n_samples, batch_size):
                    batch = X[order[begin : begin + batch_size]]
                    value = train_step(batch).to(torch.float64)
                    if start_loss is None:  # a copy: captured graphs reuse it
                        start_loss = value.clone()
                    total += value * batch.shape[0]
            except KeyboardInterrupt:
                snapshot.restore()
                result.interrupted = True
                return finish()
            checks = [total / n_samples, _all_finite(trained), start_loss]
            if validation is not None:
                checks += list(validation(kept))
            checks = [c.to(torch.float64) for c in checks]
            epoch_loss, finite, first, *score = torch.stack(checks).tolist()
            # A held-out score of -inf or NaN means log Z overflowed: the weights
            # are finite but the model is not a density any more.
            rise = (epoch_loss - first) / max(1.0, abs(first))
            if (
                not (finite and math.isfinite(epoch_loss))
                or (score and not math.isfinite(score[0]))
                or rise > SUDDEN_EXPLOSION
                or (rise > EXPLOSION and rising)
            ):
                snapshot.restore()
                result.diverged_epoch = epoch
                return finish()
            rising = rise > EXPLOSION
            snapshot.save()
            result.losses.append(epoch_loss)
            result.seconds.append(time.perf_counter() - start)
            progress.epoch_done(
                epoch, epoch_loss, result.seconds[-1], score[0] if score else None
            )
            if best is not None:
                result.validation_scores.append(score[0])
                best.update(epoch - first_epoch + 1, *score)
                if best.stale and best.stale % plateau == 0:
                    for group in optimizer.param_groups:
                        group["lr"] = group["lr"] * 0.5
                    captured.clear()  # graphs hold the old rate: record anew
                if best.stale >= n_iter_no_change:
                    result.converged = True
                    return finish()
            elif tol is not None:
                if epoch_loss < best_loss - tol:
                    no_improvement = 0
                else:
                    no_improvement += 1
                best_loss = min(best_loss, epoch_loss)
                if no_improvement >= n_iter_no_change:
                    result.converged = True
                    return finish()
    return finish()
