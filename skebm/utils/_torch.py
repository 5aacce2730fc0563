"""Torch plumbing: devices, dtypes, generators, chunked inference, frozen parameters."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn

__all__ = [
    "INFERENCE_CHUNK",
    "autograd_value_and_grad",
    "available_devices",
    "evaluate_in_chunks",
    "frozen_parameters",
    "inference_chunk",
    "local_random_state",
    "make_generator",
    "new_seed",
    "resolve_device",
    "resolve_dtype",
    "seeded_construction",
    "seeded_global_rng",
]

#: Most rows per forward pass in ``score_samples``. Every chunk is zero-padded to
#: its size, so a row's value never depends on how many rows were passed with it.
INFERENCE_CHUNK = 1024

#: Bytes of one chunk's rows (float64) that set the chunk size of wide data.
_CHUNK_BYTES = 8 * 2**20


def inference_chunk(n_features: int) -> int:
    """Rows per chunk for ``n_features`` columns: :data:`INFERENCE_CHUNK`, or
    fewer (a power of two) when those rows would exceed 8 MiB. It depends on the
    number of features only, so results stay independent of the rows passed."""
    rows = _CHUNK_BYTES // (8 * max(1, n_features))
    if rows >= INFERENCE_CHUNK:
        return INFERENCE_CHUNK
    return 1 << max(0, int(rows).bit_length() - 1)


_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def autograd_value_and_grad(
    energy, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``energy(x)`` and its gradient in ``x`` by autograd, both detached.

    Only the input gradient is computed (a vector-Jacobian product with ones), never
    parameter gradients.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = energy(x)
        (grad,) = torch.autograd.grad(value, x, grad_outputs=torch.ones_like(value))
    return value.detach(), grad


def available_devices() -> list[str]:
    """Names of the devices torch can use in this process."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def resolve_device(spec: str) -> torch.device:
    """Turn the estimator's ``device`` parameter into a usable ``torch.device``.

    Parameters
    ----------
    spec : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``.

    Raises
    ------
    ValueError
        When the device is unknown or not available here; the message lists the
        devices that are.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"Unknown device {spec!r}. Available devices: "
            f"{', '.join(available_devices())} (or 'auto')."
        ) from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise ValueError(
                f"device={spec!r} was requested but {count} CUDA device(s) are "
                f"available. Available devices: {', '.join(available_devices())}. "
                "Use device='auto' to pick CUDA only when it is present."
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                "device='mps' was requested but MPS is not available. Available "
                f"devices: {', '.join(available_devices())}."
            )
    elif device.type != "cpu":
        raise ValueError(
            f"Unsupported device {spec!r}. Available devices: "
            f"{', '.join(available_devices())} (or 'auto')."
        )
    return device


def resolve_dtype(name: str) -> torch.dtype:
    """Map ``"float32"``/``"float64"`` to the torch dtype."""
    return _DTYPES[name]


def local_random_state(random_state) -> np.random.RandomState:
    """``check_random_state``, except that ``None`` gives a fresh ``RandomState``
    seeded from the operating system instead of numpy's global one, which is left
    untouched."""
    if random_state is None:
        entropy = np.random.SeedSequence().generate_state(1)[0]
        return np.random.RandomState(int(entropy))
    return check_random_state(random_state)


def new_seed(rng: np.random.RandomState) -> int:
    """Draw a seed for a torch generator from a numpy ``RandomState``."""
    return int(rng.randint(np.iinfo(np.int32).max))


def make_generator(device: torch.device, seed: int | None = None) -> torch.Generator:
    """A local generator on ``device``; seeded when ``seed`` is given.

    With ``seed=None`` the generator is seeded non-deterministically, still without
    touching torch's global random state.
    """
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


#: Held while torch's global generators are borrowed, so that skebm's fits in
#: concurrent threads never interleave their seeded sections.
_GLOBAL_RNG = threading.Lock()


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Borrow torch's global generator (the CPU one, plus ``device``'s when it is a
    CUDA device) seeded with ``seed``, and restore its state on exit.

    For code that draws from the global generator and cannot be given a local one
    (``nn.Linear``'s initialisation, ``torch.distributions``' ``sample``). Only the
    generators named are seeded (never every CUDA device, as ``torch.manual_seed``
    does), and a process-wide lock keeps concurrent fits from interleaving.
    """
    cuda = [device] if device is not None and device.type == "cuda" else []
    with _GLOBAL_RNG, torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(int(seed))
        for each in cuda:
            with torch.cuda.device(each):
                torch.cuda.manual_seed(int(seed))
        yield


def seeded_construction(seed: int) -> Iterator[None]:
    """Run module construction (on the CPU) with a fixed seed, leaving the global
    RNG as it was: ``nn.Linear`` and most user modules initialise their weights
    from torch's global generator. See :func:`seeded_global_rng`."""
    return seeded_global_rng(seed)


@contextlib.contextmanager
def frozen_parameters(*modules: nn.Module | None) -> Iterator[None]:
    """Turn off ``requires_grad`` on the modules' parameters, restoring it on exit.

    Used while sampling: the chains need gradients with respect to ``x`` only.
    """
    params = [
        p
        for module in modules
        if module is not None
        for p in module.parameters()
        if p.requires_grad
    ]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def evaluate_in_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor],
    Z: np.ndarray,
    *,
    device: torch.device,
    dtype: torch.dtype,
    chunk: int | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Apply ``fn`` row-wise to ``Z`` in fixed-size, zero-padded chunks.

    Every call of ``fn`` sees exactly ``chunk`` rows (by default
    :func:`inference_chunk` of the number of columns), so the result for one row
    is bit-identical whatever rows are evaluated with it (the same GEMM shapes run
    every time). ``transform`` (e.g. standardisation) is applied to each chunk of ``Z``
    before it is evaluated. Memory beyond the output is bounded by one chunk.

    Returns
    -------
    values : ndarray of shape (n_rows,), float64
    """
    n_rows, n_features = Z.shape
    chunk = inference_chunk(n_features) if chunk is None else chunk
    out = np.empty(n_rows, dtype=np.float64)
    buffer = torch.zeros((chunk, n_features), device=device, dtype=dtype)
    with torch.no_grad():
        for start in range(0, n_rows, chunk):
            stop = min(start + chunk, n_rows)
            buffer.zero_()
            rows = Z[start:stop] if transform is None else transform(Z[start:stop])
            buffer[: stop - start] = torch.as_tensor(rows, dtype=dtype).to(device)
            values = fn(buffer)[: stop - start]
            out[start:stop] = values.to("cpu", torch.float64).numpy()
    return out
