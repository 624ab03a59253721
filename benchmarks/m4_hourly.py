"""M4 Hourly: our models as global models over the 414 series, scored like the competition.

    python benchmarks/m4_hourly.py            # lstm, lstmp, gru; experiment=m4_hourly each
    python benchmarks/m4_hourly.py --quick    # a few batches of one epoch (smoke test)
    python benchmarks/m4_hourly.py --combine runs_2021 runs_2022 runs_2023
        # no training: the runs of earlier --out folders scored alone, and per model the median
        # and mean of their forecasts (what ensemble.seeds=[...] with those seeds combines)

Each model is trained by `train.py experiment=m4_hourly` (validation: the last 48 values of each
training series), exported, and used by the batch forecaster on the raw training file; its
48-step forecasts are scored against the competition's test part: sMAPE (%), MASE (scale: the
in-sample seasonal naive error, lag 24) and OWA against Naive2, beside Naive2, seasonal naive
and published results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: python benchmarks/m4_hourly.py

from forecast.baselines import naive2, seasonal_naive  # noqa: E402
from forecast.data import dataset_path  # noqa: E402
from forecast.metrics import owa  # noqa: E402
from forecast.nn import fast  # noqa: E402
from forecast.predict import BatchForecaster  # noqa: E402

HORIZON, SEASON = 48, 24
# Makridakis et al., The M4 Competition: 100,000 time series and 61 forecasting methods, IJF 2020
PUBLISHED = {"Smyl (ES-RNN), M4 winner": (9.328, 0.893)}


def score(forecasts: dict[str, np.ndarray], train: pd.DataFrame, test: pd.DataFrame):
    """Mean sMAPE and MASE over the series; forecasts[id] is [48]."""
    smapes, mases = [], []
    for series_id, row in train.iterrows():
        history = row.dropna().to_numpy(float)
        y, f = test.loc[series_id].to_numpy(float), forecasts[series_id]
        smapes.append(np.mean(200 * np.abs(f - y) / (np.abs(y) + np.abs(f))))
        scale = np.mean(np.abs(history[SEASON:] - history[:-SEASON]))
        mases.append(np.mean(np.abs(f - y)) / scale)
    return float(np.mean(smapes)), float(np.mean(mases))


def baseline(method, train: pd.DataFrame) -> dict[str, np.ndarray]:
    return {sid: method(row.dropna().to_numpy(float)) for sid, row in train.iterrows()}


def forecasts_of(run_dir: Path, train_path: Path) -> pd.DataFrame:
    """A run's forecasts of the training file (written by train_and_forecast): [series, 48]."""
    frame = pd.read_csv(run_dir / "forecasts" / f"{train_path.name.split('.')[0]}.forecast.csv")
    return frame.pivot(index="unique_id", columns="step", values="y_hat")


def combine(out_dirs: list[Path], train_path: Path, train, test, naive2_scores) -> None:
    """Score each model's runs in `out_dirs` alone, then the median and mean of their
    forecasts (an ensemble over whatever differs between the folders: seeds, look-backs)."""
    print("| model | runs | sMAPE | MASE | OWA |")
    print("| --- | --- | --- | --- | --- |")
    models = sorted({p.parent.name for d in out_dirs for p in d.glob("*/forecasts")})
    for model in models:
        runs = [d / model for d in out_dirs if (d / model / "forecasts").is_dir()]
        tables = [forecasts_of(run, train_path) for run in runs]
        stacked = np.stack([t.loc[tables[0].index].to_numpy(float) for t in tables])
        cases = [(run.parent.name, stacked[k]) for k, run in enumerate(runs)]
        if len(tables) > 1:
            cases += [(f"median of {len(tables)}", np.median(stacked, 0))]
            cases += [(f"mean of {len(tables)}", stacked.mean(0))]
        for name, values in cases:
            forecasts = dict(zip(tables[0].index, values, strict=True))
            smape_value, mase_value = score(forecasts, train, test)
            value = owa(smape_value, mase_value, *naive2_scores)
            print(f"| {model} | {name} | {smape_value:.3f} | {mase_value:.3f} | {value:.3f} |")


def train_and_forecast(model: str, out: Path, train_path: Path, test_path: Path, extra) -> tuple:
    run_dir = out / model
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "experiment=m4_hourly",
        f"model={model}",
        f"data.path={train_path}",
        f"data.test_path={test_path}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    BatchForecaster(run_dir, log=lambda message: None).run(train_path, run_dir / "forecasts")
    table = forecasts_of(run_dir, train_path)
    return {sid: table.loc[sid].to_numpy(float) for sid in table.index}, seconds, metrics


def skill_cells(metrics: dict | None) -> str:
    """val skill | test skill | the naive blend's weight (of train.py's metrics.json)."""
    if metrics is None:
        return "- | - | -"
    cells = [metrics.get("val_skill"), metrics.get("test_skill")]
    text = [("-" if v is None else f"{v:.3f}") for v in cells]
    weight = metrics.get("naive_weight")
    if weight is None:
        text.append("-")
    else:
        lag = "last" if metrics.get("naive_blend") == "last" else f"lag {metrics.get('naive_lag')}"
        text.append(f"{weight:.3f} ({lag})")
    return " | ".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lstm", "lstmp", "gru"])
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: experiment/m4_hourly.yaml's (20)"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="OUT")
    parser.add_argument("overrides", nargs="*", help="train.py overrides for every run")
    args = parser.parse_args()
    extra = [*([f"trainer.max_epochs={args.epochs}"] if args.epochs else []), *args.overrides]
    if args.quick:
        extra += ["trainer.max_epochs=1", "trainer.limit_train_batches=5"]
    out = args.out or Path(tempfile.mkdtemp(prefix="m4-bench-"))
    fast.extension()  # our C++ kernels compile on first use, once per machine: not in a run
    train_path, test_path = dataset_path("M4-Hourly-train.csv"), dataset_path("M4-Hourly-test.csv")
    train = pd.read_csv(train_path, index_col=0)
    test = pd.read_csv(test_path, index_col=0)

    naive2_smape, naive2_mase = score(
        baseline(lambda h: naive2(h, HORIZON, SEASON), train), train, test
    )
    if args.combine:
        combine(args.combine, train_path, train, test, (naive2_smape, naive2_mase))
        return
    rows = [("Naive2 (ours)", naive2_smape, naive2_mase, "-", None)]
    snaive = score(baseline(lambda h: seasonal_naive(h, HORIZON, SEASON), train), train, test)
    rows.append(("seasonal naive (ours)", *snaive, "-", None))
    for model in args.models:
        forecasts, seconds, metrics = train_and_forecast(model, out, train_path, test_path, extra)
        scores = score(forecasts, train, test)
        rows.append((f"forecast {model}", *scores, f"{seconds:.0f}", metrics))
    rows += [(f"{name} (published)", *values, "-", None) for name, values in PUBLISHED.items()]

    print(
        f"# M4 Hourly, 414 series, horizon 48; {os.cpu_count()} cores; overrides: {' '.join(extra)}"
    )
    # skill: 1 - MSE / the better naive forecast's MSE, on the normalised validation and test
    # windows of train.py (metrics.json); naive weight: how much of that naive forecast the
    # model's forecasts blend in (model.naive_blend)
    print(
        "| method | sMAPE | MASE | OWA | val skill | test skill | naive weight | train + test s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, smape_value, mase_value, seconds, metrics in rows:
        value = owa(smape_value, mase_value, naive2_smape, naive2_mase)
        print(
            f"| {name} | {smape_value:.3f} | {mase_value:.3f} | {value:.3f} "
            f"| {skill_cells(metrics)} | {seconds} |"
        )
    print(f"\nrun directories: {out}")


if __name__ == "__main__":
    main()
