"""The GRU's fast path: its layer loop with a hand-written backward, in torch ops.

Autograd through a step loop records ~10 nodes per step and replays them one by one, and it
accumulates the weight gradients one step at a time. Here the forward saves the gate
activations; the backward computes its gate factors for all steps at once, then runs one
reverse loop of a handful of elementwise kernels plus `d_hw @ W_hh`, and the weight gradients
are single matrix products over all steps. The recurrent product goes through oneDNN with a
prepacked weight where it can (onednn.py).

The loops are compiled with TorchScript on first use (no C++ compiler needed): the fastest way we
measured to run them without an interpreter between steps. TorchScript is deprecated in torch;
it is confined to this file, compiled only when a GRU of ours takes the fast path (never for
torch's modules, nor while exporting), and its warning is not shown.
"""

import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from forecast.nn.fast.onednn import matmul_add, pack_weight


def gru_bias(b_hh: Tensor | None, w_hh: Tensor, batch: int, rows: bool) -> Tensor:
    """b_hh (zeros without bias) as the step adds it: [3H], or [B, 3H] rows for oneDNN."""
    if b_hh is None:
        b_hh = torch.zeros(w_hh.size(0), dtype=w_hh.dtype, device=w_hh.device)
    if rows:
        return b_hh.expand(batch, b_hh.size(0)).contiguous()
    return b_hh


def _previous(states: Tensor, first: Tensor, reverse: bool) -> Tensor:
    """The state each step started from, in time order: [T, B, F] from outputs [T, B, F]."""
    if reverse:
        return torch.cat([states[1:], first.unsqueeze(0)])
    return torch.cat([first.unsqueeze(0), states[:-1]])


def gru_forward(
    xw: Tensor,
    h: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    reverse: bool,
    packed_hh: Tensor | None,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns (outputs [T, B, H], r|z [T, B, 2H], n [T, B, H], (h W_hn^T + b_hn) [T, B, H]);
    without `save` the last three are one step's scratch. packed_hh: `pack_weight(w_hh)`."""
    hidden = h.size(1)
    w_hh_t = w_hh.t()
    bias = gru_bias(b_hh, w_hh, h.size(0), packed_hh is not None)
    xs = xw.unbind(0)
    steps = len(xs)
    saved = steps if save else 1
    # preallocated buffers, filled with out=: stacking lists would copy megabytes per layer
    outputs = xw.new_empty(steps, h.size(0), hidden)  # [T, B, H]
    rzs = xw.new_empty(saved, h.size(0), 2 * hidden)  # [T, B, 2H]
    ns = xw.new_empty(saved, h.size(0), hidden)
    h_ns = xw.new_empty(saved, h.size(0), hidden)
    out_rows, rz_rows = outputs.unbind(0), rzs.unbind(0)
    n_rows, h_n_rows = ns.unbind(0), h_ns.unbind(0)
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        slot = t if save else 0
        hw = matmul_add(h, bias, w_hh_t, packed_hh)  # [B, 3H]
        x_t = xs[t]
        rz = torch.sigmoid(x_t[:, : 2 * hidden] + hw[:, : 2 * hidden], out=rz_rows[slot])
        h_n = h_n_rows[slot].copy_(hw[:, 2 * hidden :])
        n = torch.tanh(torch.addcmul(x_t[:, 2 * hidden :], rz[:, :hidden], h_n), out=n_rows[slot])
        h = torch.lerp(n, h, rz[:, hidden:], out=out_rows[t])  # (1 - z) * n + z * h
    return outputs, rzs, ns, h_ns


def gru_backward(
    d_out: Tensor,
    d_h: Tensor,
    h0: Tensor,
    outputs: Tensor,
    rz: Tensor,
    n: Tensor,
    h_n: Tensor,
    w_hh: Tensor,
    reverse: bool,
    packed_hh_t: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients (xw, h0, W_hh, b_hh) from those of (outputs, h_T); packed_hh_t:
    `pack_weight(w_hh.t())` or None."""
    r, z = rz.chunk(2, 2)  # [T, B, H] each
    h_prev = _previous(outputs, h0, reverse)
    # d(n pre-activation) = dh * k_n; d(hw) = [dn_pre, dh, dn_pre] * [k_r, k_z, r]
    k_n = (1 - z) * (1 - n * n)
    k_hw = torch.cat([h_n * r * (1 - r), (h_prev - n) * z * (1 - z), r], 2)  # [T, B, 3H]
    d_outs, k_ns, k_hws, zs = d_out.unbind(0), k_n.unbind(0), k_hw.unbind(0), z.unbind(0)
    steps = len(d_outs)
    d_hws: list[Tensor] = []
    d_ns: list[Tensor] = []
    for k in range(steps):
        t = k if reverse else steps - 1 - k
        d_h = d_outs[t] + d_h  # [B, H]
        d_n = d_h * k_ns[t]
        d_hw = torch.cat([d_n, d_h, d_n], 1) * k_hws[t]  # [B, 3H]
        d_hws.append(d_hw)
        d_ns.append(d_n)
        d_h = matmul_add(d_hw, d_h * zs[t], w_hh, packed_hh_t)
    if not reverse:  # collected last step first: put them in time order
        d_hws.reverse()
        d_ns.reverse()
    d_hw_all = torch.stack(d_hws)  # [T, B, 3H]
    hidden = h0.size(1)
    d_xw = torch.cat([d_hw_all[:, :, : 2 * hidden], torch.stack(d_ns)], 2)
    d_w_hh = d_hw_all.flatten(0, 1).t().mm(h_prev.flatten(0, 1))  # [3H, H]
    return d_xw, d_h, d_w_hh, d_hw_all.sum((0, 1))


_SCRIPTED: dict = {}


def _scripted(fn):
    """`fn` compiled by TorchScript, once; `fn` itself where TorchScript is unavailable."""
    if fn.__name__ not in _SCRIPTED:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                _SCRIPTED[fn.__name__] = torch.jit.script(fn)
        except Exception as error:  # any failure means: run eagerly
            warnings.warn(
                f"TorchScript unavailable ({error}); running {fn.__name__} eagerly", stacklevel=2
            )
            _SCRIPTED[fn.__name__] = fn
    return _SCRIPTED[fn.__name__]


def _last(states: Tensor, reverse: bool) -> Tensor:
    # a copy: autograd.Function outputs must not be views of one another
    return (states[0] if reverse else states[-1]).clone()


def gru_layer(
    xw: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None, reverse: bool
) -> tuple[Tensor, Tensor]:
    """xw [T, B, 3H] (input projection with `bias_ih`), h0 [B, H] -> (output [T, B, H], h_T);
    a graph node only where a gradient is wanted."""
    if torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (xw, h0, w_hh, b_hh)
    ):
        return GRULayer.apply(xw, h0, w_hh, b_hh, reverse)
    packed = pack_weight(w_hh, xw.size(1))
    outputs = _scripted(gru_forward)(xw, h0, w_hh, b_hh, reverse, packed, False)[0]
    return outputs, _last(outputs, reverse)


class GRULayer(torch.autograd.Function):
    """(xw, h0, w_hh, b_hh, reverse) -> (output [T, B, H], h_T)."""

    @staticmethod
    def forward(ctx, xw, h0, w_hh, b_hh, reverse):
        packed = pack_weight(w_hh, xw.size(1))
        outputs, rz, n, h_n = _scripted(gru_forward)(xw, h0, w_hh, b_hh, reverse, packed, True)
        ctx.save_for_backward(h0, outputs, rz, n, h_n, w_hh)
        ctx.reverse = reverse
        ctx.has_bias = b_hh is not None
        return outputs, _last(outputs, reverse)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h):
        h0, outputs, rz, n, h_n, w_hh = ctx.saved_tensors
        d_out = torch.zeros_like(outputs) if d_out is None else d_out
        d_h = torch.zeros_like(h0) if d_h is None else d_h
        d_xw, d_h0, d_w_hh, d_b_hh = _scripted(gru_backward)(
            d_out,
            d_h,
            h0,
            outputs,
            rz,
            n,
            h_n,
            w_hh,
            ctx.reverse,
            pack_weight(w_hh.t(), d_out.size(1)),
        )
        return d_xw, d_h0, d_w_hh, d_b_hh if ctx.has_bias else None, None
