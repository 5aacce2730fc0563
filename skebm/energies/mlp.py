"""The default energy network: a multi-layer perceptron."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from skebm.fast_gradient import langevin_move
from skebm.utils._torch import autograd_value_and_grad

__all__ = ["ACTIVATIONS", "FourierFeatures", "MLPEnergy"]

_aten = torch.ops.aten

ACTIVATIONS = {
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
}


class FourierFeatures(nn.Module):
    """Random Fourier features ``[x, sin(xB), cos(xB)]`` of an input ``x``.

    The frequencies ``B`` (shape ``(n_features, n_frequencies)``) are drawn once
    from ``N(0, scale²)`` with torch's random generator (the estimator seeds it
    locally) and kept as a buffer: they are saved with the module, not trained.
    They let a network express corrections that change over a length of about
    ``1 / scale`` in standardised units, which a plain MLP learns slowly
    (Tancik et al., 2020).

    Parameters
    ----------
    n_features : int
        Input dimension.
    n_frequencies : int
        Number of frequencies; the output has ``n_features + 2 * n_frequencies``
        columns.
    scale : float
        Standard deviation of the frequencies.

    References
    ----------
    Tancik, M. et al. (2020). Fourier features let networks learn high frequency
    functions in low dimensional domains. NeurIPS.
    """

    def __init__(self, n_features: int, n_frequencies: int, scale: float):
        super().__init__()
        self.register_buffer(
            "frequencies", scale * torch.randn(int(n_features), int(n_frequencies))
        )

    @property
    def n_outputs(self) -> int:
        n_features, n_frequencies = self.frequencies.shape
        return n_features + 2 * n_frequencies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phase = x @ self.frequencies
        return torch.cat([x, torch.sin(phase), torch.cos(phase)], dim=-1)

    def backward_input(
        self, x: torch.Tensor, grad_output: torch.Tensor
    ) -> torch.Tensor:
        """``∂/∂x`` of ``⟨grad_output, features(x)⟩``: the input gradient."""
        n_features, n_frequencies = self.frequencies.shape
        phase = x @ self.frequencies
        g_x, g_sin, g_cos = grad_output.split(
            [n_features, n_frequencies, n_frequencies], dim=-1
        )
        mixed = g_sin * torch.cos(phase) - g_cos * torch.sin(phase)
        return torch.addmm(g_x, mixed, self.frequencies.t())


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
    fourier_features : int, default=128
        When positive, the network reads :class:`FourierFeatures` of its input
        (this many random frequencies, next to the input itself) instead of the
        input alone; 0 reads the input alone.
    fourier_scale : float or None, default=None
        Standard deviation of the random frequencies; None is
        ``sqrt(2 / n_features)``, so the phases ``x·b`` of standardised inputs
        have the same spread (about ``sqrt(2)``) in any dimension.

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
        fourier_features: int = 128,
        fourier_scale: float | None = None,
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
        if fourier_scale is None:
            fourier_scale = (2.0 / sizes[0]) ** 0.5
        if fourier_features < 0 or not fourier_scale > 0:
            raise ValueError(
                "fourier_features must be >= 0 and fourier_scale > 0, got "
                f"{fourier_features} and {fourier_scale}."
            )
        if fourier_features:
            self.features = FourierFeatures(sizes[0], fourier_features, fourier_scale)
            sizes[0] = self.features.n_outputs
        else:
            self.features = nn.Identity()
        layers: list[nn.Module] = []
        for fan_in, fan_out in pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
        output = nn.Linear(sizes[-1], 1)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)
        self.layers = nn.Sequential(*layers, output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.features(x)).squeeze(-1)

    def scale_output_(self, factor: float) -> None:
        """Multiply the energy by ``factor`` in place (through its output layer).

        :class:`~skebm.EnergyDensityEstimator` calls it at the end of ``fit`` to
        shrink the trained energy to the strength its held-out rows favour; an
        energy without this method is kept as trained.

        Examples
        --------
        >>> import torch
        >>> from skebm.energies import MLPEnergy
        >>> energy = MLPEnergy(2, hidden_layer_sizes=(8,))
        >>> _ = torch.nn.init.ones_(energy.layers[-1].weight)
        >>> x = torch.randn(3, 2)
        >>> before = energy(x)
        >>> energy.scale_output_(0.5)
        >>> torch.allclose(energy(x), 0.5 * before)
        True
        """
        _scale_linear(self.layers[-1], factor)

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``E(x)`` and ``∇ₓE(x)``, detached, by a hand-written backward pass.

        The samplers' gradient (see :func:`skebm.fast_gradient.energy_and_grad`): the
        same kernels autograd would run for the input gradient, minus autograd's
        bookkeeping and the output layer's outer product. A subclass that overrides
        ``forward``, or layers changed to something this method does not know, get
        the autograd gradient instead.

        Examples
        --------
        >>> import torch
        >>> from skebm.energies import MLPEnergy
        >>> value, grad = MLPEnergy(2).value_and_grad(torch.zeros(3, 2))
        >>> value.shape, grad.shape
        (torch.Size([3]), torch.Size([3, 2]))
        """
        plan = self._closed_form_plan()
        if plan is None:
            return autograd_value_and_grad(self, x)
        return _closed_form(plan, self.features, x, need_value=True)

    def langevin_update(
        self, x: torch.Tensor, noise: torch.Tensor, step: float, noise_scale: float
    ) -> torch.Tensor:
        """The Langevin move ``x - step·∇ₓE(x) + noise_scale·noise``, detached.

        Used by :func:`skebm.fast_gradient.langevin_update`; the energy's value, which
        the move does not need, is not computed.
        """
        plan = self._closed_form_plan()
        if plan is None:
            grad = autograd_value_and_grad(self, x)[1]
        else:
            grad = _closed_form(plan, self.features, x, need_value=False)[1]
        return langevin_move(x, grad, noise, step, noise_scale)

    @property
    def has_closed_form_gradient(self) -> bool:
        """Whether :meth:`value_and_grad` and :meth:`langevin_update` are the
        hand-written backward (plain tensor code, which ``torch.compile`` traces)
        rather than the autograd fallback."""
        return self._closed_form_plan() is not None

    def _closed_form_plan(self) -> list[tuple[nn.Linear, nn.Module]] | None:
        """``[(linear, activation), ..., (output, None)]``, or ``None`` when the
        hand-written backward does not apply."""
        if type(self).forward is not MLPEnergy.forward:
            return None
        modules = list(self.layers)
        if len(modules) % 2 != 1:
            return None
        pairs = list(zip(modules[0::2], [*modules[1::2], None]))
        for linear, activation in pairs:
            if type(linear) is not nn.Linear:
                return None
            if activation is not None and type(activation) not in _BACKWARD:
                return None
        if pairs[-1][0].out_features != 1:
            return None
        if type(self.features) not in (nn.Identity, FourierFeatures):
            return None
        return pairs


#: ``(grad_output, pre-activation z, activation module, output h or None) -> grad
#: wrt z``: the backward kernels autograd itself uses. Activations that need their
#: output (tanh) get it from the forward pass.
_BACKWARD = {
    nn.SiLU: lambda g, z, act, h: _aten.silu_backward(g, z),
    nn.Softplus: lambda g, z, act, h: _aten.softplus_backward(
        g, z, act.beta, act.threshold
    ),
    nn.Tanh: lambda g, z, act, h: _aten.tanh_backward(g, h),
    nn.GELU: lambda g, z, act, h: _aten.gelu_backward(
        g, z, approximate=act.approximate
    ),
    nn.ELU: lambda g, z, act, h: _aten.elu_backward(g, act.alpha, 1, 1, False, z),
    nn.ReLU: lambda g, z, act, h: _aten.threshold_backward(g, z, 0),
}
_NEEDS_OUTPUT = {nn.Tanh}


def _scale_linear(layer: nn.Linear, factor: float) -> None:
    """Multiply a linear layer's output by ``factor`` in place (weights and bias)."""
    with torch.no_grad():
        layer.weight.mul_(factor)
        if layer.bias is not None:
            layer.bias.mul_(factor)


def _closed_form(plan, features, x, *, need_value):
    hidden_layers, (output, _) = plan[:-1], plan[-1]
    fourier = isinstance(features, FourierFeatures)
    with torch.no_grad():
        x = x.detach()
        hidden = features(x) if fourier else x
        saved = []  # (pre-activation z, output h or None) of each hidden layer
        for i, (linear, activation) in enumerate(hidden_layers):
            z = torch.addmm(linear.bias, hidden, linear.weight.t())
            # The last hidden output only feeds the value (and tanh's backward).
            last = i == len(hidden_layers) - 1
            if need_value or not last or type(activation) in _NEEDS_OUTPUT:
                hidden = activation(z)
                saved.append((z, hidden))
            else:
                saved.append((z, None))
        value = None
        if need_value:
            value = torch.addmm(output.bias, hidden, output.weight.t()).squeeze(-1)
        # ∂E/∂h of the last hidden layer is the output row, for every sample.
        grad = output.weight.expand(x.shape[0], -1)
        for (linear, activation), (z, h) in zip(
            reversed(hidden_layers), reversed(saved)
        ):
            grad = _BACKWARD[type(activation)](grad, z, activation, h) @ linear.weight
        if fourier:
            grad = features.backward_input(x, grad)
        elif not hidden_layers:
            grad = grad.clone()  # not a view of the weights
    return value, grad
