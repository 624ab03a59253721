"""Batch forecasting: forecasts for many files from an exported model (no Lightning needed).

For every input file, every series is forecast `horizon` steps past its last row, in original
units, and written in long form (`unique_id, ds, step, y_hat` [+ `y_hat_q10`, ...]) to
`<output>/<input stem>.forecast.csv|parquet`, atomically. Windows of consecutive files share
model batches; a file is written as soon as all its series are forecast, so memory is bounded
by the largest file and one batch. A bad file is reported and skipped; the others go on. A
forecast that is not finite (NaN or inf: the model overflowed on its input) is never written:
its file counts as failed. A run first removes the temporary files that runs killed while
writing left in the output folder (`forecast.atomic.remove_stale_parts`).

Before anything is forecast, the run is refused (`PredictError`) when the output is not a
folder, or when two inputs would write the same output file (`a/data.csv` and `b/data.csv`, or
`data.csv` and `data.parquet`) or an output would overwrite an input.

Up to date: beside every forecast `<stem>.forecast.<fmt>` a record `<stem>.forecast.<fmt>.json`
says what it was made from: the input (resolved path, size, modification time in ns, sha256;
and `link`, the path as listed, where a symbolic link led to the file),
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
import hashlib
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.atomic import atomic_path, remove_stale_parts, write_text
from forecast.data.covariates import Covariates
from forecast.data.errors import DataError
from forecast.data.features import calendar_features
from forecast.data.io import Frame, listed
from forecast.data.reading import COVARIATES, ReadOptions, read
from forecast.data.validate import check_scaled_covariates, fixed_step
from forecast.export import ENGINES, ExportedModel
from forecast.quantiles import median_index

SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz")
FORMATS = ("csv", "parquet")
# The reading options a run may set (`data.<key>` of predict.py; conf/predict.yaml lists the
# same keys): ReadOptions' own, but the covariates, which are the model's.
# what predict.py may override; the covariates and which are categorical are the model's
READ_KEYS = tuple(
    f.name for f in dataclasses.fields(ReadOptions) if f.name not in (*COVARIATES, "categorical")
)
RECORD_VERSION = 1


class PredictError(ValueError):
    """A run refused before anything is forecast: its arguments do not fit. The message says
    what is wrong and what to do; predict.py prints it without a traceback."""


def duration(seconds: float) -> str:
    """Seconds to a tenth, or to two significant digits below one second (never "0.0")."""
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2g}"


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
            f"{plural(self.files, 'file')} forecast, {self.skipped} up to date, "
            f"{len(self.failed)} failed; {self.series} series{left_out}, "
            f"{plural(self.forecasts, 'forecast')} in {duration(self.seconds)} s"
        )


@dataclass
class Job:
    """One input file's windows, waiting for their forecasts."""

    path: Path
    target: Path
    frame: Frame
    inputs: dict[str, np.ndarray]  # x [S, lookback, C] raw, and the covariates the model takes
    source: dict  # input_identity(path), taken before reading
    forecasts: list[np.ndarray] = field(default_factory=list)

    @property
    def n_windows(self) -> int:
        return len(self.inputs["x"])

    @property
    def done(self) -> bool:
        return sum(len(f) for f in self.forecasts) == self.n_windows


def find_inputs(spec: str | Path) -> list[Path]:
    """A file, a folder (its data files) or a glob pattern, sorted; refuses an empty match.

    Nothing is skipped unsaid: a match whose name ends in a data suffix but which is not a
    regular file (a folder, a FIFO: reading one could wait for ever) refuses the run, and
    dot-files are inputs like any other, under a glob as in a folder. Symbolic links are
    followed, out of the folder too; the record beside a forecast names the file read.
    """
    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.name.endswith(SUFFIXES)]
    elif path.exists():
        found = [path]
    else:
        found = [p for p in glob_all(spec) if p.is_file() or p.name.endswith(SUFFIXES)]
    odd = [p for p in found if not p.is_file()]
    if odd:
        raise PredictError(
            f"input {odd[0]} is {kind_of(odd[0])}, not a data file, though its name says one"
            f"{f' (and {len(odd) - 1} more such)' if len(odd) > 1 else ''}. Nothing was "
            f"forecast. Remove or rename it, or give a glob that leaves it out"
        )
    if not found:
        raise FileNotFoundError(f"no input files match {spec!r} (a file, folder or glob)")
    return sorted(found)


def glob_all(pattern: str) -> list[Path]:
    """What the glob pattern matches, dot-files included (glob.glob leaves them out)."""
    parts = Path(pattern).parts
    first = next((i for i, part in enumerate(parts) if re.search(r"[*?[]", part)), len(parts))
    if first == len(parts):
        return []  # no wildcard, and no such path
    base = Path(*parts[:first]) if first else Path()
    return list(base.glob(str(Path(*parts[first:]))))


def kind_of(path: Path) -> str:
    if path.is_dir():
        return "a folder"
    if path.is_fifo():
        return "a FIFO (named pipe)"
    if not path.exists():
        return "a broken symbolic link"
    return "not a regular file (a socket or device)"


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
    """Create the output folder, and remove the temporary files that killed runs left in it;
    refuses a path that is a file or cannot be a folder."""
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
    remove_stale_parts(output)  # what an earlier run killed while writing left


def output_path(path: Path, output: Path, format: str) -> Path:
    stem = path.name
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return output / f"{stem}.forecast.{format}"


def backtest_path(target: Path) -> Path:
    return target.with_name(target.name.replace(".forecast.", ".backtest."))


def export_reading(meta: dict) -> ReadOptions:
    """How an export's training data was read: meta.json "reading" (exports made before it
    existed: the reading keys of their config's data node)."""
    if isinstance(meta.get("reading"), dict):
        return ReadOptions.from_dict(meta["reading"])
    data = dict(meta.get("config", {}).get("data", {}))
    if data.get("target") is None and data.get("columns") is not None:
        data["target"] = data["columns"]  # the older name
    return ReadOptions.from_dict(data)


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
            f"{frame.path}: the model forecasts the columns {listed(channels)}, the file has "
            f"{listed(frame.channels)}; give a file with those columns (names and order) or set "
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
    """`frame` without the series shorter than `lookback` rows of history (data.short=skip),
    and their ids."""
    history = frame.lengths - (0 if frame.future is None else frame.future)
    keep = history >= lookback
    if keep.all():
        return frame, []
    return select_series(frame, keep), [i for i, k in zip(frame.ids, keep, strict=True) if not k]


def select_series(frame: Frame, keep: np.ndarray) -> Frame:
    """The series `keep` [S] (a boolean mask) of `frame`, and their rows."""
    rows = np.repeat(keep, frame.lengths)
    offsets = np.concatenate([[0], np.cumsum(frame.lengths[keep])]).astype(np.int64)
    return dataclasses.replace(
        frame,
        ids=tuple(i for i, k in zip(frame.ids, keep, strict=True) if k),
        offsets=offsets,
        times=frame.times[rows],
        values=np.ascontiguousarray(frame.values[rows]),
        covariates=np.ascontiguousarray(frame.covariates[rows]),
        static=None if frame.static is None else frame.static[keep],
        future=None if frame.future is None else frame.future[keep],
    )


def split_future(frame: Frame, horizon: int, n_future: int) -> tuple[Frame, np.ndarray]:
    """`frame` without its future rows, and the first `n_future` future covariates of the
    `horizon` future rows of each series [S, horizon, n_future]; a series with fewer future
    rows than the horizon is refused."""
    future = frame.future
    short = np.flatnonzero(future < horizon)
    if len(short):
        s = short[0]
        last = frame.times[frame.offsets[s + 1] - future[s] - 1]
        last = pd.Timestamp(last) if np.issubdtype(frame.times.dtype, np.datetime64) else last
        columns = list(frame.covariate_names[frame.n_past : frame.n_past + n_future])
        raise DataError(
            f"{frame.path}: series {frame.ids[s]!r} has {future[s]} rows after its last target "
            f"({last}); the model needs the future covariates {listed(columns)} for the "
            f"{horizon} steps it forecasts: add rows with them (and an empty target), or give "
            f"them as future="
        )
    known_ends = frame.offsets[1:] - future  # [S]
    rows = known_ends[:, None] + np.arange(horizon)  # [S, H]
    start = frame.n_past or 0
    ahead = frame.covariates[rows][..., start : start + n_future]
    return history_of(frame), ahead


def history_of(frame: Frame) -> Frame:
    """`frame` without its future rows (those after each series' last target)."""
    known_ends = frame.offsets[1:] - frame.future  # [S]
    keep = np.arange(frame.offsets[-1]) < np.repeat(known_ends, frame.lengths)
    lengths = frame.lengths - frame.future
    return dataclasses.replace(
        frame,
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        times=frame.times[keep],
        values=np.ascontiguousarray(frame.values[keep]),
        covariates=np.ascontiguousarray(frame.covariates[keep]),
        future=None,
    )


def window_covariates(
    frame: Frame,
    ends: np.ndarray,
    covariates: Covariates,
    lookback: int,
    horizon: int,
    ahead: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The covariate inputs of the windows whose look-back ends (exclusive) at rows `ends` [n]:
    past [n, L, Kp], future [n, L + H, Kf] (the read columns, then calendar features) and
    static [n, Ks], as read (numbers, codes). Future covariates over the horizon come from the
    rows after `ends`, or from `ahead` [n, H, Kf read] for windows at the end of the data."""
    out = {}
    n_past = frame.n_past or 0
    history = ends[:, None] - lookback + np.arange(lookback)  # [n, L]
    if covariates.past.names:
        out["past"] = frame.covariates[history][..., :n_past]
    if covariates.future.names:
        calendar = covariates.calendar
        n_read = len(covariates.future.names) - len(calendar)
        if ahead is None:
            rows = ends[:, None] - lookback + np.arange(lookback + horizon)  # [n, L + H]
            values, times = frame.covariates[rows], frame.times[rows]
        else:  # the end of the data: the horizon's rows were split off (split_future)
            blank = np.zeros((len(ends), horizon, frame.covariates.shape[1]), np.float32)
            values = np.concatenate([frame.covariates[history], blank], axis=1)
            values[:, lookback:, n_past : n_past + n_read] = ahead
            times = np.concatenate([frame.times[history], future_times(frame, horizon)], axis=1)
        parts = [values[..., n_past : n_past + n_read]]
        if calendar:
            features = calendar_features(times.reshape(-1), list(calendar))
            parts.append(features.reshape(*times.shape, -1))
        out["future"] = np.concatenate(parts, axis=-1)
    if covariates.static.names:
        series = np.searchsorted(frame.offsets, ends - 1, side="right") - 1
        out["static"] = frame.static[series]
    return out


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
        **forecast_columns(values, quantiles),
    }
    return pd.DataFrame(columns)


def write_table(df: pd.DataFrame, target: Path, format: str) -> None:
    """Write atomically: an interrupted run leaves no half-written forecast. A forecast that is
    not finite everywhere is refused (DataError) and nothing is written."""
    refuse_non_finite(df, f"{target.name} was not written")
    with atomic_path(target) as tmp:
        if format == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)


def check_backtest(frame: Frame, lookback: int, horizon: int, n_windows: int, step: int) -> None:
    """Refuse a frame whose shortest series cannot hold `n_windows` origins `step` apart."""
    need = lookback + horizon + (n_windows - 1) * step
    short = np.flatnonzero(frame.lengths < need)
    if len(short):
        first = short[0]
        spacing = "horizon" if step == horizon else f"step ({step})"
        raise DataError(
            f"{frame.path}: series {frame.ids[first]!r} has {frame.lengths[first]} rows; "
            f"{n_windows} backtest window{'s' if n_windows > 1 else ''} need lookback + horizon "
            f"+ {n_windows - 1} x {spacing} = {need}. Lower n_windows or give longer series"
        )


def refuse_non_finite(df: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """`df` if its forecasts (`y_hat*` columns) are finite. A NaN or infinite forecast means the
    model overflowed on its input, mostly values far outside those it was trained on: such a
    forecast is refused (DataError), `outcome` saying what it was not used for."""
    columns = [c for c in df.columns if c.startswith("y_hat")]
    values = df[columns].to_numpy(dtype=np.float64)  # [rows, Q or 1]
    bad = ~np.isfinite(values)
    if not bad.any():
        return df
    row, j = divmod(int(np.argmax(bad)), len(columns))
    raise DataError(
        f"the forecast of series {df['unique_id'].iloc[row]!r} at {df['ds'].iloc[row]} "
        f"({columns[j]}, step {df['step'].iloc[row]}) is {values[row, j]}, as are "
        f"{int(bad.sum()) - 1} more values; {outcome}. The model overflowed on this input: "
        f"check that its values lie in the range of the training data"
    )


def backtest_windows(
    frame: Frame, lookback: int, horizon: int, n_windows: int, step: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rolling origins: `n_windows` forecasts of every series, `step` rows apart (default: the
    horizon, so they do not overlap), the last one ending at the series' last row.

    Returns inputs [S * n, lookback, C], truths [S * n, horizon, C] and the origin row of each
    (the first forecast row), series-major, oldest origin first.
    """
    step = horizon if step is None else step
    check_backtest(frame, lookback, horizon, n_windows, step)
    ends = frame.offsets[1:]
    back = horizon + step * np.arange(n_windows - 1, -1, -1)  # [n], oldest origin first
    origins = (ends[:, None] - back).reshape(-1)  # [S * n]
    inputs = frame.values[origins[:, None] - lookback + np.arange(lookback)]
    truths = frame.values[origins[:, None] + np.arange(horizon)]
    return inputs, truths, origins


def window_table(
    frame: Frame,
    origins: np.ndarray,
    truths: np.ndarray,
    y_hat: np.ndarray,
    quantiles: list[float],
    wide: bool,
) -> pd.DataFrame:
    """Rows unique_id, cutoff (the last input time), origin (the first forecast time), ds, step,
    y, y_hat [, y_hat_qNN ...], sorted by unique_id, origin and step.

    truths [n, horizon, C] and y_hat [n, horizon, C] (or [n, horizon, C, Q]) are the windows
    whose first forecast row is `origins` [n].
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
    columns = {
        "unique_id": flat(labels[:, None, :]),
        "cutoff": flat(frame.times[origins - 1][:, None, None]),
        "origin": flat(frame.times[origins][:, None, None]),
        "ds": flat(frame.times[rows][..., None]),
        "step": flat(np.arange(1, horizon + 1)[None, :, None]),
        "y": truths.reshape(-1),
    }
    columns.update(forecast_columns(y_hat.reshape(len(columns["y"]), -1), quantiles))
    df = pd.DataFrame(columns)
    for column in ("cutoff", "origin", "ds"):
        df[column] = labelled_times(frame, df[column])
    return df.sort_values(["unique_id", "origin", "step"], kind="stable", ignore_index=True)


def forecast_columns(values: np.ndarray, quantiles: list[float]) -> dict[str, np.ndarray]:
    """`y_hat` (the median of a quantile forecast) and `y_hat_qNN` per quantile, from
    values [rows, Q] (Q = 1 for a point forecast)."""
    if not quantiles:
        return {"y_hat": values[:, 0]}
    columns = {"y_hat": values[:, median_index(quantiles)]}
    for i, q in enumerate(quantiles):
        columns[f"y_hat_q{round(q * 100):02d}"] = values[:, i]
    return columns


def backtest_frame(table: pd.DataFrame) -> pd.DataFrame:
    """predict.py's backtest rows: unique_id, origin (ds of the first forecast), ds, step, y,
    y_hat, error (y_hat - y), from a `window_table`."""
    df = table[["unique_id", "origin", "ds", "step", "y", "y_hat"]].copy()
    df["error"] = df["y_hat"] - df["y"]
    return df


def cross_validation_frame(table: pd.DataFrame) -> pd.DataFrame:
    """NeuralForecast's cross-validation rows: unique_id, ds, cutoff, y, y_hat [, y_hat_qNN],
    from a `window_table`."""
    forecasts = [c for c in table.columns if c.startswith("y_hat")]
    return table[["unique_id", "ds", "cutoff", "y", *forecasts]].reset_index(drop=True)


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
    resolved, given = path.resolve(), os.path.abspath(path)
    return {
        "path": str(resolved),
        **({"link": given} if str(resolved) != given else {}),  # reached through a symlink
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
    """Files and series done, shown with rich when attached to a terminal; silent otherwise, and
    without the `rich` extra (one line says what to install)."""

    def __init__(self, n_files: int):
        from forecast.extras import available, install_hint

        self.bar = None
        if sys.stderr.isatty() and not available("rich"):
            print(f"no progress bar: {install_hint('rich')} shows one", file=sys.stderr)
        elif sys.stderr.isatty():
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
    """Runs an exported model over many files (see the module's docstring), or over one file or
    DataFrame for the Python API (`forecast`, `backtest`, `cross_validation`).

    `data_options` override the export's reading options (keys READ_KEYS); None values keep the
    export's. `log` says what went well (stdout), `warn` what failed (stderr).
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
        future: str | Path | None = None,
        log: Callable[[str], None] = print,
        warn: Callable[[str], None] | None = None,
    ):
        if format not in FORMATS:
            raise PredictError(f"format must be one of {FORMATS}, got {format!r}")
        if engine not in ENGINES:
            raise PredictError(f"engine must be one of {ENGINES}, got {engine!r}")
        if n_windows < 1 or batch_size < 1:
            raise PredictError(
                f"n_windows and batch_size must be at least 1, got {n_windows} and {batch_size}"
            )
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
        try:
            self.reading = export_reading(self.meta).replace(**overrides)
        except ValueError as err:
            raise PredictError(str(err)) from err
        self.wide = self.reading.layout == "wide"
        self.covariates = Covariates.from_dict(self.meta.get("covariates"))
        self.quantiles = list(self.meta.get("quantiles", []))
        self.batch_size, self.format, self.overwrite = batch_size, format, overwrite
        self.backtest, self.n_windows, self.log = backtest, n_windows, log
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.future = self._check_future(future)
        # what a forecast depends on besides its input and the model, as JSON would give it back
        self.options = json.loads(
            json.dumps(
                {"engine": engine, "format": format, "data": self.reading.to_dict()},
                default=str,
            )
        )
        self.model_dir = str(Path(model_dir).resolve())

    def _check_future(self, future: str | Path | None) -> Path | None:
        """`future=`: a file of future rows for every input, or a folder with one of each
        input's name; refused (PredictError) for a model that reads no future covariates."""
        if future is None:
            return None
        self._refuse_unread_future(future)
        future = Path(future)
        if not future.exists():
            raise PredictError(
                f"future={future}: no such file or folder; give the file of future covariate "
                f"rows, or a folder with a file of each input's name"
            )
        return future

    def _refuse_unread_future(self, future) -> None:
        """A PredictError where `future` is given to a model that reads no future covariates."""
        if future is None or self.reads_future:
            return
        takes = (
            "only calendar features, made from the times" if self.covariates.calendar else "none"
        )
        shown = "a DataFrame" if isinstance(future, pd.DataFrame) else future
        raise PredictError(
            f"future={shown}: this model reads no future covariates (it takes {takes}); "
            f"remove future="
        )

    def future_for(self, path: Path) -> Path | None:
        """The future rows of input `path` (`future=`): the file, or the folder's file of the
        same name (a DataError for that input when there is none)."""
        if self.future is None or not self.future.is_dir():
            return self.future
        candidate = self.future / path.name
        if not candidate.is_file():
            raise DataError(
                f"{path}: no future covariates for it: {candidate} not found (future= is a "
                f"folder: give it a file of the same name as each input)"
            )
        return candidate

    # --- one file or DataFrame (the Python API) -------------------------------------------

    def forecast(
        self, source: str | Path | pd.DataFrame, future: str | Path | pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """The forecast of every series of `source` past its last row, as `run` writes it;
        `future`: the future covariates' rows in a table of their own (else rows of `source`)."""
        frame, inputs = self.prepare(source, future=future)
        df = to_long(frame, self.predict_windows(inputs), self.quantiles, self.wide)
        return refuse_non_finite(df, f"{frame.path}: no forecast returned")

    def backtest_table(
        self, source: str | Path | pd.DataFrame, future: str | Path | pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """The backtest of `source` over the last `n_windows` horizons, as `run` writes it. Its
        horizons lie in the history, so future rows (in `source` or `future`) are not needed,
        and left out where given."""
        self._refuse_unread_future(future)
        frame = self.read(source, future_rows=self.reads_future, future=future)
        if self.reading.short == "skip":
            frame = self._skip_short(frame, Summary())
        if frame.future is not None:
            frame = history_of(frame)
        lookback, horizon = self.model.lookback, self.model.horizon
        check_backtest(frame, lookback, horizon, self.n_windows, horizon)
        return backtest_frame(self.windows_table(frame, self.n_windows))

    def cross_validation(
        self, source: str | Path | pd.DataFrame, n_windows: int, step: int | None = None
    ) -> pd.DataFrame:
        """Rolling-origin forecasts of `source` in NeuralForecast's form (unique_id, ds, cutoff,
        y, y_hat): `n_windows` origins `step` rows apart (default: the horizon)."""
        frame = self.read(source)  # history only: every window's horizon lies in it
        step = self.model.horizon if step is None else step
        if n_windows < 1 or step < 1:
            raise PredictError(f"n_windows and step must be at least 1, got {n_windows}, {step}")
        return cross_validation_frame(self.windows_table(frame, n_windows, step))

    def read(
        self,
        source: str | Path | pd.DataFrame,
        future_rows: bool = False,
        future: str | Path | pd.DataFrame | None = None,
    ) -> Frame:
        """`source` read with the model's reading options (its columns, for a wide one, and its
        covariates' levels) and checked against the model's frequency; `future_rows`: rows
        after a series' last target hold its future covariates (Frame.future), in `source` or
        in the table `future`."""
        channels = self.meta["channels"] if self.wide else None
        levels = self.covariates.levels
        frame = read(
            source,
            self.reading,
            channels=channels,
            levels=levels,
            future_rows=future_rows,
            future=future,
        )
        check_frequency(frame, self.meta.get("frequency"))
        check_scaled_covariates(frame, self.covariates)
        return frame

    @property
    def reads_future(self) -> bool:
        """Whether forecasts need future covariates read from rows past each series' end (the
        calendar features alone are computed from the times)."""
        return len(self.covariates.future.names) > len(self.covariates.calendar)

    def prepare(
        self, source, summary: Summary | None = None, future=None
    ) -> tuple[Frame, dict[str, np.ndarray]]:
        """The frame of `source` (its history: no future rows) and the inputs of its last
        windows: x [S, lookback, C] and the covariates the model takes; raises DataError for a
        file that cannot be forecast as asked (backtest included), before any forecast.
        `future`: a table of future rows (see `read`)."""
        self._refuse_unread_future(future)
        frame = self.read(source, future_rows=self.reads_future, future=future)
        if self.reading.short == "skip":
            frame = self._skip_short(frame, summary or Summary())
        ahead = None
        if frame.future is not None:
            n_read = len(self.covariates.future.names) - len(self.covariates.calendar)
            frame, ahead = split_future(frame, self.model.horizon, n_read)
        lookback, horizon = self.model.lookback, self.model.horizon
        inputs = {"x": last_windows(frame, self.meta["channels"], lookback)}
        ends = frame.offsets[1:]
        inputs.update(window_covariates(frame, ends, self.covariates, lookback, horizon, ahead))
        if self.backtest:
            check_backtest(frame, lookback, horizon, self.n_windows, horizon)
        return frame, inputs

    def predict_windows(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Raw forecasts of raw windows (x and covariates), `batch_size` at a time (as `run`
        takes them)."""
        n, size = len(inputs["x"]), self.batch_size
        outputs = [
            self.predict_batch({k: v[i : i + size] for k, v in inputs.items()})
            for i in range(0, n, size)
        ]
        return np.concatenate(outputs)

    def predict_batch(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        covariates = {k: v for k, v in inputs.items() if k != "x"}
        return self.model.predict(inputs["x"], **covariates)

    def windows_table(self, frame: Frame, n_windows: int, step: int | None = None):
        """Forecasts from `n_windows` origins per series beside the truth (`window_table`)."""
        lookback, horizon = self.model.lookback, self.model.horizon
        x, truths, origins = backtest_windows(frame, lookback, horizon, n_windows, step)
        inputs = {"x": x, **window_covariates(frame, origins, self.covariates, lookback, horizon)}
        y_hat = self.predict_windows(inputs)
        table = window_table(frame, origins, truths, y_hat, self.quantiles, self.wide)
        return refuse_non_finite(table, f"{frame.path}: no forecast returned")

    # --- many files ------------------------------------------------------------------------

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
                if sum(j.n_windows for j in pending) >= self.batch_size:
                    pending = self._forecast(pending, summary, progress)
            while pending:
                pending = self._forecast(pending, summary, progress)
        finally:
            progress.close()
        summary.seconds = time.perf_counter() - start
        for path, message in summary.failed.items():
            # a DataError names its file first; other errors are given it here
            self.warn(f"FAILED {message if message.startswith(path) else f'{path}: {message}'}")
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
            future = self.future_for(path)
            if (future is None) != ("future" not in record["input"]):
                return False
            if future is not None and not same_input(record["input"]["future"], future):
                return False
            return same_input(record["input"], path)
        except (KeyError, TypeError, OSError, DataError):
            return False  # a malformed record vouches for nothing

    def _jobs(self, paths, targets, summary: Summary, progress: Progress) -> Iterator[Job]:
        for path, target in zip(paths, targets, strict=True):
            if self.is_up_to_date(path, target):
                summary.skipped += 1
                progress.advance(files=1)
                continue
            try:
                source = input_identity(path)
                future = self.future_for(path)
                if future is not None:  # taken before it is read, like the input's
                    source["future"] = input_identity(future)
                frame, inputs = self.prepare(path, summary, future)
            except (DataError, OSError, ValueError) as err:
                summary.failed[str(path)] = str(err)
                progress.advance(files=1)
                continue
            yield Job(path, target, frame, inputs, source)

    def _skip_short(self, frame: Frame, summary: Summary) -> Frame:
        """data.short=skip: `frame` without its series shorter than the look-back, named in the
        log and counted; a file with none left is refused."""
        lookback = self.model.lookback
        frame, dropped = without_short(frame, lookback)
        if dropped and not frame.n_series:
            raise DataError(
                f"{frame.path}: every series is shorter than the model's look-back ({lookback} "
                f"rows); nothing to forecast"
            )
        if dropped:
            summary.short += len(dropped)
            names = ", ".join(map(str, dropped[:10])) + (" ..." if len(dropped) > 10 else "")
            self.log(
                f"{frame.path}: {len(dropped)} series shorter than the look-back ({lookback} "
                f"rows) left out (data.short=skip): {names}"
            )
        return frame

    def _forecast(self, pending: list[Job], summary: Summary, progress: Progress) -> list[Job]:
        """Forecast up to one batch of the pending windows; write the files that are complete."""
        chunks, budget = [], self.batch_size
        for job in pending:
            done = sum(len(f) for f in job.forecasts)
            take = min(job.n_windows - done, budget)
            if take:
                chunks.append((job, {k: v[done : done + take] for k, v in job.inputs.items()}))
                budget -= take
            if not budget:
                break
        if chunks:
            keys = chunks[0][1]
            batch = {k: np.concatenate([c[k] for _, c in chunks]) for k in keys}
            predictions = self.predict_batch(batch)
            start = 0
            for job, chunk in chunks:
                n = len(chunk["x"])
                job.forecasts.append(predictions[start : start + n])
                start += n
        remaining = []
        for job in pending:
            if job.done:
                self._write(job, summary)
                progress.advance(files=1, series=job.n_windows)
            else:
                remaining.append(job)
        return remaining

    def _write(self, job: Job, summary: Summary) -> None:
        record = record_path(job.target)
        record.unlink(missing_ok=True)  # it describes what is about to be replaced
        forecasts = np.concatenate(job.forecasts)
        df = to_long(job.frame, forecasts, self.quantiles, self.wide)
        written = [job.target]
        try:
            write_table(df, job.target, self.format)
            if self.backtest:  # prepare() checked that every series holds its windows
                written.append(self._backtest(job))
        except DataError as err:  # not finite: failed, with no record
            summary.failed[str(job.path)] = str(err)
            return
        summary.files += 1
        summary.series += job.n_windows * (forecasts.shape[2] if self.wide else 1)
        summary.forecasts += len(df)
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
        df = backtest_frame(self.windows_table(job.frame, self.n_windows))
        target = backtest_path(job.target)
        write_table(df, target, self.format)
        errors = df["error"].to_numpy()
        n = self.n_windows * job.frame.n_series
        self.log(
            f"backtest {job.path.name}: {plural(n, 'window')}, MAE {np.abs(errors).mean():.4g}, "
            f"RMSE {np.sqrt((errors**2).mean()):.4g}"
        )
        return target


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
