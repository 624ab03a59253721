"""The one reading path: `read(source, options)` for training, batch forecasting and the API.

A source is a file (CSV or Parquet) or a pandas DataFrame; `ReadOptions` says how to read it
(layout, column names, frequency, fills). Its defaults are the only ones: the DataModule,
`predict.py` and `forecast.fit` all take them from here, and an export records the options it
was trained with (meta.json "reading"), so a file is read the same way by every entry point.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from forecast.data.errors import DataError
from forecast.data.io import (
    Frame,
    check_file,
    from_frame,
    listed,
    read_long,
    read_rows,
    read_wide,
    source_name,
)
from forecast.data.validate import FILLS

LAYOUTS = ("wide", "long", "rows")
SHORT = ("error", "skip")
COVARIATES = ("past_covariates", "future_covariates", "static_covariates")
# the time column when none is named: the first of these the table has, by layout
TIME_COLUMNS = {"wide": ("date", "ds"), "long": ("ds", "date")}


def _names(value) -> tuple:
    """A column option (None, one name or a list) as a tuple of names."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a table of series.

    layout: `wide` (a time column and one column per channel: one series), `long` (series id,
    time and value columns: the `unique_id, ds, y` convention) or `rows` (one series per row, an
    id then its values, M4 style). time_col: the time column (default: `date`, else `ds`, for
    wide; `ds`, else `date`, for long). id_col: the series id (long: `unique_id`; rows: the first
    column). target: the value column(s) (wide: every column but time and covariates; long:
    `y`). past_covariates: columns observed up to the forecast origin only; future_covariates:
    columns known over the horizon too (prices, weather forecasts, promotions); static_covariates:
    columns constant within each series (long layout). Text and booleans are categorical
    (levels), numbers are numbers; categorical: covariates read as levels whatever their type
    (integer codes, numeric ids). freq: the regular step (default: inferred).
    fill: gaps and NaN/inf, `error` | `ffill` | `interpolate` | `zero` (a categorical
    covariate, under any but `error`, takes the level before it in its series). sort: sort rows
    by time instead of refusing a file out of order. short: series too short for the model,
    `error` | `skip` (left out and named).
    """

    layout: str = "wide"
    format: str | None = None
    time_col: str | None = None
    id_col: str | None = None
    target: str | tuple[str, ...] | None = None
    past_covariates: tuple[str, ...] | None = None
    future_covariates: tuple[str, ...] | None = None
    static_covariates: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    freq: str | int | None = None
    fill: str = "error"
    sort: bool = False
    short: str = "error"

    def __post_init__(self):
        for name, value, allowed in (
            ("layout", self.layout, LAYOUTS),
            ("fill", self.fill, FILLS),
            ("short", self.short, SHORT),
            ("format", self.format, (None, "csv", "parquet")),
        ):
            if value not in allowed:
                shown = [a for a in allowed if a is not None]
                raise ValueError(f"data.{name} must be one of {shown}, got {value!r}")
        # lists from a config or JSON become tuples: options compare and hash by value; one
        # covariate's name alone (data.categorical=store) is a list of one, not of its letters
        for name in ("target", *COVARIATES, "categorical"):
            value = getattr(self, name)
            if value is not None and (name != "target" or not isinstance(value, str)):
                object.__setattr__(self, name, _names(value))
        self._check_roles()

    def _check_roles(self) -> None:
        """Each covariate in one role, none the target, the time column or a calendar feature's
        name; `categorical` names covariates only."""
        seen: dict[str, str] = {}
        for kind in COVARIATES:
            for name in _names(getattr(self, kind)):
                if name in seen:
                    where = "twice" if seen[name] == kind else f"and data.{seen[name]}"
                    raise ValueError(
                        f"data.{kind} names {name!r} {where}: give each covariate one role"
                    )
                seen[name] = kind
                if str(name).startswith("calendar:"):
                    raise ValueError(
                        f"data.{kind}: {name!r} is the name of a computed calendar feature; "
                        f"rename the column, or give data.calendar=[{name[9:]}] to compute it"
                    )
        targets = _names(self.target) or (("y",) if self.layout == "long" else ())
        for name in seen:
            if name in targets:
                raise ValueError(
                    f"data.{seen[name]} names {name!r}, which is the target: a covariate is "
                    f"another column (the model reads the target's own past already)"
                )
            if self.time_col is not None and name == self.time_col:
                raise ValueError(
                    f"data.{seen[name]} names {name!r}, the time column; use data.calendar for "
                    f"features of the time"
                )
        for name in _names(self.categorical):
            if name not in seen:
                raise ValueError(
                    f"data.categorical names {name!r}, which is not a covariate: add it to "
                    f"data.past_covariates, data.future_covariates or data.static_covariates"
                )

    @classmethod
    def from_dict(cls, values: dict) -> ReadOptions:
        """From a mapping with other keys too (a `data` config, meta.json): those are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict:
        """Plain JSON types (lists, not tuples)."""
        out = dataclasses.asdict(self)
        for name in ("target", *COVARIATES, "categorical"):
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
        return out

    def replace(self, **changes) -> ReadOptions:
        """A copy with `changes`; None values keep what is set."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def read(
    source: str | Path | pd.DataFrame,
    options: ReadOptions = ReadOptions(),
    *,
    test_source: str | Path | None = None,
    channels: list[str] | tuple[str, ...] | None = None,
    levels: dict | None = None,
    future_rows: bool = False,
    future: str | Path | pd.DataFrame | None = None,
) -> Frame:
    """Read, validate and regularise one table of series into a `Frame`.

    `test_source` (layout rows): each series' held-out continuation, appended (Frame.holdout).
    `channels`: the wide columns a model was trained on, read in that order (batch forecasting).
    `levels`: the categorical covariates' levels a model knows (others are refused).
    `future_rows`: rows at a series' end without a target are its future rows (Frame.future),
    for forecasting with future covariates; `future`: a second table of such rows (a file or a
    DataFrame: `forecast.data.io.with_future`), read after the first.
    """
    o = options
    common = dict(format=o.format, fill=o.fill)
    if o.layout == "rows":
        if o.past_covariates or o.future_covariates or future is not None:
            raise DataError(
                "data.layout=rows has one value per column and no timestamps: it takes static "
                "covariates only (columns with one value per series)"
            )
        return read_rows(
            source,
            o.id_col,
            test_path=test_source,
            static_covariates=list(o.static_covariates or []),
            levels=levels,
            categorical=list(o.categorical or []),
            **common,
        )
    common.update(
        freq=o.freq,
        sort=o.sort,
        covariates=list(o.past_covariates or []),
        future_covariates=list(o.future_covariates or []),
        static_covariates=list(o.static_covariates or []),
        levels=levels,
        categorical=list(o.categorical or []),
        future_rows=future_rows or future is not None,
        future=future,
    )
    time_col = o.time_col or _default_time_col(source, o)
    if o.layout == "long":
        return read_long(source, o.id_col or "unique_id", time_col, o.target or "y", **common)
    target = list(channels) if channels is not None else o.target
    return read_wide(source, time_col, target, **common)


def _default_time_col(source, options: ReadOptions) -> str:
    """The first of the layout's usual time column names the table has; when it has none, a
    DataError that names the column most likely to hold the times."""
    candidates = TIME_COLUMNS[options.layout]
    columns = column_names(source, options.format)
    found = next((c for c in candidates if c in columns), None)
    if found is not None or not columns:  # no header read: the full read says what is wrong
        return found or candidates[0]
    likely = likely_time_column(source, options.format, columns)
    hint = f"data.time_col={likely}" if likely else "data.time_col=<the column that holds times>"
    raise DataError(
        f"{source_name(source)}: no time column named {' or '.join(map(repr, candidates))}; "
        f"set {hint} (the columns are {listed(columns)})"
    )


def likely_time_column(source, format: str | None, columns: list[str]) -> str | None:
    """The first column whose first values all read as timestamps (and are not plain numbers),
    else the first whose name says time; None if none does."""
    try:
        if isinstance(source, pd.DataFrame):
            head = from_frame(source).head(20)
        elif file_format(source, format) == "csv":
            head = pd.read_csv(source, nrows=20)
        else:
            head = pd.read_parquet(source).head(20)
    except Exception:  # noqa: BLE001 - only a hint; the read proper reports the file's faults
        head = None
    if head is not None:
        for name in head.columns:
            values = head[name].dropna()
            if not len(values) or pd.api.types.is_numeric_dtype(values):
                continue
            if pd.api.types.is_datetime64_any_dtype(values):
                return str(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas' "could not infer format" notice
                parsed = pd.to_datetime(values.astype(str), errors="coerce")
            if parsed.notna().all():
                return str(name)
    words = ("time", "date", "timestamp", "datetime", "period", "ds")
    return next((c for c in columns if any(w in c.lower() for w in words)), None)


def column_names(source, format: str | None = None) -> list[str]:
    """The header of a file (without reading its rows) or a DataFrame's columns."""
    if isinstance(source, pd.DataFrame):
        return list(from_frame(source).columns)
    fmt = file_format(source, format)
    # what is not a data file (a FIFO would block the header read for ever) is refused first
    check_file(str(source), fmt)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(source).names)
        return [str(c) for c in pd.read_csv(source, nrows=0).columns]
    except Exception:  # noqa: BLE001 - the full read says what is wrong with the file
        return []


def file_format(path, format: str | None = None) -> str:
    """`format`, else the file's by its suffix (Parquet for .parquet and .pq, else CSV)."""
    return format or ("parquet" if str(path).endswith((".parquet", ".pq")) else "csv")


def sniff_layout(source, format: str | None = None) -> str:
    """`long` for a table with `unique_id` and `ds` columns (the long convention), else `wide`."""
    columns = set(column_names(source, format))
    return "long" if {"unique_id", "ds"} <= columns else "wide"
