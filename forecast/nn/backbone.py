"""Build a recurrent backbone from (cell, impl, sizes): ours or torch's fused module."""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from forecast.nn import fast
from forecast.nn.cells import gru_pointwise, lstm_pointwise
from forecast.nn.fast import kernels, onednn
from forecast.nn.rnn import GRU, LSTM

CELLS = ("lstm", "lstmp", "gru")
IMPLS = ("custom", "torch")


def build_backbone(
    cell: str,
    impl: str = "torch",
    *,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    proj_size: int = 0,
    dropout: float = 0.0,
    bidirectional: bool = False,
    batch_first: bool = True,
    bias: bool = True,
) -> nn.Module:
    """Return an `nn.LSTM`-compatible (or `nn.GRU`-compatible) module.

    `impl="custom"` gives `forecast.nn.LSTM` / `GRU`, `impl="torch"` torch's fused modules;
    both have the same parameter names and shapes, so their state dicts are interchangeable.

    `cell="lstmp"` is an LSTM with a projection and needs `proj_size > 0`; `lstm` and `gru`
    take no projection.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if cell == "lstmp" and proj_size <= 0:
        raise ValueError("cell='lstmp' needs proj_size > 0 (the projected state size)")
    if cell in ("lstm", "gru") and proj_size != 0:
        raise ValueError(f"cell={cell!r} takes no projection: use cell='lstmp' for proj_size > 0")
    kwargs = dict(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        dropout=dropout,
        bidirectional=bidirectional,
    )
    gru, lstm = (GRU, LSTM) if impl == "custom" else (nn.GRU, nn.LSTM)
    if cell == "gru":
        return gru(**kwargs)
    return lstm(proj_size=proj_size, **kwargs)


def backbone_output_size(rnn: nn.Module) -> int:
    """Features per time step of the backbone's output."""
    per_direction = getattr(rnn, "proj_size", 0) or rnn.hidden_size
    return per_direction * (2 if rnn.bidirectional else 1)


def broadcast_step(rnn: nn.Module, x: Tensor, state: Tensor | tuple[Tensor, Tensor]) -> Tensor:
    """One step of a one-layer, one-direction backbone (ours or torch's), broadcast.

    x: [..., I] inputs and `state` (h [..., P], and c [..., H] for an LSTM) need only broadcast
    against each other: many inputs from one state, or one input for many states, cost one
    matrix product per distinct input and per distinct state instead of one per pair. Returns
    the new h (the step's output), [..., P], the same as `rnn` on every pair of them.

    torch's modules (`impl=torch`) step in public torch ops; ours follow their `backend`, whose
    fast path has a C++ kernel for the parallel decoder's pattern (see `fast.kernels`).
    """
    if rnn.num_layers != 1 or rnn.bidirectional:
        raise ValueError("broadcast_step needs a one-layer, one-direction backbone")
    bias_ih, bias_hh = getattr(rnn, "bias_ih_l0", None), getattr(rnn, "bias_hh_l0", None)
    w_hh, w_hr = rnn.weight_hh_l0, getattr(rnn, "weight_hr_l0", None)
    backend = rnn.backend if isinstance(rnn, (LSTM, GRU)) else "reference"
    states = list(state) if isinstance(state, tuple) else [state]
    h = states[0]
    # the state's product goes through oneDNN (no compiler needed), the LSTM's gates through C++
    on_fast = fast.use_fast(backend, states, compiled=False)
    xw = F.linear(x, rnn.weight_ih_l0, bias_ih)
    hw = _state_product(h, w_hh, bias_hh) if on_fast else F.linear(h, w_hh, bias_hh)
    if not isinstance(state, tuple):
        return gru_pointwise(xw, hw, h)
    c = states[1]
    # the parallel decoder's pattern ([B, G, 1, *] states, [G, M, I] inputs): the gates of all
    # B x G x M pairs never exist as one tensor
    m = None
    if on_fast and fast.use_fast(backend, [h, c, w_hh]):
        m = kernels.lstm_outer_step(hw, xw, c)
    if m is None:
        m = _lstm_pointwise_float32(xw, hw, c)
    return m if w_hr is None else F.linear(m, w_hr)


def _state_product(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """F.linear(h, weight, bias); in float32 training on a CPU, through oneDNN (the products of
    `InputProjection`): the LSTM decoder's [B*G, H] x [H, 4H] with its backward took 4.0 ms
    through F.linear, 2.0 ms so (B*G = 1792, H = 128); the GRU's [H, 3H] likewise."""
    if (
        torch.is_autocast_enabled(h.device.type)
        or not onednn.fits(h, weight)
        or not fast.wants_grad([h, weight, bias])
    ):
        return F.linear(h, weight, bias)
    return onednn.InputProjection.apply(h, weight, bias)


def _lstm_pointwise_float32(xw: Tensor, hw: Tensor, c: Tensor) -> Tensor:
    """o * tanh(c') of the pairs, in torch ops; low-precision operands (bf16-mixed: autocast's
    products) computed in float32 and the result rounded once, as the C++ kernel does."""
    dtype = torch.promote_types(torch.promote_types(hw.dtype, xw.dtype), c.dtype)
    if dtype in (torch.bfloat16, torch.float16):
        return lstm_pointwise(xw.float() + hw.float(), c.float(), None)[0].to(dtype)
    return lstm_pointwise(xw + hw, c, None)[0]
