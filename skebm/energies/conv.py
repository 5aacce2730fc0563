"""A convolutional energy for images stored as rows."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from skebm.energies.mlp import ACTIVATIONS, _scale_linear

__all__ = ["ConvEnergy"]


def _image_shape(n_features: int, image_shape) -> tuple[int, int, int]:
    """Validate ``image_shape`` against ``n_features`` (``None``: square, 1 channel)."""
    if image_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(
                f"ConvEnergy cannot guess the image shape of {n_features} features "
                "(not a square number); pass image_shape=(channels, height, width)."
            )
        return (1, side, side)
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            "image_shape must be three positive ints (channels, height, width), got "
            f"{image_shape!r}."
        )
    if math.prod(shape) != n_features:
        raise ValueError(
            f"image_shape={shape} holds {math.prod(shape)} values but the data have "
            f"{n_features} features; rows must be images flattened in (channels, "
            "height, width) order, e.g. images.reshape(len(images), -1)."
        )
    return shape


class ConvEnergy(nn.Module):
    """A small convolutional energy for images given as flattened rows.

    Each row of length ``C·H·W`` is reshaped to a ``(C, H, W)`` image (row-major,
    as ``images.reshape(n, -1)`` flattens it), passed through a stack of
    ``kernel_size`` convolutions with smooth activations, flattened, and mapped
    to a scalar by a linear layer. The first convolution keeps the resolution,
    each later one halves it (stride 2). The output layer starts at exactly
    zero, so an untrained :class:`~skebm.EnergyDensityEstimator` equals its base
    density. The estimator sees rows in and rows out: :meth:`sample` returns
    rows, reshape them to view images.

    Parameters
    ----------
    n_features : int
        Row length; must equal ``C·H·W``.
    image_shape : tuple of int (C, H, W), default=None
        Shape of one image. ``None`` means one channel and a square image
        (``n_features`` must then be a square number, e.g. 64 for 8x8).
    channels : tuple of int, default=(16, 32)
        Output channels of each convolution.
    kernel_size : int, default=3
        Odd kernel size; padding keeps ``"same"`` geometry.
    activation : {"silu", "softplus", "tanh", "gelu", "elu", "relu"}, default="silu"
        Non-linearity. Keep it smooth: samplers and score matching use
        ``∇E`` and its derivatives.

    Examples
    --------
    >>> import torch
    >>> from skebm.energies import ConvEnergy
    >>> energy = ConvEnergy(64)  # 8x8 grey images
    >>> energy.image_shape
    (1, 8, 8)
    >>> energy(torch.rand(5, 64)).shape
    torch.Size([5])
    >>> ConvEnergy(48, image_shape=(3, 4, 4), channels=(8,))(torch.rand(2, 48)).shape
    torch.Size([2])
    """

    def __init__(
        self,
        n_features: int,
        image_shape: Sequence[int] | None = None,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        activation: str = "silu",
    ):
        super().__init__()
        self.image_shape = _image_shape(int(n_features), image_shape)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}."
            )
        channels = tuple(int(c) for c in channels)
        if not channels or any(c < 1 for c in channels):
            raise ValueError(
                f"channels must be a non-empty tuple of positive ints, got {channels}."
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be a positive odd int, got {kernel_size}."
            )
        in_channels, height, width = self.image_shape
        layers: list[nn.Module] = []
        for i, out_channels in enumerate(channels):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride=stride,
                    padding=kernel_size // 2,
                ),
                ACTIVATIONS[activation](),
            ]
            in_channels = out_channels
            if stride == 2:
                height, width = (height + 1) // 2, (width + 1) // 2
        output = nn.Linear(in_channels * height * width, 1)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        self.layers = nn.Sequential(*layers, nn.Flatten(), output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(x.shape[0], *self.image_shape)
        return self.layers(images).squeeze(-1)

    def scale_output_(self, factor: float) -> None:
        """Multiply the energy by ``factor`` in place (through its output layer);
        see :meth:`MLPEnergy.scale_output_ <skebm.energies.MLPEnergy.scale_output_>`."""
        _scale_linear(self.layers[-1], factor)
