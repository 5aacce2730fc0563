"""Energies built from other energies: weighted sums and analytic-plus-network hybrids.

A :class:`CompositeEnergy` is ``E(x) = Σ_i w_i E_i(x)``: the density
``exp(-E)`` is the product of the terms' densities ``exp(-w_i E_i)``. A
:class:`HybridEnergy` is the two-term case ``E_analytic + w · E_network`` with a
learnable mixing weight ``w``: a known family (a Gaussian, a double well) with a
network that learns what the family misses.

The estimator's residual model is this construction too: it trains the total
energy ``U(x) = E(x) - log q(x)`` (:class:`~skebm.energies.ResidualEnergy`), the
composite of the learned network ``E`` and the fixed analytic energy ``-log q``
of the fitted base density, both with weight 1. Passing a composite or hybrid as
``energy=`` puts it in place of ``E``, on top of the base.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from skebm._components import check_energy_output, construct_energy, describe_energy

__all__ = ["CompositeEnergy", "HybridEnergy"]


def _build_term(spec, n_features: int) -> tuple[nn.Module, str]:
    """A term of a composite: an instance as is, anything else constructed."""
    params = None
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[1], dict | None):
            raise ValueError(
                "A composite term given as a tuple must be (spec, params dict), e.g. "
                f"('mlp', {{'hidden_layer_sizes': (32,)}}); got {spec!r}."
            )
        spec, params = spec
    if isinstance(spec, nn.Module):
        if params:
            raise ValueError(
                f"Parameters {params} were given with a {type(spec).__name__} "
                "instance; configure the instance directly."
            )
        return spec, describe_energy(spec)
    return construct_energy(spec, params, n_features=n_features), describe_energy(spec)


def _per_term(value, n_terms: int, name: str, dtype) -> np.ndarray:
    """``value`` as one entry per term (a scalar is repeated)."""
    array = np.asarray(value, dtype=dtype)
    if array.ndim == 0:
        return np.full(n_terms, array, dtype=dtype)
    if array.shape != (n_terms,):
        raise ValueError(
            f"{name} must be a scalar or have one entry per energy ({n_terms}); got "
            f"{value!r}."
        )
    return array


class CompositeEnergy(nn.Module):
    """The weighted sum ``E(x) = Σ_i w_i E_i(x)`` of energies.

    ``exp(-E)`` is the product of the terms' unnormalised densities, so a sum
    adds constraints: a Gaussian term confines, a network term shapes. Weights
    are fixed numbers unless marked learnable, in which case they are trained
    with the rest (a learnable weight may change sign; keep a confining term's
    weight fixed and positive so ``exp(-E)`` stays normalisable).

    The estimator's total energy ``E - log q``
    (:class:`~skebm.energies.ResidualEnergy`) is the composite of the learned
    energy and the base density's ``-log q``, with both weights fixed at 1.

    Parameters
    ----------
    n_features : int
        Input dimension; terms given as specifications are built for it, and
        every term is checked to map ``(batch, n_features)`` to ``(batch,)``.
    energies : sequence
        The terms ``E_i``. Each is an ``nn.Module`` instance (held as is, like
        ``nn.Sequential`` holds its layers), a registered energy name
        (``"mlp"``, ``"gaussian"``, ...), an ``nn.Module`` class or a factory
        ``f(n_features, **params)``, or a pair ``(spec, params)`` of one of
        these with its keyword arguments.
    weights : float or sequence of float, default=None
        ``w_i``; ``None`` means 1 for every term.
    learn_weights : bool or sequence of bool, default=False
        Which weights are trainable parameters.

    Attributes
    ----------
    energies : nn.ModuleList
        The terms.

    See Also
    --------
    HybridEnergy : An analytic energy plus a network with a learnable weight.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import CompositeEnergy, GaussianEnergy, MLPEnergy
    >>> energy = CompositeEnergy(2, [GaussianEnergy(2), MLPEnergy(2)], weights=[1, 2])
    >>> x = torch.ones(3, 2)
    >>> torch.allclose(energy(x), energy.energies[0](x) + 2 * energy.energies[1](x))
    True

    Terms can be specifications, which is how the estimator builds it by name:

    >>> from skebm import EnergyDensityEstimator
    >>> est = EnergyDensityEstimator(
    ...     energy="composite",
    ...     energy_params={
    ...         "energies": ["gaussian", ("mlp", {"hidden_layer_sizes": (16,)})],
    ...         "learn_weights": [False, True],
    ...     },
    ... )
    """

    def __init__(
        self,
        n_features: int,
        energies: Sequence,
        weights: float | Sequence[float] | None = None,
        learn_weights: bool | Sequence[bool] = False,
    ):
        super().__init__()
        if isinstance(n_features, bool) or not isinstance(n_features, int | np.integer):
            raise TypeError(
                f"n_features must be an int (the input dimension), got {n_features!r}"
                ". Pass the energies second: CompositeEnergy(n_features, energies)."
            )
        if isinstance(energies, str | nn.Module) or not isinstance(energies, Sequence):
            raise TypeError(
                "energies must be a list of energies (modules, names, classes, "
                f"factories or (spec, params) pairs), got {energies!r}."
            )
        if len(energies) == 0:
            raise ValueError("energies must hold at least one energy.")
        self.n_features = int(n_features)
        terms = [_build_term(spec, self.n_features) for spec in energies]
        for i, (module, description) in enumerate(terms):
            check_energy_output(
                module,
                n_features=self.n_features,
                description=f"Term {i} of {type(self).__name__} ({description})",
            )
        self.energies = nn.ModuleList(module for module, _ in terms)
        n_terms = len(terms)
        values = _per_term(
            1.0 if weights is None else weights, n_terms, "weights", np.float64
        )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"weights must be finite, got {weights!r}.")
        learned = _per_term(learn_weights, n_terms, "learn_weights", bool)
        dtype = torch.get_default_dtype()
        # Fixed weights live in a buffer, learned ones in a parameter; the full
        # vector is assembled by `weights` (index_put keeps the gradient).
        self.register_buffer(
            "fixed_weights",
            torch.as_tensor(np.where(learned, 0.0, values), dtype=dtype),
        )
        self.register_buffer(
            "learned_index", torch.as_tensor(np.flatnonzero(learned), dtype=torch.long)
        )
        self.learned_weights = nn.Parameter(
            torch.as_tensor(values[learned], dtype=dtype)
        )

    @property
    def weights(self) -> torch.Tensor:
        """The weights ``w``, shape ``(n_terms,)`` (learned ones with gradient)."""
        return self.fixed_weights.index_put((self.learned_index,), self.learned_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = torch.stack([energy(x) for energy in self.energies], dim=-1)
        return terms @ self.weights


class HybridEnergy(CompositeEnergy):
    """An analytic energy plus a network: ``E(x) = E_a(x) + w · E_net(x)``.

    The analytic term carries a known shape (a Gaussian by default, with
    learnable mean and covariance), the network learns what that shape misses,
    and the mixing weight ``w``, one learnable scalar, sets how much of the
    network is used. :class:`~skebm.energies.MLPEnergy` starts at exactly zero,
    so an untrained hybrid equals its analytic term.

    This is the residual form ``E - log q`` of the estimator's model with the
    roles generalised: there the "analytic" term is the fitted base density's
    ``-log q`` (fixed) and the network's weight is fixed at 1. As ``energy=``,
    a hybrid sits on top of the base; with ``base="standard"`` the analytic term
    does the work a fitted base would.

    Parameters
    ----------
    n_features : int
        Input dimension.
    analytic : str, nn.Module, class or callable, default="gaussian"
        The analytic term, in any form :class:`CompositeEnergy` accepts.
    network : str, nn.Module, class or callable, default="mlp"
        The network term.
    analytic_params, network_params : dict, default=None
        Keyword arguments of a term given by name, class or factory.
    mixing : float, default=1.0
        Initial ``w``.
    learn_mixing : bool, default=True
        Whether ``w`` is trained.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import HybridEnergy
    >>> energy = HybridEnergy(2, network_params={"hidden_layer_sizes": (8,)})
    >>> x = torch.randn(4, 2)
    >>> torch.allclose(energy(x), energy.analytic(x))  # the network starts at 0
    True
    >>> energy.mixing.requires_grad
    True
    """

    def __init__(
        self,
        n_features: int,
        analytic="gaussian",
        network="mlp",
        analytic_params: dict | None = None,
        network_params: dict | None = None,
        mixing: float = 1.0,
        learn_mixing: bool = True,
    ):
        super().__init__(
            n_features,
            [(analytic, analytic_params), (network, network_params)],
            weights=[1.0, mixing],
            learn_weights=[False, bool(learn_mixing)],
        )

    @property
    def analytic(self) -> nn.Module:
        """The analytic term ``E_a``."""
        return self.energies[0]

    @property
    def network(self) -> nn.Module:
        """The network term ``E_net``."""
        return self.energies[1]

    @property
    def mixing(self) -> torch.Tensor:
        """The mixing weight ``w`` (a scalar tensor)."""
        return self.weights[1]
