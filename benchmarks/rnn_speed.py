"""Speed of our LSTM / LSTMP / GRU against torch's fused modules and a naive per-step loop.

    python benchmarks/rnn_speed.py                  # the table, in this process's environment
    python benchmarks/rnn_speed.py --malloc-compare # the table twice: glibc defaults, then tuned
    python benchmarks/rnn_speed.py --quick          # tiny sizes, one repeat (a smoke test)
    python benchmarks/rnn_speed.py --device cuda    # on a GPU: ours against cuDNN

Columns: milliseconds per call, median of the repeats after warm-up; `fwd` is a forward pass
under no_grad, `f+b` a forward pass plus the backward of `output.sum()`; `ratio` is ours over
torch's (lower is better, <1 means ours is faster). "ours" is our module on its fast path
(`backend="fast"`, forecast/nn/fast: the C++ LSTM and GRU loops, compiled on first use, with
their hand-written backward); "ours reference" the same module on the reference loop
(`backend="reference"`: public torch ops, autograd through the loop), what runs where the fast
path does not. "naive" steps textbook cells in a Python loop (input projection inside the loop),
for contrast.

`--decoder` measures instead one training step (forward, backward, Adam) of the default model
(`model=lstm impl=torch decoder=pmf`, ETTh1's batch of 256 windows) with its parallel decoder's
step in torch ops, as it runs, against the same step through the fast path's C++ kernel and
oneDNN product: what the default would gain from needing a compiler.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecast.nn import GRU, LSTM, broadcast_step  # noqa: E402 - needs the path above
from forecast.nn.cells import gru_cell, lstm_cell  # noqa: E402

# (batch, length, input, hidden, layers)
FULL_SIZES = [(64, 96, 7, 128, 2), (256, 336, 7, 256, 1)]
QUICK_SIZES = [(4, 8, 3, 8, 2)]
CELLS = ("lstm", "lstmp", "gru")
# glibc returns freed memory to the OS after every large step; these stop that.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


class NaiveLoop(nn.Module):
    """Per-step Python loop over textbook cells, reusing `rnn`'s parameters."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x):  # x: [B, T, I]
        rnn = self.rnn
        batch = x.size(0)
        steps = x.unbind(1)
        for layer in range(rnn.num_layers):
            p = {name: getattr(rnn, f"{name}_l{layer}", None) for name in _PARAM_NAMES}
            h = x.new_zeros(batch, rnn.proj_size or rnn.hidden_size)
            c = x.new_zeros(batch, rnn.hidden_size)
            outputs = []
            for x_t in steps:
                if isinstance(rnn, GRU):
                    h = gru_cell(x_t, h, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
                else:
                    h, c = lstm_cell(x_t, h, c, *(p[name] for name in _PARAM_NAMES))
                outputs.append(h)
            steps = outputs
        return torch.stack(steps, 1), None


_PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def build(cell: str, impl: str, input_size: int, hidden: int, layers: int) -> nn.Module:
    """impl: "torch" (torch's module), "fast" / "reference" (ours on that backend), "naive"."""
    kwargs = {"num_layers": layers, "batch_first": True}
    if cell == "lstmp":
        kwargs["proj_size"] = hidden // 2
    if impl == "torch":
        return (nn.GRU if cell == "gru" else nn.LSTM)(input_size, hidden, **kwargs)
    backend = "reference" if impl == "naive" else impl
    rnn = (GRU if cell == "gru" else LSTM)(input_size, hidden, backend=backend, **kwargs)
    return NaiveLoop(rnn) if impl == "naive" else rnn


def median_ms(fn, warmup: int, repeats: int, device: torch.device) -> float:
    def sync():  # kernels run asynchronously on a GPU: time them to their end
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(module: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> tuple[float, float]:
    """(forward ms under no_grad, forward + backward ms)."""

    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        module.zero_grad(set_to_none=True)
        module(x)[0].sum().backward()

    device = x.device
    return (
        median_ms(forward, warmup, repeats, device),
        median_ms(forward_backward, warmup, repeats, device),
    )


HEADER = (
    "| cell | batch x length x input -> hidden, layers | fwd ours | fwd torch | fwd ratio "
    "| fwd ours reference | fwd naive | f+b ours | f+b torch | f+b ratio "
    "| f+b ours reference | f+b naive |"
)


def row(cell: str, size: tuple[int, ...], quick: bool, repeats: int, device: str = "cpu") -> str:
    batch, length, input_size, hidden, layers = size
    warmup = 1 if quick else 3
    torch.manual_seed(0)
    x = torch.randn(batch, length, input_size, device=device)

    def make(impl):
        if impl == "fast" and device != "cpu":
            impl = "auto"  # the fast path is the CPU's: elsewhere ours runs its reference
        return build(cell, impl, input_size, hidden, layers).to(device)

    ms = {}
    for impl in ("fast", "torch", "reference"):
        ms[impl] = measure(make(impl), x, warmup, repeats)
    # the naive loop is only there for contrast: one warm-up and few repeats keep the run short
    ms["naive"] = measure(make("naive"), x, 1, 1 + repeats // 4)
    (fo, bo), (ft, bt), (fr, br), (fn, bn) = (
        ms[k] for k in ("fast", "torch", "reference", "naive")
    )
    name = f"{batch}x{length}x{input_size} -> {hidden}, {layers}"
    return (
        f"| {cell} | {name} | {fo:.2f} | {ft:.2f} | {fo / ft:.2f} | {fr:.2f} | {fn:.2f} "
        f"| {bo:.2f} | {bt:.2f} | {bo / bt:.2f} | {br:.2f} | {bn:.2f} |"
    )


def print_table(quick: bool, repeats: int, device: str = "cpu") -> None:
    """Print the table a row at a time, so a long run shows progress."""
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
    for cell in CELLS:
        for size in QUICK_SIZES if quick else FULL_SIZES:
            print(row(cell, size, quick, repeats, device), flush=True)


def decoder_table(quick: bool, repeats: int) -> None:
    """The default model's training step, its decoder step in torch ops against the fast path's,
    measured alternately (side by side) so that a change of load hits both."""
    from unittest import mock

    import forecast.models.network as network

    batch, lookback, horizon, channels, segment = (
        (8, 48, 24, 3, 12) if quick else (256, 96, 96, 7, 24)
    )
    torch.manual_seed(0)
    net = network.ForecastNet(
        channels, lookback, horizon, segment_len=segment, decoder="pmf", head_dropout=0.5
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(batch, lookback, channels), torch.randn(batch, horizon, channels, 1)
    twin = _fast_twin(net.rnn)
    step_on_fast = mock.patch.object(
        network, "broadcast_step", lambda rnn, *args: broadcast_step(twin, *args)
    )

    def step():
        optimizer.zero_grad(set_to_none=True)
        (net(x) - y).abs().mean().backward()
        optimizer.step()

    def step_fast():
        with step_on_fast:
            step()

    times = {"torch ops": [], "fast path": []}
    for _ in range(1 if quick else 3):  # warm-up
        step(), step_fast()
    for _ in range(repeats):
        times["torch ops"].append(median_ms(step, 0, 1, torch.device("cpu")))
        times["fast path"].append(median_ms(step_fast, 0, 1, torch.device("cpu")))
    base = statistics.median(times["torch ops"])
    print(f"default model, batch {batch}: one training step (forward, backward, Adam)")
    print("| decoder step | ms per step (median) | ratio |\n|---|---|---|")
    for label, values in times.items():
        ms = statistics.median(values)
        print(f"| {label} | {ms:.2f} | {ms / base:.2f} |")


def _fast_twin(rnn: nn.Module) -> nn.Module:
    """Our LSTM holding the very parameters of torch's `rnn` (gradients reach them), on the fast
    path: broadcast_step on it is the decoder step through the C++ kernel and oneDNN."""
    twin = LSTM(rnn.input_size, rnn.hidden_size, batch_first=True, backend="fast")
    for name, param in rnn.named_parameters():
        setattr(twin, name, param)
    return twin


def malloc_compare(argv: list[str]) -> None:
    """Run this script twice in fresh processes: glibc's malloc defaults, then TUNED_MALLOC."""
    base = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC}
    for label, env in (("glibc defaults", base), ("tuned malloc", {**base, **TUNED_MALLOC})):
        settings = " ".join(f"{k}={env[k]}" for k in TUNED_MALLOC if k in env) or "(unset)"
        print(f"\n### {label}: {settings}\n", flush=True)
        subprocess.run([sys.executable, __file__, *argv], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure")
    parser.add_argument(
        "--malloc-compare", action="store_true", help="run with glibc defaults and tuned malloc"
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument(
        "--decoder", action="store_true", help="the default model's step, decoder fast or not"
    )
    args = parser.parse_args()
    passthrough = ["--quick"] if args.quick else ["--repeats", str(args.repeats)]
    passthrough += ["--device", args.device] + (["--decoder"] if args.decoder else [])
    if args.threads:
        passthrough += ["--threads", str(args.threads)]
        torch.set_num_threads(args.threads)
    if args.malloc_compare:
        malloc_compare(passthrough)
        return
    repeats = 1 if args.quick else args.repeats
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"torch {torch.__version__}, {where}, threads {torch.get_num_threads()}, "
        "ms per call (median)"
    )
    if args.decoder:
        decoder_table(args.quick, 3 if args.quick else 3 * repeats)
    else:
        print_table(args.quick, repeats, args.device)


if __name__ == "__main__":
    main()
