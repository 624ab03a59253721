"""Read wide, long and one-series-per-row files (CSV or Parquet) into one canonical `Frame`.

Layouts:
- wide: a time column and one column per channel (ETT style): one series.
- long: a series id, a time and value column(s), the `unique_id, ds, y` convention: many series.
- rows: one series per row, an id then its values, rows ragged (M4 style): integer time index.

Every check refuses with `DataError`, naming the file, the column, the first offending row (or
series) and the fix. Rows are counted as data rows from 1 (the header is not a data row); for a
CSV file the line of the file is given as well.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.errors import DataError
from forecast.data.validate import fill_missing, fixed_step, group_and_order, regularise

try:
    import pyarrow
except ImportError:  # pragma: no cover - pyarrow comes with pandas' Parquet support
    pyarrow = None
# Arrow's CSV reader is several times faster than pandas' C engine on large files.
CSV_ENGINE = "c" if pyarrow is None else "pyarrow"


@dataclass(frozen=True)
class Frame:
    """Many series of the same channels, stored end to end in one contiguous array.

    Series s is rows `offsets[s]:offsets[s + 1]` of `values`, `times` and `covariates`; a wide
    file is one series. The last `holdout` rows of every series came from a separate test file.
    """

    path: str
    ids: tuple[str, ...]  # [S]
    offsets: np.ndarray  # [S + 1] int64
    times: np.ndarray  # [N] datetime64[ns], or int64 steps when the file has no timestamps
    values: np.ndarray  # [N, C] float32, C-contiguous
    channels: tuple[str, ...]  # [C]
    covariates: np.ndarray  # [N, K] float32 past covariates (K may be 0)
    covariate_names: tuple[str, ...] = ()  # [K]
    holdout: int = 0
    # "UTC" where the file's timestamps carried a zone or offset: `times` are then UTC instants
    # (naive datetime64), and what is written from them says so; None for naive or integer time
    tz: str | None = None
    # a calendar frequency ("MS", "ME", "QS-JAN", "B", ...) where the steps are calendar units
    # rather than one fixed span; None for a fixed step (hourly, daily, integer time, ...)
    calendar: str | None = None

    @property
    def n_series(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:  # [S]
        return np.diff(self.offsets)


# the name of a DataFrame source in messages and records (its rows are named by df.iloc)
DATAFRAME = "DataFrame"


@dataclass
class Where:
    """Says where a data row is, in the words a person needs to find it in the file."""

    path: str
    is_datetime: bool = True  # how to print a time: a timestamp or an integer step
    # on a calendar frequency, times are positions on this grid of timestamps (see _calendar)
    grid: pd.DatetimeIndex | None = None
    calendar: str | None = None

    @property
    def is_csv(self) -> bool:
        return not self.path.endswith((".parquet", ".pq"))

    def row(self, row: int) -> str:
        if self.path == DATAFRAME:
            return f"row df.iloc[{row}]"
        if self.is_csv:
            return f"data row {row + 1} (line {row + 2} of the file)"
        return f"data row {row + 1}"


def source_name(source) -> str:
    """How messages and records name a source: its path, or DATAFRAME."""
    return DATAFRAME if isinstance(source, pd.DataFrame) else str(source)


def _table(source, format: str | None) -> pd.DataFrame:
    """A file's table (read_table), or a DataFrame as the reader takes it (from_frame)."""
    return from_frame(source) if isinstance(source, pd.DataFrame) else read_table(source, format)


def from_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A caller's DataFrame as a table: column names as text, a DatetimeIndex as a time column
    (named after the index, else `ds`). The caller's frame is not changed."""
    if isinstance(df.index, pd.DatetimeIndex):
        name = df.index.name or "ds"
        if name in df.columns:
            raise DataError(
                f"{DATAFRAME}: the time index is named {name!r} like a column; rename one of "
                f"them, or reset_index() the frame"
            )
        df = df.reset_index(names=name)
    else:
        df = df.copy(deep=False)
    if df.empty:
        raise DataError(f"{DATAFRAME}: the frame has no rows; give a frame with data rows")
    df.columns = [str(c) for c in df.columns]
    return df


def read_table(path: str | Path, format: str | None = None) -> pd.DataFrame:
    """The whole file as a DataFrame; `format` is `csv` or `parquet` (default: by suffix)."""
    path = str(path)
    fmt = format or ("parquet" if path.endswith((".parquet", ".pq")) else "csv")
    if fmt not in ("csv", "parquet"):
        raise DataError(f"{path}: format must be 'csv' or 'parquet', got {fmt!r}")
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, engine=CSV_ENGINE)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path}: the file is empty; expected a header row and data rows") from err
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file; check data.path") from err
    except pd.errors.ParserError as err:  # e.g. a row with more fields than the header
        reason = str(err).strip().splitlines()[0]
        raise DataError(
            f"{path}: cannot be read as a comma-separated table ({reason}); every row needs "
            f"as many fields as the header: fix that row, or quote fields that contain commas"
        ) from err
    _release_arrow_memory()
    if df.empty:
        raise DataError(f"{path}: the file has a header but no data rows")
    df.columns = [str(c) for c in df.columns]
    if fmt == "csv":
        _refuse_other_separators(path, df)
    return df


def _refuse_other_separators(path: str, df: pd.DataFrame) -> None:
    """A one-column header holding ';', tab or '|' is a file separated by that, read as one."""
    if len(df.columns) != 1:
        return
    header = df.columns[0]
    for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "'|'")):
        if sep in header:
            raise DataError(
                f"{path}: the header {header!r} reads as one column: the file is {name}-"
                f"separated, this reader takes commas; save it with commas, e.g. "
                f"pd.read_csv(path, sep={sep!r}).to_csv(new_path, index=False) (with "
                f"decimal=',' too if its numbers use decimal commas)"
            )


def _release_arrow_memory() -> None:
    """Give back the memory Arrow kept from decoding: it would sit under every later peak."""
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()


def read_wide(
    path: str | Path,
    time_col: str = "date",
    target: str | list[str] | None = None,
    covariates: list[str] | None = None,
    *,
    format: str | None = None,
    freq: str | int | None = None,
    fill: str = "error",
    sort: bool = False,
) -> Frame:
    """One series; `target` picks the channels (default: every column but time and covariates)."""
    df, name = _table(path, format), source_name(path)
    covariates = list(covariates or [])
    chosen = _as_list(target)
    target = chosen or [c for c in df.columns if c not in (time_col, *covariates)]
    _require_columns(name, df, [time_col, *target, *covariates])
    if not chosen:
        _refuse_unnamed(name, df, target)
    return _build(name, df, None, time_col, target, covariates, freq, fill, sort)


def read_long(
    path: str | Path,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target: str | list[str] | None = "y",
    covariates: list[str] | None = None,
    *,
    format: str | None = None,
    freq: str | int | None = None,
    fill: str = "error",
    sort: bool = False,
) -> Frame:
    """Many series, one row per (series, time); rows of a series need not be adjacent."""
    df, name = _table(path, format), source_name(path)
    target, covariates = _as_list(target or "y"), list(covariates or [])
    _require_columns(name, df, [id_col, time_col, *target, *covariates])
    return _build(name, df, id_col, time_col, target, covariates, freq, fill, sort)


def read_rows(
    path: str | Path,
    id_col: str | None = None,
    *,
    test_path: str | Path | None = None,
    format: str | None = None,
    fill: str = "error",
) -> Frame:
    """One series per row (M4 style): an id column, then values; empty trailing cells pad.

    `test_path`, a file of the same layout holding each series' held-out continuation, is
    appended to its series; `Frame.holdout` says how many rows it added to each.
    """
    ids, parts = _read_ragged(path, id_col, format, fill)  # each part [T_s]
    holdout = 0
    if test_path is not None:
        test_ids, test_parts = _read_ragged(str(test_path), id_col, format, fill)
        holdout = _check_test_part(str(test_path), ids, test_ids, test_parts)
        test_rows = pd.Index(test_ids).get_indexer(ids)
        parts = [
            np.concatenate([part, test_parts[row]])
            for part, row in zip(parts, test_rows, strict=True)
        ]
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate(parts).astype(np.float32)[:, None]  # [N, 1], series end to end
    times = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    empty = np.zeros((len(values), 0), dtype=np.float32)
    name = source_name(path)
    return Frame(name, tuple(ids), offsets, times, values, ("y",), empty, (), holdout)


def _read_ragged(
    source, id_col: str | None, format: str | None, fill: str
) -> tuple[list[str], list[np.ndarray]]:
    """Ids [S] and each row's values [T_s] float64, padding trimmed and interior gaps filled."""
    df, path = _table(source, format), source_name(source)
    id_col = id_col or df.columns[0]
    _require_columns(path, df, [id_col])
    where = Where(path)
    ids = df[id_col].astype(str).tolist()
    _refuse_duplicate_ids(where, ids, id_col)
    value_cols = [c for c in df.columns if c != id_col]
    block = np.stack([_numeric(where, df[c], c) for c in value_cols], axis=1)  # [S, W]
    present = ~np.isnan(block)  # inf counts as present: it is refused or filled below
    lengths = np.where(present.any(axis=1), block.shape[1] - np.argmax(present[:, ::-1], 1), 0)
    if (lengths == 0).any():
        s = int(np.argmax(lengths == 0))
        raise DataError(f"{path}: series {ids[s]!r} ({where.row(s)}) has no values; remove it")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = block[np.arange(block.shape[1]) < lengths[:, None]][:, None]  # [N, 1] end to end

    def locate(i: int, j: int) -> str:
        s = int(np.searchsorted(offsets, i, side="right") - 1)
        return f"column {value_cols[i - offsets[s]]!r}, {where.row(s)} (series {ids[s]!r})"

    flat = fill_missing(path, flat, offsets, fill, locate)
    return ids, np.split(flat[:, 0], offsets[1:-1])


def _check_test_part(
    path: str, ids: list[str], test_ids: list[str], test_parts: list[np.ndarray]
) -> int:
    """The horizon: every series has a test part, all of one length."""
    test_lengths = np.array([len(part) for part in test_parts])
    missing = sorted(set(ids) - set(test_ids))
    extra = sorted(set(test_ids) - set(ids))
    if missing or extra:
        raise DataError(
            f"{path}: the test part must hold the same series as the training part; missing "
            f"{missing[:5]}, unknown {extra[:5]}; pair the two files of the same data set"
        )
    if (test_lengths != test_lengths[0]).any():
        s = int(np.argmax(test_lengths != test_lengths[0]))
        raise DataError(
            f"{path}: series {test_ids[s]!r} ({Where(path).row(s)}) has {test_lengths[s]} test "
            f"values, the first series {test_lengths[0]}; every series needs the same horizon"
        )
    return int(test_lengths[0])


def _build(
    path: str,
    df: pd.DataFrame,
    id_col: str | None,
    time_col: str,
    target: list[str],
    covariates: list[str],
    freq: str | int | None,
    fill: str,
    sort: bool,
) -> Frame:
    """Validate a wide or long table and lay its series end to end."""
    where = Where(path)
    if id_col is None:
        ids, codes = [Path(path).name.split(".")[0]], np.zeros(len(df), dtype=np.int32)
    else:
        codes, uniques = pd.factorize(df[id_col], sort=False)  # no string copy per row
        ids = [str(u) for u in uniques]
        if (codes < 0).any():  # factorize codes a missing id -1: it would join no series
            row = int(np.argmax(codes < 0))
            raise DataError(
                f"{path}: column {id_col!r}, {where.row(row)}: the series id is empty; give "
                f"every row the id of its series, or remove the row"
            )
    times, where.is_datetime, tz = _parse_times(where, df[time_col], time_col)
    columns = [*target, *covariates]
    numbers = np.stack([_numeric(where, df[c], c) for c in columns], axis=1)  # [N, C + K]
    codes, times, numbers, rows = group_and_order(where, time_col, ids, codes, times, numbers, sort)
    starts = np.flatnonzero(codes[1:] != codes[:-1]) + 1  # where a new series begins
    offsets = np.concatenate([[0], starts, [len(codes)]]).astype(np.int64)
    calendar = _calendar(where, time_col, ids, times, rows, offsets, freq)
    if calendar is not None:  # from here on, times are positions on the calendar's grid
        times, freq = calendar, 1
    times, numbers, rows, offsets = regularise(
        where, time_col, ids, times, numbers, rows, offsets, freq, fill
    )
    if where.grid is not None:
        times = where.grid.asi8[times]

    def locate(i: int, j: int) -> str:
        series = f" (series {ids[np.searchsorted(offsets, i, 'right') - 1]!r})" if id_col else ""
        return f"column {columns[j]!r}, {where.row(int(rows[i]))}{series}"

    numbers = fill_missing(path, numbers, offsets, fill, locate)
    values = np.ascontiguousarray(numbers[:, : len(target)], dtype=np.float32)
    extra = np.ascontiguousarray(numbers[:, len(target) :], dtype=np.float32)
    if where.is_datetime:
        times = times.view("datetime64[ns]")
    return Frame(
        path,
        tuple(ids),
        offsets,
        times,
        values,
        tuple(target),
        extra,
        tuple(covariates),
        tz=tz,
        calendar=where.calendar,
    )


def _calendar(where, time_col, ids, times, rows, offsets, freq) -> np.ndarray | None:
    """Positions [N] of `times` on a calendar grid, where the series step by calendar units
    (months, quarters, years, business days), or None where a fixed step (or none) applies.

    The calendar is `freq` where it names one (data.freq=MS), else the one pandas infers from
    the first series, tried only when the steps are not all equal. Every timestamp must be a
    date of that calendar (a month start for MS, ...): the grid runs from the earliest to the
    latest timestamp, and a timestamp not on it is refused.
    """
    if not where.is_datetime or len(times) < 2:
        return None
    if freq is not None:
        offset = _offset(freq)
        if offset is None or fixed_step(offset) is not None:
            return None  # a fixed step (or an unknown one): regularise checks it
    else:
        steps = np.diff(times)
        steps[offsets[1:-1] - 1] = 0
        steps = steps[steps > 0]
        if not len(steps) or (steps == steps[0]).all():
            return None
        offset = _inferred_calendar(times, offsets)
        if offset is None:
            return None  # regularise says what is wrong with the steps
    alias = offset.freqstr
    grid = pd.date_range(
        pd.Timestamp(int(times.min())), pd.Timestamp(int(times.max())), freq=offset
    )
    position = np.searchsorted(grid.asi8, times)
    inside = np.minimum(position, len(grid) - 1)
    off_grid = (position >= len(grid)) | (grid.asi8[inside] != times)
    if off_grid.any():
        i = int(np.argmax(off_grid))
        series = (
            f" (series {ids[np.searchsorted(offsets, i, 'right') - 1]!r})" if len(ids) > 1 else ""
        )
        raise DataError(
            f"{where.path}: column {time_col!r}, {where.row(int(rows[i]))}{series}: timestamp "
            f"{pd.Timestamp(int(times[i]))} is not a date of the {alias} calendar the others "
            f"follow; fix it, or set data.freq to the data's frequency"
        )
    where.grid, where.calendar = grid, alias
    return position.astype(np.int64)


def _offset(freq):
    try:
        return pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError):
        return None


def _inferred_calendar(times, offsets):
    """The calendar pandas infers from the first rows of the first series with three rows or
    more, if it is one (not a fixed step). A gap among those rows defeats inference: shorter
    runs of first rows are tried then, down to three (the grid check sees the rest)."""
    lengths = np.diff(offsets)
    longer = np.flatnonzero(lengths >= 3)
    if not len(longer):
        return None
    start, length = offsets[longer[0]], lengths[longer[0]]
    for n in (100, 30, 10, 7, 5, 3):
        guess = pd.infer_freq(pd.DatetimeIndex(times[start : start + min(n, length)]))
        if guess is not None:
            offset = _offset(guess)
            return None if offset is None or fixed_step(offset) is not None else offset
    return None


def _refuse_unnamed(path: str, df: pd.DataFrame, target: list[str]) -> None:
    """A column with an empty header cell (pandas names it 'Unnamed: i') is not made a series
    unasked: it is nearly always the index pandas' to_csv writes by default (row numbers)."""
    for name in target:
        if re.fullmatch(r"Unnamed: \d+", name):
            i = list(df.columns).index(name)
            raise DataError(
                f"{path}: column {i + 1} has no name in the header (read as {name!r}); an "
                f"unnamed first column is usually a saved pandas index (to_csv(index=False) "
                f"leaves it out). Remove it or name it, or list the series in data.target"
            )


def _as_list(columns: str | list[str] | None) -> list[str]:
    if columns is None:
        return []
    return [columns] if isinstance(columns, str) else list(columns)


def _require_columns(path: str, df: pd.DataFrame, wanted: list[str]) -> None:
    have = [str(c) for c in df.columns]
    for name in wanted:
        if name not in have:
            near = nearest(name, have)
            hint = f"did you mean {near!r}?" if near else f"the columns are {have}"
            raise DataError(f"{path}: column {name!r} not found; {hint}")


def nearest(name: str, candidates: list[str]) -> str | None:
    """The candidate most like `name`, ignoring case, if any is close enough to be a typo."""
    by_lower = {c.lower(): c for c in candidates}
    near = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.5)
    return by_lower[near[0]] if near else None


def _refuse_duplicate_ids(where: Where, ids: list[str], id_col: str) -> None:
    seen = pd.Index(ids).duplicated()
    if seen.any():
        s = int(np.argmax(seen))
        raise DataError(
            f"{where.path}: column {id_col!r}, {where.row(s)}: series {ids[s]!r} appears twice; "
            f"give every row its own id"
        )


def _parse_times(where: Where, column: pd.Series, name: str) -> tuple[np.ndarray, bool, str | None]:
    """[N] int64: nanoseconds since the epoch (UTC for zoned times), or integer steps; whether
    they are times; "UTC" where the column carried a zone or offsets (see Frame.tz)."""
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=np.int64), False, None
    try:
        times = pd.to_datetime(column, errors="coerce")
    except ValueError:  # offsets that change (daylight saving): one common zone, UTC
        times = pd.to_datetime(column, errors="coerce", utc=True)
    zoned = getattr(times.dt, "tz", None) is not None
    if zoned:
        times = times.dt.tz_convert(None)
    bad = times.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{where.path}: column {name!r}, {where.row(row)}: cannot parse "
            f"{column.iloc[row]!r} as a timestamp; fix or remove that value"
        )
    return times.to_numpy(dtype="datetime64[ns]").view(np.int64), True, "UTC" if zoned else None


def _numeric(where: Where, column: pd.Series, name: str) -> np.ndarray:
    """[N] float64; a value that is present but not a number is refused, NaN and inf kept."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    text = np.isnan(values) & column.notna().to_numpy()
    if text.any():
        row = int(np.argmax(text))
        raise DataError(
            f"{where.path}: column {name!r}, {where.row(row)}: value {column.iloc[row]!r} is not "
            f"a number; fix it, or remove the column if it is not a series"
        )
    return values
