"""The default energy network: a multi-layer perceptron."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MLPEnergy"]

ACTIVATIONS = {
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
}


class MLPEnergy(nn.Module):
    """A multi-layer perceptron energy ``E: R^d -> R``.

    The output layer starts at exactly zero, so an untrained energy is ``0``
    everywhere and an untrained :class:`~skebm.EnergyDensityEstimator` equals its
    base density.

    Parameters
    ----------
    n_features : int
        Input dimension.
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Width of each hidden layer.
    activation : {"silu", "softplus", "tanh", "gelu", "elu", "relu"}, default="silu"
        Non-linearity between layers. Smooth activations are needed by score
        matching (``"relu"`` has a zero Hessian).

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import MLPEnergy
    >>> energy = MLPEnergy(2, hidden_layer_sizes=(16,))
    >>> energy(torch.zeros(5, 2)).shape
    torch.Size([5])
    >>> energy(torch.randn(5, 2)).abs().max().item()
    0.0
    """

    def __init__(
        self,
        n_features: int,
        hidden_layer_sizes: tuple[int, ...] = (128, 128),
        activation: str = "silu",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}."
            )
        sizes = [int(n_features), *(int(h) for h in hidden_layer_sizes)]
        if any(s < 1 for s in sizes):
            raise ValueError(
                f"n_features and hidden_layer_sizes must be positive, got {sizes}."
            )
        layers: list[nn.Module] = []
        for fan_in, fan_out in pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
        output = nn.Linear(sizes[-1], 1)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        self.layers = nn.Sequential(*layers, output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)
