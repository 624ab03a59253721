"""Helpers shared by the tests of forecast.nn: our module paired with torch's, random states.

Named uniquely (not conftest) so that it cannot clash with helpers of other test folders.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from forecast.nn import GRU, LSTM

CELLS = ("lstm", "lstmp", "gru")


def make_pair(cell, input_size, hidden_size, dtype=torch.float64, seed=0, **kwargs):
    """(ours, torch's) with torch's weights loaded into ours."""
    torch.manual_seed(seed)
    if cell == "lstmp":
        kwargs.setdefault("proj_size", max(1, hidden_size // 2))
    ours_cls, ref_cls = (GRU, nn.GRU) if cell == "gru" else (LSTM, nn.LSTM)
    ref = ref_cls(input_size, hidden_size, dtype=dtype, **kwargs)
    ours = ours_cls(input_size, hidden_size, dtype=dtype, **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def initial_state(module, batch, dtype, unbatched=False, seed=1):
    """Random (h0, c0) for an LSTM or h0 for a GRU, requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    layers = module.num_layers * (2 if module.bidirectional else 1)
    sizes = [module.proj_size or module.hidden_size]
    if isinstance(module, (LSTM, nn.LSTM)):
        sizes.append(module.hidden_size)
    shape = (layers,) if unbatched else (layers, batch)
    states = [
        torch.randn(*shape, size, generator=gen, dtype=dtype).requires_grad_() for size in sizes
    ]
    return tuple(states) if len(states) == 2 else states[0]


def flat_states(hidden):
    return list(hidden) if isinstance(hidden, tuple) else [hidden]


def run(module, x, hx, lengths=None, batch_first=False):
    """Forward through `module`; returns the tensors to compare: padded output, final states.

    With `lengths` the input goes in packed (unsorted lengths, so packing must reorder).
    """
    if lengths is not None:
        lengths = torch.tensor(lengths)
        inp = pack_padded_sequence(x, lengths, batch_first, enforce_sorted=False)
        out, hidden = module(inp, hx)
        out = pad_packed_sequence(out, batch_first)[0]
    else:
        out, hidden = module(x, hx)
    return [out, *flat_states(hidden)]


def grads_of(module, x, hx, lengths=None, batch_first=False):
    """Outputs, then gradients of a random projection of them w.r.t. inputs, states, params.

    The projection is drawn on the CPU from a fixed seed, so it is the same on every device.
    """
    results = run(module, x, hx, lengths, batch_first)
    gen = torch.Generator().manual_seed(7)
    weights = [torch.randn(r.shape, generator=gen, dtype=r.dtype).to(r.device) for r in results]
    loss = sum((r * w).sum() for r, w in zip(results, weights, strict=True))
    leaves = [x, *flat_states(hx), *module.parameters()]
    grads = torch.autograd.grad(loss, leaves)
    return [r.detach() for r in results], grads
