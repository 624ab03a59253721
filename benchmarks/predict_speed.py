"""Batch forecasting speed: series per second and peak memory, pt2 and ONNX side by side.

    python benchmarks/predict_speed.py           # 1, 100 and 10,000 series (generated long files)
    python benchmarks/predict_speed.py --quick   # small and fast: a smoke test of this script

The model is an exported GRU forecaster (look-back 96, horizon 48, hidden 128, segments of 24)
with random weights: speed does not depend on what it learnt. Each case runs in its own
subprocess, so its peak RSS is its own; the time covers reading and validating the file,
forecasting every series and writing the forecasts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: python benchmarks/predict_speed.py

from data_speed import child, generate_long, rss_mb  # noqa: E402

ENGINES = ("pt2", "onnx")
LOOKBACK, HORIZON = 96, 48


def export_model(out: Path) -> None:
    import torch

    from forecast.data import ReadOptions
    from forecast.export import export_bundle
    from forecast.models.network import ForecastNet

    torch.manual_seed(0)
    # the model the figures in BENCHMARKS.md were measured with (the direct decoder)
    net = ForecastNet(1, LOOKBACK, HORIZON, cell="gru", hidden_size=128, decoder="direct").eval()
    reading = ReadOptions(layout="long", time_col="ds", id_col="unique_id", target="y")
    meta = {
        "lookback": LOOKBACK,
        "horizon": HORIZON,
        "channels": ["y"],
        "quantiles": [],
        "reading": reading.to_dict(),
    }
    export_bundle(net, [0.0], [1.0], meta, out)


def measure(model: str, path: str, engine: str) -> dict:
    from forecast.predict import BatchForecaster

    start = time.perf_counter()
    forecaster = BatchForecaster(model, engine=engine, log=lambda message: None)
    with tempfile.TemporaryDirectory() as out:
        summary = forecaster.run(path, out)
    seconds = time.perf_counter() - start
    return {
        "engine": engine,
        "series": summary.series,
        "seconds": seconds,
        "series_per_s": summary.series / seconds,
        "peak_rss_mb": rss_mb("VmHWM"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    counts = (1, 10) if args.quick else (1, 100, 10_000)
    length = LOOKBACK + 24 if args.quick else 500
    print(f"# {LOOKBACK} -> {HORIZON} steps, {length} rows per series, {os.cpu_count()} cores")
    print(f"{'series':>8}{'engine':>13}{'seconds':>9}{'series/s':>11}{'peak RSS MB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "export"
        export_model(model)
        for n in counts:
            path = Path(tmp) / f"series{n}.parquet"
            generate_long(path, n, length)
            for engine in ENGINES:
                r = child("--child", str(model), str(path), engine, script=__file__)
                print(
                    f"{n:>8}{engine:>13}{r['seconds']:>9.2f}{r['series_per_s']:>11,.3g}"
                    f"{r['peak_rss_mb']:>13.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
