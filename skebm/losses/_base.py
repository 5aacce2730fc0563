"""The loss strategy interface."""

from __future__ import annotations

import torch
from sklearn.base import BaseEstimator
from torch import nn

from skebm.energies.residual import ResidualEnergy, as_residual

__all__ = ["BaseLoss"]


class BaseLoss(BaseEstimator):
    """Base class of training losses.

    A loss is a stateless strategy: its settings are constructor parameters (so
    ``clone``, ``get_params`` and grid search over ``loss__...`` work). State that
    must survive between batches or epochs (a replay buffer, a learnable
    normaliser) is created by :meth:`init_state` as an ``nn.Module`` and owned by
    the caller (the estimator keeps it in its fitted state); the estimator trains
    the state's parameters together with the energy's.

    Subclasses implement :meth:`_loss` and, when they need state,
    :meth:`init_state`. Set the class attribute ``requires_sampler = True`` when
    the loss runs MCMC.
    """

    requires_sampler: bool = False

    #: Constraints checked by ``_validate_params`` (scikit-learn vocabulary);
    #: parameters not listed are not checked.
    _parameter_constraints: dict = {}

    def init_state(
        self, model: ResidualEnergy, X: torch.Tensor, *, generator: torch.Generator
    ) -> nn.Module | None:
        """Create the loss's state for training ``model`` on ``X`` (or ``None``).

        Parameters
        ----------
        model : ResidualEnergy
            The model being trained (energy and base density).
        X : Tensor of shape (n_samples, d)
            The (standardised) training data, on the training device.
        generator : torch.Generator
        """
        return None

    def __call__(
        self,
        model,
        x: torch.Tensor,
        *,
        sampler=None,
        generator: torch.Generator | None = None,
        state: nn.Module | None = None,
    ) -> torch.Tensor:
        """The loss of a batch: a scalar tensor to minimise.

        Parameters
        ----------
        model : ResidualEnergy or nn.Module
            The model; a plain energy module is treated as ``ResidualEnergy`` with
            a flat base.
        x : Tensor of shape (batch, d)
            A batch of training data.
        sampler : BaseSampler, default=None
            Needed by losses that run MCMC.
        generator : torch.Generator, default=None
            Source of all randomness; ``None`` uses a fresh unseeded one.
        state : nn.Module, default=None
            What :meth:`init_state` returned.
        """
        if generator is None:
            generator = torch.Generator(device=x.device)
            generator.seed()
        if self.requires_sampler and sampler is None:
            raise ValueError(f"{type(self).__name__} needs a sampler.")
        return self._loss(
            as_residual(model), x, sampler=sampler, generator=generator, state=state
        )

    def _loss(self, model, x, *, sampler, generator, state) -> torch.Tensor:
        raise NotImplementedError
