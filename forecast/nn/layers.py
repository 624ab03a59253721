"""The time loop of one layer in one direction: the reference, in public torch ops.

Autograd differentiates it; tracing, torch.export and ONNX export see it as plain ops. The fast
path (forecast/nn/fast) replaces it where it applies and is tested against it.

The input projection of every step arrives precomputed (`xw`, one matrix product per layer and
direction, done by the caller), so each step costs one `h @ W_hh^T` plus the gate arithmetic.
The steps come from `xw.unbind(0)`, which is cheaper than indexing `xw[t]` inside the loop.

`mask` (packed input only) is [T, B, 1], True where the step is a real one. A sequence's state
freezes after its last real step; in the reverse direction it stays at the initial state until
its own last real step, which is where torch starts it.
"""

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
) -> tuple[Tensor, Tensor, Tensor]:
    """xw: [T, B, 4H]; h: [B, P]; c: [B, H]. Returns (output [T, B, P], h_T, c_T)."""
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
        h_next, c_next = lstm_step(xs[t], h, c, w_hh_t, w_hr_t)
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
) -> tuple[Tensor, Tensor]:
    """xw: [T, B, 3H]; h: [B, H]. Returns (output [T, B, H], h_T)."""
    w_hh_t = w_hh.t()  # [H, 3H]
    bias = w_hh.new_zeros(w_hh.size(0)) if b_hh is None else b_hh  # [3H]
    xs = xw.unbind(0)
    masks: list[Tensor] = []
    if mask is not None:
        masks = mask.unbind(0)
    steps = len(xs)
    outputs: list[Tensor] = []
    for i in range(steps):
        t = steps - 1 - i if reverse else i
        h_next = gru_step(xs[t], h, w_hh_t, bias)
        if mask is None:
            h = h_next
        else:
            h = torch.where(masks[t], h_next, h)
        outputs.append(h)
    if reverse:
        outputs.reverse()
    return torch.stack(outputs), h
