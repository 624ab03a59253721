"""Speed of our LSTM / LSTMP / GRU against torch's fused modules and a naive per-step loop.

    python benchmarks/rnn_speed.py                  # the table, in this process's environment
    python benchmarks/rnn_speed.py --malloc-compare # the table twice: glibc defaults, then tuned
    python benchmarks/rnn_speed.py --quick          # tiny sizes, one repeat (a smoke test)
    python benchmarks/rnn_speed.py --device cuda    # on a GPU: ours against cuDNN

Columns: milliseconds per call, median of the repeats after warm-up; `fwd` is a forward pass
under no_grad, `f+b` a forward pass plus the backward of `output.sum()`; `ratio` is ours over
torch's (lower is better, <1 means ours is faster). "ours" runs the LSTM's C++ loop (compiled on
first use, see forecast/nn/fused.py) where it applies; "ours TorchScript" is the same module
with it switched off (`fused_loop = False`: the TorchScript loops with the hand-written
backward, what the GRU always runs). "ours autograd" is our fallback (autograd through the
compiled loop instead of the hand-written backward). "naive" steps textbook cells
in a Python loop (input projection inside the loop, no compilation), for contrast.
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

from forecast.nn import GRU, LSTM  # noqa: E402 - needs the path above when run as a script
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
    proj = {"proj_size": hidden // 2} if cell == "lstmp" else {}
    if impl == "torch":
        cls = nn.GRU if cell == "gru" else nn.LSTM
    else:
        cls = GRU if cell == "gru" else LSTM
    rnn = cls(input_size, hidden, num_layers=layers, batch_first=True, **proj)
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
    "| fwd ours TorchScript | fwd naive | f+b ours | f+b torch | f+b ratio "
    "| f+b ours TorchScript | f+b ours autograd | f+b naive |"
)


def row(cell: str, size: tuple[int, ...], quick: bool, repeats: int, device: str = "cpu") -> str:
    batch, length, input_size, hidden, layers = size
    warmup = 1 if quick else 3
    torch.manual_seed(0)
    x = torch.randn(batch, length, input_size, device=device)

    def make(impl):
        return build(cell, impl, input_size, hidden, layers).to(device)

    ms = {}
    for impl in ("custom", "torch"):
        ms[impl] = measure(make(impl), x, warmup, repeats)
    scripted = make("custom")
    if scripted.fused_loop:
        scripted.fused_loop = False  # the TorchScript loops the C++ loop replaces
        ms["scripted"] = measure(scripted, x, warmup, repeats)
    fallback = make("custom")
    fallback.manual_backward = False  # autograd through the compiled loop
    ms["autograd"] = measure(fallback, x, warmup, repeats)
    # the naive loop is only there for contrast: one warm-up and few repeats keep the run short
    ms["naive"] = measure(make("naive"), x, 1, 1 + repeats // 4)
    (fo, bo), (ft, bt), (_, ba), (fn, bn) = (
        ms[k] for k in ("custom", "torch", "autograd", "naive")
    )
    fs, bs = (f"{v:.2f}" for v in ms["scripted"]) if "scripted" in ms else ("same", "same")
    name = f"{batch}x{length}x{input_size} -> {hidden}, {layers}"
    return (
        f"| {cell} | {name} | {fo:.2f} | {ft:.2f} | {fo / ft:.2f} | {fs} | {fn:.2f} "
        f"| {bo:.2f} | {bt:.2f} | {bo / bt:.2f} | {bs} | {ba:.2f} | {bn:.2f} |"
    )


def print_table(quick: bool, repeats: int, device: str = "cpu") -> None:
    """Print the table a row at a time, so a long run shows progress."""
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
    for cell in CELLS:
        for size in QUICK_SIZES if quick else FULL_SIZES:
            print(row(cell, size, quick, repeats, device), flush=True)


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
    args = parser.parse_args()
    passthrough = ["--quick"] if args.quick else ["--repeats", str(args.repeats)]
    passthrough += ["--device", args.device]
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
    print_table(args.quick, repeats, args.device)


if __name__ == "__main__":
    main()
