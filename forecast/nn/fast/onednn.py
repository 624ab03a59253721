"""Every call of torch's private oneDNN ops (`torch.ops.mkldnn`) lives here.

On CPUs where MKL's small GEMMs are slow (measured on AMD EPYC: 80 us against oneDNN's 43 us for
[64, 128] @ [128, 512]) oneDNN's linear with a weight prepacked once per call halves the cost
of the recurrent product. The ops are private: `AVAILABLE` probes them once at import (float32
on CPU, agreeing with addmm); where a torch release drops or changes them, everything here
falls back to the public ops. The probe runs on first use, so that code which never takes the
fast path (torch's modules, `impl=torch`) never calls a private op. None of them has an
autograd formula: callers use them where no gradient flows through them, or inside an
autograd.Function of their own.
"""

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight^T + bias through oneDNN (float32 CPU); no autograd formula."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], None)


def fits(*tensors: Tensor) -> bool:
    """True where oneDNN's float32 products can take these tensors."""
    if AVAILABLE[0] is None:
        AVAILABLE[0] = _works()
    return AVAILABLE[0] and all(
        t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors
    )


def pack_weight(weight: Tensor, batch: int) -> Tensor | None:
    """`weight` [out, in] prepacked by oneDNN for `matmul_add` (None where it does not fit)."""
    if not fits(weight):
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch)


def matmul_add(x: Tensor, other: Tensor, w_t: Tensor, packed: Tensor | None) -> Tensor:
    """other + x @ w_t, through oneDNN with a prepacked weight where `packed` is given
    (`pack_weight(w_t.t())`); no autograd formula when it is."""
    if packed is None:
        return torch.addmm(other, x, w_t)
    return torch.ops.mkldnn._linear_pointwise(x, other, packed, None, "add")


class InputProjection(torch.autograd.Function):
    """x [..., I] @ weight [G, I]^T + bias [G] -> [..., G]: F.linear, with a backward shaped
    for long, thin matrices (the input projection of every step, the decoder's state product).

    Autograd's linear backward asks MKL for `d^T @ x` ([G, T*B] @ [T*B, I]); with I = 7 and
    T*B = 86,016 that took 317 ms here, against 48 ms for `(x^T @ d)^T` and 18 ms through
    oneDNN. Float32 on CPU goes through oneDNN both ways; the rest uses the better-shaped
    products.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        x2 = x.reshape(-1, x.size(-1))  # [N, I], a copy only if x is a transposed view
        onednn = fits(x2, weight)
        if onednn:
            out = linear(x2, weight.detach(), None if bias is None else bias.detach())
        else:
            out = F.linear(x2, weight, bias)
        ctx.save_for_backward(x2, weight)
        ctx.onednn, ctx.has_bias, ctx.shape = onednn, bias is not None, x.shape
        return out.view(*x.shape[:-1], weight.size(0))

    @staticmethod
    @once_differentiable
    def backward(ctx, d):
        x2, weight = ctx.saved_tensors
        d2 = d.reshape(-1, d.size(-1))  # [N, G]
        d_x = d_w = d_b = None
        if ctx.needs_input_grad[0]:
            d_x = linear(d2, weight.t()) if ctx.onednn else d2.mm(weight)
            d_x = d_x.view(ctx.shape)
        if ctx.needs_input_grad[1]:
            if ctx.onednn:  # oneDNN is fastest with x^T laid out contiguously
                d_w = linear(x2.t().contiguous(), d2.t()).t()
            else:
                d_w = x2.t().mm(d2).t()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            d_b = d2.sum(0)
        return d_x, d_w, d_b


def _works() -> bool:
    # a generator of its own: this runs at import, which must not move the global RNG (a run
    # seeded before its first import would otherwise differ from the same run seeded after)
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    try:
        x, w, other = (torch.randn(*size, generator=generator) for size in [(3, 4), (5, 4), (3, 5)])
        packed = torch.ops.mkldnn._reorder_linear_weight(w, 3)
        got = torch.ops.mkldnn._linear_pointwise(x, other, packed, None, "add")
        return bool(torch.allclose(got, torch.addmm(other, x, w.t()), atol=1e-5))
    except (AttributeError, RuntimeError):
        return False


# [None] until probed; a list so that the tests can run both ways ([False]: the public ops)
AVAILABLE: list[bool | None] = [None]
