"""One global model over many series: how training and forecasting grow with the number of series.

    python benchmarks/scale.py                       # 1,000, 10,000 and 100,000 series
    python benchmarks/scale.py --sizes 1000 10000    # some of them
    python benchmarks/scale.py --quick               # small and fast: a smoke test of this script

Synthetic long-format data (unique_id, ds, y; hourly): seasonal series of varied length (60% to
140% of --length, 500 by default) and level (10 to 10,000), all ending at the same hour. For each
size, each in its own process so its peak RSS is its own:

- train.py (`forecast.pipeline.train` with the config train.py composes: the default LSTM,
  look-back 96, horizon 24, the last 24 values of each series for validation and 24 for test, a
  scaler per series, `data.windows_per_epoch` training windows per epoch): set-up seconds
  (reading, validating, scaling, indexing the windows, building the model), training seconds per
  epoch (validation taken out) and windows/s, validation seconds per epoch (every series' window),
  the whole run and its peak RSS;
- predict.py on the same file, with the run's export: series/s of its forecasting (reading to
  writing, as its summary times it), the process's wall seconds and peak RSS;
- the API: `forecast.load(run).predict(df)` on the DataFrame: the first call (it loads the
  exported model), then series/s of a second call, and the process's peak RSS.

Then how each grows: the exponent k of time ~ series^k between consecutive sizes (1: linear), and
the peak RSS each further million rows adds (a constant where memory follows the data).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `forecast` from this checkout when run as a script

from data_speed import rss_mb  # noqa: E402

SIZES = (1_000, 10_000, 100_000)
LOOKBACK, HORIZON = 96, 24
FULL = {"length": 500, "windows_per_epoch": 51_200, "epochs": 2, "batch_size": 256}
# --quick: a smoke test, so that this script cannot rot; the sizes and settings are tiny
QUICK = {"sizes": (30, 90), "length": 300, "windows_per_epoch": 64, "epochs": 2, "batch_size": 32}


def generate(path: Path, n_series: int, length: int, seed: int = 0) -> int:
    """A long Parquet file of `n_series` hourly series; returns its number of rows.

    Lengths are uniform in [0.6, 1.4] x `length`; every series ends at the same hour. Each is a
    level (log-uniform in 10..10,000) times a daily and a weekly season (amplitude and phase of
    its own), a small trend and noise. Built with array operations only, no loop per series.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    lengths = rng.integers(int(0.6 * length), int(1.4 * length) + 1, n_series)  # [S]
    series = np.repeat(np.arange(n_series), lengths)  # [N]: the series of each row
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # [S]: each series' first row
    position = np.arange(len(series)) - first[series]  # [N]: row within its series
    before_end = lengths[series] - 1 - position  # [N]: hours before the common last hour
    end = np.datetime64("2024-01-01T00:00", "ns")
    ds = end - before_end * np.timedelta64(1, "h")
    hour = (ds - np.datetime64("1970-01-01", "ns")) // np.timedelta64(1, "h")  # [N]
    level = np.exp(rng.uniform(np.log(10), np.log(10_000), n_series))[series]
    daily, weekly = rng.uniform(0.1, 0.5, n_series)[series], rng.uniform(0, 0.2, n_series)[series]
    phase = rng.uniform(0, 2 * np.pi, n_series)[series]
    trend = rng.normal(0, 2e-4, n_series)[series]
    shape = (
        1 + daily * np.sin(2 * np.pi * hour / 24 + phase) + weekly * np.sin(2 * np.pi * hour / 168)
    )
    y = level * (shape + trend * position + rng.normal(0, 0.05, len(series)))
    ids = pd.Categorical.from_codes(series, [f"s{s:06d}" for s in range(n_series)])
    pd.DataFrame({"unique_id": ids, "ds": ds, "y": y}).to_parquet(path)
    return len(series)


# ---- the measured cases, each in its own process ------------------------------------------------


def train_overrides(path: Path, out: Path, settings: dict, quick: bool) -> list[str]:
    """train.py's command line for this benchmark (without `hydra.run.dir`)."""
    overrides = [
        "data=csv",
        f"data.path={path}",
        "data.layout=long",
        "data.time_col=ds",
        "data.id_col=unique_id",
        "data.target=y",
        "data.scale_by=series",  # levels differ by orders of magnitude
        f"data.lookback={LOOKBACK}",
        f"data.horizon={HORIZON}",
        f"data.val_size={HORIZON}",
        f"data.test_size={HORIZON}",
        f"data.batch_size={settings['batch_size']}",
        "data.eval_batch_size=1024",
        f"data.windows_per_epoch={settings['windows_per_epoch']}",
        f"trainer.max_epochs={settings['epochs']}",
        "callbacks.early_stopping=null",
        "seed=1",
    ]
    return overrides + (["model.hidden_size=16"] if quick else [])


def measure_train(path: str, out: str, overrides: str) -> dict:
    """pipeline.train as train.py runs it, with callbacks that time each epoch's parts."""
    import pytorch_lightning as pl

    from forecast.config import compose_train_config
    from forecast.pipeline import train

    cfg = compose_train_config([*json.loads(overrides), f"output_dir={out}"])
    epochs: list[dict] = []

    class Epochs(pl.Callback):
        """Each epoch's training seconds (its validation pass taken out), windows and
        validation seconds, and the seconds and RSS when the fit begins (the data set up)."""

        clock: float | None = None

        def on_fit_start(self, trainer, pl_module):
            Epochs.setup, Epochs.setup_rss = time.perf_counter() - start, rss_mb("VmRSS")

        def on_train_epoch_start(self, trainer, pl_module):
            epochs.append({"windows": 0, "train_s": 0.0, "val_s": 0.0})
            Epochs.clock = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            epochs[-1]["windows"] += len(batch["x"])

        def on_validation_start(self, trainer, pl_module):
            if Epochs.clock is not None:  # a pass inside a training epoch (not the sanity check)
                epochs[-1]["train_s"] += time.perf_counter() - Epochs.clock
                Epochs.clock, Epochs.val_start = None, time.perf_counter()

        def on_validation_end(self, trainer, pl_module):
            if trainer.state.fn == "fit" and not trainer.sanity_checking and epochs:
                epochs[-1]["val_s"] += time.perf_counter() - Epochs.val_start
                Epochs.clock = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if Epochs.clock is not None:
                epochs[-1]["train_s"] += time.perf_counter() - Epochs.clock
                Epochs.clock = None

    start = time.perf_counter()
    train(cfg, callbacks=[Epochs()], progress=False)
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    return {
        "setup_s": Epochs.setup,
        "epochs": epochs,
        "run_s": time.perf_counter() - start,
        "setup_rss_mb": Epochs.setup_rss,
        "val_windows": metrics["val_windows"],
        "test_windows": metrics["test_windows"],
        "test_mse": metrics["test_mse"],
        "val_skill": metrics.get("val_skill"),
        "peak_rss_mb": rss_mb("VmHWM"),
    }


def measure_api(run: str, path: str) -> dict:
    """forecast.load(run).predict(df) on the DataFrame of `path`: the first call (which loads
    the exported model) and a second one."""
    import pandas as pd

    import forecast

    df = pd.read_parquet(path)
    start = time.perf_counter()
    model = forecast.load(run)
    forecasts = model.predict(df)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.predict(df)
    return {
        "series": int(forecasts["unique_id"].nunique()),
        "rows": len(forecasts),
        "first_s": first,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": rss_mb("VmHWM"),
    }


def child(*args: str) -> dict:
    """This script with `args` in a fresh process: the JSON result it prints last."""
    return run_process([sys.executable, __file__, *args], json_result=True)[0]


def run_process(cmd: list[str], json_result: bool = False) -> tuple:
    """Run `cmd`; (its last stdout line as JSON, or its stdout), its peak RSS MB, wall seconds."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1]) if json_result else stdout + stderr
    return result, usage.ru_maxrss / 1024, seconds  # Linux: ru_maxrss in KiB


def rate(count: int, seconds: float) -> float:
    """count / seconds; NaN when the time is below the summary's resolution (0.1 s: --quick)."""
    return count / seconds if seconds > 0 else float("nan")


def measure_predict_py(run: Path, path: Path, out: Path) -> dict:
    """predict.py as a user runs it; its summary line's forecasting seconds."""
    cmd = [sys.executable, "predict.py", f"model_dir={run}", f"input={path}", f"output={out}"]
    cmd += ["format=parquet", f"hydra.run.dir={out.parent / 'predict-hydra'}"]
    text, peak, wall = run_process(cmd)
    found = re.search(r"([\d,]+) series.* in ([\d.]+) s", text)
    if found is None:
        raise SystemExit(f"predict.py printed no summary:\n{text[-2000:]}")
    return {
        "series": int(found[1].replace(",", "")),
        "seconds": float(found[2]),
        "wall_s": wall,
        "peak_rss_mb": peak,
    }


def measure_size(n_series: int, settings: dict, quick: bool, folder: Path) -> dict:
    folder.mkdir(parents=True)
    path = folder / "series.parquet"
    # in a child: this process stays small, so it adds nothing to its children's peak RSS
    # (a child starts as a copy of its parent, and Linux counts that copy's peak as the child's)
    rows = child("--generate", str(path), str(n_series), str(settings["length"]))["rows"]
    run = folder / "run"
    overrides = json.dumps(train_overrides(path, run, settings, quick))
    train = child("--train", str(path), str(run), overrides)
    predict = measure_predict_py(run, path, folder / "forecasts")
    api = child("--api", str(run), str(path))
    for case in (predict, api):
        if case["series"] != n_series:
            raise SystemExit(f"{case['series']} series forecast, {n_series} in the data")
    return {
        "series": n_series,
        "rows": rows,
        "train": train,
        "predict_py": predict,
        "api": api,
    }


# ---- report --------------------------------------------------------------------------------------


def summary_row(r: dict) -> dict:
    """The table's figures of one size; epochs after the first (warm-up) where there are more."""
    epochs = r["train"]["epochs"]
    timed = epochs[1:] or epochs
    train_s = sum(e["train_s"] for e in timed) / len(timed)
    windows = sum(e["windows"] for e in timed) / len(timed)
    return {
        "series": r["series"],
        "rows": r["rows"],
        "setup_s": r["train"]["setup_s"],
        "epoch_s": train_s,
        "windows": windows,
        "windows_per_s": windows / train_s,
        "val_s": sum(e["val_s"] for e in timed) / len(timed),
        "train_peak": r["train"]["peak_rss_mb"],
        "train_run_s": r["train"]["run_s"],
        "predict_s": r["predict_py"]["seconds"],
        "predict_wall_s": r["predict_py"]["wall_s"],
        "predict_per_s": rate(r["series"], r["predict_py"]["seconds"]),
        "predict_peak": r["predict_py"]["peak_rss_mb"],
        "api_first_s": r["api"]["first_s"],
        "api_s": r["api"]["seconds"],
        "api_per_s": rate(r["series"], r["api"]["seconds"]),
        "api_peak": r["api"]["peak_rss_mb"],
    }


COLUMNS = {  # heading -> (figure, format)
    "series": ("series", ","),
    "rows": ("rows", ","),
    "train.py: set-up s": ("setup_s", ".2f"),
    "epoch s (training)": ("epoch_s", ".2f"),
    "windows/s": ("windows_per_s", ",.0f"),
    "validation s": ("val_s", ".2f"),
    "whole run s": ("train_run_s", ".1f"),
    "peak RSS MB": ("train_peak", ",.0f"),
    "predict.py: forecasting s": ("predict_s", ".2f"),
    "series/s": ("predict_per_s", ",.0f"),
    "process s": ("predict_wall_s", ".1f"),
    "peak RSS MB ": ("predict_peak", ",.0f"),
    "API: predict s": ("api_s", ".2f"),
    "series/s ": ("api_per_s", ",.0f"),
    "first call s": ("api_first_s", ".2f"),
    "peak RSS MB  ": ("api_peak", ",.0f"),
}


def print_report(results: list[dict], settings: dict) -> None:
    rows = [summary_row(r) for r in results]
    print(
        f"# look-back {LOOKBACK}, horizon {HORIZON}, {settings['length']} rows per series on "
        f"average; train.py: default LSTM, {settings['windows_per_epoch']:,} windows per epoch, "
        f"batch {settings['batch_size']}, {settings['epochs']} epochs (figures: epochs after the "
        f"first); {os.cpu_count()} cores"
    )
    print("| " + " | ".join(heading.strip() for heading in COLUMNS) + " |")
    print("| " + " | ".join(["---"] * len(COLUMNS)) + " |")
    for s in rows:
        print("| " + " | ".join(format(s[key], spec) for key, spec in COLUMNS.values()) + " |")
    print_growth(rows)


GROWS = {  # figure -> its label
    "setup_s": "train.py set-up s",
    "epoch_s": "train.py epoch s (a fixed number of windows: flat)",
    "val_s": "train.py validation s (every series)",
    "predict_s": "predict.py forecasting s",
    "api_s": "API predict s",
}
PEAKS = {"train_peak": "train.py", "predict_peak": "predict.py", "api_peak": "API"}


def growth(a: float, b: float, n_a: int, n_b: int) -> float:
    """k in b / a = (n_b / n_a)^k."""
    return math.log(b / a) / math.log(n_b / n_a)


def print_growth(rows: list[dict]) -> None:
    if len(rows) < 2:
        return
    pairs = list(zip(rows, rows[1:], strict=False))
    labels = [f"{a['series']:,} -> {b['series']:,}" for a, b in pairs]
    print("\nGrowth: k in time ~ series^k (1: linear), and the peak RSS each further million rows")
    print("adds (MB; a constant: memory follows the data)")
    print("| figure | " + " | ".join(labels) + " |")
    print("| --- |" + " --- |" * len(pairs))
    for key, label in GROWS.items():
        cells = [f"{growth(a[key], b[key], a['series'], b['series']):.2f}" for a, b in pairs]
        print(f"| k, {label} | " + " | ".join(cells) + " |")
    for key, label in PEAKS.items():
        cells = [f"{(b[key] - a[key]) / ((b['rows'] - a['rows']) / 1e6):,.0f}" for a, b in pairs]
        print(f"| MB per million rows, {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="numbers of series")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--train", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--api", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        path, n_series, length = args.generate
        print(json.dumps({"rows": generate(Path(path), int(n_series), int(length))}))
        return
    if args.train:
        print(json.dumps(measure_train(*args.train)))
        return
    if args.api:
        print(json.dumps(measure_api(*args.api)))
        return
    from forecast.runtime import prepare_process

    prepare_process()  # every child inherits the process settings train.py runs with
    settings = {k: v for k, v in (QUICK if args.quick else FULL).items() if k != "sizes"}
    sizes = args.sizes or (QUICK["sizes"] if args.quick else SIZES)
    results = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        for n in sizes:
            results.append(measure_size(n, settings, args.quick, Path(tmp) / f"series{n}"))
            print(f"# {n:,} series done", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    print_report(results, settings)


if __name__ == "__main__":
    main()
