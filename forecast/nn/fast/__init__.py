"""The CPU fast path of forecast.nn, and the one place that decides whether it runs.

What it holds: the C++ kernels (csrc/rnn.cpp, built by `build.py`, called through
`kernels.py`: the LSTM and GRU layer loops with their hand-written backward, the parallel
decoder's outer-product step) and torch's private oneDNN ops (`onednn.py`, the only Python file
that calls them). Everything here computes what the reference in forecast.nn computes (`cells.py`,
`layers.py`), to rounding; the parity tests hold both against torch's modules.

The switch is a module's `backend`: "reference" never takes the fast path, "fast" insists on it
(an error where it cannot run), "auto" (the default) takes it where it applies: unpacked CPU
input in float32 or float64, the kernels built, and not while tracing, exporting or compiling
(those need ordinary torch ops). `FORECAST_NN_BACKEND` sets the default of new modules.
torch's own modules (`impl=torch`) never take it.
"""

from __future__ import annotations

import os
import threading

import torch
from torch import Tensor

from forecast.nn.fast import build

BACKENDS = ("auto", "fast", "reference")
ENV = "FORECAST_NN_BACKEND"
DTYPES = (torch.float32, torch.float64)
_lock = threading.Lock()
# [module or None, tried]: a list so that tests can reset it
_STATE: list = [None, False]


def default_backend() -> str:
    """The backend of a module built without one: $FORECAST_NN_BACKEND, else "auto"."""
    backend = os.environ.get(ENV) or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"{ENV} must be one of {BACKENDS}, got {backend!r}")
    return backend


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def extension():
    """The compiled kernels, or None where they cannot be had (said once, by a warning)."""
    if _STATE[1]:
        return _STATE[0]
    with _lock:
        if not _STATE[1]:
            try:
                _STATE[0] = build.load()
            except build.BuildError as error:
                build.warn_unavailable(error)
            _STATE[1] = True
    return _STATE[0]


def plain_ops_wanted() -> bool:
    """True while tracing, scripting, exporting or compiling: those need ordinary torch ops."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    )


def use_fast(
    backend: str, tensors: list[Tensor | None], mask: Tensor | None = None, compiled: bool = True
) -> bool:
    """The dispatch point: whether `backend` runs the fast path on these operands.

    `mask`: packed input's step mask (the fast path has none). `compiled`: the operation needs
    the C++ kernels (the oneDNN products alone do not).
    """
    if backend == "reference" or plain_ops_wanted():
        return False
    why = _misfit([t for t in tensors if t is not None], mask)
    if why is None and compiled and extension() is None:
        why = "the C++ kernels are unavailable"
    if why is not None and backend == "fast":
        raise RuntimeError(f"backend='fast' cannot run here: {why}; use backend='auto'")
    return why is None


def _misfit(tensors: list[Tensor], mask: Tensor | None) -> str | None:
    if mask is not None:
        return "packed input"
    if any(t.device.type != "cpu" for t in tensors):
        return "not a CPU tensor"
    dtype = tensors[0].dtype
    if dtype not in DTYPES or any(t.dtype != dtype for t in tensors):
        return f"dtypes {sorted({str(t.dtype) for t in tensors})} (float32 or float64 only)"
    return None


def wants_grad(tensors: list[Tensor | None]) -> bool:
    """True where autograd will want gradients of any of `tensors`."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
