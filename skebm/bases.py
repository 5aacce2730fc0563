"""Base densities: the normalised q in the model p(x) = q(x) exp(-E(x)) / Z.

A base density is fitted to the standardised training data at the start of ``fit``
and then held fixed as a torch module on the estimator's device. It is used
everywhere a tractable reference is needed: the noise of NCE, the start of AIS and
of every sampling chain (exact draws), and the proposal of importance sampling.
An untrained energy is zero, so an untrained model *is* its base.
"""

from __future__ import annotations

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
    "BASE_PARAMS",
    "BaseDensity",
    "GaussianMixtureDensity",
    "StandardNormalDensity",
    "fit_base",
]

_LOG_2PI = math.log(2.0 * math.pi)

#: The ``params`` keys :func:`fit_base` accepts for each kind of base.
BASE_PARAMS = {
    "gmm": ("n_components", "max_components", "covariance_type", "reg_covar"),
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


class GaussianMixtureDensity(BaseDensity):
    """A mixture of full-covariance Gaussians (one component: a Gaussian).

    Parameters
    ----------
    weights : array-like of shape (n_components,)
        Mixture weights (normalised here).
    means : array-like of shape (n_components, n_features)
    covariances : array-like of shape (n_components, n_features, n_features)
        Symmetric positive definite matrices.
    """

    def __init__(self, weights, means, covariances):
        super().__init__()
        weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        means = torch.as_tensor(np.asarray(means, dtype=np.float64))
        covariances = torch.as_tensor(np.asarray(covariances, dtype=np.float64))
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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        with torch.no_grad():
            self._whitening.copy_(_side_by_side(self.precision_tril))

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

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
        # Components by inverse CDF and every component's candidate gathered: no host
        # sync and static shapes, so sampling can be captured in a CUDA graph.
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
        candidates = torch.einsum("nd,ked->nke", eps, self.scale_tril)
        rows = torch.arange(n_samples, device=eps.device)
        return self.means[component] + candidates[rows, component]

    def bounds(self, width: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
        means = self.means.detach().cpu().double().numpy()
        sd = np.sqrt(
            np.diagonal(
                (self.scale_tril @ self.scale_tril.transpose(-1, -2))
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


def _max_components(n_samples: int, n_features: int, covariance_type: str) -> int:
    """The most components the data support: 5 samples per free parameter."""
    cov_params = (
        n_features * (n_features + 1) // 2 if covariance_type == "full" else n_features
    )
    per_component = n_features + cov_params + 1
    return max(1, n_samples // (5 * per_component))


def fit_base(
    kind: str,
    Z: np.ndarray,
    params: dict | None = None,
    *,
    random_state: int | None = None,
) -> BaseDensity:
    """Fit a base density to standardised data.

    Parameters
    ----------
    kind : {"gmm", "gaussian", "standard"}
        ``"gmm"``: a Gaussian mixture, components chosen by BIC unless
        ``params["n_components"]`` is set; ``"gaussian"``: one full-covariance
        Gaussian; ``"standard"``: N(0, I) (nothing is fitted).
    Z : ndarray of shape (n_samples, n_features)
        Standardised training data.
    params : dict, default=None
        For ``"gmm"``: ``n_components`` (int or None for BIC), ``max_components``
        (cap for the BIC search, default 20, never more than 5 samples per free
        parameter allow), ``covariance_type`` (``"full"`` or ``"diag"``),
        ``reg_covar`` (default 1e-4, in standardised units). ``"gaussian"`` takes
        ``reg_covar``.
    random_state : int, default=None
        Seed of the mixture fits.

    Returns
    -------
    base : BaseDensity
        A float64 module on the CPU.
    """
    params = dict(params or {})
    n_samples, n_features = Z.shape
    if kind == "standard":
        if params:
            raise ValueError(f"base='standard' takes no base_params, got {params}.")
        return StandardNormalDensity(n_features)
    if kind not in BASE_PARAMS:
        raise ValueError(f"Unknown base {kind!r}; use 'gmm', 'gaussian' or 'standard'.")
    unknown = set(params) - set(BASE_PARAMS[kind])
    if unknown:
        raise ValueError(
            f"Unknown base_params {sorted(unknown)} for base={kind!r}; "
            f"allowed: {sorted(BASE_PARAMS[kind])}."
        )
    reg_covar = check_scalar(
        params.get("reg_covar", 1e-4), "reg_covar", Real, min_val=0.0
    )
    if kind == "gaussian":
        candidates = [1]
        covariance_type = "full"
    else:
        covariance_type = params.get("covariance_type", "full")
        if covariance_type not in ("full", "diag"):
            raise ValueError(
                f"covariance_type must be 'full' or 'diag', got {covariance_type!r}."
            )
        cap = min(
            check_scalar(
                params.get("max_components", 20), "max_components", Integral, min_val=1
            ),
            _max_components(n_samples, n_features, covariance_type),
        )
        n_components = params.get("n_components")
        if n_components is None:
            candidates = list(range(1, cap + 1))
        else:
            candidates = [
                check_scalar(
                    n_components, "n_components", Integral, min_val=1, max_val=n_samples
                )
            ]
    best, best_bic = None, np.inf
    # Z is a numpy array whatever the caller's array-API setting: fit in numpy. The
    # mixture's linear algebra is on d x d matrices, where BLAS threads only add
    # contention (measured: 36 s instead of 0.4 s on a loaded 2-core machine).
    with config_context(array_api_dispatch=False), threadpool_limits(1, "blas"):
        for k in candidates:
            gmm = _SkGaussianMixture(
                n_components=k,
                covariance_type=covariance_type,
                reg_covar=reg_covar,
                random_state=random_state,
            ).fit(Z)
            bic = gmm.bic(Z) if len(candidates) > 1 else 0.0
            if bic < best_bic:
                best, best_bic = gmm, bic
    covariances = best.covariances_
    if covariance_type == "diag":
        covariances = np.stack([np.diag(c) for c in covariances])
    return GaussianMixtureDensity(best.weights_, best.means_, covariances)
