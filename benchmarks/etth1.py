"""ETTh1, standard protocol: test MSE/MAE of each model at each horizon, averaged over seeds.

    python benchmarks/etth1.py                      # lstm, lstmp, gru x 96/192/336/720 x 3 seeds
    python benchmarks/etth1.py --quick              # one short run per model (smoke test)
    python benchmarks/etth1.py --models gru --horizons 96 --seeds 1 -- model.hidden_size=64
    python benchmarks/etth1.py --jobs 8 -- trainer=gpu  # on a GPU: eight runs at a time

Each run is `train.py experiment=etth1_<horizon>` in a subprocess (its own run directory under
--out); the table shows the mean and spread over seeds and the training time of each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {96: 0.40, 192: 0.45, 336: 0.49, 720: 0.50}  # issue targets, test MSE
DLINEAR = {96: 0.386, 192: 0.437, 336: 0.481, 720: 0.519}  # published, look-back 96
SEGRNN = {96: 0.368, 192: 0.408, 336: 0.444, 720: 0.446}


def run(model: str, horizon: int, seed: int, out: Path, extra: list[str]) -> dict:
    run_dir = out / f"{model}-h{horizon}-s{seed}"
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        f"experiment=etth1_{horizon}",
        f"model={model}",
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["seconds"] = time.perf_counter() - start
    return metrics


def mean_of(runs: list[dict], key: str) -> str:
    """The runs' mean of `key` (skill against the better naive forecast), or - where a run has
    none (no validation or test windows)."""
    values = [r.get(key) for r in runs]
    if any(v is None for v in values):
        return "-"
    return f"{statistics.mean(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lstm", "lstmp", "gru"])
    parser.add_argument("--horizons", nargs="+", type=int, default=[96, 192, 336, 720])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="run directories (default: temp)")
    parser.add_argument("--quick", action="store_true", help="tiny budget, one seed, horizon 96")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at a time (a GPU has room for several)"
    )
    parser.add_argument("overrides", nargs="*", help="train.py overrides for every run")
    args = parser.parse_args()
    extra = list(args.overrides)
    if args.quick:
        args.horizons, args.seeds = [96], 1
        extra += [
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
        ]
    out = args.out or Path(tempfile.mkdtemp(prefix="etth1-bench-"))
    # our C++ kernels compile on first use, once per machine: not inside a timed run
    warm_up = "from forecast.nn import fast; fast.extension()"
    subprocess.run([sys.executable, "-c", warm_up], cwd=ROOT, check=True)

    print(
        f"# ETTh1, look-back 96, multivariate; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; overrides: {' '.join(extra) or '-'}"
    )
    print(
        "| model | horizon | test MSE (mean ± sd) | test MAE | target | DLinear | SegRNN "
        "| val skill | test skill | epochs | train s / run |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    seeds = range(1, args.seeds + 1)
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    pending = {
        (horizon, model, seed): pool.submit(run, model, horizon, seed, out, extra)
        for horizon in args.horizons
        for model in args.models
        for seed in seeds
    }
    for horizon in args.horizons:
        for model in args.models:
            runs = [pending[horizon, model, seed].result() for seed in seeds]
            mse = [r["test_mse"] for r in runs]
            mae = [r["test_mae"] for r in runs]
            spread = statistics.stdev(mse) if len(mse) > 1 else 0.0
            print(
                f"| {model} | {horizon} | {statistics.mean(mse):.4f} ± {spread:.4f} "
                f"| {statistics.mean(mae):.4f} | {TARGETS.get(horizon, '-')} "
                f"| {DLINEAR.get(horizon, '-')} | {SEGRNN.get(horizon, '-')} "
                f"| {mean_of(runs, 'val_skill')} | {mean_of(runs, 'test_skill')} "
                f"| {statistics.mean(r['epochs'] for r in runs):.1f} "
                f"| {statistics.mean(r['fit_seconds'] for r in runs):.0f} |",
                flush=True,
            )
    pool.shutdown()
    print(f"\nrun directories: {out}")


if __name__ == "__main__":
    main()
