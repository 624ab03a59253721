"""The time loop of one layer in one direction, eager and TorchScript-compiled.

The input projection of every step arrives precomputed (`xw`, one matrix product per layer and
direction, done by the caller), so each step costs one `h @ W_hh^T` plus the gate arithmetic.
The steps come from `xw.unbind(0)`, which is cheaper than indexing `xw[t]` inside the loop.

`mask` (packed input only) is [T, B, 1], True where the step is a real one. A sequence's state
freezes after its last real step; in the reverse direction it stays at the initial state until
its own last real step, which is where torch starts it.
"""

import warnings

import torch
from torch import Tensor

from forecast.nn.cells import gru_step, lstm_step


def lstm_layer(
    xw: Tensor,
    h: Tensor,
    c: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    reverse: bool,
    mask: Tensor | None,
    packed_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """xw: [T, B, 4H]; h: [B, P]; c: [B, H]. Returns (output [T, B, P], h_T, c_T).

    packed_hh: `pack_weight(w_hh)`, only where no gradient is wanted (see `matmul_add`).
    """
    w_hh_t = w_hh.t()  # [P, 4H], a view: addmm reads it transposed without a copy
    w_hr_t: Tensor | None = None
    if w_hr is not None:
        w_hr_t = w_hr.t()  # [H, P]
    xs = xw.unbind(0)
    masks: list[Tensor] = []
    if mask is not None:
        masks = mask.unbind(0)
    steps = len(xs)
    outputs: list[Tensor] = []
    for i in range(steps):
        t = steps - 1 - i if reverse else i
        h_next, c_next = lstm_step(xs[t], h, c, w_hh_t, w_hr_t, packed_hh)
        if mask is None:
            h, c = h_next, c_next
        else:
            h = torch.where(masks[t], h_next, h)
            c = torch.where(masks[t], c_next, c)
        outputs.append(h)
    if reverse:
        outputs.reverse()
    return torch.stack(outputs), h, c


def gru_layer(
    xw: Tensor,
    h: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    reverse: bool,
    mask: Tensor | None,
    packed_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """xw: [T, B, 3H]; h: [B, H]. Returns (output [T, B, H], h_T). packed_hh: as for LSTM."""
    w_hh_t = w_hh.t()  # [H, 3H]
    bias = gru_bias(b_hh, w_hh, h.size(0), packed_hh is not None)
    xs = xw.unbind(0)
    masks: list[Tensor] = []
    if mask is not None:
        masks = mask.unbind(0)
    steps = len(xs)
    outputs: list[Tensor] = []
    for i in range(steps):
        t = steps - 1 - i if reverse else i
        h_next = gru_step(xs[t], h, w_hh_t, bias, packed_hh)
        if mask is None:
            h = h_next
        else:
            h = torch.where(masks[t], h_next, h)
        outputs.append(h)
    if reverse:
        outputs.reverse()
    return torch.stack(outputs), h


def gru_bias(b_hh: Tensor | None, w_hh: Tensor, batch: int, rows: bool) -> Tensor:
    """b_hh (zeros without bias) as the GRU step adds it: [3H], or [B, 3H] rows for oneDNN."""
    if b_hh is None:
        b_hh = torch.zeros(w_hh.size(0), dtype=w_hh.dtype, device=w_hh.device)
    if rows:
        return b_hh.expand(batch, b_hh.size(0)).contiguous()
    return b_hh


def _script(fn):
    """TorchScript `fn`, or return it unchanged where TorchScript is unavailable.

    TorchScript is deprecated in favour of torch.compile, but on CPU it is the fastest way we
    measured to run this loop without minutes of warm-up and a recompile per sequence length.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(fn)
    except Exception as error:  # any failure means: run eagerly
        warnings.warn(
            f"TorchScript unavailable ({error}); running {fn.__name__} eagerly", stacklevel=2
        )
        return fn


lstm_layer_scripted = _script(lstm_layer)
gru_layer_scripted = _script(gru_layer)
