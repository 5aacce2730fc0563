"""Maximum likelihood where the normaliser is tractable."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from torch import nn

from skebm.losses._base import BaseLoss
from skebm.utils._sklearn_compat import Interval

__all__ = ["MaximumLikelihood"]

#: Grid points per axis when ``n_points=None``: 4096 points in all.
_DEFAULT_POINTS = {1: 4096, 2: 64}


class _QuadratureBox(nn.Module):
    """The box of the quadrature grid, kept on the training device."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        self.register_buffer("low", low)
        self.register_buffer("high", high)


class MaximumLikelihood(BaseLoss):
    """Exact maximum likelihood: ``mean U(x) + log ∫ exp(-U)``.

    ``U = E - log q`` is the model's total energy. The normaliser is computed

    * in closed form when the model has no base density (a plain energy module)
      and the energy has a ``log_partition()`` method (the analytic energies of
      :mod:`skebm.energies`);
    * otherwise, for ``d <= 2``, by a randomly shifted midpoint rule inside the
      loss: a regular grid of ``n_points`` per axis over the box
      ``base.bounds(width)``, shifted by a uniform fraction of a cell drawn from the
      generator at every step, so ``Ẑ`` is an unbiased estimate of the integral
      over the box and no fixed grid artefact can be fitted.

    Other models have no tractable normaliser and raise an error: use ``"nce"``
    or a score-matching loss there.

    Parameters
    ----------
    n_points : int or None, default=None
        Grid points per axis (``None``: 4096 in 1-D, 64 in 2-D).
    width : float, default=4.0
        Half-width of the box in standard deviations of each base component.

    Notes
    -----
    The box is computed once, by :meth:`init_state`, from the base density; the
    learned density outside it is not seen by the loss (its mass there is checked
    by the estimator's own ``log Z`` estimate after training).

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import GaussianEnergy
    >>> from skebm.losses import MaximumLikelihood
    >>> x = torch.zeros(4, 1)
    >>> round(MaximumLikelihood()(GaussianEnergy(1), x).item(), 4)  # -log N(0; 0, 1)
    0.9189
    """

    _parameter_constraints: dict = {
        "n_points": [Interval(Integral, 2, None, closed="left"), None],
        "width": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, n_points=None, width=4.0):
        self.n_points = n_points
        self.width = width

    def init_state(self, model, X, *, generator):
        if self._closed_form(model) or model.base is None or X.shape[1] > 2:
            return None
        return self._box(model, X)

    def _box(self, model, like: torch.Tensor) -> _QuadratureBox:
        low, high = model.base.bounds(self.width)
        return _QuadratureBox(
            torch.as_tensor(low, device=like.device, dtype=like.dtype),
            torch.as_tensor(high, device=like.device, dtype=like.dtype),
        )

    @staticmethod
    def _closed_form(model) -> bool:
        return model.base is None and hasattr(model.energy, "log_partition")

    def _loss(self, model, x, *, sampler, generator, state):
        if self._closed_form(model):
            return model(x).mean() + model.energy.log_partition()
        d = x.shape[1]
        if d > 2 or model.base is None:
            raise ValueError(
                f"MaximumLikelihood needs a tractable normaliser: an energy with "
                f"log_partition() and no base density, or d <= 2 with a base density "
                f"to place the quadrature grid. This model has d={d}, "
                f"{'no' if model.base is None else 'a'} base density and an energy "
                f"({type(model.energy).__name__}) "
                f"{'with' if hasattr(model.energy, 'log_partition') else 'without'} "
                "log_partition(). Use loss='nce' or a score-matching loss instead."
            )
        box = state if isinstance(state, _QuadratureBox) else self._box(model, x)
        return model(x).mean() + self._grid_log_partition(model, box, x, generator)

    def _grid_log_partition(self, model, box, x, generator) -> torch.Tensor:
        d = x.shape[1]
        n = self.n_points if self.n_points is not None else _DEFAULT_POINTS[d]
        cell = (box.high - box.low) / n
        shift = torch.rand((d,), generator=generator, device=x.device, dtype=x.dtype)
        axes = [
            box.low[i]
            + (torch.arange(n, device=x.device, dtype=x.dtype) + shift[i]) * cell[i]
            for i in range(d)
        ]
        points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
        return torch.logsumexp(-model(points), 0) + torch.log(cell).sum()
