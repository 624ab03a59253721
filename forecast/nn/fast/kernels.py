"""The C++ kernels (csrc/rnn.cpp) as torch functions: the LSTM and GRU layer loops with their
hand-written backward, and the parallel decoder's outer-product LSTM step.

torch has no fused LSTM or GRU step we can call with our own loop, and on CPU its elementwise
kernels cost a pass over memory and a dispatch each, ~8 per step; autograd through a step loop
records ~10 nodes per step and accumulates the weight gradients one step at a time. The C++
loops fuse a step's gate arithmetic into one pass; their backward is the same algorithm
autograd would run through the reference loop, one pass per step, with the weight gradients as
single matrix products. Callers check `fast.use_fast` first: these functions assume the kernels
are built.
"""

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from forecast.nn import fast
from forecast.nn.fast.onednn import pack_weight

LOW_PRECISION = (torch.bfloat16, torch.float16)


def _packed(weights: list[Tensor | None], batch: int) -> list[Tensor | None]:
    """oneDNN-packed copies of `weights` (None stays None), or all None where unavailable."""
    packed = [None if w is None else pack_weight(w, batch) for w in weights]
    if any(p is None for p, w in zip(packed, weights, strict=True) if w is not None):
        return [None] * len(weights)
    return packed


def _contiguous(*tensors: Tensor | None) -> list[Tensor | None]:
    return [None if t is None else t.contiguous() for t in tensors]


def _last(outputs: Tensor, reverse: bool) -> Tensor:
    # a copy: autograd.Function outputs must not be views of one another
    return (outputs[0] if reverse else outputs[-1]).clone()


def lstm_layer(
    xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, w_hr: Tensor | None, reverse: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """xw [T, B, 4H] (input projection, both biases), h0 [B, P], c0 [B, H] -> (output
    [T, B, P], h_T, c_T); a graph node only where a gradient is wanted."""
    args = (xw, h0, c0, w_hh, w_hr)
    if fast.wants_grad(list(args)):
        return LSTMLayer.apply(*args, reverse)
    xw, h0, c0, w_hh, w_hr = _contiguous(*args)
    outputs, c_last, *_ = fast.extension().lstm_forward(
        xw, h0, c0, w_hh, w_hr, reverse, False, *_packed([w_hh, w_hr], xw.size(1))
    )
    return outputs, _last(outputs, reverse), c_last


class LSTMLayer(torch.autograd.Function):
    """Training: (xw, h0, c0, w_hh, w_hr, reverse) -> (output [T, B, P], h_T, c_T)."""

    @staticmethod
    def forward(ctx, xw, h0, c0, w_hh, w_hr, reverse):
        xw, h0, c0, w_hh, w_hr = _contiguous(xw, h0, c0, w_hh, w_hr)
        outputs, c_last, act, cs, tanh_cs = fast.extension().lstm_forward(
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
        grads = fast.extension().lstm_backward(
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


def gru_layer(
    xw: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, reverse: bool
) -> tuple[Tensor, Tensor]:
    """xw [T, B, 3H] (input projection with `bias_ih`), h0 [B, H] -> (output [T, B, H], h_T);
    a graph node only where a gradient is wanted."""
    args = (xw, h0, w_hh, b_hh)
    if fast.wants_grad(list(args)):
        return GRULayer.apply(*args, reverse)
    xw, h0, w_hh, b_hh = _contiguous(*args)
    (packed,) = _packed([w_hh], xw.size(1))
    outputs = fast.extension().gru_forward(xw, h0, w_hh, b_hh, reverse, False, packed)[0]
    return outputs, _last(outputs, reverse)


class GRULayer(torch.autograd.Function):
    """Training: (xw, h0, w_hh, b_hh, reverse) -> (output [T, B, H], h_T)."""

    @staticmethod
    def forward(ctx, xw, h0, w_hh, b_hh, reverse):
        xw, h0, w_hh, b_hh = _contiguous(xw, h0, w_hh, b_hh)
        (packed,) = _packed([w_hh], xw.size(1))
        outputs, rz, n, hn = fast.extension().gru_forward(xw, h0, w_hh, b_hh, reverse, True, packed)
        ctx.save_for_backward(h0, outputs, rz, n, hn, w_hh)
        ctx.reverse, ctx.has_bias = reverse, b_hh is not None
        return outputs, _last(outputs, reverse)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h):
        h0, outputs, rz, n, hn, w_hh = ctx.saved_tensors
        d_out = torch.zeros_like(outputs) if d_out is None else d_out.contiguous()
        d_h = torch.zeros_like(h0) if d_h is None else d_h.contiguous()
        (packed_t,) = _packed([w_hh.t()], d_out.size(1))
        d_xw, d_h0, d_w_hh, d_b_hh = fast.extension().gru_backward(
            d_out, d_h, h0, outputs, rz, n, hn, w_hh, ctx.reverse, packed_t
        )
        return d_xw, d_h0, d_w_hh, d_b_hh if ctx.has_bias else None, None


def lstm_outer_step(hw: Tensor, xw: Tensor, c: Tensor) -> Tensor | None:
    """One LSTM step for every pair of B x G states and the M inputs of their group g:
    hw [B, G, 1, 4H] (h @ W_hh^T + b_hh), xw [G, M, 4H] (x @ W_ih^T + b_ih), c [B, G, 1, H]
    -> o * tanh(c') [B, G, M, H], without materialising the B x G x M pairs' gates. None where
    the shapes or tensors do not fit the kernel (the caller computes it with torch ops).

    bfloat16 / float16 operands (bf16-mixed training: autocast's products) are computed in
    float32 and the result returned in the dtype torch's ops would give: the gates of every pair
    in low precision, as torch ops compute them, took longer than the whole float32 kernel.
    """
    if hw.dim() != 4 or xw.dim() != 3 or c.dim() != 4:
        return None
    out_dtype = torch.promote_types(torch.promote_types(hw.dtype, xw.dtype), c.dtype)
    if out_dtype in (*LOW_PRECISION, torch.float32):
        hw, xw, c = (t.float() if t.dtype in LOW_PRECISION else t for t in (hw, xw, c))
    if fast._misfit([hw, xw, c], None) is not None:
        return None
    batch, groups, one, gates = hw.shape
    if (one, c.shape[2]) != (1, 1) or xw.shape[0] != groups or c.shape[:2] != hw.shape[:2]:
        return None
    if xw.shape[2] != gates or c.shape[3] * 4 != gates:
        return None
    hw, c = hw.reshape(batch * groups, gates), c.reshape(batch * groups, -1)
    if fast.wants_grad([hw, xw, c]):
        m = OuterLSTMStep.apply(hw, xw, c)
    else:  # inference: no autograd node
        m = fast.extension().lstm_outer_forward(*_contiguous(hw, xw, c))
    return m.view(batch, groups, xw.shape[1], -1).to(out_dtype)


class OuterLSTMStep(torch.autograd.Function):
    """(hw [U, 4H], xw [G, M, 4H], c [U, H]) -> m [U, M, H]; see `lstm_outer_step`."""

    @staticmethod
    def forward(ctx, hw, xw, c):
        hw, xw, c = _contiguous(hw, xw, c)
        ctx.save_for_backward(hw, xw, c)  # the backward computes the pairs' gates again
        return fast.extension().lstm_outer_forward(hw, xw, c)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_m):
        return tuple(fast.extension().lstm_outer_backward(d_m.contiguous(), *ctx.saved_tensors))
