"""The held-out log-likelihood that early stopping watches during training.

For the model ``p(z) = q(z) exp(-E(z)) / Z`` the mean log-likelihood of held-out
rows is ``mean(log q - E) - log Z``. During training ``log Z`` is estimated by
importance sampling with draws fixed at the start, so the scores of two epochs
differ only through the energy (common random numbers): cheap enough to run after
every epoch, and accurate while the energy is a moderate correction of its base.
The draws come from the base with a share of a wide Gaussian mixed in
(:class:`~skebm.bases.DefensiveMixture`), so that mass the energy puts where the
base is tiny is counted. The same draws choose the strength of the trained energy
(:meth:`HeldOutLikelihood.best_scale`). The estimator's final ``log Z``
(quadrature, importance sampling from the base, or annealed importance sampling) is
estimated independently at the end of ``fit``.
"""

from __future__ import annotations

import torch
from torch import nn

from skebm.bases import DefensiveMixture

__all__ = ["HeldOutLikelihood"]

#: Rows evaluated at once, so memory stays bounded for large validation sets.
_CHUNK = 16384

#: Energy scales ``0, 1/40, ..., 1`` that :meth:`HeldOutLikelihood.best_scale` tries.
_SCALES = 41


class HeldOutLikelihood:
    """Mean log-likelihood of fixed held-out rows under a model with a fixed base.

    Parameters
    ----------
    base : BaseDensity
        The model's (normalised) base density ``q``.
    rows : Tensor of shape (n_rows, n_features)
        Held-out rows, standardised, on the training device.
    n_draws : int
        Base draws for the importance-sampling estimate of ``log Z``.
    generator : torch.Generator
        Makes the draws (once, when first needed).
    offset : float
        Added to every score: ``-sum(log scale_)`` turns a log-density of
        standardised rows into one in the user's units.
    """

    def __init__(
        self,
        base: nn.Module,
        rows: torch.Tensor,
        *,
        n_draws: int,
        generator: torch.Generator,
        offset: float = 0.0,
    ):
        with torch.no_grad():
            self.rows = rows
            self.log_base = torch.cat([base.log_prob(c) for c in rows.split(_CHUNK)])
        self.offset = offset
        self._proposal = DefensiveMixture(base)
        self._n_draws, self._generator = n_draws, generator
        self._draws = None

    @property
    def draws(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The draws of the ``log Z`` estimate and their ``log q - log proposal``,
        made on first use."""
        if self._draws is None:
            with torch.no_grad():
                draws = self._proposal.sample(self._n_draws, generator=self._generator)
                log_proposal, log_base = self._proposal.log_probs(draws)
                self._draws = (draws, (log_base - log_proposal).double())
        return self._draws

    @property
    def base_score(self) -> torch.Tensor:
        """The score of the base alone (``E = 0``)."""
        return self.log_base.double().mean() + self.offset

    def log_partition(self, energy: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The self-normalised importance-sampling ``log Z = log E_q[exp(-E)]``,
        ``log Σ w·exp(-E) - log Σ w`` over the draws with ``w = q / proposal``
        (exactly 0 for ``E = 0``), and the effective sample size of the weights
        ``w·exp(-E)`` as a fraction of the draws: when it is small, a few draws
        carry the estimate and mass the draws missed may be uncounted."""
        minus_energy, log_ratio = self._minus_energy_at_draws(energy)
        log_weights = minus_energy + log_ratio
        total = torch.logsumexp(log_weights, 0)
        ess = torch.exp(2 * total - torch.logsumexp(2 * log_weights, 0))
        return total - torch.logsumexp(log_ratio, 0), ess / log_weights.shape[0]

    def best_scale(self, energy: nn.Module) -> float:
        """The factor in ``[0, 1]`` that the energy's strength should have.

        Of the factors ``β = 0, 1/40, ..., 1``, the one whose model
        ``q·exp(-β·E) / Z_β`` scores best on the held-out rows, or 1 where it scores
        better than ``β = 1`` by no more than the standard error of that
        difference. ``β < 1`` shrinks an energy that learned more than the
        held-out rows support towards the base (``β = 0``); the smaller ``β``, the
        lighter the tail of the weights ``exp(-β·E)`` that importance sampling of
        ``log Z`` rests on.

        ``log Z_β`` comes from the same draws for every ``β``, and the held-out
        score ``-β·mean(E) - log Z_β`` is concave in ``β``. The standard error of
        the difference between ``β`` and 1 has two parts: the rows' scores differ
        by ``(1 - β)·E`` plus a constant, and ``log Z_β - log Z_1`` has the
        sampling variance of the draws (delta method).

        Parameters
        ----------
        energy : nn.Module
            The trained energy ``E``.

        Returns
        -------
        float
            The factor ``β``.
        """
        minus_energy, log_ratio = self._minus_energy_at_draws(energy)
        with torch.no_grad():
            learned = torch.cat([energy(c) for c in self.rows.split(_CHUNK)]).double()
        scales = torch.linspace(
            0.0, 1.0, _SCALES, dtype=torch.float64, device=minus_energy.device
        )
        log_weights = scales[:, None] * minus_energy + log_ratio
        log_partitions = torch.logsumexp(log_weights, 1) - torch.logsumexp(log_ratio, 0)
        scores = -scales * learned.mean() - log_partitions
        best = int(torch.argmax(scores))
        gain = float(scores[best] - scores[-1])
        factor = best / (_SCALES - 1)
        rows_variance = ((1 - factor) * learned.std()) ** 2 / learned.shape[0]
        # Each draw's share of Ẑ_β minus its share of Ẑ_1, times the number of
        # draws: log Ẑ_β - log Ẑ_1 varies as their variance over that number.
        n_draws = log_weights.shape[1]
        shares = torch.softmax(log_weights[[best, -1]], dim=1) * n_draws
        draws_variance = (shares[0] - shares[1]).var() / n_draws
        stderr = float(torch.sqrt(rows_variance + draws_variance))
        return factor if gain > stderr else 1.0

    def _minus_energy_at_draws(
        self, energy: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``-E`` at the draws and their ``log q - log proposal`` (float64)."""
        draws, log_ratio = self.draws
        with torch.no_grad():
            minus_energy = torch.cat([-energy(c) for c in draws.split(_CHUNK)])
        return minus_energy.double(), log_ratio

    def log_likelihoods(self, energy: nn.Module, log_partition) -> torch.Tensor:
        """Per-row log-likelihoods (float64) for a given ``log Z``."""
        with torch.no_grad():
            learned = torch.cat([energy(c) for c in self.rows.split(_CHUNK)])
            return (self.log_base - learned).double() - log_partition + self.offset

    def __call__(self, energy: nn.Module) -> torch.Tensor:
        """The mean held-out log-likelihood and the importance weights' effective
        sample size fraction, as a float64 tensor of shape (2,) on the device (no
        host synchronisation)."""
        log_partition, ess = self.log_partition(energy)
        score = self.log_likelihoods(energy, log_partition).mean()
        return torch.stack([score, ess])
