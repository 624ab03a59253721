"""The fast path (forecast/nn/fast): that its kernels build and are used, and hold up where the
parity grid's small tensors do not reach: saturated gates, long sequences, several threads, a
machine where they cannot be built; the parallel decoder's outer-product step; the switch."""

import os
import signal
import subprocess
import sys
import warnings

import pytest
import torch
from rnn_helpers import flat_states, initial_state, make_pair
from torch import nn

from forecast.nn import GRU, LSTM, broadcast_step, cells, fast
from forecast.nn.fast import build
from forecast.nn.fast.kernels import lstm_outer_step


def test_it_builds_here_and_our_modules_run_it():
    assert fast.extension() is not None
    for module in (LSTM(4, 6), LSTM(4, 6, proj_size=3), GRU(4, 6)):
        out = module(torch.randn(5, 2, 4))[0]
        assert out.grad_fn.name() == f"{type(module).__name__}LayerBackward"


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
    each: [ours float64, torch's float64, ours float32, ours float32 on the reference]."""
    ours, ref = make_pair(cell, 5, 64, dtype=torch.float64, num_layers=2)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(150, 300, 5, generator=gen, dtype=torch.float64)
    hx = flat_states(initial_state(ref, 300, torch.float64))
    results = []
    for module, dtype, loop in (
        (ours, torch.float64, True),
        (ref, torch.float64, True),
        (ours, torch.float32, True),
        (ours, torch.float32, False),
    ):
        if isinstance(module, (LSTM, GRU)):
            module.backend = "auto" if loop else "reference"
        module = module.to(dtype)
        leaves = [t.detach().to(dtype).requires_grad_() for t in (x, *hx)]
        states = tuple(leaves[1:]) if len(leaves) == 3 else leaves[1]
        out, finals = module(leaves[0], states)
        # the loss weighs every output and final state by fixed random numbers
        loss = sum(
            (
                t.double() * torch.randn(t.shape, generator=gen.manual_seed(2), dtype=torch.float64)
            ).sum()
            for t in (out, *flat_states(finals))
        )
        grads = torch.autograd.grad(loss, [*leaves, *module.parameters()])
        results.append([out.detach(), *(t.detach() for t in flat_states(finals)), *grads])
    return results


@pytest.mark.parametrize("cell", ("lstm", "lstmp", "gru"))
def test_long_sequences_on_two_threads(cell, monkeypatch):
    """Batch 300 x hidden 64 splits each step over threads. float64: ours equals torch's to
    1e-10. float32: the C++ loop's exp/tanh are approximations, so it is measured against the
    float64 result beside the reference loop (torch's own ops): it may not be
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
        fast_error = (a.double() - t).abs().max().item()
        reference_error = (b.double() - t).abs().max().item()
        floor = 1e-6 * t.abs().max().item()
        assert fast_error <= 2 * reference_error + floor, (i, fast_error, reference_error)


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
    got = lstm_outer_step(*operands)
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
    assert lstm_outer_step(hw[:, :1], xw, c[:, :1]) is None  # groups do not match
    assert lstm_outer_step(hw.expand(2, 3, 2, 24), xw, c) is None  # two states per unit
    assert lstm_outer_step(hw.int(), xw.int(), c.int()) is None  # dtype
    meta = [t.detach().bfloat16().to("meta") for t in (hw, xw, c)]
    assert lstm_outer_step(*meta) is None  # not a CPU tensor: left to torch's ops


@pytest.mark.parametrize("low", (torch.bfloat16, torch.float16))
def test_outer_step_computes_low_precision_operands_in_float32(low):
    """bf16-mixed training hands the decoder bfloat16 products: the kernel computes them in
    float32 and returns the dtype torch's ops would; its result is the float32 one, rounded
    once, so it is nearer the float64 truth than the same step in low-precision torch ops."""
    hw, xw, c = (t.detach() for t in _outer_operands(6, 3, 4, 8, torch.float64))
    truth = cells.lstm_pointwise(xw + hw, c, None)[0]
    operands = [t.to(low).requires_grad_() for t in (hw, xw, c)]
    got = lstm_outer_step(*operands)
    assert got.dtype == low
    want = lstm_outer_step(*(t.detach().float() for t in operands)).to(low)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    plain = cells.lstm_pointwise(operands[1] + operands[0], operands[2], None)[0]
    assert (got.double() - truth).abs().mean() < (plain.double() - truth).abs().mean()
    grads = torch.autograd.grad(got.float().sum(), operands)
    assert [g.dtype for g in grads] == [low] * 3
    with_mixed_c = lstm_outer_step(operands[0], operands[1], c.float())
    assert with_mixed_c.dtype == torch.float32  # as bfloat16 + float32 promotes


@pytest.mark.parametrize("impl", ("custom", "torch"))
def test_bf16_autocast_decoding_stays_near_float32(impl):
    """The pmf decoder under `trainer.precision=bf16-mixed`: ours takes the outer kernel, torch's
    modules torch ops (in float32, as the kernel computes), and the forecast stays within
    bfloat16's reach of the float32 one."""
    from forecast.models.network import ForecastNet

    torch.manual_seed(0)
    net = ForecastNet(
        3,
        48,
        24,
        cell="lstm",
        impl=impl,
        hidden_size=16,
        segment_len=12,
        decoder="pmf",
        head_dropout=0.0,  # in training mode (the graph is kept): no random mask between calls
    )
    x = torch.randn(8, 48, 3)
    with torch.no_grad():
        full = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = net(x)
    assert ("OuterLSTMStepBackward" in _graph_names(mixed)) == (impl == "custom")
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
    assert "OuterLSTMStepBackward" in _graph_names(out)


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


def test_outer_step_in_inference_keeps_no_graph():
    hw, xw, c = _outer_operands(2, 3, 4, 6, torch.float64)
    with torch.no_grad():
        out = lstm_outer_step(hw, xw, c)
    assert out.grad_fn is None
    torch.testing.assert_close(out, lstm_outer_step(hw, xw, c).detach(), atol=0, rtol=0)


# -- the switch ----------------------------------------------------------------------------


def test_the_backend_switch_and_its_default(monkeypatch):
    monkeypatch.delenv(fast.ENV, raising=False)
    assert LSTM(3, 4).backend == "auto"
    monkeypatch.setenv(fast.ENV, "reference")
    assert GRU(3, 4).backend == "reference"
    assert LSTM(3, 4, backend="fast").backend == "fast"
    with pytest.raises(ValueError, match="backend must be one of"):
        LSTM(3, 4, backend="cpp")
    monkeypatch.setenv(fast.ENV, "fused")
    with pytest.raises(ValueError, match="FORECAST_NN_BACKEND must be one of"):
        LSTM(3, 4)


def test_fast_insists_and_says_why_it_cannot_run():
    lstm = LSTM(3, 4, backend="fast")
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3), torch.tensor([5, 3]))
    with pytest.raises(RuntimeError, match="backend='fast' cannot run here: packed input"):
        lstm(packed)
    with pytest.raises(RuntimeError, match="cannot run here: dtypes"):
        lstm.to(torch.bfloat16)(torch.randn(5, 2, 3, dtype=torch.bfloat16))


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_torchs_modules_step_in_torch_ops_only(cell):
    """impl=torch: broadcast_step on torch's module records no node of the fast path, and
    equals our module's reference step."""
    torch.manual_seed(0)
    theirs = (nn.LSTM if cell == "lstm" else nn.GRU)(3, 16)
    ours = (LSTM if cell == "lstm" else GRU)(3, 16, backend="reference")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    h = torch.randn(8, 2, 1, 16, requires_grad=True)
    state = (h, torch.randn(8, 2, 1, 16)) if cell == "lstm" else h
    queries = torch.randn(2, 5, 3)
    got = broadcast_step(theirs, queries, state)
    names = _graph_names(got)
    assert not [n for n in names if "Outer" in n or "InputProjection" in n], names
    torch.testing.assert_close(got, broadcast_step(ours, queries, state), atol=0, rtol=0)


_DEFAULT_MODEL = """
import warnings
warnings.simplefilter("error")  # any warning fails the run
import torch
from forecast.models.network import ForecastNet
from forecast.nn import fast

torch.manual_seed(0)
net = ForecastNet(7, 96, 96, segment_len=24, decoder="pmf", head_dropout=0.5)  # as train.py's
net(torch.randn(4, 96, 7)).abs().mean().backward()
with torch.autocast("cpu", dtype=torch.bfloat16):
    net(torch.randn(4, 96, 7)).float().abs().mean().backward()
print(fast._STATE)
"""


def test_the_default_model_needs_no_compiler(tmp_path):
    """model=lstm impl=torch decoder=pmf on a machine without a compiler (no PATH) and a fresh
    extensions folder: it trains in float32 and bf16-mixed, without a warning, and never asks
    for the kernels."""
    env = {**os.environ, "PATH": "", "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    done = subprocess.run(
        [sys.executable, "-c", _DEFAULT_MODEL], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[None, False]"
    assert not (tmp_path / "ext").exists()


# -- building the kernels: never a wait without bound, never half a build --------------------


@pytest.fixture
def fake_compiler(tmp_path, monkeypatch):
    """A throw-away extensions folder and a stand-in for torch's builder: it writes the library
    file where torch would and returns a stand-in module; `calls` counts the builds."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    calls = []

    def compile_(name, sources, build_directory, **kwargs):
        calls.append(build_directory)
        path = f"{build_directory}/{name}.so"
        with open(path, "w") as f:
            f.write("built")
        return "module built in " + build_directory

    monkeypatch.setattr(cpp_extension, "load", compile_)
    monkeypatch.setattr(build, "_import", lambda name, folder: f"module loaded from {folder}")
    return calls


def test_a_killed_build_leaves_nothing_that_blocks_the_next(fake_compiler, tmp_path):
    """What kill -9 leaves mid-build: the lock file (no process holds it), a half-written
    temporary folder, and torch's own lock file in a build folder of torch's scheme."""
    name = build.extension_name()
    ext = tmp_path / "ext"
    (ext / f"{name}.tmp-4242").mkdir(parents=True)
    (ext / f"{name}.tmp-4242" / "rnn.o").write_text("half")
    (ext / f"{name}.lock").write_text("")
    (ext / name).mkdir()
    (ext / name / "lock").write_text("")
    module = build.load(timeout=5)
    assert module.startswith("module built in") and len(fake_compiler) == 1
    assert sorted(p.name for p in ext.iterdir()) == [name, f"{name}.lock"]
    assert (ext / name / f"{name}.so").read_text() == "built"
    assert build.load(timeout=5) == f"module loaded from {ext / name}"  # built: no compiler
    assert len(fake_compiler) == 1


def test_compiling_is_said_only_when_it_happens(fake_compiler, caplog):
    with caplog.at_level("INFO", logger=build.__name__):
        build.load(timeout=5)
        assert "compiling the C++ LSTM and GRU kernels" in caplog.text
        caplog.clear()
        build.load(timeout=5)
    assert "compiling" not in caplog.text


def test_a_build_held_too_long_falls_back_to_torch_ops_with_one_warning(
    fake_compiler, tmp_path, monkeypatch
):
    import fcntl

    monkeypatch.setattr(fast, "_STATE", [None, False])  # as if never loaded in this process
    monkeypatch.setattr(build, "LOCK_TIMEOUT_S", 0.5)
    (tmp_path / "ext").mkdir()
    with open(tmp_path / "ext" / f"{build.extension_name()}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another build, alive and slow
        with pytest.raises(build.BuildError, match="building them for over 0 s"):
            build.load(timeout=0.5)
        with pytest.warns(UserWarning, match="unavailable.*building them for over"):
            assert fast.extension() is None
        ours, ref = make_pair("lstm", 3, 6)
        x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
        with warnings.catch_warnings(record=True) as later:
            warnings.simplefilter("always")
            out = ours(x)[0]
    assert not later  # one warning per process, not one per call
    assert not fake_compiler
    assert out.grad_fn.name() != "LSTMLayerBackward"  # the reference loop
    torch.testing.assert_close(out, ref(x)[0], atol=1e-10, rtol=0)


def test_without_a_compiler_lstms_fall_back_with_one_warning(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension: g++: command not found")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(fast, "_STATE", [None, False])
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    ours, ref = make_pair("lstm", 3, 6)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="unavailable \\(Error building extension: g\\+\\+: comm"):
        out = ours(x)[0]
    assert out.grad_fn.name() != "LSTMLayerBackward"
    torch.testing.assert_close(out, ref(x)[0], atol=1e-10, rtol=0)
    assert [p.name for p in tmp_path.iterdir()] == [f"{build.extension_name()}.lock"]


def test_a_failed_build_is_reported_by_the_compilers_first_error():
    log = (
        "Error building extension 'forecast_lstm': [1/2] c++ -MMD -O3 -c lstm.cpp\n"
        "FAILED: lstm.o\n"
        "lstm.cpp:408:9: error: '#pragma' is not allowed here\n"
        "ninja: build stopped: subcommand failed."
    )
    assert build.reason(RuntimeError(log)) == "lstm.cpp:408:9: error: '#pragma' is not allowed here"


_CHILD = """
import sys, time
from torch.utils import cpp_extension
from forecast.nn.fast import build

def compile_(name, sources, build_directory, **kwargs):
    open(f"{build_directory}/{name}.o", "w").write("half")
    if sys.argv[1] == "slow":
        print("compiling", flush=True)
        time.sleep(600)
    open(f"{build_directory}/{name}.so", "w").write("built")
    return "module"

cpp_extension.load = compile_
print(build.load(timeout=120), flush=True)
"""


def test_kill_9_during_a_build_then_the_next_run_builds(tmp_path):
    """A process killed while it compiles holds nothing afterwards: the next one takes the lock
    at once, clears the half-built folder and finishes."""
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    slow = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "slow"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert slow.stdout.readline().strip() == "compiling"
    finally:
        os.kill(slow.pid, signal.SIGKILL)
        slow.wait()
    assert [p.name for p in tmp_path.glob("*.tmp-*")]  # what the killed build left
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "fast"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "module"
    assert not list(tmp_path.glob("*.tmp-*"))


def test_the_build_command_builds_ahead_and_says_where():
    assert fast.extension() is not None  # built (or loaded) in this process already
    done = subprocess.run(
        [sys.executable, "-m", "forecast.nn.fast"], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"ready: {build.root() / build.extension_name()}"
    assert "compiling" not in done.stderr  # already built: nothing to say about it
