"""Progress reporting for ``fit`` and ``sample``, driven by the ``verbose`` parameter.

``verbose=0`` reports nothing; ``verbose=1`` shows a progress bar (tqdm when it is
installed, else a one-line text bar on stderr); ``verbose>=2`` prints one line per
epoch (or per chunk of samples) to stdout. Reporting never reads a tensor: callers
pass numbers they already have on the host (the epoch loss is read once per epoch by
the training loop anyway), so no host synchronisation is added.
"""

from __future__ import annotations

import sys
import time

from torch import nn

from skebm.fast_gradient import ForwardingEnergy

__all__ = ["EpochProgress", "SamplingProgress"]


def _make_bar(*, total: int | None, desc: str, unit: str, delay: float):
    """A tqdm bar when tqdm is installed, else a :class:`_TextBar`."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total=total, desc=desc, unit=unit, delay=delay)
    return tqdm(total=total, desc=desc, unit=unit, delay=delay, dynamic_ncols=True)


class _TextBar:
    """A minimal stand-in for tqdm: ``desc: n/total unit [postfix]`` on stderr.

    The line is rewritten in place at most every ``interval`` seconds and ended
    with a newline by :meth:`close`. Nothing is written before ``delay`` seconds.
    """

    def __init__(self, *, total, desc, unit, delay=0.0, interval=0.2, file=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.postfix = ""
        self.file = sys.stderr if file is None else file
        self._start = time.perf_counter()
        self._delay, self._interval = delay, interval
        self._last = -float("inf")
        self._shown = False

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._start >= self._delay and now - self._last >= self._interval:
            self._draw(now)

    def _draw(self, now: float) -> None:
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        postfix = f", {self.postfix}" if self.postfix else ""
        elapsed = now - self._start
        self.file.write(f"\r{self.desc}: {count} {self.unit} [{elapsed:.1f}s{postfix}]")
        self.file.flush()
        self._last = now
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._draw(time.perf_counter())
            self.file.write("\n")
            self.file.flush()


class EpochProgress:
    """Report training epochs: a bar with the current loss, or a line per epoch.

    Parameters
    ----------
    name : str
        Prefix of the messages (the estimator's class name).
    n_epochs : int
        Epochs planned in this call.
    verbose : int
        ``0`` nothing, ``1`` a bar, ``>= 2`` a line per epoch.
    """

    def __init__(self, *, name: str, n_epochs: int, verbose: int):
        self.name = name
        self.verbose = int(verbose)
        self._bar = None
        if self.verbose == 1 and n_epochs > 0:
            self._bar = _make_bar(total=n_epochs, desc=name, unit="epoch", delay=0.0)

    def epoch_done(
        self, epoch: int, loss: float, seconds: float, score: float | None = None
    ) -> None:
        """Record one finished epoch: its number, mean loss, duration and, with
        early stopping, the held-out log-likelihood."""
        held_out = "" if score is None else f", held-out={score:.4f}"
        if self.verbose >= 2:
            print(
                f"[{self.name}] epoch {epoch}, loss={loss:.6f}{held_out}, "
                f"{seconds:.2f}s",
                flush=True,
            )
        elif self._bar is not None:
            self._bar.set_postfix_str(f"loss={loss:.4g}{held_out}", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _CountingEnergy(ForwardingEnergy):
    """The wrapped energy, ticking a progress bar on every evaluation.

    The sampler's cost is its number of energy (and gradient) evaluations, which
    only the energy sees for every sampler; counting happens on the host and reads
    no tensor. The fast paths go through to the energy's own (hand-written or
    compiled) kernels, so reporting never changes which kernels run.
    """

    def __init__(self, energy: nn.Module, bar):
        super().__init__(energy)
        self._bar = bar

    def forward(self, x):
        self._bar.update(1)
        return super().forward(x)

    def value_and_grad(self, x):
        self._bar.update(1)
        return super().value_and_grad(x)

    def langevin_update(self, x, noise, step, noise_scale):
        self._bar.update(1)
        return super().langevin_update(x, noise, step, noise_scale)


class SamplingProgress:
    """Report a ``sample`` call: a bar of energy evaluations, or a line per chunk.

    At ``verbose=1`` the bar appears only when the call lasts longer than
    ``delay`` seconds, so short calls stay silent.

    Parameters
    ----------
    name : str
        Prefix of the messages.
    n_chunks : int
        Chunks of chains the call runs one after the other.
    verbose : int
    delay : float, default=1.0
    """

    def __init__(self, *, name: str, n_chunks: int, verbose: int, delay: float = 1.0):
        self.name = name
        self.n_chunks = n_chunks
        self.verbose = int(verbose)
        self._bar = None
        self._chunk = 0
        self._evaluations = 0
        self._start = time.perf_counter()
        if self.verbose == 1:
            self._bar = _make_bar(
                total=None, desc=f"{name}.sample", unit="eval", delay=delay
            )
            self._bar.set_postfix_str(f"chunk 1/{n_chunks}", refresh=False)

    def wrap(self, energy: nn.Module) -> nn.Module:
        """The energy the sampler should use (``energy`` itself when silent)."""
        if self.verbose >= 2:
            return _CountingEnergy(energy, self)
        if self._bar is not None:
            return _CountingEnergy(energy, self._bar)
        return energy

    def update(self, n: int = 1) -> None:
        """Count energy evaluations (used by the wrapper at ``verbose >= 2``)."""
        self._evaluations += n

    def chunk_done(self, n_rows: int) -> None:
        """Record one finished chunk of ``n_rows`` chains."""
        self._chunk += 1
        if self.verbose >= 2:
            print(
                f"[{self.name}] sample chunk {self._chunk}/{self.n_chunks}: "
                f"{n_rows} rows, {self._evaluations} energy evaluations, "
                f"{time.perf_counter() - self._start:.2f}s",
                flush=True,
            )
            self._evaluations = 0
            self._start = time.perf_counter()
        elif self._bar is not None and self._chunk < self.n_chunks:
            self._bar.set_postfix_str(
                f"chunk {self._chunk + 1}/{self.n_chunks}", refresh=False
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> SamplingProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
