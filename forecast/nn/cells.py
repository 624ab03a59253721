"""One time step of an LSTM (optionally projected) and of a GRU, as pure functions.

Gate order and bias placement follow torch exactly (LSTM: i, f, g, o; GRU: r, z, n with `b_hn`
inside the reset product), so weights move between these functions and `nn.LSTM` / `nn.GRU`.

The `*_step` functions take the input projection `x @ W_ih^T + b` already computed: the layer
loop in `rnn.py` computes it for every time step in one matrix product and only the recurrent
product `h @ W_hh^T` is left inside the loop. The `*_cell` functions are the textbook form
(`x` in, state out) for users who step a cell by hand. Public torch ops only: this is the
reference that the fast path (forecast/nn/fast) is tested against.
"""

import torch
from torch import Tensor
from torch.nn import functional as F


def lstm_step(
    xw: Tensor,
    h: Tensor,
    c: Tensor,
    w_hh_t: Tensor,
    w_hr_t: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Advance an LSTM by one step.

    xw: [B, 4H] input projection plus both biases; h: [B, P] (P = proj_size or H); c: [B, H];
    w_hh_t: [P, 4H] (the transposed `weight_hh`); w_hr_t: [H, P] or None.
    """
    gates = torch.addmm(xw, h, w_hh_t)  # [B, 4H]
    return lstm_pointwise(gates, c, w_hr_t)


def lstm_pointwise(gates: Tensor, c: Tensor, w_hr_t: Tensor | None) -> tuple[Tensor, Tensor]:
    """The LSTM step after its matrix products: gates [..., 4H] (all four pre-activations,
    both biases included) and c [..., H], broadcast against each other; returns (h, c)."""
    i, f, g, o = gates.chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)  # [..., H]
    if w_hr_t is not None:
        h = torch.matmul(h, w_hr_t)  # [..., P]
    return h, c


def gru_step(xw: Tensor, h: Tensor, w_hh_t: Tensor, b_hh: Tensor) -> Tensor:
    """Advance a GRU by one step.

    xw: [B, 3H] input projection plus `bias_ih`; h: [B, H]; w_hh_t: [H, 3H]; b_hh: [3H] or
    [B, 3H] (zeros for bias=False). `b_hh` stays out of `xw` because its n part sits inside the
    reset product.
    """
    hw = torch.addmm(b_hh, h, w_hh_t)  # [B, 3H]
    return gru_pointwise(xw, hw, h)


def gru_pointwise(xw: Tensor, hw: Tensor, h: Tensor) -> Tensor:
    """The GRU step after its matrix products: xw [..., 3H] (with `bias_ih`), hw [..., 3H] (with
    `bias_hh`) and h [..., H], broadcast against each other; returns the new h."""
    x_r, x_z, x_n = xw.chunk(3, -1)
    h_r, h_z, h_n = hw.chunk(3, -1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    # (1 - z) * n + z * h, with one multiplication fewer
    return n + z * (h - n)


def lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step from the raw input x: [B, I]; returns (h [B, P], c [B, H])."""
    xw = F.linear(x, w_ih, b_ih)  # [B, 4H]
    if b_hh is not None:
        xw = xw + b_hh
    w_hr_t = None if w_hr is None else w_hr.t()
    return lstm_step(xw, h, c, w_hh.t(), w_hr_t)


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> Tensor:
    """One GRU step from the raw input x: [B, I]; returns h [B, H]."""
    if b_hh is None:
        b_hh = w_hh.new_zeros(w_hh.size(0))
    return gru_step(F.linear(x, w_ih, b_ih), h, w_hh.t(), b_hh)
