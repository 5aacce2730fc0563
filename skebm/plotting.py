"""Plots of fitted densities, samples, training curves and MCMC chains.

matplotlib is an optional dependency (``pip install "skebm[examples]"``); this
module imports without it and raises an ImportError naming the extra when a
plotting function is called. Every function draws on the axes it is given (or on
new ones) and returns them, so plots compose with the rest of a matplotlib figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "chain_autocorrelation",
    "density_grid",
    "plot_chains",
    "plot_density",
    "plot_loss_curve",
    "plot_samples",
    "plot_validation_curve",
]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "skebm.plotting needs matplotlib, which is not installed: "
            'pip install "skebm[examples]" (or pip install matplotlib).'
        ) from exc
    return plt


def _axes(ax):
    return _pyplot().subplots()[1] if ax is None else ax


def _bounds(estimator, X, bounds, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The plotting box: given, else around ``X``, else ``mean_ ± 4 scale_``."""
    if bounds is not None:
        low, high = (np.asarray(b, dtype=np.float64) for b in bounds)
        return np.atleast_1d(low), np.atleast_1d(high)
    if X is not None:
        X = np.asarray(X, dtype=np.float64)
        low, high = X.min(axis=0), X.max(axis=0)
        pad = margin * np.maximum(high - low, 1e-12)
        return low - pad, high + pad
    if hasattr(estimator, "mean_") and hasattr(estimator, "scale_"):
        return (
            estimator.mean_ - 4 * estimator.scale_,
            estimator.mean_ + 4 * estimator.scale_,
        )
    raise ValueError(
        "plot_density needs the region to draw: pass X (the data) or "
        "bounds=(low, high)."
    )


def density_grid(estimator, low, high, grid_size: int = 200):
    """Evaluate ``exp(score_samples)`` of a 1-D or 2-D density on a regular grid.

    Parameters
    ----------
    estimator : fitted density estimator
        Anything with ``score_samples`` returning log-densities.
    low, high : array-like of shape (n_features,)
        Corners of the box.
    grid_size : int, default=200
        Points per axis.

    Returns
    -------
    axes : list of ndarray
        The grid points of each axis.
    density : ndarray of shape (grid_size,) or (grid_size, grid_size)
        For 2-D, ``density[i, j]`` is at ``(axes[0][j], axes[1][i])``, the layout
        of ``matplotlib``'s ``contourf(x, y, density)``.
    """
    low, high = np.atleast_1d(low), np.atleast_1d(high)
    axes = [np.linspace(lo, hi, grid_size) for lo, hi in zip(low, high)]
    if len(axes) == 1:
        return axes, np.exp(estimator.score_samples(axes[0][:, None]))
    xx, yy = np.meshgrid(*axes)
    points = np.column_stack([xx.ravel(), yy.ravel()])
    return axes, np.exp(estimator.score_samples(points)).reshape(xx.shape)


def plot_density(
    estimator,
    X=None,
    *,
    ax=None,
    bounds=None,
    grid_size: int = 200,
    margin: float = 0.1,
    levels: int = 30,
    cmap: str = "viridis",
    n_samples: int = 2000,
    random_state=0,
):
    """Draw a fitted density: a curve (1-D), filled contours (2-D), or a pair plot.

    In 1-D and 2-D the exact normalised density ``exp(score_samples)`` is drawn on
    a grid. In more dimensions marginals have no closed form, so a pair plot of
    ``n_samples`` rows drawn by ``estimator.sample`` shows them: 2-D histograms
    below the diagonal, 1-D histograms on it (against ``X``'s when given) and
    ``X`` itself above it.

    Parameters
    ----------
    estimator : fitted density estimator
        Needs ``score_samples`` (and ``sample`` when ``n_features > 2``).
    X : array-like of shape (n_samples, n_features), default=None
        The data: sets the plotted region, and is drawn as a histogram in 1-D
        and as points and histograms in a pair plot.
    ax : matplotlib Axes or ndarray of Axes, default=None
        Where to draw: one Axes in 1-D and 2-D, an ``(n_features, n_features)``
        array for a pair plot. ``None`` creates a figure.
    bounds : (low, high), default=None
        The region drawn in 1-D and 2-D; ``None`` takes the range of ``X``
        widened by ``margin``, or ``mean_ ± 4·scale_`` of a skebm estimator.
    grid_size : int, default=200
        Grid points per axis.
    margin : float, default=0.1
        Widening of ``X``'s range, as a fraction of it.
    levels : int, default=30
        Contour levels (2-D).
    cmap : str, default="viridis"
    n_samples : int, default=2000
        Rows drawn for a pair plot.
    random_state : int or None, default=0
        Seed of the pair plot's ``sample`` call.

    Returns
    -------
    ax : Axes, or ndarray of shape (n_features, n_features) of Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.neighbors import KernelDensity
    >>> from skebm.datasets import make_two_moons
    >>> from skebm.plotting import plot_density
    >>> X = make_two_moons(200, random_state=0)
    >>> ax = plot_density(KernelDensity(bandwidth=0.2).fit(X), X, grid_size=50)
    """
    n_features = _n_features(estimator, X)
    if n_features > 2:
        return _pair_plot(estimator, X, ax, n_samples, random_state, cmap)
    low, high = _bounds(estimator, X, bounds, margin)
    axes_points, density = density_grid(estimator, low, high, grid_size)
    ax = _axes(ax)
    if n_features == 1:
        if X is not None:
            ax.hist(np.ravel(X), bins=50, density=True, color="0.8", label="data")
        ax.plot(axes_points[0], density, color="tab:blue", label="density")
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        return ax
    contours = ax.contourf(*axes_points, density, levels=levels, cmap=cmap)
    ax.figure.colorbar(contours, ax=ax, label="density")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return ax


def _n_features(estimator, X) -> int:
    if hasattr(estimator, "n_features_in_"):
        return int(estimator.n_features_in_)
    if X is not None:
        return int(np.asarray(X).shape[1])
    raise ValueError("Cannot tell the number of features: pass X.")


def _pair_plot(estimator, X, ax, n_samples, random_state, cmap):
    plt = _pyplot()
    samples = estimator.sample(n_samples, random_state=random_state)
    d = samples.shape[1]
    if ax is None:
        _, ax = plt.subplots(d, d, figsize=(2.2 * d, 2.2 * d), squeeze=False)
    ax = np.asarray(ax)
    if ax.shape != (d, d):
        raise ValueError(f"A pair plot of {d} features needs ({d}, {d}) axes.")
    data = None if X is None else np.asarray(X, dtype=np.float64)
    both = samples if data is None else np.vstack([samples, data])
    edges = [np.histogram_bin_edges(both[:, j], bins=30) for j in range(d)]
    for i in range(d):
        for j in range(d):
            a = ax[i, j]
            if i == j:
                a.hist(samples[:, j], bins=edges[j], density=True, alpha=0.6)
                if data is not None:
                    a.hist(
                        data[:, j],
                        bins=edges[j],
                        density=True,
                        histtype="step",
                        color="black",
                    )
            elif i > j:
                a.hist2d(
                    samples[:, j], samples[:, i], bins=[edges[j], edges[i]], cmap=cmap
                )
            elif data is not None:
                a.scatter(data[:, j], data[:, i], s=1, color="black", alpha=0.3)
            else:
                a.axis("off")
            if i == d - 1:
                a.set_xlabel(f"$x_{{{j + 1}}}$")
            if j == 0 and i > 0:
                a.set_ylabel(f"$x_{{{i + 1}}}$")
    return ax


def plot_samples(samples, X=None, *, ax=None, features: Sequence[int] = (0, 1)):
    """Scatter sampled rows (orange) over the data (grey).

    Parameters
    ----------
    samples : array-like of shape (n_samples, n_features)
        E.g. the output of ``estimator.sample``.
    X : array-like of shape (n_rows, n_features), default=None
        Data drawn underneath, for comparison.
    ax : matplotlib Axes, default=None
    features : pair of int, default=(0, 1)
        The two columns shown; 1-D inputs are drawn as histograms.

    Returns
    -------
    ax : Axes
    """
    ax = _axes(ax)
    samples = np.asarray(samples, dtype=np.float64)
    data = None if X is None else np.asarray(X, dtype=np.float64)
    if samples.ndim == 1 or samples.shape[1] == 1:
        bins = np.histogram_bin_edges(
            samples.ravel() if data is None else np.r_[samples.ravel(), data.ravel()],
            bins=50,
        )
        if data is not None:
            ax.hist(data.ravel(), bins=bins, density=True, color="0.7", label="data")
        ax.hist(samples.ravel(), bins=bins, density=True, alpha=0.6, label="samples")
        ax.legend()
        return ax
    i, j = features
    if data is not None:
        ax.scatter(data[:, i], data[:, j], s=2, color="0.6", alpha=0.5, label="data")
    ax.scatter(
        samples[:, i],
        samples[:, j],
        s=2,
        color="tab:orange",
        alpha=0.6,
        label="samples",
    )
    ax.set_xlabel(f"$x_{{{i + 1}}}$")
    ax.set_ylabel(f"$x_{{{j + 1}}}$")
    ax.legend(markerscale=4, loc="best")
    return ax


def plot_loss_curve(estimator_or_losses, *, ax=None, label=None):
    """Training loss per epoch (``loss_curve_`` of a fitted estimator).

    Parameters
    ----------
    estimator_or_losses : fitted estimator or sequence of float
    ax : matplotlib Axes, default=None
    label : str, default=None
        Legend label of the curve.

    Returns
    -------
    ax : Axes
    """
    losses = getattr(estimator_or_losses, "loss_curve_", estimator_or_losses)
    losses = np.asarray(losses, dtype=np.float64)
    ax = _axes(ax)
    ax.plot(np.arange(1, len(losses) + 1), losses, label=label)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    if label is not None:
        ax.legend()
    return ax


def plot_validation_curve(estimator, *, ax=None, label=None):
    """Held-out log-likelihood per epoch, next to the base density's.

    Draws ``validation_scores_`` of an estimator fitted with early stopping (epoch
    0 is the untrained model, i.e. its base), marks the epoch that was kept, and
    draws the base's score as a horizontal line: the gap is what the energy
    learned.

    Parameters
    ----------
    estimator : fitted EnergyDensityEstimator
        Fitted with ``early_stopping=True`` (the default) on enough rows to hold
        some out.
    ax : matplotlib Axes, default=None
    label : str, default=None
        Legend label of the curve (default: the base's name).

    Returns
    -------
    ax : Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skebm import EnergyDensityEstimator
    >>> from skebm.datasets import make_rings
    >>> from skebm.plotting import plot_validation_curve
    >>> est = EnergyDensityEstimator(max_iter=3, random_state=0).fit(make_rings(300))
    >>> ax = plot_validation_curve(est)
    """
    scores = getattr(estimator, "validation_scores_", None)
    if scores is None:
        raise ValueError(
            "The estimator has no validation_scores_: fit it with early_stopping=True "
            "(the default) on enough rows to hold some out."
        )
    scores = np.asarray(scores, dtype=np.float64)
    ax = _axes(ax)
    epochs = np.arange(len(scores))
    label = label or f"base {estimator.base_kind_!r} + energy"
    ax.plot(epochs, scores, label=label)
    best = int(np.argmax(scores))
    ax.plot([best], [scores[best]], "o", color=ax.lines[-1].get_color())
    ax.axhline(
        estimator.base_validation_score_,
        color="grey",
        linestyle="--",
        label="base alone",
    )
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out log-likelihood")
    ax.legend()
    return ax


def chain_autocorrelation(chains, max_lag: int = 50) -> np.ndarray:
    """Autocorrelation of MCMC chains, averaged over chains.

    Each chain is centred on its own mean; the lag-``k`` autocovariance
    ``1/n Σ_t (x_t - x̄)(x_{t+k} - x̄)`` is divided by the lag-0 one and the
    ratios are averaged over the chains.

    Parameters
    ----------
    chains : array-like of shape (n_steps,) or (n_steps, n_chains)
        One scalar per step and chain (pick a feature of a multivariate trace).
    max_lag : int, default=50

    Returns
    -------
    acf : ndarray of shape (min(max_lag, n_steps - 1) + 1,)
        ``acf[0] == 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from skebm.plotting import chain_autocorrelation
    >>> rng = np.random.RandomState(0)
    >>> chain = np.cumsum(rng.normal(size=(1000, 4)), axis=0)  # a random walk
    >>> acf = chain_autocorrelation(chain, max_lag=5)
    >>> bool(acf[0] == 1.0 and acf[5] > 0.8)
    True
    """
    x = np.asarray(chains, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(
            "chains must have shape (n_steps,) or (n_steps, n_chains) with at "
            f"least 2 steps, got {x.shape}."
        )
    n = x.shape[0]
    x = x - x.mean(axis=0)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, n=size, axis=0)
    autocov = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[:n] / n
    lags = min(int(max_lag), n - 1) + 1
    variance = autocov[0]
    valid = variance > 0
    if not valid.any():
        raise ValueError("Every chain is constant: the autocorrelation is undefined.")
    return (autocov[:lags, valid] / variance[valid]).mean(axis=1)


def plot_chains(
    chains,
    *,
    axes=None,
    feature: int = 0,
    max_lag: int = 50,
    n_shown: int = 5,
    label: str | None = None,
):
    """Trace plot and autocorrelation of MCMC chains.

    Parameters
    ----------
    chains : array-like of shape (n_steps, n_chains, n_features)
        The states of every chain at every recorded step; ``(n_steps, n_chains)``
        and ``(n_steps,)`` are read as one feature.
    axes : pair of matplotlib Axes, default=None
        Where to draw the trace and the autocorrelation; ``None`` creates them.
    feature : int, default=0
        The coordinate shown, for 3-D input.
    max_lag : int, default=50
    n_shown : int, default=5
        Chains drawn in the trace plot (the autocorrelation uses all).
    label : str, default=None
        Legend label of the autocorrelation curve, to compare samplers on
        shared axes.

    Returns
    -------
    axes : ndarray of shape (2,) of Axes
    """
    x = np.asarray(chains, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, :, feature]
    if x.ndim == 1:
        x = x[:, None]
    if axes is None:
        _, axes = _pyplot().subplots(1, 2, figsize=(10, 3))
    axes = np.asarray(axes)
    trace, acf_ax = axes
    steps = np.arange(x.shape[0])
    for c in range(min(n_shown, x.shape[1])):
        trace.plot(steps, x[:, c], linewidth=0.7)
    trace.set_xlabel("step")
    trace.set_ylabel(f"$x_{{{feature + 1}}}$")
    acf = chain_autocorrelation(x, max_lag)
    acf_ax.plot(np.arange(len(acf)), acf, marker=".", label=label)
    acf_ax.axhline(0.0, color="0.5", linewidth=0.7)
    acf_ax.set_xlabel("lag")
    acf_ax.set_ylabel("autocorrelation")
    if label is not None:
        acf_ax.legend()
    return axes
