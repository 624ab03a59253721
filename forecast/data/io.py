"""Read wide, long and one-series-per-row files (CSV or Parquet) into one canonical `Frame`.

Layouts:
- wide: a time column and one column per channel (ETT style): one series.
- long: a series id, a time and value column(s), the `unique_id, ds, y` convention: many series.
- rows: one series per row, an id then its values, rows ragged (M4 style): integer time index.

Every check refuses with `DataError`, naming the file, the column, the first offending row (or
series) and the fix. Rows are counted as data rows from 1 (the header is not a data row); for a
CSV file the line of the file is given as well.

Times: a column of text or timestamps is parsed as timestamps; a numeric one is integer time
steps, never epoch seconds (pandas would read those as nanoseconds): floats must be whole.
Values: numbers up to `LARGEST`; true/false columns are refused rather than read as 1/0.
"""

from __future__ import annotations

import difflib
import gzip
import os
import re
import stat
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


# The largest magnitude a value may have: values train in float32 (largest 3.4e38), and centring
# (value - mean) doubles the magnitude at worst. Metrics in original units are computed in float64,
# where the squares of such values fit.
LARGEST = float(np.finfo(np.float32).max) / 2


@dataclass(frozen=True)
class Frame:
    """Many series of the same channels, stored end to end in one contiguous array.

    Series s is rows `offsets[s]:offsets[s + 1]` of `values`, `times` and `covariates`; a wide
    file is one series. The last `holdout` rows of every series came from a separate test file.

    Covariates: `covariates` holds the past ones, then the future-known ones (`n_past` says
    where they split), numeric values as read and categorical ones (text, booleans) as codes
    into `levels[name]`. `static` [S, Ks] holds one value (or code) per series. When read for
    forecasting, the last `future[s]` rows of series s are future rows: no target (NaN), their
    future covariates given.
    """

    path: str
    ids: tuple[str, ...]  # [S]
    offsets: np.ndarray  # [S + 1] int64
    times: np.ndarray  # [N] datetime64[ns], or int64 steps when the file has no timestamps
    values: np.ndarray  # [N, C] float32, C-contiguous
    channels: tuple[str, ...]  # [C]
    covariates: np.ndarray  # [N, K] float32: past, then future covariates (K may be 0)
    covariate_names: tuple[str, ...] = ()  # [K]
    holdout: int = 0
    n_past: int | None = None  # how many of the covariates are past ones (None: all)
    static: np.ndarray | None = None  # [S, Ks] float32, one row per series
    static_names: tuple[str, ...] = ()  # [Ks]
    levels: dict | None = None  # categorical column -> its levels (a code indexes them)
    future: np.ndarray | None = None  # [S] future rows at each series' end (forecasting)
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
FUTURE_DATAFRAME = "the future DataFrame"  # the API's `future=` frame (with_future)


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

    # rows from `future_start` on came from a second source, the future covariates (future=)
    future_path: str | None = None
    future_start: int = 0
    future_rows: np.ndarray | None = None  # the positions in that source of the rows taken

    def row(self, row: int) -> str:
        if self.future_path is not None and row >= self.future_start:
            position = int(self.future_rows[row - self.future_start])
            return f"{Where(self.future_path).row(position)} of {self.future_path}"
        if self.path == DATAFRAME:
            return f"row df.iloc[{row}]"
        if self.path == FUTURE_DATAFRAME:
            return f"row future.iloc[{row}]"
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
    _refuse_repeated(DATAFRAME, list(df.columns))
    return df


def read_table(path: str | Path, format: str | None = None) -> pd.DataFrame:
    """The whole file as a DataFrame; `format` is `csv` or `parquet` (default: by suffix)."""
    path = str(path)
    fmt = format or ("parquet" if path.endswith((".parquet", ".pq")) else "csv")
    if fmt not in ("csv", "parquet"):
        raise DataError(f"{path}: format must be 'csv' or 'parquet', got {fmt!r}")
    check_file(path, fmt)
    try:
        if fmt == "parquet":
            _refuse_duplicate_parquet_columns(path)
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, engine=CSV_ENGINE)
    except DataError:
        raise
    except pd.errors.EmptyDataError as err:
        raise DataError(
            f"{path}: the file holds no table (only blank lines); expected a header row and data "
            f"rows"
        ) from err
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file; check data.path") from err
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: the file is not UTF-8 text ({_first_non_utf8(path)}; a Latin-1 or "
            f"Windows-1252 file?); save it as UTF-8, e.g. "
            f"pd.read_csv(path, encoding='latin-1').to_csv(new_path, index=False)"
        ) from err
    except pd.errors.ParserError as err:  # e.g. a row with more fields than the header
        reason = str(err).strip().splitlines()[0]
        raise DataError(
            f"{path}: cannot be read as a comma-separated table ({reason}); every row needs "
            f"as many fields as the header: fix that row, or quote fields that contain commas"
        ) from err
    except (OSError, ValueError) as err:  # Arrow's errors are ValueErrors (ArrowInvalid)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"{path}: cannot be read as a {fmt} file ({reason})") from err
    _release_arrow_memory()
    if df.empty:
        raise DataError(f"{path}: the file has a header but no data rows")
    df.columns = [str(c) for c in df.columns]
    if fmt == "csv":
        _refuse_other_separators(path, df)
        _refuse_duplicate_csv_columns(path, df)
    return df


TO_UTF8 = "save it as UTF-8, e.g. pd.read_csv(path, encoding='{}').to_csv(new_path, index=False)"
# the first bytes of files that are not CSV text, and what to call them
SIGNATURES = (
    (b"PAR1", "a Parquet file", "name it .parquet, or set data.format=parquet"),
    (b"\x1f\x8b", "gzip-compressed", "name it .csv.gz, or decompress it"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook is one)", "export it as CSV"),
    (b"\xd0\xcf\x11\xe0", "an OLE2 file (an Excel .xls workbook?)", "export it as CSV"),
    (b"\xff\xfe\x00\x00", "UTF-32 text", TO_UTF8.format("utf-32")),
    (b"\x00\x00\xfe\xff", "UTF-32 text", TO_UTF8.format("utf-32")),
    (b"\xff\xfe", "UTF-16 text (byte-order mark FF FE)", TO_UTF8.format("utf-16")),
    (b"\xfe\xff", "UTF-16 text (byte-order mark FE FF)", TO_UTF8.format("utf-16")),
)
COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")


def check_file(path: str, fmt: str) -> None:
    """Refuse, before parsing, what is not a readable data file of its format, saying what it
    is: a folder, a FIFO or device (reading one could wait for ever), an empty file, a file of
    another kind (Parquet, gzip, a workbook, UTF-16 or binary) given as CSV, or the reverse."""
    if "://" in path:  # a URL: pandas fetches it
        return
    try:
        info = os.stat(path)
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file; check data.path") from err
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from err
    if stat.S_ISDIR(info.st_mode):
        raise DataError(
            f"{path}: is a folder, not a file; give the path of one data file (CSV or Parquet)"
        )
    if not stat.S_ISREG(info.st_mode):
        raise DataError(
            f"{path}: is not a regular file (a FIFO, socket or device, which may never end); "
            f"give the path of a data file (CSV or Parquet)"
        )
    if info.st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); expected a header row and data rows")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from err
    if fmt == "parquet":
        if not head.startswith(b"PAR1"):
            what = _describe(head) or "text or another format"
            raise DataError(
                f"{path}: is not a Parquet file (it is {what}); if it is CSV, name it .csv or "
                f"set data.format=csv"
            )
    elif not path.endswith(COMPRESSED):
        for magic, what, fix in SIGNATURES:
            if head.startswith(magic):
                raise DataError(f"{path}: is {what}, not CSV text; {fix}")
        if b"\x00" in head:
            what = _describe(head)
            fix = TO_UTF8.format("utf-16-le") if what.startswith("UTF-16") else "give CSV text"
            raise DataError(f"{path}: is {what}, not CSV text; {fix}")


def _first_non_utf8(path: str) -> str:
    """Where a file stops being UTF-8: the decoder's own offset is into a block, not the file."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        for line, data in enumerate(f, start=1):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as err:
                return f"line {line} of the file holds byte 0x{data[err.start]:02x}"
    return "a byte that is not UTF-8"


def _describe(head: bytes) -> str | None:
    """What the first bytes of a file say it is, where they say it."""
    for magic, what, _ in SIGNATURES:
        if head.startswith(magic):
            return what
    if b"\x00" in head:
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if max(odd, even) > len(head) // 4:  # ASCII text in UTF-16: every other byte is 0
            return "UTF-16 text without a byte-order mark"
        return "a binary file (it holds NUL bytes)"
    return None


def _refuse_duplicate_parquet_columns(path: str) -> None:
    """Arrow refuses to turn a table with two columns of one name into a DataFrame, with a
    message about field references; say which columns instead."""
    if pyarrow is None or "://" in path:
        return
    import pyarrow.parquet as arrow_parquet

    _refuse_repeated(path, arrow_parquet.read_schema(path).names)


def _refuse_repeated(path: str, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise DataError(
                f"{path}: columns {seen[name] + 1} and {i + 1} of the header are both named "
                f"{name!r}; give every column its own name"
            )
        seen[name] = i


def _refuse_duplicate_csv_columns(path: str, df: pd.DataFrame) -> None:
    """Two header cells with one name: pandas renames the second `a.1`, which would then be read
    as a series of its own. The header is read again, as it is, only where a name looks renamed."""
    names = set(df.columns)
    renamed = [c for c in df.columns if (m := re.fullmatch(r"(.+)\.\d+", c)) and m[1] in names]
    if not renamed:
        return
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False)
    _refuse_repeated(path, [str(c) for c in header.iloc[0]])


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
    future_covariates: list[str] | None = None,
    static_covariates: list[str] | None = None,
    levels: dict | None = None,
    categorical: list[str] | None = None,
    future_rows: bool = False,
    future: str | Path | pd.DataFrame | None = None,
    format: str | None = None,
    freq: str | int | None = None,
    fill: str = "error",
    sort: bool = False,
) -> Frame:
    """One series; `target` picks the channels (default: every column but time and covariates).

    `covariates` (past) and `future_covariates`: columns beside the target (see Frame); no
    static covariates in a table of one series. `future`: a second table of future rows (see
    `with_future`).
    """
    df, name = _table(path, format), source_name(path)
    if static_covariates:
        raise DataError(
            f"{name}: static covariates {list(static_covariates)} need many series (the long "
            f"layout: one value per series); a wide table is one series"
        )
    past, ahead = list(covariates or []), list(future_covariates or [])
    chosen = _as_list(target)
    target = chosen or [c for c in df.columns if c not in (time_col, *past, *ahead)]
    _require_columns(name, df, [time_col, *target, *past, *ahead])
    if not chosen:
        _refuse_unnamed(name, df, target)
    columns = Columns(target, past, ahead, [], levels, tuple(categorical or ()))
    where = Where(name)
    if future is not None:
        df = with_future(where, df, future, None, time_col, columns)
    return _build(name, df, None, time_col, columns, freq, fill, sort, future_rows, where)


def read_long(
    path: str | Path,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target: str | list[str] | None = "y",
    covariates: list[str] | None = None,
    *,
    future_covariates: list[str] | None = None,
    static_covariates: list[str] | None = None,
    levels: dict | None = None,
    categorical: list[str] | None = None,
    future_rows: bool = False,
    future: str | Path | pd.DataFrame | None = None,
    format: str | None = None,
    freq: str | int | None = None,
    fill: str = "error",
    sort: bool = False,
) -> Frame:
    """Many series, one row per (series, time); rows of a series need not be adjacent.

    `covariates` (past), `future_covariates` and `static_covariates` (constant within each
    series): columns beside the target (see Frame). `future`: a second table of future rows
    (see `with_future`)."""
    df, name = _table(path, format), source_name(path)
    target = _as_list(target or "y")
    past, ahead = list(covariates or []), list(future_covariates or [])
    static = list(static_covariates or [])
    _require_columns(name, df, [id_col, time_col, *target, *past, *ahead, *static])
    columns = Columns(target, past, ahead, static, levels, tuple(categorical or ()))
    where = Where(name)
    if future is not None:
        df = with_future(where, df, future, id_col, time_col, columns)
    return _build(name, df, id_col, time_col, columns, freq, fill, sort, future_rows, where)


def with_future(
    where: Where,
    df: pd.DataFrame,
    future: str | Path | pd.DataFrame,
    id_col: str | None,
    time_col: str,
    columns: Columns,
) -> pd.DataFrame:
    """`df` with the rows of the table `future` after its own: each series' future covariates
    over the horizon, in a file (or frame) of their own. `future` holds the time column, the
    future covariates (and, in the long layout, the id and static columns); its target and past
    covariates are unknown, so their columns are absent or empty. In the long layout only the
    rows of the series `df` holds are taken (one future file can serve many input files).
    `where` is told which rows came from `future`, so messages name its rows."""
    fdf = _table(future, None)  # its format by its own suffix, not the input's data.format
    fname = FUTURE_DATAFRAME if isinstance(future, pd.DataFrame) else str(future)
    keys = [id_col] if id_col else []
    # the id may be a static covariate too: each column once
    wanted = list(dict.fromkeys([*keys, time_col, *columns.future, *columns.static]))
    _require_columns(fname, fdf, wanted)
    fwhere = Where(fname)
    for name in [*columns.target, *columns.past]:
        if name in fdf.columns:
            known = np.flatnonzero(fdf[name].notna().to_numpy())
            if len(known):
                role = "target" if name in columns.target else "past covariate"
                raise DataError(
                    f"{fname}: column {name!r}, {fwhere.row(int(known[0]))}: a future row holds "
                    f"a value of the {role} {name!r}, which is not known ahead; leave it empty or "
                    f"drop the column (future rows give the future covariates only)"
                )
    rows = np.arange(len(fdf))
    if id_col:
        rows = np.flatnonzero(fdf[id_col].astype(str).isin(set(df[id_col].astype(str))))
    fdf = fdf[wanted].iloc[rows].reset_index(drop=True)
    where.future_path, where.future_start, where.future_rows = fname, len(df), rows
    return pd.concat([df.reset_index(drop=True), fdf], ignore_index=True)


@dataclass
class Columns:
    """The columns of a wide or long table, by role. `levels`: a model's categorical columns
    and their levels (a level it has not seen is refused; every other covariate is a number),
    or None when reading for training (levels learned from the table); `categorical`: the
    covariates read as levels whatever their type (integer codes, ids)."""

    target: list[str]
    past: list[str]
    future: list[str]
    static: list[str]
    levels: dict | None
    categorical: tuple[str, ...] = ()

    @property
    def dynamic(self) -> list[str]:
        return [*self.past, *self.future]


def read_rows(
    path: str | Path,
    id_col: str | None = None,
    *,
    test_path: str | Path | None = None,
    static_covariates: list[str] | None = None,
    levels: dict | None = None,
    categorical: list[str] | None = None,
    format: str | None = None,
    fill: str = "error",
) -> Frame:
    """One series per row (M4 style): an id column, then values; empty trailing cells pad.

    `test_path`, a file of the same layout holding each series' held-out continuation, is
    appended to its series; `Frame.holdout` says how many rows it added to each.
    `static_covariates`: columns holding one value per series (per row) rather than values; the
    id column may be one of them, which gives the model a learned vector per series (a
    categorical static covariate: forecast.models.covariates). `levels`, `categorical`: as for
    `read_long` (see Columns).
    """
    static_names = list(static_covariates or [])
    ids, parts, static_columns = _read_ragged(path, id_col, format, fill, static_names)
    holdout = 0
    if test_path is not None:
        # a static column the test file repeats is not a value; its values are the training
        # file's (one per series)
        test_ids, test_parts, _ = _read_ragged(
            str(test_path), id_col, format, fill, static_names, required=False
        )
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
    static, found = None, {}
    if static_names:
        where = Where(name)
        columns = []
        for column_name in static_names:
            column, found[column_name] = _covariate(
                where,
                static_columns[column_name],
                column_name,
                levels,
                column_name in (categorical or ()),
            )
            missing = np.flatnonzero(np.isnan(column))
            if len(missing):
                s = int(missing[0])
                raise DataError(
                    f"{name}: column {column_name!r}, {where.row(s)} (series {ids[s]!r}): the "
                    f"static covariate is missing; give every series a value"
                )
            columns.append(column)
        static = np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)  # [S, Ks]
    return Frame(
        name,
        tuple(ids),
        offsets,
        times,
        values,
        ("y",),
        empty,
        (),
        holdout,
        static=static,
        static_names=tuple(static_names),
        levels={k: v for k, v in found.items() if v is not None},
    )


def _read_ragged(
    source,
    id_col: str | None,
    format: str | None,
    fill: str,
    static: list[str] = (),
    required: bool = True,
) -> tuple[list[str], list[np.ndarray], pd.DataFrame]:
    """Ids [S], each row's values [T_s] float64 (padding trimmed, interior gaps filled) and the
    `static` columns (which are not values; `required`: each must be there)."""
    df, path = _table(source, format), source_name(source)
    id_col = id_col or df.columns[0]
    _require_columns(path, df, [id_col, *(static if required else [])])
    where = Where(path)
    ids = df[id_col].astype(str).tolist()
    _refuse_duplicate_ids(where, ids, id_col)
    value_cols = [c for c in df.columns if c != id_col and c not in static]
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
    return ids, np.split(flat[:, 0], offsets[1:-1]), df[[c for c in static if c in df.columns]]


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
    columns: Columns,
    freq: str | int | None,
    fill: str,
    sort: bool,
    future_rows: bool = False,
    where: Where | None = None,
) -> Frame:
    """Validate a wide or long table and lay its series end to end."""
    where = where or Where(path)
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
    levels = {}
    names = [*columns.target, *columns.dynamic, *columns.static]
    parts = [_numeric(where, df[c], c) for c in columns.target]
    for name in [*columns.dynamic, *columns.static]:
        declared = name in columns.categorical
        values, levels[name] = _covariate(where, df[name], name, columns.levels, declared)
        parts.append(values)
    numbers = np.stack(parts, axis=1)  # [N, C + K + Ks]
    codes, times, numbers, rows = group_and_order(where, time_col, ids, codes, times, numbers, sort)
    starts = np.flatnonzero(codes[1:] != codes[:-1]) + 1  # where a new series begins
    offsets = np.concatenate([[0], starts, [len(codes)]]).astype(np.int64)
    n_static = len(columns.static)
    static = None
    if n_static:  # one value per series, checked constant, then dropped from the rows
        static = _static(where, columns.static, ids, numbers[:, -n_static:], rows, offsets)
        numbers = numbers[:, :-n_static]
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
        return f"column {names[j]!r}, {where.row(int(rows[i]))}{series}"

    n_target, n_past = len(columns.target), len(columns.past)
    future = _future_rows(where, ids, numbers, offsets, n_target) if future_rows else None
    if future is not None and where.future_path is not None:
        # a series given rows by a table of future rows has those as its future: its input
        # rows without a target are missing values (data.fill's to refuse or fill), not future
        # rows; a series the table has no rows for keeps the input's own future rows
        own = (rows >= 0) & (rows < where.future_start)
        last = np.maximum.reduceat(np.where(own, np.arange(len(rows)), -1), offsets[:-1])
        tabled = np.maximum.reduceat((rows >= where.future_start).astype(np.int8), offsets[:-1])
        future = np.where(tabled > 0, np.minimum(future, offsets[1:] - 1 - last), future)
    if future is not None:  # a future row has no target, and its past covariates are unknown
        tail = np.arange(len(numbers)) >= np.repeat(offsets[1:] - future, np.diff(offsets))
        numbers[tail, : n_target + n_past] = 0.0
    categorical = [j for j, name in enumerate(names[: numbers.shape[1]]) if levels.get(name)]
    numbers = fill_missing(path, numbers, offsets, fill, locate, categorical)
    if future is not None:
        numbers[tail, :n_target] = np.nan
    values = np.ascontiguousarray(numbers[:, :n_target], dtype=np.float32)
    extra = np.ascontiguousarray(numbers[:, n_target:], dtype=np.float32)
    if where.is_datetime:
        times = times.view("datetime64[ns]")
    return Frame(
        path,
        tuple(ids),
        offsets,
        times,
        values,
        tuple(columns.target),
        extra,
        tuple(columns.dynamic),
        tz=tz,
        calendar=where.calendar,
        n_past=n_past,
        static=static,
        static_names=tuple(columns.static),
        levels={k: v for k, v in levels.items() if v is not None},
        future=future,
    )


def _covariate(
    where, column: pd.Series, name: str, known: dict | None, declared: bool = False
) -> tuple[np.ndarray, tuple | None]:
    """A covariate column as [N] float64 and its levels (None for numbers). Reading for a
    model (`known`, its categorical columns' levels): those columns are codes into their levels
    (a level it has not seen is refused), every other one a number (text there is refused).
    Reading for training: a `declared` column is levels whatever its type; otherwise numbers
    (numeric strings too, as a CSV reads them) are numbers, text, booleans and pandas categories
    are levels, sorted; a column mixing numbers and text is refused (a stray value in a numeric
    column would turn it into hundreds of levels). Missing stays NaN."""
    if known is not None:
        levels = known.get(name)
        if levels is None:
            return _numeric(where, column, name), None
    else:
        levels = None
        if not declared and _is_number_column(where, column, name):
            return _numeric(where, column, name), None
    text = _level_text(column)
    if levels is None:
        levels = tuple(sorted(text.dropna().unique()))
    lookup = levels
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column):
        lookup = _as_number_levels(levels)
    # -1: missing or unknown (pandas deprecates a Categorical of values outside its categories)
    codes = pd.Index(list(lookup), dtype=object).get_indexer(text.astype(object))
    unknown = (codes < 0) & text.notna().to_numpy()
    if unknown.any():
        row = int(np.argmax(unknown))
        raise DataError(
            f"{where.path}: column {name!r}, {where.row(row)}: {text.iloc[row]!r} is not one of "
            f"the levels the model was trained with ({listed(levels)}); map it to one of them "
            f"or train on data that has it"
        )
    values = codes.astype(np.float64)
    values[codes < 0] = np.nan
    return values, tuple(levels)


def _is_number_column(where, column: pd.Series, name: str) -> bool:
    """Whether a covariate column read for training holds numbers (not levels); refuses one
    that mixes numbers and text, naming the first value of the rarer kind."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return False
    if pd.api.types.is_numeric_dtype(dtype):
        return True
    if pd.api.types.infer_dtype(column, skipna=True) == "boolean":  # booleans with gaps
        return False
    # each distinct value looked at once (a column of 2M rows has a few hundred), then mapped
    # back to the rows for the counts and the row a message names
    codes, distinct = pd.factorize(column, use_na_sentinel=True)
    if not len(distinct):  # nothing present: no numbers
        return False
    if any(isinstance(d, (bool, np.bool_)) for d in distinct):  # True == 1 would merge them
        codes = np.where(column.notna().to_numpy(), np.arange(len(column)), -1)
        distinct = column.to_numpy(dtype=object)
    # text that reads as a number ("12.5", " 3") is one: a CSV gives such a column as numbers
    parsed = pd.to_numeric(pd.Series(distinct).astype("string").str.strip(), errors="coerce")
    is_number = parsed.notna().to_numpy()
    present = codes >= 0
    number = present & is_number[codes]
    text = present & ~number
    if not number.any():
        return False
    if not text.any():
        return True
    odd, kind = (text, "text") if text.sum() <= number.sum() else (number, "a number")
    row = int(np.argmax(odd))
    raise DataError(
        f"{where.path}: column {name!r}, {where.row(row)}: value {column.iloc[row]!r} is "
        f"{kind} in a column that is otherwise {'numbers' if kind == 'text' else 'text'} "
        f"({int(number.sum())} numbers, {int(text.sum())} text values); fix the value, or list "
        f"the column in data.categorical to read every value as a level"
    )


def _level_text(column: pd.Series) -> pd.Series:
    """A categorical column's values as text, the same however a file stored them: a number in
    a float column as `_number_text` writes it (a CSV column of codes with a blank cell reads as
    floats: 1.0 is 1, 1.5 stays 1.5, inf is 'inf'), anything else as pandas writes it."""
    if pd.api.types.is_float_dtype(column.dtype):
        # in the column's own precision: a float32 0.1 is '0.1', as its CSV would say
        dtype = np.float32 if str(column.dtype).lower() == "float32" else np.float64
        values = column.to_numpy(dtype=dtype, na_value=np.nan)
        distinct, inverse = np.unique(values, return_inverse=True)  # each value spelled once
        spelled = np.array([None if np.isnan(v) else _number_text(v) for v in distinct], object)
        return pd.Series(spelled[inverse.reshape(-1)], index=column.index, dtype="string")
    return column.astype("string")


def _number_text(value) -> str:
    """A number (a numpy float of its column's precision) as a level: a whole number as an
    integer ('3', not '3.0'), others as the shortest text that reads back as that value in its
    precision ('1.5', '0.1' for float32's 0.1, 'inf')."""
    if np.isfinite(value) and value == np.round(value) and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def _as_number_levels(levels: tuple) -> tuple:
    """A model's levels spelled as `_level_text` spells a float column's values, for reading a
    numeric column against them (a model saved '1.0' where today's reading says '1'); as they
    are where a level is not a number, or two would be spelled alike."""

    def spelled(level: str) -> str:
        try:
            return str(int(level))  # integers as they are, however large
        except ValueError:
            pass
        try:
            return _number_text(float(level))
        except ValueError:
            return level

    respelled = tuple(spelled(level) for level in levels)
    return respelled if len(set(respelled)) == len(respelled) else levels


def _static(where, names, ids, values, rows, offsets) -> np.ndarray:
    """[S, Ks] float32: each series' static covariates, refused where one is missing or changes
    within its series."""
    for j, name in enumerate(names):
        column = values[:, j]
        changed = np.flatnonzero(column[1:] != column[:-1]) + 1
        changed = changed[~np.isin(changed, offsets[1:-1])]  # a new series may change it
        missing = np.flatnonzero(np.isnan(column))
        for i, what in ((missing, "is missing"), (changed, "changes within the series")):
            if len(i):
                s = int(np.searchsorted(offsets, i[0], side="right") - 1)
                raise DataError(
                    f"{where.path}: column {name!r}, {where.row(int(rows[i[0]]))} (series "
                    f"{ids[s]!r}): the static covariate {what}; give every row of a series the "
                    f"same value, or make it a past or future covariate"
                )
    return np.ascontiguousarray(values[offsets[:-1]], dtype=np.float32)


def _future_rows(where, ids, numbers, offsets, n_target) -> np.ndarray:
    """[S] how many rows at each series' end have no target (future rows, for forecasting with
    future covariates); a series with no target at all is refused."""
    known = ~np.isnan(numbers[:, :n_target]).all(axis=1)
    index = np.where(known, np.arange(len(numbers)), -1)
    last = np.maximum.reduceat(index, offsets[:-1])  # the last row with a target, per series
    empty = np.flatnonzero(last < offsets[:-1])
    if len(empty):
        raise DataError(
            f"{where.path}: series {ids[empty[0]]!r} has no target value at all; give its "
            f"history, or remove it"
        )
    return (offsets[1:] - 1 - last).astype(np.int64)


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


def _infer_offset(index: pd.DatetimeIndex):
    """pandas' inferred frequency of `index` as an offset, or None. Asks for the offset itself
    where pandas can give it (3.1 on; its string result is deprecated), else converts the string."""
    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            guess = pd.infer_freq(index)
    except pd.errors.OptionError:  # pandas before 3.1: a string
        guess = pd.infer_freq(index)
    return None if guess is None else _offset(guess)


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
        offset = _infer_offset(pd.DatetimeIndex(times[start : start + min(n, length)]))
        if offset is not None:
            return None if fixed_step(offset) is not None else offset
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
            hint = f"did you mean {near!r}?" if near else f"the columns are {listed(have)}"
            raise DataError(f"{path}: column {name!r} not found; {hint}")


def listed(names, limit: int = 10) -> str:
    """The first `limit` names and how many more: a message stays one short line for a file
    of 5,000 columns."""
    names = list(names)
    if len(names) <= limit:
        return str(names)
    return f"{str(names[:limit])[:-1]}, ... and {len(names) - limit:,} more]"


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
    if pd.api.types.is_float_dtype(column.dtype):
        return _whole_steps(where, column, name), False, None
    try:
        times = pd.to_datetime(column, errors="coerce")
    except ValueError:  # offsets that change (daylight saving): one common zone, UTC
        times = pd.to_datetime(column, errors="coerce", utc=True)
    bad = times.isna().to_numpy()
    if bad.any():
        times = _mixed_zones(where, column, name, times, bad)
        bad = times.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{where.path}: column {name!r}, {where.row(row)}: cannot parse "
            f"{column.iloc[row]!r} as a timestamp; fix or remove that value"
        )
    zoned = getattr(times.dt, "tz", None) is not None
    if zoned:
        times = times.dt.tz_convert(None)
    return times.to_numpy(dtype="datetime64[ns]").view(np.int64), True, "UTC" if zoned else None


def _mixed_zones(where: Where, column: pd.Series, name: str, times: pd.Series, bad) -> pd.Series:
    """`times` again where its unparsed values (`bad`) are times of other zones: pandas reads a
    column's first zone and leaves the others NaT. Times in several zones are instants, read in
    UTC; times with a zone beside times without one are refused (which zone would the others
    be in?)."""
    row = int(np.argmax(bad))
    good = np.flatnonzero(~bad)
    try:
        alone = pd.Timestamp(column.iloc[row])
    except (TypeError, ValueError):
        return times  # not a time at all: the caller says so
    if pd.isna(alone) or not len(good):
        return times
    other = pd.Timestamp(column.iloc[int(good[0])])
    if (alone.tzinfo is None) != (other.tzinfo is None):
        naive, zoned = (row, int(good[0])) if alone.tzinfo is None else (int(good[0]), row)
        raise DataError(
            f"{where.path}: column {name!r}, {where.row(naive)}: {column.iloc[naive]!r} has no "
            f"zone or UTC offset, and {where.row(zoned)} ({column.iloc[zoned]!r}) has one; give "
            f"every time an offset, or none"
        )
    return pd.to_datetime(column, errors="coerce", utc=True)


def _whole_steps(where: Where, column: pd.Series, name: str) -> np.ndarray:
    """A float time column: integer steps where every value is a whole number (as an integer
    column reads), refused otherwise. Numbers are never taken for timestamps: pandas would read
    epoch seconds as nanoseconds after 1970."""
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) > 2.0**62)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{where.path}: column {name!r}, {where.row(row)}: value {float(values[row])!r} is "
            f"not a timestamp, and a numeric time column must hold whole numbers (integer time "
            f"steps); if these are epoch seconds, write them as timestamps, e.g. "
            f"df[{name!r}] = pd.to_datetime(df[{name!r}], unit='s')"
        )
    return values.astype(np.int64)


def _numeric(where: Where, column: pd.Series, name: str) -> np.ndarray:
    """[N] float64; a value that is present but not a number is refused, NaN and inf kept (the
    fill decides), and so is a number too large for training (see LARGEST)."""
    if pd.api.types.is_bool_dtype(column.dtype):
        _refuse_booleans(where, name)
    if pd.api.types.is_numeric_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        if pd.api.types.infer_dtype(column, skipna=True) == "boolean":  # bool with gaps: object
            _refuse_booleans(where, name)
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        text = np.isnan(values) & column.notna().to_numpy()
        if text.any():
            row = int(np.argmax(text))
            raise DataError(
                f"{where.path}: column {name!r}, {where.row(row)}: value {column.iloc[row]!r} is "
                f"not a number; fix it, or remove the column if it is not a series"
            )
    if not _within(values, LARGEST):
        _refuse_large(where, values, name)
    return values


def _within(values: np.ndarray, bound: float) -> bool:
    """Whether every value that is not NaN lies in [-bound, bound]; no copy of the column."""
    if not len(values):
        return True
    return bool(np.fmin.reduce(values) >= -bound and np.fmax.reduce(values) <= bound)


def _refuse_large(where: Where, values: np.ndarray, name: str) -> None:
    """Refuse the first finite value beyond LARGEST (inf is the fill's to refuse or fill)."""
    with np.errstate(invalid="ignore"):
        large = np.isfinite(values) & (np.abs(values) > LARGEST)
    if large.any():
        row = int(np.argmax(large))
        raise DataError(
            f"{where.path}: column {name!r}, {where.row(row)}: value {values[row]:g} is too large"
            f": training runs in float32, which holds magnitudes up to {LARGEST:.2g} here "
            f"(half its range, so that centring cannot overflow); fix the value, or scale the "
            f"column down (e.g. divide it by 1e6)"
        )


def _refuse_booleans(where: Where, name: str) -> None:
    raise DataError(
        f"{where.path}: column {name!r} holds true/false values, not numbers; write them as 1 and "
        f"0 if the column is meant as a 0/1 series, or leave the column out"
    )
