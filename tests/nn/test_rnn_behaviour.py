"""Errors, dropout, initialisation and dtype handling of forecast.nn.LSTM / GRU."""

import math

import pytest
import torch
from rnn_helpers import CELLS, make_pair
from torch import nn

from forecast.nn import GRU, LSTM


def raised(fn):
    """(type, message) of the exception `fn` raises."""
    with pytest.raises(Exception) as info:
        fn()
    return info.type, str(info.value)


BAD_CALLS = {
    "input_size": lambda m: m(torch.randn(5, 2, 4)),
    "4d_input": lambda m: m(torch.randn(5, 2, 3, 1)),
    "1d_input": lambda m: m(torch.randn(5)),
    "hx_2d_for_batched": lambda m: m(torch.randn(5, 2, 3), _state(m, (1, 4))),
    "hx_3d_for_unbatched": lambda m: m(torch.randn(5, 3), _state(m, (1, 1, 4))),
    "hx_wrong_batch": lambda m: m(torch.randn(5, 2, 3), _state(m, (1, 3, 4))),
    "hx_wrong_layers": lambda m: m(torch.randn(5, 2, 3), _state(m, (2, 2, 4))),
    "cx_wrong_size": lambda m: m(
        torch.randn(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 5))
    ),
    "dtype": lambda m: m(torch.randn(5, 2, 3, dtype=torch.float64)),
}


def _state(module, shape):
    if isinstance(module, (LSTM, nn.LSTM)):
        return torch.zeros(shape), torch.zeros(shape)
    return torch.zeros(shape)


@pytest.mark.parametrize(
    "cell,case",
    [("lstm", case) for case in sorted(BAD_CALLS)]
    + [("gru", case) for case in sorted(BAD_CALLS) if case != "cx_wrong_size"],
)
def test_forward_errors_match_torchs(cell, case):
    ours, ref = make_pair(cell, 3, 4, dtype=torch.float32)
    expected = raised(lambda: BAD_CALLS[case](ref))
    assert raised(lambda: BAD_CALLS[case](ours)) == expected


BAD_ARGS = [
    {"dropout": 1.5},
    {"dropout": -0.1},
    {"dropout": True},
    {"hidden_size": 0},
    {"num_layers": 0},
    {"input_size": 0},
    {"proj_size": -1},
    {"proj_size": 4},
    {"proj_size": 9},
]


@pytest.mark.parametrize("kwargs", BAD_ARGS, ids=str)
def test_constructor_errors_match_torchs(kwargs):
    args = {"input_size": 3, "hidden_size": 4, "num_layers": 2, **kwargs}
    assert raised(lambda: LSTM(**args)) == raised(lambda: nn.LSTM(**args))


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        GRU(3, 4, dropout=0.5)


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_acts_between_layers_in_training_only(cell):
    module, _ = make_pair(cell, 3, 8, num_layers=2, dropout=0.5)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    module.train()
    first, second = module(x)[0], module(x)[0]
    assert not torch.allclose(first, second)
    module.eval()
    evaluated = module(x)[0]
    torch.testing.assert_close(module(x)[0], evaluated, atol=0, rtol=0)
    module.dropout = 0.0
    module.train()
    torch.testing.assert_close(module(x)[0], evaluated, atol=0, rtol=0)


def test_dropout_is_not_applied_after_the_last_layer():
    module = LSTM(3, 8, num_layers=1, dropout=0.5).train()
    x = torch.randn(6, 4, 3)
    torch.testing.assert_close(module(x)[0], module.eval()(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_initialisation_is_uniform_within_torchs_bound(cell):
    # a small hidden size makes the bound distinctive; a wide input gives many samples
    hidden = 4
    module, _ = make_pair(cell, 2000, hidden, num_layers=2)
    module.reset_parameters()
    values = torch.cat([p.detach().flatten() for p in module.parameters()])
    bound = 1 / math.sqrt(hidden)
    assert values.abs().max() <= bound
    assert values.abs().max() > 0.99 * bound
    # the standard deviation of U(-b, b) is b / sqrt(3)
    assert abs(values.std().item() - bound / math.sqrt(3)) < 0.02 * bound


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_outputs_and_states_keep_the_parameters_dtype(dtype):
    module = LSTM(3, 5, proj_size=2, dtype=dtype)
    out, (h, c) = module(torch.randn(4, 2, 3, dtype=dtype))
    assert out.dtype == h.dtype == c.dtype == dtype


@pytest.mark.parametrize("packed", (False, True), ids=("padded", "packed"))
@pytest.mark.parametrize("cell", CELLS)
def test_under_autocast_the_recurrence_runs_in_the_weights_precision(cell, packed):
    # Lightning's bf16-mixed hands us the bf16 output of the layer before: we take it, and run
    # as a float32 module would on the same values, gradients included
    ours, ref = make_pair(cell, 3, 6, dtype=torch.float32)
    x = torch.randn(5, 4, 3).to(torch.bfloat16)
    lengths = torch.tensor([5, 2, 4, 1])

    def forward(module, x):
        if packed:
            out, states = module(
                nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            )
            out = nn.utils.rnn.pad_packed_sequence(out)[0]
        else:
            out, states = module(x)
        return [out, *(states if isinstance(states, tuple) else [states])]

    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = forward(ours, x)
    want = forward(ref, x.float())
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.autograd.backward(got[0].sum())
    torch.autograd.backward(want[0].sum())
    for (name, a), b in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert a.grad.dtype == torch.float32
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=0, msg=name)


def test_repr_matches_torchs():
    kwargs = {"num_layers": 2, "bias": False, "batch_first": True, "dropout": 0.1}
    kwargs.update(bidirectional=True, proj_size=2)
    assert repr(LSTM(3, 5, **kwargs)) == repr(nn.LSTM(3, 5, **kwargs))
