"""Parity of forecast.nn.LSTM / GRU with torch.nn.LSTM / GRU: values and every gradient."""

import itertools

import pytest
import torch
from rnn_helpers import CELLS, flat_states, grads_of, initial_state, make_pair, run
from torch.nn.utils.rnn import pack_padded_sequence

from forecast.nn import fast
from forecast.nn.fast import onednn

INPUT, HIDDEN, BATCH, STEPS = 3, 6, 4, 5
LENGTHS = [3, 5, 1, 4]  # unequal and unsorted, so packing must reorder


@pytest.fixture(autouse=True, params=("auto", "reference"))
def backend(request, monkeypatch):
    """Every test here runs twice: with the fast path where it applies (the C++ LSTM loop, the
    GRU's hand-written backward), then on the reference loops alone."""
    if request.param == "auto":
        assert fast.extension() is not None, "the C++ kernels did not build on this machine"
    monkeypatch.setenv(fast.ENV, request.param)  # the default of every module built here
    return request.param


def inputs(kind, batch_first, dtype):
    gen = torch.Generator().manual_seed(3)
    if kind == "unbatched":
        shape = (STEPS, INPUT)
    elif batch_first:
        shape = (BATCH, STEPS, INPUT)
    else:
        shape = (STEPS, BATCH, INPUT)
    return torch.randn(shape, generator=gen, dtype=dtype, requires_grad=True)


def assert_parity(cell, kind, dtype, atol, **kwargs):
    ours, ref = make_pair(cell, INPUT, HIDDEN, dtype=dtype, **kwargs)
    x = inputs(kind, kwargs.get("batch_first", False), dtype)
    hx = initial_state(ref, BATCH, dtype, unbatched=kind == "unbatched")
    batch_first = kwargs.get("batch_first", False)
    lengths = LENGTHS if kind == "packed" else None
    ours_out, ours_grads = grads_of(ours, x, hx, lengths, batch_first)
    ref_out, ref_grads = grads_of(ref, x, hx, lengths, batch_first)
    for a, b in zip(ours_out, ref_out, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    names = ["input", *[f"hx[{i}]" for i in range(len(flat_states(hx)))]]
    names += [name for name, _ in ours.named_parameters()]
    for name, a, b in zip(names, ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


KINDS = ("batched", "unbatched", "packed")
# batch_first only transposes at the ends, so it needs fewer combinations than the rest
GRID = [
    (cell, layers, bidirectional, bias, False, kind)
    for cell, layers, bidirectional, bias, kind in itertools.product(
        CELLS, (1, 2, 3), (False, True), (True, False), KINDS
    )
] + [(cell, 2, True, True, True, kind) for cell, kind in itertools.product(CELLS, KINDS)]


@pytest.mark.parametrize("cell,layers,bidirectional,bias,batch_first,kind", GRID)
def test_parity_float64(cell, layers, bidirectional, bias, batch_first, kind):
    assert_parity(
        cell,
        kind,
        torch.float64,
        1e-10,
        num_layers=layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=batch_first,
    )


@pytest.mark.parametrize(
    "cell,layers,bidirectional,kind",
    list(itertools.product(CELLS, (1, 3), (False, True), ("batched", "packed"))),
)
def test_parity_float32(cell, layers, bidirectional, kind):
    assert_parity(cell, kind, torch.float32, 1e-5, num_layers=layers, bidirectional=bidirectional)


@pytest.mark.parametrize("cell", CELLS)
def test_training_takes_the_chosen_path(cell, backend):
    ours, _ = make_pair(cell, INPUT, HIDDEN)
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64)
    node = ours(x)[0].grad_fn.name()  # one layer, one direction: the loop's own node
    fast_node = "GRULayerBackward" if cell == "gru" else "LSTMLayerBackward"
    assert (node == fast_node) == (backend == "auto"), node


@pytest.mark.parametrize("cell", CELLS)
def test_default_initial_state_is_zero_like_torch(cell):
    ours, ref = make_pair(cell, INPUT, HIDDEN, num_layers=2, bidirectional=True)
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64)
    for a, b in zip(run(ours, x, None), run(ref, x, None), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_of_ours_loads_into_torch(cell):
    ours, ref = make_pair(cell, INPUT, HIDDEN, num_layers=2, bidirectional=True)
    ours.reset_parameters()  # fresh weights, so only the load can make the two agree
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_parameters_match_torch_in_name_shape_and_order(cell):
    ours, ref = make_pair(cell, INPUT, HIDDEN, num_layers=3, bidirectional=True)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in ref.named_parameters()
    ]


def test_packed_output_keeps_torchs_packing():
    ours, ref = make_pair("lstm", INPUT, HIDDEN, bidirectional=True)
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    out, ref_out = ours(packed)[0], ref(packed)[0]
    assert torch.equal(out.batch_sizes, ref_out.batch_sizes)
    assert torch.equal(out.sorted_indices, ref_out.sorted_indices)
    assert torch.equal(out.unsorted_indices, ref_out.unsorted_indices)
    torch.testing.assert_close(out.data, ref_out.data, atol=1e-10, rtol=0)


@pytest.mark.parametrize("onednn_on", (True, False), ids=("onednn", "addmm"))
@pytest.mark.parametrize("cell", CELLS)
def test_float32_inference_and_training_with_and_without_onednn(cell, onednn_on, monkeypatch):
    # float32 on CPU is where the recurrent product may go through oneDNN's prepacked weight
    monkeypatch.setattr(onednn, "AVAILABLE", [onednn_on and onednn.fits(torch.zeros(1))])
    with torch.no_grad():
        ours, ref = make_pair(cell, INPUT, HIDDEN, dtype=torch.float32, num_layers=2)
        x = torch.randn(STEPS, BATCH, INPUT)
        expected = run(ref, x, None)
        for a, b in zip(run(ours, x, None), expected, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert_parity(cell, "batched", torch.float32, 1e-5, num_layers=2)
