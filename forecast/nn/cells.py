"""One time step of an LSTM (optionally projected) and of a GRU, as pure functions.

Gate order and bias placement follow torch exactly (LSTM: i, f, g, o; GRU: r, z, n with `b_hn`
inside the reset product), so weights move between these functions and `nn.LSTM` / `nn.GRU`.

The `*_step` functions take the input projection `x @ W_ih^T + b` already computed: the layer
loop in `rnn.py` computes it for every time step in one matrix product and only the recurrent
product `h @ W_hh^T` is left inside the loop. The `*_cell` functions are the textbook form
(`x` in, state out) for users who step a cell by hand. All are TorchScript-compatible.
"""

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


def matmul_add(x: Tensor, other: Tensor, w_t: Tensor, packed: Tensor | None) -> Tensor:
    """other + x @ w_t, through oneDNN with a prepacked weight where `packed` is given.

    `packed` comes from `pack_weight(w_t.t())`. On CPUs where MKL's small GEMMs are slow
    (measured on AMD EPYC: 80 us against oneDNN's 43 us for [64, 128] @ [128, 512]) this halves
    the cost of the recurrent product, which dominates the loop. oneDNN's op has no autograd
    formula: pass `packed` only where no gradient flows through this product.
    """
    if packed is None:
        return torch.addmm(other, x, w_t)
    return torch.ops.mkldnn._linear_pointwise(x, other, packed, None, "add")


def lstm_step(
    xw: Tensor,
    h: Tensor,
    c: Tensor,
    w_hh_t: Tensor,
    w_hr_t: Tensor | None,
    packed_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Advance an LSTM by one step.

    xw: [B, 4H] input projection plus both biases; h: [B, P] (P = proj_size or H); c: [B, H];
    w_hh_t: [P, 4H] (the transposed `weight_hh`); w_hr_t: [H, P] or None; packed_hh: see
    `matmul_add`.
    """
    gates = matmul_add(h, xw, w_hh_t, packed_hh)  # [B, 4H]
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


def gru_step(
    xw: Tensor, h: Tensor, w_hh_t: Tensor, b_hh: Tensor, packed_hh: Tensor | None = None
) -> Tensor:
    """Advance a GRU by one step.

    xw: [B, 3H] input projection plus `bias_ih`; h: [B, H]; w_hh_t: [H, 3H]; b_hh: [3H] or
    [B, 3H] (zeros for bias=False). `b_hh` stays out of `xw` because its n part sits inside the
    reset product. packed_hh: see `matmul_add`.
    """
    hw = matmul_add(h, b_hh, w_hh_t, packed_hh)  # [B, 3H]
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


class InputProjection(torch.autograd.Function):
    """x [T, B, I] @ weight [G, I]^T + bias [G] -> [T, B, G]: the input projection of every
    step, as F.linear computes it, with a backward shaped for its long, thin matrices.

    Autograd's linear backward asks MKL for `d^T @ x` ([G, T*B] @ [T*B, I]); with I = 7 and
    T*B = 86,016 that took 317 ms here, against 48 ms for `(x^T @ d)^T` and 18 ms through
    oneDNN. Float32 on CPU goes through oneDNN (`onednn_linear`) both ways; the rest uses the
    better-shaped products.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        x2 = x.reshape(-1, x.size(-1))  # [T*B, I], a copy only if x is a transposed view
        onednn = onednn_fits(x2, weight)
        if onednn:
            out = onednn_linear(x2, weight.detach(), None if bias is None else bias.detach())
        else:
            out = F.linear(x2, weight, bias)
        ctx.save_for_backward(x2, weight)
        ctx.onednn, ctx.has_bias, ctx.shape = onednn, bias is not None, x.shape
        return out.view(*x.shape[:-1], weight.size(0))

    @staticmethod
    @once_differentiable  # oneDNN's products have no autograd formula of their own
    def backward(ctx, d):
        x2, weight = ctx.saved_tensors
        d2 = d.reshape(-1, d.size(-1))  # [T*B, G]
        d_x = d_w = d_b = None
        if ctx.needs_input_grad[0]:
            d_x = onednn_linear(d2, weight.t()) if ctx.onednn else d2.mm(weight)
            d_x = d_x.view(ctx.shape)
        if ctx.needs_input_grad[1]:
            if ctx.onednn:  # oneDNN is fastest with x^T laid out contiguously
                d_w = onednn_linear(x2.t().contiguous(), d2.t()).t()
            else:
                d_w = x2.t().mm(d2).t()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            d_b = d2.sum(0)
        return d_x, d_w, d_b


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight^T + bias through oneDNN (float32 CPU, `ONEDNN[0]`); no autograd formula."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], None)


def onednn_fits(*tensors: Tensor) -> bool:
    return ONEDNN[0] and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def wants_grad(tensors: list[Tensor | None]) -> bool:
    """True where autograd will want gradients of any of `tensors`."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def plain_ops_wanted() -> bool:
    """True while tracing, exporting or compiling: those need ordinary torch ops."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    )


def pack_weight(weight: Tensor, batch: int) -> Tensor | None:
    """`weight` [out, in] prepacked by oneDNN for `matmul_add`, or None where unavailable.

    Only float32 on CPU, and only where the private oneDNN ops exist and agree with addmm.
    """
    if not onednn_fits(weight):
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch)


def _onednn_works() -> bool:
    # a generator of its own: this runs at import, which must not move the global RNG (a run
    # seeded before its first import would otherwise differ from the same run seeded after)
    generator = torch.Generator().manual_seed(0)
    try:
        x, w, other = (torch.randn(*size, generator=generator) for size in [(3, 4), (5, 4), (3, 5)])
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 3)
        got = torch.ops.mkldnn._linear_pointwise(x, other, packed, None, "add")
        return bool(torch.allclose(got, torch.addmm(other, x, w.t()), atol=1e-5))
    except (AttributeError, RuntimeError):
        return False


# A one-element list so that tests and users can switch it off: ONEDNN[0] = False.
ONEDNN = [torch.backends.mkldnn.is_available() and _onednn_works()]
