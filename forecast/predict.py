"""Batch forecasting: forecasts for many files from an exported model (no Lightning needed).

For every input file, every series is forecast `horizon` steps past its last row, in original
units, and written in long form (`unique_id, ds, step, y_hat` [+ `y_hat_q10`, ...]) to
`<output>/<input stem>.forecast.csv|parquet`, atomically. Windows of consecutive files share
model batches; a file is written as soon as all its series are forecast, so memory is bounded
by the largest file and one batch. A bad file is reported and skipped; the others go on.
"""

from __future__ import annotations

import glob
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.atomic import atomic_path
from forecast.data.errors import DataError
from forecast.data.io import Frame, read_long, read_rows, read_wide
from forecast.export import ExportedModel
from forecast.metrics import median_index

SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz")
FORMATS = ("csv", "parquet")


@dataclass
class Summary:
    files: int = 0
    skipped: int = 0
    series: int = 0
    forecasts: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.files} files forecast, {self.skipped} up to date, {len(self.failed)} failed; "
            f"{self.series} series, {self.forecasts} forecasts in {self.seconds:.1f} s"
        )


@dataclass
class Job:
    """One input file's windows, waiting for their forecasts."""

    path: Path
    target: Path
    frame: Frame
    windows: np.ndarray  # [S, lookback, C] raw
    forecasts: list[np.ndarray] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return sum(len(f) for f in self.forecasts) == len(self.windows)


def find_inputs(spec: str | Path) -> list[Path]:
    """A file, a folder (its data files) or a glob pattern, sorted; refuses an empty match."""
    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES)]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not found:
        raise FileNotFoundError(f"no input files match {spec!r} (a file, folder or glob)")
    return sorted(found)


def output_path(path: Path, output: Path, format: str) -> Path:
    stem = path.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return output / f"{stem}.forecast.{format}"


def read_input(path: Path, data: dict, channels: list[str]) -> Frame:
    """Read and validate one file with the training data's layout and column names.

    A wide file's columns are picked by the model's channel names, in the model's order.
    """
    layout = data.get("layout", "wide")
    options = dict(format=data.get("format"), fill=data.get("fill", "error"))
    if layout == "rows":
        return read_rows(path, data.get("id_col_rows"), **options)
    options.update(freq=data.get("freq"), sort=data.get("sort", False))
    if layout == "long":
        return read_long(
            path,
            data.get("id_col", "unique_id"),
            data.get("time_col", "ds"),
            data.get("target") or "y",
            **options,
        )
    return read_wide(path, data.get("time_col", "date"), list(channels), **options)


def last_windows(frame: Frame, channels: list[str], lookback: int) -> np.ndarray:
    """The last `lookback` rows of every series: [S, lookback, C], checked against the model."""
    if list(frame.channels) != list(channels):
        raise DataError(
            f"{frame.path}: the model forecasts the columns {channels}, the file has "
            f"{list(frame.channels)}; give a file with those columns (names and order) or set "
            f"the target columns to them"
        )
    lengths = frame.lengths
    short = np.flatnonzero(lengths < lookback)
    if len(short):
        first = short[0]
        raise DataError(
            f"{frame.path}: series {frame.ids[first]!r} has {lengths[first]} rows, the model "
            f"needs the last {lookback} (its look-back); {len(short)} series are that short. "
            f"Give at least {lookback} rows per series"
        )
    ends = frame.offsets[1:]
    rows = ends[:, None] - lookback + np.arange(lookback)  # [S, lookback]
    return frame.values[rows]


def future_times(frame: Frame, horizon: int) -> np.ndarray:
    """The `horizon` timestamps (or integer steps) after each series' last row: [S, horizon]."""
    ends = frame.offsets[1:] - 1
    last = frame.times[ends]
    if len(frame.times) < 2:
        raise DataError(f"{frame.path}: one row is not enough to infer the series' frequency")
    steps = np.where(
        frame.lengths >= 2, frame.times[ends] - frame.times[np.maximum(ends - 1, 0)], 0
    )
    return last[:, None] + steps[:, None] * np.arange(1, horizon + 1)


def to_long(
    frame: Frame, forecasts: np.ndarray, quantiles: list[float], wide: bool
) -> pd.DataFrame:
    """Forecasts [S, H, C] (or [S, H, C, Q]) -> rows unique_id, ds, step, y_hat[, y_hat_qNN]."""
    n_series, horizon, n_channels = forecasts.shape[:3]
    times = future_times(frame, horizon)  # [S, H]
    if wide:  # one series whose channels are the series of the output
        ids = np.repeat(np.array(frame.channels, dtype=object), horizon)
        ds = np.tile(times[0], n_channels)
        values = forecasts[0].transpose(1, 0, *range(2, forecasts.ndim - 1))  # [C, H(, Q)]
    else:
        names = np.array(frame.ids, dtype=object)
        if n_channels > 1:
            names = np.array([f"{i}/{c}" for i in frame.ids for c in frame.channels], dtype=object)
            times = np.repeat(times, n_channels, axis=0)
            forecasts = np.moveaxis(forecasts, 2, 1)  # [S, C, H(, Q)]
        ids = np.repeat(names, horizon)
        ds = times.reshape(-1)
        values = forecasts
    values = values.reshape(len(ids), -1)  # [rows, Q or 1]
    columns = {
        "unique_id": ids,
        "ds": ds,
        "step": np.tile(np.arange(1, horizon + 1), len(ids) // horizon),
    }
    if quantiles:
        median = median_index(quantiles)
        columns["y_hat"] = values[:, median]
        for i, q in enumerate(quantiles):
            columns[f"y_hat_q{round(q * 100):02d}"] = values[:, i]
    else:
        columns["y_hat"] = values[:, 0]
    return pd.DataFrame(columns)


def write_table(df: pd.DataFrame, target: Path, format: str) -> None:
    """Write atomically: an interrupted run leaves no half-written forecast."""
    with atomic_path(target) as tmp:
        if format == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def backtest_windows(
    frame: Frame, lookback: int, horizon: int, n_windows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rolling origins: the last `n_windows` non-overlapping horizons of every series.

    Returns inputs [S * n, lookback, C], truths [S * n, horizon, C] and the origin row of each
    (the first forecast row), series-major, oldest origin first.
    """
    need = lookback + n_windows * horizon
    short = np.flatnonzero(frame.lengths < need)
    if len(short):
        first = short[0]
        raise DataError(
            f"{frame.path}: series {frame.ids[first]!r} has {frame.lengths[first]} rows; a "
            f"backtest over {n_windows} windows needs lookback + {n_windows} x horizon = {need}. "
            f"Lower n_windows or give longer series"
        )
    ends = frame.offsets[1:]
    origins = (ends[:, None] - horizon * np.arange(n_windows, 0, -1)).reshape(-1)  # [S * n]
    inputs = frame.values[origins[:, None] - lookback + np.arange(lookback)]
    truths = frame.values[origins[:, None] + np.arange(horizon)]
    return inputs, truths, origins


def backtest_frame(
    frame: Frame, origins: np.ndarray, truths: np.ndarray, y_hat: np.ndarray, wide: bool
) -> pd.DataFrame:
    """Rows unique_id, origin (ds of the first forecast), ds, step, y, y_hat, error.

    truths and y_hat are [n, horizon, C] for the windows starting at rows `origins` [n].
    """
    n, horizon, n_channels = truths.shape
    shape = (n, horizon, n_channels)
    if wide:
        labels = np.array(frame.channels, dtype=object)[None, :]  # [1, C]
    else:
        series = np.searchsorted(frame.offsets, origins, side="right") - 1  # [n]
        names = [frame.ids[s] for s in series]
        if n_channels == 1:
            labels = np.array(names, dtype=object)[:, None]  # [n, 1]
        else:
            labels = np.array([[f"{i}/{c}" for c in frame.channels] for i in names], dtype=object)
    rows = origins[:, None] + np.arange(horizon)  # [n, H]
    flat = lambda a: np.broadcast_to(a, shape).reshape(-1)  # noqa: E731
    df = pd.DataFrame(
        {
            "unique_id": flat(labels[:, None, :]),
            "origin": flat(frame.times[origins][:, None, None]),
            "ds": flat(frame.times[rows][..., None]),
            "step": flat(np.arange(1, horizon + 1)[None, :, None]),
            "y": truths.reshape(-1),
            "y_hat": y_hat.reshape(-1),
        }
    )
    df["error"] = df["y_hat"] - df["y"]
    return df.sort_values(["unique_id", "origin", "step"], kind="stable", ignore_index=True)


def is_up_to_date(path: Path, target: Path) -> bool:
    return target.is_file() and target.stat().st_mtime >= path.stat().st_mtime


class Progress:
    """Files and series done, shown with rich when attached to a terminal; silent otherwise."""

    def __init__(self, n_files: int):
        self.bar = None
        if sys.stderr.isatty():
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(transient=True)
            self.files = self.bar.add_task("files", total=n_files)
            self.series = self.bar.add_task("series", total=None)
            self.bar.start()

    def advance(self, files: int = 0, series: int = 0) -> None:
        if self.bar is not None:
            self.bar.advance(self.files, files)
            self.bar.advance(self.series, series)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class BatchForecaster:
    """Runs an exported model over many files (see the module's docstring)."""

    def __init__(
        self,
        model_dir: str | Path,
        engine: str = "torchscript",
        batch_size: int = 1024,
        format: str = "csv",
        overwrite: bool = False,
        backtest: bool = False,
        n_windows: int = 3,
        data_options: dict | None = None,
        log: Callable[[str], None] = print,
    ):
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        self.model = ExportedModel(model_dir, engine)
        self.meta = self.model.meta
        self.data = {**self.meta.get("config", {}).get("data", {}), **(data_options or {})}
        self.wide = self.data.get("layout", "wide") == "wide"
        self.batch_size, self.format, self.overwrite = batch_size, format, overwrite
        self.backtest, self.n_windows, self.log = backtest, n_windows, log

    def run(self, inputs: str | Path, output: str | Path) -> Summary:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        paths = find_inputs(inputs)
        summary, start, progress = Summary(), time.perf_counter(), Progress(len(paths))
        pending: list[Job] = []
        try:
            for job in self._jobs(paths, output, summary, progress):
                pending.append(job)
                if sum(len(j.windows) for j in pending) >= self.batch_size:
                    pending = self._forecast(pending, summary, progress)
            while pending:
                pending = self._forecast(pending, summary, progress)
        finally:
            progress.close()
        summary.seconds = time.perf_counter() - start
        for path, message in summary.failed.items():
            self.log(f"FAILED {path}: {message}")
        self.log(str(summary))
        return summary

    def _jobs(self, paths, output: Path, summary: Summary, progress: Progress) -> Iterator[Job]:
        for path in paths:
            target = output_path(path, output, self.format)
            if not self.overwrite and is_up_to_date(path, target):
                summary.skipped += 1
                progress.advance(files=1)
                continue
            try:
                frame = read_input(path, self.data, self.meta["channels"])
                windows = last_windows(frame, self.meta["channels"], self.model.lookback)
            except (DataError, OSError, ValueError) as err:
                summary.failed[str(path)] = str(err)
                progress.advance(files=1)
                continue
            yield Job(path, target, frame, windows)

    def _forecast(self, pending: list[Job], summary: Summary, progress: Progress) -> list[Job]:
        """Forecast up to one batch of the pending windows; write the files that are complete."""
        chunks, budget = [], self.batch_size
        for job in pending:
            done = sum(len(f) for f in job.forecasts)
            take = min(len(job.windows) - done, budget)
            if take:
                chunks.append((job, job.windows[done : done + take]))
                budget -= take
            if not budget:
                break
        if chunks:
            predictions = self.model.predict(np.concatenate([c for _, c in chunks]))
            start = 0
            for job, chunk in chunks:
                job.forecasts.append(predictions[start : start + len(chunk)])
                start += len(chunk)
        remaining = []
        for job in pending:
            if job.done:
                self._write(job, summary)
                progress.advance(files=1, series=len(job.windows))
            else:
                remaining.append(job)
        return remaining

    def _write(self, job: Job, summary: Summary) -> None:
        forecasts = np.concatenate(job.forecasts)
        df = to_long(job.frame, forecasts, self.meta.get("quantiles", []), self.wide)
        write_table(df, job.target, self.format)
        summary.files += 1
        summary.series += len(job.windows) * (forecasts.shape[2] if self.wide else 1)
        summary.forecasts += len(df)
        if self.backtest:
            try:
                self._backtest(job)
            except DataError as err:
                summary.failed[str(job.path)] = f"backtest: {err}"

    def _backtest(self, job: Job) -> None:
        """Forecasts from the last `n_windows` origins of each series, beside the truth."""
        inputs, truths, origins = backtest_windows(
            job.frame, self.model.lookback, self.model.horizon, self.n_windows
        )
        outputs = [
            self.model.predict(inputs[i : i + self.batch_size])
            for i in range(0, len(inputs), self.batch_size)
        ]
        y_hat = np.concatenate(outputs)
        if y_hat.ndim == 4:  # quantiles: the median is the point forecast
            quantiles = self.meta["quantiles"]
            y_hat = y_hat[..., median_index(quantiles)]
        df = backtest_frame(job.frame, origins, truths, y_hat, self.wide)
        target = job.target.with_name(job.target.name.replace(".forecast.", ".backtest."))
        write_table(df, target, self.format)
        errors = df["error"].to_numpy()
        self.log(
            f"backtest {job.path.name}: {len(origins)} windows, MAE {np.abs(errors).mean():.4g}, "
            f"RMSE {np.sqrt((errors**2).mean()):.4g}"
        )
