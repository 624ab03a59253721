"""Layer loops with a hand-written backward: faster training than autograd through the loop.

Autograd through a step loop records ~10 nodes per step and replays them one by one, and it
accumulates the weight gradients one step at a time. Here the forward saves the gate
activations, and the backward is one reverse loop of a handful of elementwise kernels plus
`dgates @ W_hh`, and the weight gradients are single matrix products over all steps. (The GRU
backward computes its few gate factors for all steps at once before the loop; for the LSTM,
whose factors are more numerous, that measured slower than per-step work on cache-resident
tensors, so its loop computes them step by step.)

Both are faster than autograd once glibc stops returning memory to the OS after every large
buffer (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_, see BENCHMARKS.md); under glibc's
defaults the page faults on the saved buffers can cost more than the backward saves.

Only the recurrence is covered (input xw, initial state, W_hh, W_hr, b_hh for GRU); the input
projection `xw = x @ W_ih^T + b` stays in autograd, where it is one matrix product anyway. These
functions are for unpacked input; packed input uses the masked loop in `loops.py`.
"""

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from forecast.nn.cells import matmul_add, pack_weight
from forecast.nn.loops import _script, gru_bias


def _previous(states: Tensor, first: Tensor, reverse: bool) -> Tensor:
    """The state each step started from, in time order: [T, B, F] from outputs [T, B, F]."""
    if reverse:
        return torch.cat([states[1:], first.unsqueeze(0)])
    return torch.cat([first.unsqueeze(0), states[:-1]])


def lstm_forward(
    xw: Tensor,
    h: Tensor,
    c: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    reverse: bool,
    packed_hh: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns (outputs h_t [T, B, P], c_T [B, H], activations i|f|g|o [T, B, 4H], partners).

    The partners [T, B, 4H] are g | c_{t-1} | i | tanh(c_t): what each activation is multiplied
    by, so the backward gets all four activation gradients from one product per step.
    packed_hh: `pack_weight(w_hh)` or None (see `matmul_add`).
    """
    hidden = c.size(1)
    w_hh_t = w_hh.t()
    w_hr_t: Tensor | None = None
    if w_hr is not None:
        w_hr_t = w_hr.t()
    xs = xw.unbind(0)
    steps = len(xs)
    # Results go straight into preallocated buffers (out=): stacking lists at the end would
    # copy tens of megabytes per layer.
    outputs = xw.new_empty(steps, h.size(0), h.size(1))  # [T, B, P]
    activations = torch.empty_like(xw)  # [T, B, 4H]
    partners = torch.empty_like(xw)  # [T, B, 4H]
    out_rows, act_rows, partner_rows = outputs.unbind(0), activations.unbind(0), partners.unbind(0)
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        gates = matmul_add(h, xs[t], w_hh_t, packed_hh)  # [B, 4H]
        act, partner = act_rows[t], partner_rows[t]
        torch.sigmoid(gates, out=act)
        # g is the one tanh gate: overwrite its sigmoid
        torch.tanh(gates.narrow(1, 2 * hidden, hidden), out=act.narrow(1, 2 * hidden, hidden))
        i, f, g, o = act.chunk(4, 1)
        partner.narrow(1, 0, hidden).copy_(g)
        partner.narrow(1, hidden, hidden).copy_(c)
        partner.narrow(1, 2 * hidden, hidden).copy_(i)
        c = torch.addcmul(f * c, i, g)
        tanh_c = torch.tanh(c, out=partner.narrow(1, 3 * hidden, hidden))
        if w_hr_t is None:
            h = torch.mul(o, tanh_c, out=out_rows[t])
        else:
            h = torch.mm(o * tanh_c, w_hr_t, out=out_rows[t])
    return outputs, c, activations, partners


def lstm_backward(
    d_out: Tensor,
    d_h: Tensor,
    d_c: Tensor,
    h0: Tensor,
    outputs: Tensor,
    activations: Tensor,
    partners: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    reverse: bool,
    packed_hh_t: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Gradients (xw, h0, c0, W_hh, W_hr) from those of (outputs, h_T, c_T).

    Per step only small, cache-resident tensors: computing the gate derivative factors for all
    steps at once beforehand measured slower (each pass streams megabytes through memory).
    packed_hh_t: `pack_weight(w_hh.t())` or None.
    """
    hidden = d_c.size(1)
    d_outs, acts, parts = d_out.unbind(0), activations.unbind(0), partners.unbind(0)
    steps = len(d_outs)
    d_gates: list[Tensor] = []
    d_hs: list[Tensor] = []
    no_state = torch.zeros_like(d_h)
    for k in range(steps):
        t = k if reverse else steps - 1 - k  # the forward's steps, last first
        act, partner = acts[t], parts[t]  # [B, 4H] each
        d_h = d_outs[t] + d_h  # [B, P]
        d_m = d_h
        if w_hr is not None:
            d_hs.append(d_h)
            d_m = d_h.mm(w_hr)  # [B, H]
        tanh_c = partner.narrow(1, 3 * hidden, hidden)
        d_c = d_c + torch.ops.aten.tanh_backward(d_m * act.narrow(1, 3 * hidden, hidden), tanh_c)
        d_act = torch.cat([d_c, d_c, d_c, d_m], 1) * partner  # d(i | f | g | o)
        d_gate = torch.ops.aten.sigmoid_backward(d_act, act)  # [B, 4H], right but for g
        d_gate.narrow(1, 2 * hidden, hidden).copy_(
            torch.ops.aten.tanh_backward(
                d_act.narrow(1, 2 * hidden, hidden), act.narrow(1, 2 * hidden, hidden)
            )
        )
        d_gates.append(d_gate)
        d_h = matmul_add(d_gate, no_state, w_hh, packed_hh_t)  # [B, P]
        d_c = d_c * act.narrow(1, hidden, hidden)
    if not reverse:  # collected last step first: put them in time order
        d_gates.reverse()
        d_hs.reverse()
    d_xw = torch.stack(d_gates)  # [T, B, 4H]
    h_prev = _previous(outputs, h0, reverse)  # [T, B, P]
    d_w_hh = d_xw.flatten(0, 1).t().mm(h_prev.flatten(0, 1))  # [4H, P]
    d_w_hr: Tensor | None = None
    if w_hr is not None:
        # h before the projection, o * tanh(c): [T * B, H]
        m = activations.narrow(2, 3 * hidden, hidden) * partners.narrow(2, 3 * hidden, hidden)
        d_w_hr = torch.stack(d_hs).flatten(0, 1).t().mm(m.flatten(0, 1))  # [P, H]
    return d_xw, d_h, d_c, d_w_hh, d_w_hr


def gru_forward(
    xw: Tensor,
    h: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    reverse: bool,
    packed_hh: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns (outputs [T, B, H], r|z [T, B, 2H], n [T, B, H], (h W_hn^T + b_hn) [T, B, H])."""
    hidden = h.size(1)
    w_hh_t = w_hh.t()
    bias = gru_bias(b_hh, w_hh, h.size(0), packed_hh is not None)
    xs = xw.unbind(0)
    steps = len(xs)
    # preallocated buffers, filled with out=, as in lstm_forward
    outputs = xw.new_empty(steps, h.size(0), hidden)  # [T, B, H]
    rzs = xw.new_empty(steps, h.size(0), 2 * hidden)  # [T, B, 2H]
    ns = torch.empty_like(outputs)
    h_ns = torch.empty_like(outputs)
    out_rows, rz_rows, n_rows, h_n_rows = (
        outputs.unbind(0),
        rzs.unbind(0),
        ns.unbind(0),
        h_ns.unbind(0),
    )
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        hw = matmul_add(h, bias, w_hh_t, packed_hh)  # [B, 3H]
        x_t = xs[t]
        rz = torch.sigmoid(x_t[:, : 2 * hidden] + hw[:, : 2 * hidden], out=rz_rows[t])
        h_n = h_n_rows[t].copy_(hw[:, 2 * hidden :])
        n = torch.tanh(torch.addcmul(x_t[:, 2 * hidden :], rz[:, :hidden], h_n), out=n_rows[t])
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
    """Gradients (xw, h0, W_hh, b_hh) from those of (outputs, h_T); packed_hh_t as for LSTM."""
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
    if not reverse:
        d_hws.reverse()
        d_ns.reverse()
    d_hw_all = torch.stack(d_hws)  # [T, B, 3H]
    hidden = h0.size(1)
    d_xw = torch.cat([d_hw_all[:, :, : 2 * hidden], torch.stack(d_ns)], 2)
    d_w_hh = d_hw_all.flatten(0, 1).t().mm(h_prev.flatten(0, 1))  # [3H, H]
    return d_xw, d_h, d_w_hh, d_hw_all.sum((0, 1))


lstm_forward_scripted = _script(lstm_forward)
lstm_backward_scripted = _script(lstm_backward)
gru_forward_scripted = _script(gru_forward)
gru_backward_scripted = _script(gru_backward)


def _last(states: Tensor, reverse: bool) -> Tensor:
    # a copy: autograd.Function outputs must not be views of one another
    return (states[0] if reverse else states[-1]).clone()


class LSTMLayer(torch.autograd.Function):
    """(xw, h0, c0, w_hh, w_hr, reverse) -> (output [T, B, P], h_T, c_T)."""

    @staticmethod
    def forward(ctx, xw, h0, c0, w_hh, w_hr, reverse):
        packed = pack_weight(w_hh, xw.size(1))
        outputs, c_last, activations, partners = lstm_forward_scripted(
            xw, h0, c0, w_hh, w_hr, reverse, packed
        )
        ctx.save_for_backward(h0, outputs, activations, partners, w_hh, w_hr)
        ctx.reverse = reverse
        return outputs, _last(outputs, reverse), c_last

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_h, d_c):
        h0, outputs, activations, partners, w_hh, w_hr = ctx.saved_tensors
        d_out = torch.zeros_like(outputs) if d_out is None else d_out
        d_h = torch.zeros_like(h0) if d_h is None else d_h
        if d_c is None:
            d_c = activations.new_zeros(activations.size(1), activations.size(2) // 4)
        grads = lstm_backward_scripted(
            d_out,
            d_h,
            d_c,
            h0,
            outputs,
            activations,
            partners,
            w_hh,
            w_hr,
            ctx.reverse,
            pack_weight(w_hh.t(), d_out.size(1)),
        )
        return (*grads, None)


class GRULayer(torch.autograd.Function):
    """(xw, h0, w_hh, b_hh, reverse) -> (output [T, B, H], h_T)."""

    @staticmethod
    def forward(ctx, xw, h0, w_hh, b_hh, reverse):
        packed = pack_weight(w_hh, xw.size(1))
        outputs, rz, n, h_n = gru_forward_scripted(xw, h0, w_hh, b_hh, reverse, packed)
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
        d_xw, d_h0, d_w_hh, d_b_hh = gru_backward_scripted(
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
