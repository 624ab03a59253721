"""Batch forecasting: forecasts for many files from an exported model (no Lightning needed).

For every input file, every series is forecast `horizon` steps past its last row, in original
units, and written in long form (`unique_id, ds, step, y_hat` [+ `y_hat_q10`, ...]) to
`<output>/<input stem>.forecast.csv|parquet`, atomically. Windows of consecutive files share
model batches; a file is written as soon as all its series are forecast, so memory is bounded
by the largest file and one batch. A bad file is reported and skipped; the others go on.

Before anything is forecast, the run is refused (`PredictError`) when the output is not a
folder, or when two inputs would write the same output file (`a/data.csv` and `b/data.csv`, or
`data.csv` and `data.parquet`) or an output would overwrite an input.

Up to date: beside every forecast `<stem>.forecast.<fmt>` a record `<stem>.forecast.<fmt>.json`
says what it was made from: the input (resolved path, size, modification time in ns, sha256),
the model (sha256 of the export's meta.json and of the engine's model file), the options that
change results (engine, format, the reading options in effect) and the backtest's `n_windows`
(null without one), and the size and modification time of each file written. A later run skips
the file only when its record matches all of these: the input has the same size and either the
same path and modification time or the same content; the model is byte for byte the same; the
options are equal; a backtest, if asked for, was made with the same `n_windows`; and the
outputs are as written. A file with no record (or an unreadable one) is forecast again, and so
is every file with `overwrite=true`. The record is removed before a forecast is rewritten and
written (atomically) only after all of a file's outputs are, so an interrupted or failed run
never leaves a record that vouches for something else.

The model's frequency (meta.json "frequency", the step of the training data) is checked: a file
whose series step differs is refused, naming both steps. Exports without a frequency, or with
one that is not a fixed step, are not checked; neither are integer time steps against a model
trained on timestamps (or the reverse), which have no common unit.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.atomic import atomic_path, write_text
from forecast.data.errors import DataError
from forecast.data.io import Frame, read_long, read_rows, read_wide
from forecast.data.validate import fixed_step
from forecast.export import ENGINES, ExportedModel
from forecast.metrics import median_index

SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz")
FORMATS = ("csv", "parquet")
LAYOUTS = ("wide", "long", "rows")
# The reading options (`data.<key>` of predict.py; conf/predict.yaml lists the same keys).
READ_KEYS = (
    "format",
    "layout",
    "time_col",
    "id_col",
    "target",
    "id_col_rows",
    "freq",
    "fill",
    "sort",
    "short",
)
RECORD_VERSION = 1


class PredictError(ValueError):
    """A run refused before anything is forecast: its arguments do not fit. The message says
    what is wrong and what to do; predict.py prints it without a traceback."""


@dataclass
class Summary:
    files: int = 0
    skipped: int = 0
    series: int = 0
    forecasts: int = 0
    seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    short: int = 0  # series left out as shorter than the look-back (data.short=skip)

    def __str__(self) -> str:
        left_out = f", {self.short} too short and left out" if self.short else ""
        return (
            f"{self.files} files forecast, {self.skipped} up to date, {len(self.failed)} failed; "
            f"{self.series} series{left_out}, {self.forecasts} forecasts in {self.seconds:.1f} s"
        )


@dataclass
class Job:
    """One input file's windows, waiting for their forecasts."""

    path: Path
    target: Path
    frame: Frame
    windows: np.ndarray  # [S, lookback, C] raw
    source: dict  # input_identity(path), taken before reading
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


def plan_outputs(paths: list[Path], output: Path, format: str, backtest: bool) -> list[Path]:
    """Each input's forecast path; refuses the run if two inputs would write the same file (each
    overwriting the one before) or an output would overwrite an input."""
    targets = [output_path(path, output, format) for path in paths]
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path, target in zip(paths, targets, strict=True):
        by_name[target.name].append(path)
    clashes = {name: group for name, group in by_name.items() if len(group) > 1}
    if clashes:
        shown = [
            f"{output / name} <- {', '.join(str(p) for p in group)}"
            for name, group in list(clashes.items())[:5]
        ]
        more = f"; and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        raise PredictError(
            f"{sum(len(g) for g in clashes.values())} inputs would be forecast into the same "
            f"file{'s' if len(clashes) > 1 else ''}, each overwriting the one before: "
            f"{'; '.join(shown)}{more}. Nothing was forecast. Forecast inputs with the same name "
            f"into separate output folders (one run per folder), or rename them apart"
        )
    inputs = {path.resolve(): path for path in paths}
    for path, target in zip(paths, targets, strict=True):
        written = [target, backtest_path(target)] if backtest else [target]
        for out in written:
            if out.resolve() in inputs:
                raise PredictError(
                    f"the forecast of {path} would overwrite the input {inputs[out.resolve()]} "
                    f"({out}). Nothing was forecast. Give an output folder apart from the inputs"
                )
    return targets


def prepare_output(output: Path) -> None:
    """Create the output folder; refuses a path that is a file or cannot be a folder."""
    if output.exists() and not output.is_dir():
        raise PredictError(
            f"output={output} is a file, not a folder; give a folder for the forecasts (it is "
            f"created if missing)"
        )
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PredictError(
            f"output={output}: cannot create the folder ({err.strerror or err}); give a folder "
            f"path that can be created and written"
        ) from err


def output_path(path: Path, output: Path, format: str) -> Path:
    stem = path.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return output / f"{stem}.forecast.{format}"


def backtest_path(target: Path) -> Path:
    return target.with_name(target.name.replace(".forecast.", ".backtest."))


def reading_options(data: dict) -> dict:
    """The options that decide how a file is read, with their defaults: those of its layout."""
    layout = data.get("layout", "wide")
    options = {"layout": layout, "format": data.get("format"), "fill": data.get("fill", "error")}
    options["short"] = data.get("short", "error")
    if layout == "rows":
        options["id_col_rows"] = data.get("id_col_rows")
        return options
    options.update(freq=data.get("freq"), sort=data.get("sort", False))
    if layout == "long":
        options.update(
            id_col=data.get("id_col", "unique_id"),
            time_col=data.get("time_col", "ds"),
            target=data.get("target") or "y",
        )
    else:
        options["time_col"] = data.get("time_col", "date")
    return options


def read_input(path: Path, data: dict, channels: list[str]) -> Frame:
    """Read and validate one file with the training data's layout and column names.

    A wide file's columns are picked by the model's channel names, in the model's order.
    """
    o = reading_options(data)
    options = dict(format=o["format"], fill=o["fill"])
    if o["layout"] == "rows":
        return read_rows(path, o["id_col_rows"], **options)
    options.update(freq=o["freq"], sort=o["sort"])
    if o["layout"] == "long":
        return read_long(path, o["id_col"], o["time_col"], o["target"], **options)
    return read_wide(path, o["time_col"], list(channels), **options)


def model_step(frequency) -> pd.Timedelta | int | None:
    """The step recorded at training (meta.json "frequency"): a Timedelta for an offset alias
    ('h', '15min'), an integer for integer time; None when absent or not a fixed step."""
    if frequency is None or isinstance(frequency, bool):
        return None
    if isinstance(frequency, int):
        return frequency if frequency > 0 else None
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(frequency))
    except (ValueError, TypeError):
        return None
    return step if step > pd.Timedelta(0) else None


def _is_calendar(frequency) -> bool:
    """True for a calendar frequency (MS, QS-JAN, B, ...), False for a fixed step or none."""
    if not isinstance(frequency, str):
        return False
    try:
        pd.tseries.frequencies.to_offset(frequency)
    except (ValueError, TypeError):
        return False
    return fixed_step(frequency) is None


def _same_calendar(frequency: str, calendar: str | None) -> bool:
    """Whether two calendar frequencies give the same dates (QS-JAN and QS-OCT do)."""
    if calendar is None or not _is_calendar(frequency):
        return False
    dates = [pd.date_range("2000-01-01", periods=3, freq=f) for f in (frequency, calendar)]
    return dates[0].equals(dates[1])


def describe_step(step) -> str:
    if isinstance(step, (pd.Timedelta, np.timedelta64)):
        alias = pd.tseries.frequencies.to_offset(pd.Timedelta(step)).freqstr
        return alias if alias[0].isdigit() else f"1{alias}"
    return f"{int(step)} (integer time)"


def check_frequency(frame: Frame, frequency) -> None:
    """Refuse a file whose series step differs from the model's (meta.json "frequency")."""
    if frame.calendar is not None or _is_calendar(frequency):
        if frequency is not None and not _same_calendar(frequency, frame.calendar):
            raise DataError(
                f"{frame.path}: the series follow the {frame.calendar or 'fixed-step'} "
                f"calendar, the model was trained on data at {frequency!r} (meta.json "
                f"frequency); give the file at the model's frequency, or forecast it with a "
                f"model trained at the file's"
            )
        return
    expected = model_step(frequency)
    if expected is None:
        return
    is_datetime = np.issubdtype(frame.times.dtype, np.datetime64)
    if is_datetime != isinstance(expected, pd.Timedelta):
        return  # integer steps have no unit to compare with a time span
    ends = frame.offsets[1:] - 1
    stepped = np.flatnonzero(frame.lengths >= 2)  # series with a step
    steps = frame.times[ends[stepped]] - frame.times[ends[stepped] - 1]
    wanted = np.timedelta64(expected.value, "ns") if is_datetime else expected
    wrong = np.flatnonzero(steps != wanted)
    if len(wrong):
        s = stepped[wrong[0]]
        series = f"series {frame.ids[s]!r} steps" if frame.n_series > 1 else "the series steps"
        step = pd.Timedelta(steps[wrong[0]]) if is_datetime else int(steps[wrong[0]])
        raise DataError(
            f"{frame.path}: {series} by {describe_step(step)}, the model was trained on data "
            f"every {describe_step(expected)} (meta.json frequency {frequency!r}); give the file "
            f"at the model's frequency (resample it to {describe_step(expected)}), or forecast it "
            f"with a model trained at {describe_step(step)}"
        )


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
            f"Give at least {lookback} rows per series, or set data.short=skip to leave them out"
        )
    ends = frame.offsets[1:]
    rows = ends[:, None] - lookback + np.arange(lookback)  # [S, lookback]
    return frame.values[rows]


def without_short(frame: Frame, lookback: int) -> tuple[Frame, list[str]]:
    """`frame` without the series shorter than `lookback` rows (data.short=skip), and their ids."""
    keep = frame.lengths >= lookback
    if keep.all():
        return frame, []
    rows = np.repeat(keep, frame.lengths)
    offsets = np.concatenate([[0], np.cumsum(frame.lengths[keep])]).astype(np.int64)
    kept = dataclasses.replace(
        frame,
        ids=tuple(i for i, k in zip(frame.ids, keep, strict=True) if k),
        offsets=offsets,
        times=frame.times[rows],
        values=np.ascontiguousarray(frame.values[rows]),
        covariates=np.ascontiguousarray(frame.covariates[rows]),
    )
    return kept, [i for i, k in zip(frame.ids, keep, strict=True) if not k]


def future_times(frame: Frame, horizon: int) -> np.ndarray:
    """The `horizon` timestamps (or integer steps) after each series' last row: [S, horizon]."""
    ends = frame.offsets[1:] - 1
    last = frame.times[ends]
    if frame.calendar is not None:  # months, quarters, business days: not a fixed span
        following = {}
        for t in np.unique(last):  # series mostly end on few dates: one range per date
            dates = pd.date_range(pd.Timestamp(t), periods=horizon + 1, freq=frame.calendar)
            following[t] = dates[1:].to_numpy()
        return np.stack([following[t] for t in last])
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
        "ds": labelled_times(frame, ds),
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
    for column in ("origin", "ds"):
        df[column] = labelled_times(frame, df[column])
    return df.sort_values(["unique_id", "origin", "step"], kind="stable", ignore_index=True)


def labelled_times(frame: Frame, times):
    """Times as written: zoned input was read as UTC instants (Frame.tz), and is written as
    such (+00:00), not as naive times that would read as the file's local ones."""
    if frame.tz is None:
        return times
    return pd.DatetimeIndex(times).tz_localize(frame.tz)


def record_path(target: Path) -> Path:
    """The record of what `target` was made from (see the module's docstring)."""
    return target.with_name(target.name + ".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def input_identity(path: Path) -> dict:
    """What identifies an input: taken before it is read, so that a file changed while it is
    forecast is recorded as the older version and forecast again next time."""
    stat = path.stat()
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": file_sha256(path),
    }


def same_input(recorded: dict, path: Path) -> bool:
    """The same size, and the same path and modification time or else the same content."""
    stat = path.stat()
    if recorded["size"] != stat.st_size:
        return False
    if recorded["path"] == str(path.resolve()) and recorded["mtime_ns"] == stat.st_mtime_ns:
        return True
    return recorded["sha256"] == file_sha256(path)


def output_identity(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def model_fingerprint(model_dir: str | Path, engine: str) -> str | None:
    """sha256 of the export's meta.json and of the engine's model file (None if unreadable:
    ExportedModel then says what is missing). The same bytes make the same forecasts."""
    directory = Path(model_dir)
    if (directory / "export" / "meta.json").is_file():
        directory = directory / "export"  # a run directory, as ExportedModel resolves it
    try:
        meta = (directory / "meta.json").read_bytes()
        model_file = directory / json.loads(meta)["files"][engine]
        digest = hashlib.sha256(hashlib.sha256(meta).digest())
        digest.update(bytes.fromhex(file_sha256(model_file)))
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return digest.hexdigest()


def load_record(target: Path) -> dict | None:
    try:
        record = json.loads(record_path(target).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


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
    """Runs an exported model over many files (see the module's docstring).

    `data_options` override the export's reading options (keys READ_KEYS); None values keep the
    export's.
    """

    def __init__(
        self,
        model_dir: str | Path,
        engine: str = "pt2",
        batch_size: int = 1024,
        format: str = "csv",
        overwrite: bool = False,
        backtest: bool = False,
        n_windows: int = 3,
        data_options: dict | None = None,
        log: Callable[[str], None] = print,
    ):
        if format not in FORMATS:
            raise PredictError(f"format must be one of {FORMATS}, got {format!r}")
        if engine not in ENGINES:
            raise PredictError(f"engine must be one of {ENGINES}, got {engine!r}")
        overrides = {k: v for k, v in (data_options or {}).items() if v is not None}
        unknown = sorted(set(overrides) - set(READ_KEYS))
        if unknown:
            raise PredictError(
                f"data.{unknown[0]} is not a reading option; the reading options are "
                f"{', '.join(f'data.{k}' for k in READ_KEYS)} (the rest of the data config is "
                f"the model's and cannot change)"
            )
        # before loading: if the export is replaced meanwhile, the record names the older one
        self.fingerprint = model_fingerprint(model_dir, engine)
        self.model = ExportedModel(model_dir, engine)
        self.meta = self.model.meta
        self.data = {**self.meta.get("config", {}).get("data", {}), **overrides}
        layout = self.data.get("layout", "wide")
        if layout not in LAYOUTS:
            raise PredictError(f"data.layout must be one of {LAYOUTS}, got {layout!r}")
        self.wide = layout == "wide"
        self.batch_size, self.format, self.overwrite = batch_size, format, overwrite
        self.backtest, self.n_windows, self.log = backtest, n_windows, log
        # what a forecast depends on besides its input and the model, as JSON would give it back
        self.options = json.loads(
            json.dumps(
                {"engine": engine, "format": format, "data": reading_options(self.data)},
                default=str,
            )
        )
        self.model_dir = str(Path(model_dir).resolve())

    def run(self, inputs: str | Path, output: str | Path) -> Summary:
        """Forecast every input file into the folder `output`; refuses (PredictError) before
        forecasting anything when the output is a file or outputs would clash."""
        output = Path(output)
        paths = find_inputs(inputs)
        targets = plan_outputs(paths, output, self.format, self.backtest)
        prepare_output(output)
        summary, start, progress = Summary(), time.perf_counter(), Progress(len(paths))
        pending: list[Job] = []
        try:
            for job in self._jobs(paths, targets, summary, progress):
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

    def is_up_to_date(self, path: Path, target: Path) -> bool:
        """The record beside `target` shows it was made from this input, by this model, with
        these options, and its outputs are as written (see the module's docstring)."""
        if self.overwrite or self.fingerprint is None:
            return False
        record = load_record(target)
        if record is None or record.get("version") != RECORD_VERSION:
            return False
        try:
            if record["model"] != self.fingerprint or record["options"] != self.options:
                return False
            if self.backtest and record["backtest"] != self.n_windows:
                return False
            outputs = record["outputs"]
            if target.name not in outputs:
                return False
            for name, identity in outputs.items():
                out = target.parent / name
                if not out.is_file() or output_identity(out) != identity:
                    return False
            return same_input(record["input"], path)
        except (KeyError, TypeError, OSError):
            return False  # a malformed record vouches for nothing

    def _jobs(self, paths, targets, summary: Summary, progress: Progress) -> Iterator[Job]:
        for path, target in zip(paths, targets, strict=True):
            if self.is_up_to_date(path, target):
                summary.skipped += 1
                progress.advance(files=1)
                continue
            try:
                source = input_identity(path)
                frame = read_input(path, self.data, self.meta["channels"])
                check_frequency(frame, self.meta.get("frequency"))
                if self.data.get("short", "error") == "skip":
                    frame = self._skip_short(path, frame, summary)
                windows = last_windows(frame, self.meta["channels"], self.model.lookback)
            except (DataError, OSError, ValueError) as err:
                summary.failed[str(path)] = str(err)
                progress.advance(files=1)
                continue
            yield Job(path, target, frame, windows, source)

    def _skip_short(self, path: Path, frame: Frame, summary: Summary) -> Frame:
        """data.short=skip: `frame` without its series shorter than the look-back, named in the
        log and counted; a file with none left is refused."""
        lookback = self.model.lookback
        frame, dropped = without_short(frame, lookback)
        if dropped and not frame.n_series:
            raise DataError(
                f"{path}: every series is shorter than the model's look-back ({lookback} rows); "
                f"nothing to forecast"
            )
        if dropped:
            summary.short += len(dropped)
            names = ", ".join(map(str, dropped[:10])) + (" ..." if len(dropped) > 10 else "")
            self.log(
                f"{path}: {len(dropped)} series shorter than the look-back ({lookback} rows) left "
                f"out (data.short=skip): {names}"
            )
        return frame

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
        record = record_path(job.target)
        record.unlink(missing_ok=True)  # it describes what is about to be replaced
        forecasts = np.concatenate(job.forecasts)
        df = to_long(job.frame, forecasts, self.meta.get("quantiles", []), self.wide)
        write_table(df, job.target, self.format)
        summary.files += 1
        summary.series += len(job.windows) * (forecasts.shape[2] if self.wide else 1)
        summary.forecasts += len(df)
        written = [job.target]
        if self.backtest:
            try:
                written.append(self._backtest(job))
            except DataError as err:
                summary.failed[str(job.path)] = f"backtest: {err}"
                return  # no record: the file is not done, and is tried again next time
        self._record(job, written)

    def _record(self, job: Job, written: list[Path]) -> None:
        """Write `<forecast>.json`: what the forecast was made from (see the module's docstring)."""
        record = {
            "version": RECORD_VERSION,
            "input": job.source,
            "model": self.fingerprint,
            "model_dir": self.model_dir,
            "options": self.options,
            "backtest": self.n_windows if self.backtest else None,
            "outputs": {path.name: output_identity(path) for path in written},
        }
        write_text(record_path(job.target), json.dumps(record, indent=2) + "\n")

    def _backtest(self, job: Job) -> Path:
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
        target = backtest_path(job.target)
        write_table(df, target, self.format)
        errors = df["error"].to_numpy()
        self.log(
            f"backtest {job.path.name}: {len(origins)} windows, MAE {np.abs(errors).mean():.4g}, "
            f"RMSE {np.sqrt((errors**2).mean()):.4g}"
        )
        return target
