"""Windows per second served by the train loader, and the peak memory (RSS) of each case.

    python benchmarks/data_speed.py            # ETTh1, and a generated 10,000 x 1,000 long file
    python benchmarks/data_speed.py --quick    # small and fast: a smoke test of this script

Each case runs in its own subprocess, so its peak RSS is its own: reading, validating, scaling,
indexing the windows and serving batches for a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (32, 256)


def generate_long(path: Path, n_series: int, length: int) -> None:
    """A long Parquet file: unique_id, ds (hourly), y; series of one length, one row each."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    steps = np.arange(length)
    ids = pd.Categorical.from_codes(
        np.repeat(np.arange(n_series), length), [f"s{s:05d}" for s in range(n_series)]
    )
    start = np.datetime64("2020-01-01T00:00", "ns")
    ds = start + np.tile(steps, n_series) * np.timedelta64(1, "h")
    level = np.repeat(rng.uniform(10, 1000, n_series), length)
    y = level * (1 + 0.3 * np.sin(np.tile(steps, n_series) * 2 * np.pi / 24))
    y += rng.normal(0, 1, n_series * length)
    pd.DataFrame({"unique_id": ids, "ds": ds, "y": y}).to_parquet(path)


def measure(case: str, path: str, lookback: int, horizon: int, seconds: float) -> dict:
    """Set the data up, then serve train batches for `seconds` per batch size."""
    import torch

    from forecast.data import SeriesDataModule

    # A batch gather is small: one thread serves it fastest and does not fight the training
    # threads (or, here, another process) for the cores, as DataLoader workers also do.
    torch.set_num_threads(1)
    imported_rss = rss_mb("VmRSS")
    start = time.perf_counter()
    if case == "etth1":
        options = dict(name="ETTh1.csv", borders=[8640, 11520, 14400])
    else:
        options = dict(path=path, layout="long", time_col="ds", target="y", scale_by="series")
        options.update(val_size=horizon, test_size=horizon)
    dm = SeriesDataModule(lookback=lookback, horizon=horizon, **options)
    dm.setup("fit")
    result = {
        "case": case,
        "series": dm.frame.n_series,
        "rows": len(dm.frame.values),
        "train_windows": len(dm.datasets["train"]),
        "setup_s": time.perf_counter() - start,
        "imported_rss_mb": imported_rss,
    }
    for batch_size in BATCH_SIZES:
        dm.loader_options["batch_size"] = batch_size
        result[f"windows_per_s_{batch_size}"] = serve(dm.train_dataloader(), seconds)
    result["peak_rss_mb"] = rss_mb("VmHWM")
    return result


def serve(loader, seconds: float) -> float:
    """Windows per second drawn from `loader` (shuffled) for about `seconds`."""
    windows, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in loader:
            windows += len(batch["x"])
            if time.perf_counter() - start >= seconds:
                break
    return windows / (time.perf_counter() - start)


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process; the peak is not inherited across exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def child(*args: str, script: str = __file__) -> dict:
    """Run `script` (this one by default) in a fresh process; returns the JSON it prints last."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"case {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short timings")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, path, lookback, horizon, seconds = args.child
        print(json.dumps(measure(case, path, int(lookback), int(horizon), float(seconds))))
        return
    n_series, length, seconds = (200, 500, 0.5) if args.quick else (10_000, 1_000, 3.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.parquet"
        generate_long(path, n_series, length)
        results = [
            child("--child", "etth1", "-", "96", "96", str(seconds)),
            child("--child", "long", str(path), "96", "24", str(seconds)),
        ]
    print_table(results)


def print_table(results: list[dict]) -> None:
    head = f"{'case':<8}{'series':>8}{'rows':>12}{'windows':>12}{'setup s':>9}"
    head += "".join(f"{f'win/s b={b}':>14}" for b in BATCH_SIZES)
    head += f"{'RSS MB: imports':>17}{'peak':>7}"
    print(head)
    for r in results:
        line = f"{r['case']:<8}{r['series']:>8}{r['rows']:>12}{r['train_windows']:>12}"
        line += f"{r['setup_s']:>9.2f}"
        line += "".join(f"{r[f'windows_per_s_{b}']:>14,.0f}" for b in BATCH_SIZES)
        print(line + f"{r['imported_rss_mb']:>17.0f}{r['peak_rss_mb']:>7.0f}")


if __name__ == "__main__":
    main()
