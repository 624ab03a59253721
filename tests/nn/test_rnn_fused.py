"""The C++ LSTM kernels (forecast/nn/fused.py): that they build, are used, and hold up where
the parity grid's small tensors do not reach: saturated gates, long sequences, several threads,
a machine where they cannot be built; and the parallel decoder's outer-product step."""

import subprocess
import sys

import pytest
import torch
from rnn_helpers import initial_state, make_pair
from torch.utils import cpp_extension

from forecast.nn import GRU, LSTM, broadcast_step, cells, fused


def test_it_builds_here_and_lstms_run_it():
    assert fused.extension() is not None
    for proj_size in (0, 3):
        lstm = LSTM(4, 6, proj_size=proj_size)
        out = lstm(torch.randn(5, 2, 4))[0]
        assert out.grad_fn.name() == "FusedLSTMLayerBackward"


@pytest.mark.parametrize("cell", ("lstm", "lstmp"))
def test_saturated_gates_stay_finite_and_match_torch(cell):
    # pre-activations in the hundreds: where exp over- or underflows if the kernel clamps wrong
    ours, ref = make_pair(cell, 3, 8, dtype=torch.float32)
    x = 200 * torch.randn(20, 4, 3, generator=torch.Generator().manual_seed(0))
    got, want = ours(x), ref(x)
    assert torch.isfinite(got[0]).all()
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=0)


def _results(cell, monkeypatch):
    """Outputs and gradients for a long sequence, batch and hidden size, the same numbers in
    each: [ours float64, torch's float64, ours float32, ours float32 without the C++ loop]."""
    ours, ref = make_pair(cell, 5, 64, dtype=torch.float64, num_layers=2)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(150, 300, 5, generator=gen, dtype=torch.float64)
    hx = initial_state(ref, 300, torch.float64)
    results = []
    for module, dtype, loop in (
        (ours, torch.float64, True),
        (ref, torch.float64, True),
        (ours, torch.float32, True),
        (ours, torch.float32, False),
    ):
        monkeypatch.setattr(fused, "ENABLED", [loop])
        module = module.to(dtype)
        leaves = [t.detach().to(dtype).requires_grad_() for t in (x, *hx)]
        out, (h, c) = module(leaves[0], tuple(leaves[1:]))
        # the loss weighs every output and final state by fixed random numbers
        loss = sum(
            (
                t.double() * torch.randn(t.shape, generator=gen.manual_seed(2), dtype=torch.float64)
            ).sum()
            for t in (out, h, c)
        )
        grads = torch.autograd.grad(loss, [*leaves, *module.parameters()])
        results.append([out.detach(), h.detach(), c.detach(), *grads])
    return results


@pytest.mark.parametrize("cell", ("lstm", "lstmp"))
def test_long_sequences_on_two_threads(cell, monkeypatch):
    """Batch 300 x hidden 64 splits each step over threads. float64: ours equals torch's to
    1e-10. float32: the C++ loop's exp/tanh are approximations, so it is measured against the
    float64 result beside the TorchScript loop it replaces (torch's own ops): it may not be
    worse by more than a factor of two, plus 1e-6 of the scale (weight gradients sum 45,000
    products here, in an order that differs between the two)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        truth, truth_ref, got, want = _results(cell, monkeypatch)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(truth, truth_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    for i, (a, b, t) in enumerate(zip(got, want, truth, strict=True)):
        fused_error = (a.double() - t).abs().max().item()
        torchscript_error = (b.double() - t).abs().max().item()
        floor = 1e-6 * t.abs().max().item()
        assert fused_error <= 2 * torchscript_error + floor, (i, fused_error, torchscript_error)


def test_without_a_compiler_lstms_fall_back_with_one_warning(monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension: g++: command not found")

    monkeypatch.setattr(fused, "_STATE", [None, False])  # as if never built in this process
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    ours, ref = make_pair("lstm", 3, 6)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="could not be built.*g\\+\\+: command not found"):
        out = ours(x)[0]
    assert out.grad_fn.name() == "LSTMLayerBackward"  # the TorchScript loop's
    torch.testing.assert_close(out, ref(x)[0], atol=1e-10, rtol=0)


def test_forecast_fused_0_switches_it_off():
    code = "from forecast.nn import fused; print(fused.ENABLED[0])"
    env = {"FORECAST_FUSED": "0", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def _outer_operands(batch, groups, inputs, hidden, dtype):
    gen = torch.Generator().manual_seed(4)

    def draw(*shape):
        return (3 * torch.randn(*shape, generator=gen, dtype=dtype)).requires_grad_()

    return (
        draw(batch, groups, 1, 4 * hidden),
        draw(groups, inputs, 4 * hidden),
        draw(batch, groups, 1, hidden),
    )


@pytest.mark.parametrize("dtype,atol", ((torch.float64, 1e-12), (torch.float32, 1e-5)))
@pytest.mark.parametrize("groups", (1, 3))
def test_outer_step_equals_the_broadcast_torch_ops(groups, dtype, atol):
    """The parallel decoder's step: every (state, input) pair of a group, values and the
    gradients of all three operands (summed over the pairs each took part in)."""
    operands = _outer_operands(5, groups, 4, 6, dtype)
    got = fused.lstm_outer_step(*operands)
    hw, xw, c = operands
    want = cells.lstm_pointwise(xw + hw, c, None)[0]  # [B, G, M, H] by broadcasting
    assert got.shape == want.shape == (5, groups, 4, 6)
    torch.testing.assert_close(got, want, atol=atol, rtol=0)
    weights = torch.randn(want.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    for a, b in zip(
        torch.autograd.grad((got * weights).sum(), operands),
        torch.autograd.grad((want * weights).sum(), operands),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


def test_outer_step_declines_what_it_does_not_cover():
    hw, xw, c = _outer_operands(2, 3, 4, 6, torch.float64)
    assert fused.lstm_outer_step(hw[:, :1], xw, c[:, :1]) is None  # groups do not match
    assert fused.lstm_outer_step(hw.expand(2, 3, 2, 24), xw, c) is None  # two states per unit
    assert fused.lstm_outer_step(hw.int(), xw.int(), c.int()) is None  # dtype
    meta = [t.detach().bfloat16().to("meta") for t in (hw, xw, c)]
    assert fused.lstm_outer_step(*meta) is None  # not a CPU tensor: left to torch's ops


@pytest.mark.parametrize("low", (torch.bfloat16, torch.float16))
def test_outer_step_computes_low_precision_operands_in_float32(low):
    """bf16-mixed training hands the decoder bfloat16 products: the kernel computes them in
    float32 and returns the dtype torch's ops would; its result is the float32 one, rounded
    once, so it is nearer the float64 truth than the same step in low-precision torch ops."""
    hw, xw, c = (t.detach() for t in _outer_operands(6, 3, 4, 8, torch.float64))
    truth = cells.lstm_pointwise(xw + hw, c, None)[0]
    operands = [t.to(low).requires_grad_() for t in (hw, xw, c)]
    got = fused.lstm_outer_step(*operands)
    assert got.dtype == low
    want = fused.lstm_outer_step(*(t.detach().float() for t in operands)).to(low)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    plain = cells.lstm_pointwise(operands[1] + operands[0], operands[2], None)[0]
    assert (got.double() - truth).abs().mean() < (plain.double() - truth).abs().mean()
    grads = torch.autograd.grad(got.float().sum(), operands)
    assert [g.dtype for g in grads] == [low] * 3
    with_mixed_c = fused.lstm_outer_step(operands[0], operands[1], c.float())
    assert with_mixed_c.dtype == torch.float32  # as bfloat16 + float32 promotes


def test_bf16_autocast_decoding_takes_the_kernel_and_stays_near_float32():
    """The default model's decoder under `trainer.precision=bf16-mixed`: the outer kernel runs
    (before, torch ops did the step in bfloat16) and the forecast stays within bfloat16's
    reach of the float32 one."""
    from forecast.models.network import ForecastNet

    torch.manual_seed(0)
    net = ForecastNet(3, 48, 24, cell="lstm", hidden_size=16, segment_len=12, decoder="pmf")
    x = torch.randn(8, 48, 3)
    with torch.no_grad():
        full = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = net(x)
    names, nodes = [], [mixed.grad_fn]
    while nodes:
        node = nodes.pop()
        names.append(node.name())
        nodes += [n for n, _ in node.next_functions if n is not None]
    assert "OuterLSTMStepBackward" in names, names
    error = (mixed.float() - full).abs().max() / full.abs().max()
    assert error < 0.03, error  # bfloat16 keeps 8 bits: ~0.4% per rounding


@pytest.mark.parametrize("cell", ("lstm", "lstmp"))
def test_broadcast_step_takes_the_outer_kernel(cell):
    ours, _ = make_pair(cell, 3, 6)
    h = torch.randn(4, 2, 1, ours.output_size, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 2, 1, 6, dtype=torch.float64)
    queries = torch.randn(2, 5, 3, dtype=torch.float64)
    out = broadcast_step(ours, queries, (h, c))
    assert out.shape == (4, 2, 5, ours.output_size)
    names, nodes = [], [out.grad_fn]
    while nodes:  # every node of the backward graph
        node = nodes.pop()
        names.append(node.name())
        nodes += [n for n, _ in node.next_functions if n is not None]
    assert "OuterLSTMStepBackward" in names, names


def _graph_names(out):
    names, nodes = [], [out.grad_fn]
    while nodes:
        node = nodes.pop()
        names.append(node.name())
        nodes += [n for n, _ in node.next_functions if n is not None]
    return names


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_the_decoders_state_product_goes_through_onednn_and_equals_f_linear(cell):
    """float32 training on a CPU: the state's product with W_hh is InputProjection's (oneDNN),
    equal to F.linear's in value and gradient; under autocast and in float64 it stays F.linear."""
    torch.manual_seed(0)
    ours = (LSTM if cell == "lstm" else GRU)(3, 16)
    h = torch.randn(8, 2, 1, 16, requires_grad=True)
    state = (h, torch.randn(8, 2, 1, 16)) if cell == "lstm" else h
    queries = torch.randn(2, 5, 3)
    out = broadcast_step(ours, queries, state)
    assert "InputProjectionBackward" in _graph_names(out)
    with torch.no_grad():  # the same step with F.linear: no grad wanted, so the plain path
        plain = broadcast_step(ours, queries, state)
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (got,) = torch.autograd.grad((out * weights).sum(), h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = broadcast_step(ours, queries, state)
    assert "InputProjectionBackward" not in _graph_names(mixed)
    ours64, h64 = ours.double(), h.detach().double().requires_grad_()
    state64 = (h64, state[1].double()) if cell == "lstm" else h64
    out64 = broadcast_step(ours64, queries.double(), state64)
    assert "InputProjectionBackward" not in _graph_names(out64)
    (want,) = torch.autograd.grad((out64 * weights.double()).sum(), h64)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


def test_a_failed_build_is_reported_by_the_compilers_first_error():
    log = (
        "Error building extension 'forecast_lstm': [1/2] c++ -MMD -O3 -c lstm.cpp\n"
        "FAILED: lstm.o\n"
        "lstm.cpp:408:9: error: '#pragma' is not allowed here\n"
        "ninja: build stopped: subcommand failed."
    )
    assert (
        fused._reason(RuntimeError(log)) == "lstm.cpp:408:9: error: '#pragma' is not allowed here"
    )


def test_outer_step_in_inference_keeps_no_graph():
    hw, xw, c = _outer_operands(2, 3, 4, 6, torch.float64)
    with torch.no_grad():
        out = fused.lstm_outer_step(hw, xw, c)
    assert out.grad_fn is None
    torch.testing.assert_close(out, fused.lstm_outer_step(hw, xw, c).detach(), atol=0, rtol=0)
