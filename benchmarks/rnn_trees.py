"""Two checkouts' recurrent layers side by side on this machine: each one's LSTM, LSTMP and GRU
(the module's default path: the fast path where it applies) against torch's modules.

    git worktree add ../old eb95fe0
    python benchmarks/rnn_trees.py ../old                  # that tree against this one
    python benchmarks/rnn_trees.py ../old --rounds 3 --sizes 64x96x7x128x2
    python benchmarks/rnn_trees.py --quick                 # smoke test: this tree, tiny sizes

Speed ratios move with the hardware (instruction set, cache sizes) as much as with the code, so a
target measured on one machine says little on another. This runs the trees alternately, each in
a fresh process (a tree's `forecast` is imported from its folder, its kernels built before
timing), and prints each one's ratio ours / torch's measured in the same process: the change in
the ratio between trees on one machine is the code's. Columns as in rnn_speed.py: ms per call
(median), `fwd` a forward pass under no_grad, `f+b` forward plus the backward of `output.sum()`.
An LSTMP projects to half the hidden size. Sizes: batch x length x input x hidden x layers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = ["64x96x7x128x2", "256x336x7x256x1"]
QUICK_SIZES = ["4x8x3x8x1"]
CELLS = ("lstm", "lstmp", "gru")


def median_ms(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def worker(tree: str, size: str, repeats: int) -> dict:
    """In the child: time `tree`'s modules against torch's at `size`."""
    sys.path.insert(0, tree)
    import torch
    from torch import nn

    import forecast.nn as ours_nn

    assert Path(ours_nn.__file__).resolve().is_relative_to(Path(tree).resolve()), ours_nn.__file__
    torch.manual_seed(0)
    batch, length, inputs, hidden, layers = (int(v) for v in size.split("x"))
    x = torch.randn(batch, length, inputs)
    x_grad = x.clone().requires_grad_(True)
    table = {}
    for cell in CELLS:
        if cell == "gru":
            theirs = nn.GRU(inputs, hidden, layers, batch_first=True)
            ours = ours_nn.GRU(inputs, hidden, layers, batch_first=True)
        else:
            proj = hidden // 2 if cell == "lstmp" else 0
            theirs = nn.LSTM(inputs, hidden, layers, batch_first=True, proj_size=proj)
            ours = ours_nn.LSTM(inputs, hidden, layers, batch_first=True, proj_size=proj)
        ours.load_state_dict(theirs.state_dict())
        with torch.no_grad():  # the same forecast, and the kernels built before any timing
            torch.testing.assert_close(
                ours(x)[0], theirs(x)[0], atol=1e-5, rtol=0
            )  # as the parity tests
        row = {}
        for name, module in (("ours", ours), ("torch", theirs)):

            def forward(module=module):
                with torch.no_grad():
                    module(x)

            def forward_backward(module=module):
                module(x_grad)[0].sum().backward()

            row[f"fwd {name}"] = median_ms(forward, repeats)
            row[f"f+b {name}"] = median_ms(forward_backward, repeats)
        table[cell] = row
    return table


def measure(tree: Path, size: str, repeats: int) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from rnn_trees import worker; "
        "print(json.dumps(worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, str(Path(__file__).parent), str(tree), size]
        + [str(repeats)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{tree} at {size} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, help="other checkouts (this one is added)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the trees")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per figure")
    parser.add_argument("--sizes", nargs="+", default=SIZES)
    parser.add_argument("--quick", action="store_true", help="this tree, tiny sizes, 1 round")
    args = parser.parse_args()
    trees = [*args.trees, ROOT]
    sizes, rounds, repeats = args.sizes, args.rounds, args.repeats
    if args.quick:
        sizes, rounds, repeats = QUICK_SIZES, 1, 2
    print(
        "| tree | round | size | cell | fwd ours | fwd torch | fwd ratio | f+b ours | f+b torch "
        "| f+b ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        for round_ in range(1, rounds + 1):
            for tree in trees:
                name = "this" if tree == ROOT else str(tree)
                for cell, row in measure(tree, size, repeats).items():
                    fwd, fb = (row[f"{k} ours"] / row[f"{k} torch"] for k in ("fwd", "f+b"))
                    print(
                        f"| {name} | {round_} | {size} | {cell} | {row['fwd ours']:.2f} | "
                        f"{row['fwd torch']:.2f} | {fwd:.2f} | {row['f+b ours']:.2f} | "
                        f"{row['f+b torch']:.2f} | {fb:.2f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
