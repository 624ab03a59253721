"""forecast.nn on a CUDA device: parity with torch's cuDNN modules, values and gradients.

CI has no GPU, so there this module is skipped as a whole; on a GPU machine run
`python -m pytest tests/nn/test_cuda.py tests/test_gpu.py`.
"""

import pytest
import torch
from rnn_helpers import CELLS, flat_states, grads_of, initial_state, make_pair

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

CUDA = torch.device("cuda")
INPUT, HIDDEN, BATCH, STEPS = 5, 16, 8, 30
LENGTHS = [30, 3, 17, 1, 30, 12, 8, 25]  # unequal and unsorted, so packing must reorder


@pytest.fixture(autouse=True)
def _exact_float32():
    """cuDNN's RNN and cuBLAS may use TF32 (10-bit mantissa) for float32: parity needs fp32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def run_pair(cell, dtype, layers, bidirectional, packed):
    """(ours, cuDNN's): outputs and gradients, the same weights, inputs and states."""
    ours, ref = make_pair(
        cell, INPUT, HIDDEN, dtype, num_layers=layers, bidirectional=bidirectional
    )
    ours, ref = ours.to(CUDA), ref.to(CUDA)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(STEPS, BATCH, INPUT, generator=gen, dtype=dtype).to(CUDA).requires_grad_()
    hx = initial_state(ref, BATCH, dtype)
    hx = tuple(s.detach().to(CUDA).requires_grad_() for s in flat_states(hx))
    hx = hx if len(hx) == 2 else hx[0]
    states = range(len(flat_states(hx)))
    # what grads_of returns, in order: outputs, then gradients of the leaves
    names = ["output", *[f"state[{i}]" for i in states], "input", *[f"hx[{i}]" for i in states]]
    names += [name for name, _ in ours.named_parameters()]
    lengths = LENGTHS if packed else None
    got = [t for part in grads_of(ours, x, hx, lengths) for t in part]
    want = [t for part in grads_of(ref, x, hx, lengths) for t in part]
    return names, got, want


GRID = pytest.mark.parametrize(
    "cell,layers,bidirectional,packed",
    [
        (cell, layers, bidirectional, packed)
        for cell in CELLS
        for layers, bidirectional in ((1, False), (2, True))
        for packed in (False, True)
    ],
)


@GRID
def test_parity_with_cudnn_in_float64(cell, layers, bidirectional, packed):
    names, got, want = run_pair(cell, torch.float64, layers, bidirectional, packed)
    for name, a, b in zip(names, got, want, strict=True):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@GRID
def test_float32_on_cuda_is_as_accurate_as_cudnn(cell, layers, bidirectional, packed):
    """In float32, ours and cuDNN sum in different orders (a weight gradient sums 240 products
    here), so they differ by rounding; each is measured against the float64 result instead:
    ours may not be worse than cuDNN by more than a factor of two (plus 1e-6 of the scale)."""
    truth = run_pair(cell, torch.float64, layers, bidirectional, packed)[1]
    names, got, want = run_pair(cell, torch.float32, layers, bidirectional, packed)
    for name, a, b, t in zip(names, got, want, truth, strict=True):
        ours_error = (a.double() - t).abs().max().item()
        cudnn_error = (b.double() - t).abs().max().item()
        floor = 1e-6 * t.abs().max().item()
        assert ours_error <= 2 * cudnn_error + floor, (name, ours_error, cudnn_error)


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
@pytest.mark.parametrize("cell", CELLS)
def test_under_cuda_autocast_the_recurrence_runs_in_float32(cell, dtype):
    ours, ref = make_pair(cell, INPUT, HIDDEN, torch.float32)
    ours, ref = ours.to(CUDA), ref.to(CUDA)
    x = torch.randn(STEPS, BATCH, INPUT, device=CUDA).to(dtype)
    with torch.autocast("cuda", dtype=dtype):
        got, _ = ours(x)
    want, _ = ref(x.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
    got.sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in ours.parameters())


@pytest.mark.parametrize("cell", CELLS)
def test_cuda_and_cpu_give_the_same_forecast_net(cell):
    from forecast.models.network import ForecastNet

    torch.manual_seed(0)
    net = ForecastNet(
        7, 96, 24, cell=cell, impl="custom", hidden_size=32, proj_size=16 if cell == "lstmp" else 0
    ).eval()
    x = torch.randn(16, 96, 7)
    with torch.no_grad():
        want = net(x)
        got = net.to(CUDA)(x.to(CUDA)).cpu()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
