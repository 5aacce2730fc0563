"""The sampler strategy interface."""

from __future__ import annotations

from numbers import Integral

import torch
from sklearn.base import BaseEstimator
from torch import nn

from skebm.utils._torch import frozen_parameters, make_generator

__all__ = ["BaseSampler"]


class BaseSampler(BaseEstimator):
    """Base class of MCMC samplers.

    A sampler is a stateless strategy: all its settings are constructor parameters
    (so ``clone``, ``get_params`` and grid search over ``sampler__step_size`` work),
    and it keeps nothing between calls. Subclasses implement :meth:`_run`.

    A sampler targets the density ``∝ exp(-energy(x))``. It runs every chain as one
    batched tensor on ``x0``'s device and dtype, draws randomness only from the
    ``generator`` it is given (never torch's global RNG), and keeps its diagnostics
    as tensors (no host synchronisation inside the loop).
    """

    #: Constraints checked by ``_validate_params`` (scikit-learn vocabulary);
    #: parameters not listed are not checked.
    _parameter_constraints: dict = {}

    def sample(
        self,
        energy,
        x0: torch.Tensor,
        *,
        n_steps: int,
        generator: torch.Generator | None = None,
        return_info: bool = False,
    ):
        """Run ``n_steps`` steps of every chain, starting from ``x0``.

        Parameters
        ----------
        energy : callable
            Maps a ``(batch, d)`` tensor to a ``(batch,)`` tensor of energies; an
            ``nn.Module``'s parameters are frozen while sampling.
        x0 : Tensor of shape (n_chains, d)
            Starting points (not modified).
        n_steps : int
            Number of steps (``0`` returns a copy of ``x0``).
        generator : torch.Generator, default=None
            Source of randomness, on ``x0``'s device. ``None`` uses a fresh
            non-deterministically seeded generator.
        return_info : bool, default=False
            Also return a dict of diagnostic tensors (e.g. ``"acceptance_rate"``).

        Returns
        -------
        x : Tensor of shape (n_chains, d)
        info : dict of Tensor
            Only when ``return_info=True``.
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, Integral):
            raise TypeError(f"n_steps must be an int, got {n_steps!r}.")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}.")
        if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
            raise TypeError("x0 must be a floating-point torch.Tensor.")
        if x0.ndim != 2:
            raise ValueError(
                f"x0 must have shape (n_chains, d), got {tuple(x0.shape)}."
            )
        if generator is None:
            generator = make_generator(x0.device)
        self._validate_params()
        module = energy if isinstance(energy, nn.Module) else None
        with frozen_parameters(module):
            # A copy: callers may modify the result, and n_steps=0 returns it as is.
            x, info = self._run(
                energy, x0.detach().clone(), n_steps=int(n_steps), generator=generator
            )
        return (x, info) if return_info else x

    def _run(self, energy, x, *, n_steps, generator):
        """Return ``(x, info)`` after ``n_steps`` steps from ``x`` (detached)."""
        raise NotImplementedError

    def _noise(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
