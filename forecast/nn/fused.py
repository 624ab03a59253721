"""The C++ LSTM kernels (csrc/lstm.cpp), compiled on first use, with a clean fallback.

torch has no fused LSTM step we can call with our own loop, and on CPU its elementwise kernels
cost a pass over memory and a dispatch each, ~8 per step. The C++ layer loop fuses a step's
gate arithmetic into one pass; `lstm_outer_step` does the same for the parallel decoder's step.
They are compiled with torch's JIT extension builder the first time an LSTM runs on a CPU
(about 20 s here, once per machine and torch version; cached in
`TORCH_EXTENSIONS_DIR`, by default ~/.cache/torch_extensions). Where that fails (no C++
compiler) the layer runs the TorchScript loops instead, with one warning; the results are the
same to rounding. `FORECAST_FUSED=0` switches it off (or `ENABLED[0] = False`, as the tests do).

Covered: unpacked float32/float64 input on CPU, inference and training (a hand-written
backward, like `manual_backward.py`'s). Packed input, other devices and dtypes, tracing and
export keep the torch-op loops.
"""

import hashlib
import logging
import os
import sys
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from forecast.nn.cells import pack_weight, wants_grad

SOURCE = Path(__file__).with_name("csrc") / "lstm.cpp"
DTYPES = (torch.float32, torch.float64)
LOW_PRECISION = (torch.bfloat16, torch.float16)
# compiler flags per CPU capability torch itself detected; the capability is part of the
# extension's name, so machines sharing one cache folder never load each other's build
_ARCH_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
_log = logging.getLogger(__name__)
_lock = threading.Lock()
# [module or None, tried]: a list so that tests can reset it
_STATE: list = [None, False]
ENABLED = [os.environ.get("FORECAST_FUSED", "1") != "0"]


def enabled() -> bool:
    return ENABLED[0]


def extension():
    """The compiled module, or None where it is switched off or cannot be built."""
    if not enabled():  # not remembered: switching it on later builds it then
        return None
    if _STATE[1]:
        return _STATE[0]
    with _lock:
        if not _STATE[1]:
            _STATE[0] = _build()
            _STATE[1] = True
    return _STATE[0]


def usable(*tensors: Tensor | None) -> bool:
    """True where the C++ loop can run these tensors: CPU, float32/64, one dtype, enabled."""
    present = [t for t in tensors if t is not None]
    dtype = present[0].dtype
    return (
        enabled()
        and dtype in DTYPES
        and all(t.device.type == "cpu" and t.dtype == dtype for t in present)
        and extension() is not None
    )


def _packed(weights: list[Tensor | None], batch: int) -> list[Tensor | None]:
    """oneDNN-packed copies of `weights` (None stays None), or all None where unavailable."""
    packed = [None if w is None else pack_weight(w, batch) for w in weights]
    if any(p is None for p, w in zip(packed, weights, strict=True) if w is not None):
        return [None] * len(weights)
    return packed


def _contiguous(*tensors: Tensor | None) -> list[Tensor | None]:
    return [None if t is None else t.contiguous() for t in tensors]


def lstm_layer(
    xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, w_hr: Tensor | None, reverse: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Inference: xw [T, B, 4H], h0 [B, P], c0 [B, H] -> (output [T, B, P], h_T, c_T)."""
    xw, h0, c0, w_hh, w_hr = _contiguous(xw, h0, c0, w_hh, w_hr)
    outputs, c_last, *_ = extension().lstm_forward(
        xw, h0, c0, w_hh, w_hr, reverse, False, *_packed([w_hh, w_hr], xw.size(1))
    )
    return outputs, _last(outputs, reverse), c_last


def _last(outputs: Tensor, reverse: bool) -> Tensor:
    # a copy: autograd.Function outputs must not be views of one another
    return (outputs[0] if reverse else outputs[-1]).clone()


class FusedLSTMLayer(torch.autograd.Function):
    """Training: (xw, h0, c0, w_hh, w_hr, reverse) -> (output [T, B, P], h_T, c_T)."""

    @staticmethod
    def forward(ctx, xw, h0, c0, w_hh, w_hr, reverse):
        xw, h0, c0, w_hh, w_hr = _contiguous(xw, h0, c0, w_hh, w_hr)
        outputs, c_last, act, cs, tanh_cs = extension().lstm_forward(
            xw, h0, c0, w_hh, w_hr, reverse, True, *_packed([w_hh, w_hr], xw.size(1))
        )
        ctx.save_for_backward(h0, c0, outputs, act, cs, tanh_cs, w_hh, w_hr)
        ctx.reverse = reverse
        return outputs, _last(outputs, reverse), c_last

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h, d_c):
        h0, c0, outputs, act, cs, tanh_cs, w_hh, w_hr = ctx.saved_tensors
        d_out = torch.zeros_like(outputs) if d_out is None else d_out.contiguous()
        d_h = torch.zeros_like(h0) if d_h is None else d_h.contiguous()
        d_c = torch.zeros_like(c0) if d_c is None else d_c.contiguous()
        transposed = [w_hh.t(), None if w_hr is None else w_hr.t()]
        grads = extension().lstm_backward(
            d_out,
            d_h,
            d_c,
            h0,
            c0,
            outputs,
            act,
            cs,
            tanh_cs,
            w_hh,
            w_hr,
            ctx.reverse,
            *_packed(transposed, d_out.size(1)),
        )
        return (*grads, None)


def lstm_outer_step(hw: Tensor, xw: Tensor, c: Tensor) -> Tensor | None:
    """One LSTM step for every pair of B x G states and the M inputs of their group g:
    hw [B, G, 1, 4H] (h @ W_hh^T + b_hh), xw [G, M, 4H] (x @ W_ih^T + b_ih), c [B, G, 1, H]
    -> o * tanh(c') [B, G, M, H], without materialising the B x G x M pairs' gates. None where
    the shapes or tensors do not fit the C++ kernel (the caller computes it with torch ops).

    bfloat16 / float16 operands (bf16-mixed training: autocast's products) are computed in
    float32 and the result returned in the dtype torch's ops would give: the gates of every pair
    in low precision, as torch ops compute them, took longer than the whole float32 kernel.
    """
    if hw.dim() != 4 or xw.dim() != 3 or c.dim() != 4 or hw.device.type != "cpu":
        return None
    out_dtype = torch.promote_types(torch.promote_types(hw.dtype, xw.dtype), c.dtype)
    if out_dtype in (*LOW_PRECISION, torch.float32):
        hw, xw, c = (t.float() if t.dtype in LOW_PRECISION else t for t in (hw, xw, c))
    if not usable(hw, xw, c):
        return None
    batch, groups, one, gates = hw.shape
    if (one, c.shape[2]) != (1, 1) or xw.shape[0] != groups or c.shape[:2] != hw.shape[:2]:
        return None
    if xw.shape[2] != gates or c.shape[3] * 4 != gates:
        return None
    hw, c = hw.reshape(batch * groups, gates), c.reshape(batch * groups, -1)
    if wants_grad([hw, xw, c]):
        m = OuterLSTMStep.apply(hw, xw, c)
    else:  # inference: no autograd node
        m = extension().lstm_outer_forward(*_contiguous(hw, xw, c))
    return m.view(batch, groups, xw.shape[1], -1).to(out_dtype)


class OuterLSTMStep(torch.autograd.Function):
    """(hw [U, 4H], xw [G, M, 4H], c [U, H]) -> m [U, M, H]; see `lstm_outer_step`."""

    @staticmethod
    def forward(ctx, hw, xw, c):
        hw, xw, c = _contiguous(hw, xw, c)
        ctx.save_for_backward(hw, xw, c)  # the backward computes the pairs' gates again
        return extension().lstm_outer_forward(hw, xw, c)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_m):
        return tuple(extension().lstm_outer_backward(d_m.contiguous(), *ctx.saved_tensors))


def _build():
    from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()
    # -fno-trapping-math: lets GCC vectorise the selects and floor of exp/tanh
    flags = ["-O3", "-fno-trapping-math", "-fopenmp", *_ARCH_FLAGS.get(capability, [])]
    # the name changes with the source, the flags and torch itself (a build is tied to the
    # torch it was compiled against, and environments may share one cache folder)
    stamp = " ".join([*flags, torch.__version__, sys.executable]).encode()
    digest = hashlib.sha256(SOURCE.read_bytes() + stamp).hexdigest()[:10]
    name = f"forecast_lstm_{capability.lower()}_{digest}"
    # torch runs `ninja` by name: make the one installed beside this Python findable
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    _log.info("compiling the C++ LSTM kernels (once per machine and torch version, ~20 s)")
    try:
        return cpp_extension.load(
            name, [str(SOURCE)], extra_cflags=flags, extra_ldflags=["-fopenmp"], verbose=False
        )
    except Exception as error:  # no compiler, no ninja, no headers: run the TorchScript loop
        warnings.warn(
            f"forecast: the C++ LSTM kernels could not be built ({_reason(error)}); "
            "LSTMs run the slower torch-op loops instead. Install a C++ compiler (g++) and "
            "ninja to get it, or set FORECAST_FUSED=0 to silence this.",
            stacklevel=3,
        )
        return None


def _reason(error: Exception) -> str:
    """The line of a build failure that says what went wrong: the compiler's first error, else
    a missing tool, else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for mark in ("error:", "not found", "error"):
        found = [line for line in lines if mark in line.lower()]
        if found:
            return found[0]
    return lines[0] if lines else type(error).__name__
