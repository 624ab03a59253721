"""Helpers shared by the tests of forecast.nn: our module paired with torch's, random states.

Named uniquely (not conftest) so that it cannot clash with helpers of other test folders.
"""

import torch
from torch import nn

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
