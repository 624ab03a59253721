"""Read wide CSV files (a time column, one column per channel) into one canonical form."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.data.errors import DataError


@dataclass(frozen=True)
class Frame:
    """One multichannel series: `values[t, c]` observed at `times[t]`."""

    path: str
    times: pd.DatetimeIndex  # [T]
    values: np.ndarray  # [T, C] float32
    channels: tuple[str, ...]


def read_wide(path: str | Path, time_col: str = "date", columns: list[str] | None = None) -> Frame:
    """Read a wide file; `columns` picks the channels (default: every column but the time)."""
    path = str(path)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path}: the file is empty; expected a header row and data rows") from err
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file; check data.path") from err
    if df.empty:
        raise DataError(f"{path}: the file has a header but no data rows")
    _require_columns(path, df, [time_col, *(columns or [])])
    channels = columns or [c for c in df.columns if c != time_col]
    times = _parse_times(path, df[time_col], time_col)
    values = np.stack([_numeric(path, df[c], c) for c in channels], axis=1)
    return Frame(path, pd.DatetimeIndex(times), values.astype(np.float32), tuple(channels))


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


def _parse_times(path: str, column: pd.Series, name: str) -> pd.Series:
    times = pd.to_datetime(column, errors="coerce")
    bad = times.isna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise DataError(
            f"{path}: column {name!r}, row {row + 2} (line in the file): cannot parse "
            f"{column.iloc[row]!r} as a timestamp; fix or remove that value"
        )
    steps = times.diff().iloc[1:]
    if (steps <= pd.Timedelta(0)).any():
        row = int(np.argmax((steps <= pd.Timedelta(0)).to_numpy())) + 1
        raise DataError(
            f"{path}: column {name!r}, row {row + 2}: timestamp {column.iloc[row]!r} is not after "
            f"the one before it (duplicate or out of order); sort the file by time and remove "
            f"duplicates"
        )
    return times


def _numeric(path: str, column: pd.Series, name: str) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{path}: column {name!r}, row {row + 2}: value {column.iloc[row]!r} is missing, "
            f"infinite or not a number; fill or remove it"
        )
    return values
