"""Base densities: the normalised q in the model p(x) = q(x) exp(-E(x)) / Z.

A base density is fitted to the standardised training data at the start of ``fit``
and then held fixed as a torch module on the estimator's device. It is used
everywhere a tractable reference is needed: the noise of NCE, the start of AIS and
of every sampling chain (exact draws), and the proposal of importance sampling.
An untrained energy is zero, so an untrained model *is* its base.
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn import config_context
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils.validation import check_scalar
from threadpoolctl import threadpool_limits
from torch import nn

from skebm.utils._torch import autograd_value_and_grad

__all__ = [
    "BASE_CLASSES",
    "BASE_PARAMS",
    "TAIL_SHARE",
    "BaseDensity",
    "DefensiveMixture",
    "GaussianMixtureDensity",
    "GaussianizedMixtureDensity",
    "MarginalGaussianization",
    "StandardNormalDensity",
    "fit_base",
    "refit_base",
    "with_tails",
]

_LOG_2PI = math.log(2.0 * math.pi)

#: The covariance structures of a mixture, as scikit-learn names them.
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

#: The ``params`` keys :func:`fit_base` accepts for each kind of base.
_MIXTURE_PARAMS = (
    "n_components",
    "max_components",
    "covariance_type",
    "n_members",
    "reg_covar",
)
BASE_PARAMS = {
    "auto": _MIXTURE_PARAMS,
    "gmm": _MIXTURE_PARAMS,
    "gaussianized": _MIXTURE_PARAMS,
    "gaussian": ("reg_covar",),
    "standard": (),
}


class BaseDensity(nn.Module):
    """A normalised density on R^d with exact, generator-driven sampling.

    Subclasses implement :meth:`log_prob`, :meth:`sample` and :meth:`bounds`; all
    tensors live in buffers, so ``.to(device, dtype)`` moves the whole density.
    """

    n_features: int

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of each row of ``z`` (shape ``(batch,)``)."""
        raise NotImplementedError

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        """``n_samples`` exact draws, on the density's device and dtype."""
        raise NotImplementedError

    def log_prob_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log q(z)`` and its gradient ``∇ log q(z)``, detached.

        By autograd here; subclasses with a closed form override it (and
        :meth:`grad_log_prob`) and set :attr:`has_closed_form_gradient`.
        """
        return autograd_value_and_grad(self.log_prob, z)

    def grad_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``∇ log q(z)`` alone, detached: what a Langevin move needs.

        Defaults to :meth:`log_prob_and_grad`; a closed form may skip work that
        only the value needs.
        """
        return self.log_prob_and_grad(z)[1]

    #: Whether :meth:`log_prob_and_grad` and :meth:`grad_log_prob` are plain tensor
    #: code (no autograd), which ``torch.compile`` traces.
    has_closed_form_gradient: bool = False

    def bounds(self, width: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
        """A box holding all but a negligible part of the mass (per feature)."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_prob(z)

    def _reference(self) -> torch.Tensor:
        return next(self.buffers())

    @classmethod
    def _empty(cls, state: dict, n_features: int) -> BaseDensity:
        """A density of the shapes ``state`` (a ``state_dict``) describes, to load
        it into (used by :func:`skebm.load`)."""
        raise NotImplementedError


class StandardNormalDensity(BaseDensity):
    """The standard normal N(0, I) in ``n_features`` dimensions.

    Parameters
    ----------
    n_features : int
        Dimension.
    """

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = int(n_features)
        # A buffer carries the device and dtype for sampling.
        self.register_buffer("_anchor", torch.zeros(()))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z * z).sum(-1) - 0.5 * self.n_features * _LOG_2PI

    has_closed_form_gradient = True

    def log_prob_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = z.detach()
        return self.log_prob(z), -z

    def grad_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -z.detach()

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        ref = self._anchor
        return torch.randn(
            (n_samples, self.n_features),
            generator=generator,
            device=ref.device,
            dtype=ref.dtype,
        )

    def bounds(self, width: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
        return np.full(self.n_features, -width), np.full(self.n_features, width)

    @classmethod
    def _empty(cls, state: dict, n_features: int) -> StandardNormalDensity:
        return cls(n_features)


class GaussianMixtureDensity(BaseDensity):
    """A mixture of full-covariance Gaussians (one component: a Gaussian).

    Parameters
    ----------
    weights : array-like of shape (n_components,)
        Mixture weights (normalised here).
    means : array-like of shape (n_components, n_features)
    covariances : array-like of shape (n_components, n_features, n_features)
        Symmetric positive definite matrices.
    n_members : int, default=1
        How many fitted mixtures of ``n_components / n_members`` components each,
        stored one after another, this mixture averages (:func:`fit_base`).
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        The structure the covariances were fitted with (each member's are all
        equal with ``"tied"``), kept when :func:`refit_base` refits them.
    n_tail : int, default=0
        How many of the last components are wide *tail* components (see
        :func:`with_tails`) rather than members' components: :func:`refit_base`
        builds them anew and :meth:`bounds` leaves them out.
    """

    def __init__(
        self,
        weights,
        means,
        covariances,
        *,
        n_members=1,
        covariance_type="full",
        n_tail=0,
    ):
        super().__init__()
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {COVARIANCE_TYPES}, got "
                f"{covariance_type!r}."
            )
        weights = torch.tensor(np.asarray(weights, dtype=np.float64))
        means = torch.tensor(np.asarray(means, dtype=np.float64))
        covariances = torch.tensor(np.asarray(covariances, dtype=np.float64))
        if means.ndim != 2 or covariances.shape != means.shape + means.shape[-1:]:
            raise ValueError(
                "means must have shape (k, d) and covariances (k, d, d); got "
                f"{tuple(means.shape)} and {tuple(covariances.shape)}."
            )
        self.n_features = int(means.shape[1])
        scale_tril = torch.linalg.cholesky(covariances)
        eye = torch.eye(self.n_features, dtype=torch.float64)
        # precision = P P^T with P = L^{-T}: Mahalanobis terms are ||(z - mu) P||^2.
        precision_tril = torch.linalg.solve_triangular(
            scale_tril, eye.expand_as(scale_tril), upper=False
        ).transpose(-1, -2)
        half_log_det_cov = torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1))
        log_weights = torch.log(weights / weights.sum())
        self.register_buffer("log_weights", log_weights)
        self.register_buffer("means", means)
        self.register_buffer("scale_tril", scale_tril)
        self.register_buffer("precision_tril", precision_tril)
        self.register_buffer(
            "_log_norm",
            log_weights - half_log_det_cov.sum(-1) - 0.5 * self.n_features * _LOG_2PI,
        )
        self.register_buffer(
            "_shift", torch.einsum("kd,kde->ke", means, precision_tril)
        )
        # Every component's P side by side, (d, k*d): one matrix product whitens a
        # batch for all components at once. Not saved: rebuilt when loading.
        self.register_buffer(
            "_whitening", _side_by_side(precision_tril), persistent=False
        )
        self.register_buffer("_cdf", torch.cumsum(log_weights.exp(), 0))
        # (n_members, index in COVARIANCE_TYPES, n_tail): how refit_base refits.
        structure = torch.tensor(
            [n_members, COVARIANCE_TYPES.index(covariance_type), n_tail]
        )
        self.register_buffer("structure", structure)
        self._check_structure()

    def _check_structure(self) -> None:
        n_members, kind, n_tail = self.structure.tolist()
        if not 0 <= n_tail < self.n_components:
            raise ValueError(
                f"n_tail must be at least 0 and below the {self.n_components} "
                f"components, got {n_tail}."
            )
        if not (n_members >= 1 and (self.n_components - n_tail) % n_members == 0):
            raise ValueError(
                f"n_members must divide the {self.n_components - n_tail} members' "
                f"components, got {n_members}."
            )
        if not 0 <= kind < len(COVARIANCE_TYPES):
            raise ValueError(f"Unknown covariance structure {kind}.")

    @property
    def n_members(self) -> int:
        return int(self.structure[0])

    @property
    def covariance_type(self) -> str:
        return COVARIANCE_TYPES[int(self.structure[1])]

    @property
    def n_tail(self) -> int:
        return int(self.structure[2])

    @property
    def n_member_components(self) -> int:
        """The members' components, all together: the components but the tails."""
        return self.n_components - self.n_tail

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files saved before mixtures were averaged hold one full-covariance fit;
        # files saved before tails, no tail.
        structure = state_dict.get(prefix + "structure", torch.tensor([1, 0]))
        if structure.shape == (2,):
            no_tail = torch.zeros(1, dtype=structure.dtype)
            state_dict[prefix + "structure"] = torch.cat([structure, no_tail])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        with torch.no_grad():
            self._whitening.copy_(_side_by_side(self.precision_tril))
        try:
            self._check_structure()
        except ValueError as exc:
            error_msgs = args[-1]
            error_msgs.append(str(exc))

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @classmethod
    def _empty(cls, state: dict, n_features: int) -> GaussianMixtureDensity:
        k = state["means"].shape[0]
        eye = np.tile(np.eye(n_features), (k, 1, 1))
        return cls(np.ones(k), np.zeros((k, n_features)), eye)

    # With u_k = s_k - z P_k (s_k = mu_k P_k), the log of each weighted component
    # is a_k = log w_k N_k(z) = c_k - |u_k|^2 / 2, so ∇a_k = u_k P_k^T and
    # ∇ log q = Σ_k softmax(a)_k ∇a_k.

    def _whitened(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``u`` of shape (batch, k, d) and ``a`` of shape (batch, k)."""
        u = torch.sub(self._shift.reshape(-1), z @ self._whitening)
        u = u.unflatten(-1, (self.n_components, self.n_features))
        return u, torch.add(self._log_norm, (u * u).sum(-1), alpha=-0.5)

    def _grad(self, u: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        weighted = torch.softmax(a, dim=-1).unsqueeze(-1) * u
        return weighted.flatten(-2) @ self._whitening.T

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self._whitened(z)[1], dim=-1)

    has_closed_form_gradient = True

    def log_prob_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            u, a = self._whitened(z)
            return torch.logsumexp(a, dim=-1), self._grad(u, a)

    def grad_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._grad(*self._whitened(z))

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        # Components by inverse CDF, then gathered by index: no host sync and static
        # shapes, so sampling can be captured in a CUDA graph.
        eps = torch.randn(
            (n_samples, self.n_features),
            generator=generator,
            device=self.means.device,
            dtype=self.means.dtype,
        )
        if self.n_components == 1:
            return self.means[0] + eps @ self.scale_tril[0].T
        uniform = torch.rand(
            n_samples, generator=generator, device=eps.device, dtype=eps.dtype
        )
        component = torch.searchsorted(self._cdf, uniform, right=True).clamp_(
            max=self.n_components - 1
        )
        if self.n_components < self.n_features:  # all k candidates: n*k*d work
            candidates = torch.einsum("nd,ked->nke", eps, self.scale_tril)
            rows = torch.arange(n_samples, device=eps.device)
            return self.means[component] + candidates[rows, component]
        factors = self.scale_tril[component]  # each row's own factor: n*d*d work
        return self.means[component] + (factors @ eps.unsqueeze(-1)).squeeze(-1)

    def bounds(self, width: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
        """The box of every member component's means ± ``width`` standard
        deviations; the tail components (a share :data:`TAIL_SHARE` of the mass)
        are left out: they would stretch a quadrature's box far beyond the data."""
        members = slice(0, self.n_member_components)
        means = self.means[members].detach().cpu().double().numpy()
        scale_tril = self.scale_tril[members]
        sd = np.sqrt(
            np.diagonal(
                (scale_tril @ scale_tril.transpose(-1, -2))
                .detach()
                .cpu()
                .double()
                .numpy(),
                axis1=-2,
                axis2=-1,
            )
        )
        return (means - width * sd).min(0), (means + width * sd).max(0)


def _side_by_side(precision_tril: torch.Tensor) -> torch.Tensor:
    """``(k, d, d)`` factors ``P_k`` as one ``(d, k*d)`` matrix ``[P_1 ... P_k]``."""
    return precision_tril.transpose(0, 1).reshape(precision_tril.shape[1], -1)


class MarginalGaussianization(nn.Module):
    """A monotone, piecewise-linear map ``z_i = T_i(x_i)`` of each feature.

    ``T_i`` goes through knots ``(x_ik, z_ik)`` and continues beyond them along rays
    no steeper than its central slope (see :func:`_segment_slopes`), so it is
    invertible on the whole line, and its derivative is constant between knots.
    :meth:`fit` places the knots so that ``T_i`` follows ``Φ⁻¹ ∘ F_i``, with
    ``F_i`` a kernel estimate of the feature's distribution: the features then look
    standard normal one at a time.

    Parameters
    ----------
    knots_x, knots_z : array-like of shape (n_features, n_knots)
        Strictly increasing knots of each feature and their images.
    """

    def __init__(self, knots_x, knots_z):
        super().__init__()
        knots_x = torch.tensor(np.asarray(knots_x, dtype=np.float64))
        knots_z = torch.tensor(np.asarray(knots_z, dtype=np.float64))
        if knots_x.ndim != 2 or knots_x.shape != knots_z.shape or knots_x.shape[1] < 2:
            raise ValueError(
                "knots_x and knots_z must both have shape (n_features, n_knots) with "
                f"n_knots >= 2; got {tuple(knots_x.shape)} and {tuple(knots_z.shape)}."
            )
        if not (torch.all(knots_x.diff() > 0) and torch.all(knots_z.diff() > 0)):
            raise ValueError("The knots of every feature must increase strictly.")
        self.register_buffer("knots_x", knots_x)
        self.register_buffer("knots_z", knots_z)
        # Slope of segment s (between knots s-1 and s; the outer segments are
        # the rays), shape (d, n_knots + 1). Derived, but saved: computed
        # again from rounded knots it would differ in the last bits.
        self.register_buffer("slopes", _segment_slopes(knots_x, knots_z))

    @classmethod
    def fit(cls, Z: np.ndarray) -> MarginalGaussianization:
        """The map that makes each column of ``Z`` look standard normal."""
        return cls(*gaussianizing_knots(Z))

    def _map(self, values: torch.Tensor, forward: bool):
        source, target = (
            (self.knots_x, self.knots_z) if forward else (self.knots_z, self.knots_x)
        )
        columns = values.t().contiguous()
        segment = torch.searchsorted(source, columns)
        anchor = (segment - 1).clamp_(min=0, max=source.shape[1] - 1)
        slope = self.slopes.gather(1, segment)
        offset = columns - source.gather(1, anchor)
        step = offset * slope if forward else offset / slope
        return (target.gather(1, anchor) + step).t(), slope.t()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = T(x)`` and ``T'(x)``, both of shape (batch, n_features)."""
        return self._map(x, forward=True)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``x = T⁻¹(z)``."""
        return self._map(z, forward=False)[0]


class GaussianizedMixtureDensity(BaseDensity):
    """A Gaussian mixture on features Gaussianised one at a time.

    With ``z = T(x)`` a :class:`MarginalGaussianization` and ``g`` a Gaussian
    mixture, the density is the exact change of variables
    ``q(x) = g(T(x)) ∏ T_i'(x_i)``, and samples are ``T⁻¹(z)`` with ``z ~ g``.
    Skewed, bounded, heavy-tailed or lumpy features become nearly normal first,
    which a mixture then models far better than the raw features (this is what a
    Gaussian copula does, with a mixture in place of one Gaussian).

    Parameters
    ----------
    transform : MarginalGaussianization
    inner : GaussianMixtureDensity
        The mixture ``g`` of the Gaussianised features.
    """

    def __init__(
        self, transform: MarginalGaussianization, inner: GaussianMixtureDensity
    ):
        super().__init__()
        if transform.knots_x.shape[0] != inner.n_features:
            raise ValueError(
                f"The transform has {transform.knots_x.shape[0]} features and the "
                f"mixture {inner.n_features}."
            )
        self.n_features = inner.n_features
        self.transform = transform
        self.inner = inner

    @property
    def n_components(self) -> int:
        return self.inner.n_components

    @classmethod
    def _empty(cls, state: dict, n_features: int) -> GaussianizedMixtureDensity:
        n_knots = state["transform.knots_x"].shape[1]
        line = np.tile(np.arange(float(n_knots)), (n_features, 1))
        inner = {
            key.removeprefix("inner."): value
            for key, value in state.items()
            if key.startswith("inner.")
        }
        return cls(
            MarginalGaussianization(line, line),
            GaussianMixtureDensity._empty(inner, n_features),
        )

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        gaussian, slope = self.transform(z)
        return self.inner.log_prob(gaussian) + torch.log(slope).sum(-1)

    has_closed_form_gradient = True

    def log_prob_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # T is linear between knots, so the log-slope term has no gradient.
        gaussian, slope = self.transform(z)
        value, grad = self.inner.log_prob_and_grad(gaussian)
        return value + torch.log(slope).sum(-1), grad * slope

    def grad_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        gaussian, slope = self.transform(z)
        return self.inner.grad_log_prob(gaussian) * slope

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        return self.transform.inverse(self.inner.sample(n_samples, generator=generator))

    def bounds(self, width: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.inner.bounds(width)
        box = torch.as_tensor(np.stack([low, high])).to(self.transform.knots_z)
        mapped = self.transform.inverse(box).detach().cpu().double().numpy()
        return mapped[0], mapped[1]


class DefensiveMixture(BaseDensity):
    """``(1 - fraction)·q + fraction·N(0, scale²·I)``: a base density ``q`` with a
    share of a wide Gaussian mixed in.

    Draws from ``q`` alone rarely land where ``q`` is tiny (between the narrow
    components of a mixture, say), so an energy trained against them, or an
    importance-sampling estimate drawn from them, cannot see mass the energy puts
    there. Mixing in a wide Gaussian (standardised data have unit scale) covers
    that region while keeping most draws where ``q`` is (Hesterberg, 1995:
    defensive importance sampling). Used for the noise of noise-contrastive
    estimation and for the held-out likelihood of early stopping.

    Parameters
    ----------
    base : BaseDensity
    fraction : float, default=0.1
        Share of the wide Gaussian, in ``(0, 1)``.
    scale : float, default=2.0
        Its standard deviation (in standardised units).

    References
    ----------
    Hesterberg, T. (1995). Weighted average importance sampling and defensive
    mixture distributions. Technometrics 37(2).
    """

    def __init__(self, base: BaseDensity, fraction: float = 0.1, scale: float = 2.0):
        super().__init__()
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
        self.base = base
        self.n_features = base.n_features
        self.fraction, self.scale = float(fraction), float(scale)
        self._log_weights = (math.log1p(-self.fraction), math.log(self.fraction))

    def log_probs(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``log`` of the mixture's density and of the base's, at ``z``."""
        log_base = self.base.log_prob(z)
        log_wide = -0.5 * (z * z).sum(-1) / self.scale**2 - self.n_features * (
            math.log(self.scale) + 0.5 * _LOG_2PI
        )
        stacked = torch.stack(
            [log_base + self._log_weights[0], log_wide + self._log_weights[1]]
        )
        return torch.logsumexp(stacked, 0), log_base

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_probs(z)[0]

    def sample(self, n_samples: int, *, generator: torch.Generator) -> torch.Tensor:
        # Both kinds of draws for every row, then a coin per row: static shapes,
        # no host synchronisation.
        from_base = self.base.sample(n_samples, generator=generator)
        wide = self.scale * torch.randn(
            from_base.shape,
            generator=generator,
            device=from_base.device,
            dtype=from_base.dtype,
        )
        coin = torch.rand(
            (n_samples, 1),
            generator=generator,
            device=from_base.device,
            dtype=from_base.dtype,
        )
        return torch.where(coin < self.fraction, wide, from_base)

    def bounds(self, width: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.base.bounds(width)
        reach = width * self.scale
        return np.minimum(low, -reach), np.maximum(high, reach)


#: Class name -> class, for loading a saved base density.
BASE_CLASSES = {
    cls.__name__: cls
    for cls in (
        StandardNormalDensity,
        GaussianMixtureDensity,
        GaussianizedMixtureDensity,
    )
}


def _segment_slopes(knots_x: torch.Tensor, knots_z: torch.Tensor) -> torch.Tensor:
    """The slopes between knots, then of the two rays beyond them.

    No row of the data lies beyond the outer knots, and a ray that kept the slope
    of the kernel estimate's outermost tail would make the density fall there like
    a Gaussian as narrow as that kernel (a digits pixel that never exceeds 1.7 in
    900 training images gave an image with 8.3 there -3,912 nats). So neither ray
    is steeper than the map's central slope, through the knots nearest ``z = -1``
    and ``z = 1``: beyond its data, each feature's tails are no lighter than a
    Gaussian's of the feature's central spread.
    """
    inner = knots_z.diff() / knots_x.diff()
    n_knots = knots_z.shape[1]
    ones = torch.tensor([-1.0, 1.0], dtype=knots_z.dtype, device=knots_z.device)
    ends = torch.searchsorted(knots_z, ones.expand(knots_z.shape[0], 2).contiguous())
    low = ends[:, :1].clamp(max=n_knots - 2)
    high = torch.maximum(ends[:, 1:].clamp(max=n_knots - 1), low + 1)
    central = (knots_z.gather(1, high) - knots_z.gather(1, low)) / (
        knots_x.gather(1, high) - knots_x.gather(1, low)
    )
    return torch.cat(
        [
            torch.minimum(inner[:, :1], central),
            inner,
            torch.minimum(inner[:, -1:], central),
        ],
        dim=1,
    )


#: Knots of each Gaussianising map, evenly spaced in z over [-_Z_RANGE, _Z_RANGE].
_N_KNOTS = 257
_Z_RANGE = 5.0
#: Kernel centres of the estimate of each feature's distribution (quantiles).
_MAX_CENTRES = 256


def gaussianizing_knots(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(x, z)`` of maps ``T_i ≈ Φ⁻¹ ∘ F_i`` for each column of ``Z``.

    ``F_i`` is a Gaussian-kernel estimate of the column's distribution (at most
    256 kernels, at evenly spaced quantiles of the column; Silverman's bandwidth,
    or the gap to a neighbouring kernel where that is wider, as in the tails).
    The ``z`` knots are evenly spaced on ``[-5, 5]`` and ``x = F_i⁻¹(Φ(z))`` is
    found by bisection.

    Returns
    -------
    knots_x, knots_z : ndarray of shape (n_features, 257)
    """
    from scipy.special import ndtr

    n_samples, n_features = Z.shape
    knots_z = np.linspace(-_Z_RANGE, _Z_RANGE, _N_KNOTS)
    targets = ndtr(knots_z)
    knots_x = np.empty((n_features, _N_KNOTS))
    levels = (np.arange(min(n_samples, _MAX_CENTRES)) + 0.5) / min(
        n_samples, _MAX_CENTRES
    )
    for i in range(n_features):
        column = Z[:, i]
        q25, q75 = np.quantile(column, [0.25, 0.75])
        spread = column.std()
        if q75 > q25:
            spread = min(spread, (q75 - q25) / 1.349)
        centres = np.quantile(column, levels)
        # Each kernel at least as wide as the gaps to its neighbours: where the
        # extreme values are sparse, narrower kernels leave gaps of almost no
        # density between them (measured: -950 nats on a log-normal row inside
        # the training range).
        gaps = np.diff(centres, prepend=centres[0], append=centres[-1])
        h = np.maximum(
            max(1.06 * spread * n_samples**-0.2, 1e-3),
            np.maximum(gaps[:-1], gaps[1:]),
        )

        def cdf(x, centres=centres, h=h):
            return ndtr((x[:, None] - centres[None, :]) / h).mean(1)

        # Bracket each knot on a grid, then bisect within its cell. The grid
        # reaches 10 of the widest kernel's widths beyond the outer centres: an
        # inner kernel can be wider than the outer ones, and a grid that stops
        # short of its tail leaves the outer knots stacked at the grid's end.
        reach = 10 * h.max()
        grid = np.linspace(centres[0] - reach, centres[-1] + reach, 2049)
        cell = np.clip(np.searchsorted(cdf(grid), targets), 1, grid.size - 1)
        low, high = grid[cell - 1], grid[cell]
        for _ in range(30):
            mid = 0.5 * (low + high)
            below = cdf(mid) < targets
            low, high = np.where(below, mid, low), np.where(below, high, mid)
        knots_x[i] = 0.5 * (low + high)
        # Keep the knots strictly increasing where the bisection meets rounding.
        for k in range(1, _N_KNOTS):
            knots_x[i, k] = max(knots_x[i, k], knots_x[i, k - 1] + 1e-9 * h.min())
    return knots_x, np.tile(knots_z, (n_features, 1))


#: Fewest training rows per free parameter of a mixture: the search's cap.
_ROWS_PER_PARAMETER = 2

#: Largest full covariance matrix a mixture component may hold.
MAX_COVARIANCE_BYTES = 2 * 2**30


def _max_components(n_samples: int, n_features: int, covariance_type: str) -> int:
    """The most components the data support: :data:`_ROWS_PER_PARAMETER` rows per
    free parameter (a tied covariance is shared, so it is not counted per
    component)."""
    per_covariance = {
        "full": n_features * (n_features + 1) // 2,
        "tied": 0,
        "diag": n_features,
        "spherical": 1,
    }[covariance_type]
    per_component = n_features + 1 + per_covariance
    return max(1, n_samples // (_ROWS_PER_PARAMETER * per_component))


#: Numbers of components tried, in order, when ``n_components`` is not given; the
#: search stops after :data:`_PATIENCE` candidates in a row without a better score.
_COMPONENT_GRID = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)
_PATIENCE = 4

#: What ``covariance_type="auto"`` compares on held-out rows.
_AUTO_COVARIANCES = ("full", "tied")

#: Mixtures averaged into a base by default (``n_members``), and the most
#: components they may hold together, which also caps the search (a base's cost
#: grows with its components).
_DEFAULT_MEMBERS = 8
_MAX_AVERAGED_COMPONENTS = 128

#: Largest difference (nats) of two fits' log-densities on every training row for
#: them to count as the same fit, averaged once.
_SAME_FIT = 1e-2

#: Largest shortfall (nats per row) of a fit's training log-likelihood to the best
#: fit's for it to join the average.
_MEMBER_TOLERANCE = 0.05


def _component_candidates(cap: int) -> list[int]:
    grid = [k for k in _COMPONENT_GRID if k <= cap]
    k = _COMPONENT_GRID[-1]
    while k * 5 // 4 <= cap:  # beyond the grid: 25 % more each time
        k = k * 5 // 4
        grid.append(k)
    return grid


def fit_base(
    kind: str,
    Z: np.ndarray,
    params: dict | None = None,
    *,
    random_state: int | None = None,
    Z_valid: np.ndarray | None = None,
) -> BaseDensity:
    """Fit a base density to standardised data.

    Parameters
    ----------
    kind : {"gmm", "gaussianized", "gaussian", "standard"}
        ``"gmm"``: the average of Gaussian mixtures fitted from different random
        starts, their covariance structure and number of components chosen on
        held-out rows (or by BIC) unless ``params`` sets them, with a share of
        1e-4 of wide Gaussians for heavy tails (:func:`with_tails`);
        ``"gaussianized"``: the same on features first Gaussianised one at a
        time (:class:`GaussianizedMixtureDensity`); ``"gaussian"``: one
        full-covariance Gaussian; ``"standard"``: N(0, I) (nothing is fitted).
    Z : ndarray of shape (n_samples, n_features)
        Standardised training data.
    params : dict, default=None
        For the mixtures:

        - ``n_components`` (int, or None to choose);
        - ``max_components`` (cap of the choice, default None: as many as the
          data support, 2 training rows per free parameter, and at most 128);
        - ``covariance_type``: ``"full"``, ``"tied"``, ``"diag"``,
          ``"spherical"``, or ``"auto"`` (the default), which compares ``"full"``
          and ``"tied"`` (one covariance shared by all components);
        - ``n_members`` (default 8): EM is run this many times from different
          random starts with the chosen structure and number of components, and
          the base is the average of the distinct runs whose training
          log-likelihood is within 0.05 nats per row of the best run's (averaging
          lowers the variance of the fit; runs stuck at a poor optimum are left
          out). At most 128 components are averaged in all, so a mixture of 50
          components averages two runs;
        - ``reg_covar`` (default 1e-6 as in scikit-learn, in standardised units).

        ``"gaussian"`` takes ``reg_covar``.
    random_state : int, default=None
        Seed of the mixture fits.
    Z_valid : ndarray of shape (n_valid, n_features), default=None
        Held-out standardised rows. When given, the covariance structure and the
        number of components are those whose mean log-likelihood on them is
        best; otherwise those with the smallest BIC on ``Z``. For each structure,
        candidates run 1, 2, 3, 4, 5, 6, 8, 10, ... up to the cap; the search
        stops after four candidates in a row that do not beat the best.

    Returns
    -------
    base : BaseDensity
        A float64 module on the CPU.
    """
    params = dict(params or {})
    if kind == "standard":
        if params:
            raise ValueError(f"base='standard' takes no base_params, got {params}.")
        return StandardNormalDensity(Z.shape[1])
    if kind not in BASE_PARAMS or kind == "auto":
        raise ValueError(
            f"Unknown base {kind!r}; use 'gmm', 'gaussianized', 'gaussian' or "
            "'standard'."
        )
    unknown = set(params) - set(BASE_PARAMS[kind])
    if unknown:
        raise ValueError(
            f"Unknown base_params {sorted(unknown)} for base={kind!r}; "
            f"allowed: {sorted(BASE_PARAMS[kind])}."
        )
    if kind == "gaussian":
        params["n_components"] = 1
    transform = None
    if kind == "gaussianized":
        transform = MarginalGaussianization.fit(Z)
        Z, Z_valid = (
            None if A is None else transform(torch.as_tensor(A))[0].numpy()
            for A in (Z, Z_valid)
        )
    mixture = _fit_mixture(Z, Z_valid, params, random_state)
    if kind == "gmm":
        return with_tails(mixture, Z)
    return (
        mixture if transform is None else GaussianizedMixtureDensity(transform, mixture)
    )


#: Share of the mass of a ``"gmm"`` base's tail components, all together.
TAIL_SHARE = 1e-4


def with_tails(
    mixture: GaussianMixtureDensity, Z: np.ndarray
) -> GaussianMixtureDensity:
    """``mixture`` with a share :data:`TAIL_SHARE` of wide Gaussians mixed in.

    A mixture of many narrow components falls off like its narrowest outer
    component beyond the rows it was fitted to: a held-out row a little past the
    tip of a pinwheel's arm scored 79 nats below its true density, and the
    funnel's rows far out up to 1,556. The tails are Gaussians with the data's
    mean and covariance ``Σ`` scaled by ``s² = 4, 16, 64, ...``, up to the first
    ``s`` at least the largest Mahalanobis radius of a row of ``Z`` (so
    heavy-tailed data get more of them), sharing :data:`TAIL_SHARE` equally:
    together a heavy tail, at a cost of at most ``-log(1 - 1e-4) = 1e-4`` nats
    on any row.

    Parameters
    ----------
    mixture : GaussianMixtureDensity
        Without tails.
    Z : ndarray of shape (n_samples, n_features)
        The standardised rows it was fitted to.

    Returns
    -------
    GaussianMixtureDensity
        The members' components, then the tails (``n_tail`` of them).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skebm.bases import GaussianMixtureDensity, with_tails
    >>> Z = np.random.default_rng(0).normal(size=(1000, 2))
    >>> narrow = GaussianMixtureDensity([1.0], [[0.0, 0.0]], [0.01 * np.eye(2)])
    >>> tailed = with_tails(narrow, Z)
    >>> tailed.n_tail, tailed.n_member_components
    (2, 1)
    >>> far = torch.tensor([[3.0, 0.0]], dtype=torch.float64)
    >>> round(narrow.log_prob(far).item()), round(tailed.log_prob(far).item())
    (-447, -14)
    """
    if mixture.n_tail:
        raise ValueError(f"The mixture has {mixture.n_tail} tails already.")
    mean = Z.mean(0)
    covariance = np.atleast_2d(np.cov(Z, rowvar=False))
    covariance = covariance + 1e-6 * np.eye(Z.shape[1])
    centred = Z - mean
    radius = np.sqrt(
        np.max(np.einsum("nd,nd->n", centred, np.linalg.solve(covariance, centred.T).T))
    )
    scales = [2.0]
    while scales[-1] < radius:
        scales.append(2 * scales[-1])
    n_tail = len(scales)
    weights = mixture.log_weights.detach().exp().cpu().double().numpy()
    scale_tril = mixture.scale_tril.detach().cpu().double()
    return GaussianMixtureDensity(
        np.concatenate(
            [(1 - TAIL_SHARE) * weights, np.full(n_tail, TAIL_SHARE / n_tail)]
        ),
        np.concatenate(
            [mixture.means.detach().cpu().double().numpy(), np.tile(mean, (n_tail, 1))]
        ),
        np.concatenate(
            [
                (scale_tril @ scale_tril.transpose(-1, -2)).numpy(),
                np.stack([s * s * covariance for s in scales]),
            ]
        ),
        n_members=mixture.n_members,
        covariance_type=mixture.covariance_type,
        n_tail=n_tail,
    )


def _fit_mixture(
    Z: np.ndarray, Z_valid: np.ndarray | None, params: dict, random_state
) -> GaussianMixtureDensity:
    """The Gaussian mixture of :func:`fit_base`: covariance structure and number
    of components chosen, then ``n_members`` fits of that choice averaged."""
    n_samples, n_features = Z.shape
    reg_covar = check_scalar(
        params.get("reg_covar", 1e-6), "reg_covar", Real, min_val=0.0
    )
    n_members = check_scalar(
        params.get("n_members", _DEFAULT_MEMBERS), "n_members", Integral, min_val=1
    )
    covariance_types = _covariance_types(
        params.get("covariance_type", "auto"), n_features
    )
    n_components = params.get("n_components")
    if n_components is not None:
        n_components = check_scalar(
            n_components, "n_components", Integral, min_val=1, max_val=n_samples
        )
    max_components = params.get("max_components")
    if max_components is not None:
        max_components = check_scalar(
            max_components, "max_components", Integral, min_val=1
        )
    # The search runs from random_state, the other members from seeds drawn from it.
    seeds = np.random.RandomState(random_state).randint(2**31 - 1, size=n_members - 1)
    # Z is a numpy array whatever the caller's array-API setting: fit in numpy. The
    # mixture's linear algebra is on d x d matrices, where BLAS threads only add
    # contention (measured: 36 s instead of 0.4 s on a loaded 2-core machine).
    with config_context(array_api_dispatch=False), threadpool_limits(1, "blas"):
        fits, scores = [], []
        for covariance_type in covariance_types:
            if n_components is not None:
                grid = [n_components]
            else:
                cap = min(
                    _max_components(n_samples, n_features, covariance_type),
                    max_components or _MAX_AVERAGED_COMPONENTS,
                )
                grid = _component_candidates(cap)
            found, found_scores = _search_components(
                covariance_type, grid, Z, Z_valid, reg_covar, random_state
            )
            fits += found
            scores += found_scores
        best = fits[int(np.argmax(scores))]
        room = max(1, _MAX_AVERAGED_COMPONENTS // best.n_components)
        members = [best] + [
            _sk_mixture(best.n_components, best.covariance_type, reg_covar, seed).fit(Z)
            for seed in seeds[: room - 1]
        ]
    return _averaged(_distinct_good_fits(members, Z))


def _distinct_good_fits(members: list, Z: np.ndarray) -> list:
    """The fits worth averaging: within :data:`_MEMBER_TOLERANCE` nats per row of
    the best training log-likelihood (EM runs that stopped at a poor optimum
    would drag the average down), one of each that agree on every row to
    :data:`_SAME_FIT` nats (they add nothing but cost)."""
    rows = [member.score_samples(Z) for member in members]
    best = max(r.mean() for r in rows)
    kept, kept_rows = [], []
    for member, r in sorted(zip(members, rows), key=lambda pair: -pair[1].mean()):
        if r.mean() < best - _MEMBER_TOLERANCE:
            break
        if all(np.abs(r - other).max() > _SAME_FIT for other in kept_rows):
            kept.append(member)
            kept_rows.append(r)
    return kept


def _covariance_types(covariance_type, n_features: int) -> tuple[str, ...]:
    if covariance_type != "auto" and covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be 'auto', 'full', 'tied', 'diag' or 'spherical', "
            f"got {covariance_type!r}."
        )
    types = _AUTO_COVARIANCES if covariance_type == "auto" else (covariance_type,)
    covariance_bytes = 8 * n_features**2
    if {"full", "tied"} & set(types) and covariance_bytes > MAX_COVARIANCE_BYTES:
        raise ValueError(
            f"A full covariance of {n_features:,} features takes "
            f"{covariance_bytes / 2**30:,.1f} GiB (more than "
            f"{MAX_COVARIANCE_BYTES / 2**30:.0f} GiB per component). Use "
            "base='standard', or base_params={'covariance_type': 'diag'}."
        )
    return types


def _sk_mixture(n_components, covariance_type, reg_covar, seed, **init):
    return _SkGaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        reg_covar=reg_covar,
        random_state=seed,
        **init,
    )


def _search_components(covariance_type, grid, Z, Z_valid, reg_covar, seed):
    """Mixtures with ``k`` components from ``grid`` in turn, until
    :data:`_PATIENCE` in a row do not beat the best; and their scores (mean
    held-out log-likelihood, or minus BIC)."""
    fits, scores, misses = [], [], 0
    for k in grid:
        gmm = _sk_mixture(k, covariance_type, reg_covar, seed).fit(Z)
        fits.append(gmm)
        scores.append(-gmm.bic(Z) if Z_valid is None else gmm.score(Z_valid))
        if len(fits) == 1 or scores[-1] > max(scores[:-1]):
            misses = 0
        else:
            misses += 1
            if misses >= _PATIENCE:
                break
    return fits, scores


def _full_covariances(gmm) -> np.ndarray:
    """A fitted scikit-learn mixture's covariances as ``(k, d, d)`` matrices."""
    k, d = gmm.means_.shape
    if gmm.covariance_type == "full":
        return gmm.covariances_
    if gmm.covariance_type == "tied":
        return np.broadcast_to(gmm.covariances_, (k, d, d)).copy()
    if gmm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in gmm.covariances_])
    return gmm.covariances_[:, None, None] * np.eye(d)


def _averaged(members: list) -> GaussianMixtureDensity:
    """The average of fitted scikit-learn mixtures (of the same kind and size)."""
    return GaussianMixtureDensity(
        np.concatenate([m.weights_ for m in members]) / len(members),
        np.concatenate([m.means_ for m in members]),
        np.concatenate([_full_covariances(m) for m in members]),
        n_members=len(members),
        covariance_type=members[0].covariance_type,
    )


def refit_base(base: BaseDensity, Z: np.ndarray, params: dict | None = None):
    """``base`` refitted to more rows ``Z``, with the same number of components.

    EM starts from ``base``'s own parameters, so it refines the same solution
    rather than finding another optimum; an averaged mixture refits each of its
    runs so, with its covariance structure, and averages them again; a
    Gaussianised mixture keeps its Gaussianising map and refits the mixture
    behind it; ``N(0, I)`` has nothing to refit. ``params`` are the
    ``base_params`` it was fitted with (``reg_covar`` is read).

    Returns
    -------
    base : BaseDensity
        A float64 module on the CPU.
    """
    params = dict(params or {})
    reg_covar = params.get("reg_covar", 1e-6)
    base = copy.deepcopy(base).to("cpu", torch.float64)  # .to moves in place
    if isinstance(base, GaussianizedMixtureDensity):
        gaussian = base.transform(torch.as_tensor(Z, dtype=torch.float64))[0].numpy()
        inner = _refit_mixture(base.inner, gaussian, reg_covar)
        return GaussianizedMixtureDensity(base.transform, inner)
    if isinstance(base, GaussianMixtureDensity):
        refitted = _refit_mixture(base, Z, reg_covar)
        return with_tails(refitted, Z) if base.n_tail else refitted
    return base


def _refit_mixture(
    mixture: GaussianMixtureDensity, Z: np.ndarray, reg_covar
) -> GaussianMixtureDensity:
    """Each member of ``mixture`` refitted to ``Z`` by EM from its own parameters,
    with its covariance structure; averaged again (without its tails)."""
    covariance_type = mixture.covariance_type
    tril = mixture.precision_tril.detach().numpy()
    precisions = tril @ tril.transpose(0, 2, 1)
    weights = mixture.log_weights.detach().exp().numpy()
    means = mixture.means.detach().numpy()
    size = mixture.n_member_components // mixture.n_members
    members = []
    with config_context(array_api_dispatch=False), threadpool_limits(1, "blas"):
        for start in range(0, mixture.n_member_components, size):
            part = slice(start, start + size)
            member_weights = weights[part] / weights[part].sum()
            members.append(
                _sk_mixture(
                    size,
                    covariance_type,
                    reg_covar,
                    None,
                    weights_init=member_weights,
                    means_init=means[part],
                    precisions_init=_structured(precisions[part], covariance_type),
                ).fit(Z)
            )
    return _averaged(members)


def _structured(precisions: np.ndarray, covariance_type: str) -> np.ndarray:
    """``(k, d, d)`` precision matrices in scikit-learn's shape for the type."""
    if covariance_type == "tied":
        return precisions[0]
    diagonals = np.diagonal(precisions, axis1=1, axis2=2)
    if covariance_type == "diag":
        return diagonals
    if covariance_type == "spherical":
        return diagonals[:, 0]
    return precisions
