"""The epoch loop: mini-batches, optimiser steps, divergence guard, progress.

Inside an epoch nothing synchronises with the host: the epoch's loss is
accumulated as a tensor and read once at the end, together with a finiteness check
of the loss and of every trained tensor. When that check fails, the parameters,
optimiser state and loss state are restored to the end of the last finite epoch
and training stops; the caller raises :class:`~skebm.exceptions.DivergenceError`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from skebm._progress import EpochProgress
from skebm.acceleration import CapturedTrainingStep

__all__ = ["EpochsResult", "TrainingSnapshot", "run_epochs"]


@dataclass
class EpochsResult:
    """What a call to :func:`run_epochs` did."""

    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
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
    verbose: int = 0,
    first_epoch: int = 1,
    name: str = "EnergyDensityEstimator",
    capture: bool = False,
) -> EpochsResult:
    """Train ``model`` for up to ``n_epochs`` epochs over the rows of ``X``.

    Parameters
    ----------
    model : ResidualEnergy
        The model; its learned energy's parameters are in ``optimizer``.
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
        Stop when the epoch loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs (``tol=None``: never).
    best_loss : float
        Best loss so far (for ``tol``), carried across warm starts.
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
    trained = [m for m in (model.energy, loss_state) if m is not None]
    snapshot = TrainingSnapshot(trained, optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    result = EpochsResult()
    no_improvement = 0
    captured: dict[int, CapturedTrainingStep] = {}

    def train_step(batch: torch.Tensor) -> torch.Tensor:
        if capture:
            step = captured.get(batch.shape[0])
            if step is None:
                step = captured[batch.shape[0]] = CapturedTrainingStep(
                    loss=loss,
                    sampler=sampler,
                    model=model,
                    state=loss_state,
                    optimizer=optimizer,
                    generator=generator,
                    like=batch,
                    max_grad_norm=max_grad_norm,
                )
            return step.run(batch)
        optimizer.zero_grad(set_to_none=True)
        value = loss(
            model, batch, sampler=sampler, generator=generator, state=loss_state
        )
        value.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        return value.detach()

    with EpochProgress(name=name, n_epochs=n_epochs, verbose=verbose) as progress:
        for epoch in range(first_epoch, first_epoch + n_epochs):
            start = time.perf_counter()
            try:
                order = torch.randperm(n_samples, generator=generator, device=X.device)
                total = torch.zeros((), device=X.device, dtype=torch.float64)
                for begin in range(0, n_samples, batch_size):
                    batch = X[order[begin : begin + batch_size]]
                    total += train_step(batch).to(torch.float64) * batch.shape[0]
            except KeyboardInterrupt:
                snapshot.restore()
                result.interrupted = True
                return result
            epoch_loss, finite = torch.stack(
                [total / n_samples, _all_finite(trained).to(torch.float64)]
            ).tolist()
            if not (finite and torch.isfinite(torch.tensor(epoch_loss))):
                snapshot.restore()
                result.diverged_epoch = epoch
                return result
            snapshot.save()
            result.losses.append(epoch_loss)
            result.seconds.append(time.perf_counter() - start)
            progress.epoch_done(epoch, epoch_loss, result.seconds[-1])
            if tol is not None:
                if epoch_loss < best_loss - tol:
                    no_improvement = 0
                else:
                    no_improvement += 1
                best_loss = min(best_loss, epoch_loss)
                if no_improvement >= n_iter_no_change:
                    result.converged = True
                    return result
    return result
