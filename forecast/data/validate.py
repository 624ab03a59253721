"""Checks on series laid end to end: order, duplicates, spacing, missing values; and the fills.

Arrays here are the rows of all series one after the other: `times` [N] int64 (nanoseconds or
integer steps), `numbers` [N, W] float64, `rows` [N] the data row (0-based) each came from in the
file, `offsets` [S + 1] where series s starts and ends. Vectorised over all series at once, so
10,000 series cost no Python loop unless they need filling.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from forecast.data.errors import DataError

FILLS = ("error", "ffill", "interpolate", "zero")
FIX_BY_FILL = "or set data.fill to ffill, interpolate or zero"


def fixed_step(freq) -> pd.Timedelta | None:
    """The one span every step of frequency `freq` takes (h, 15min, D, 7D), or None for a
    calendar frequency whose steps vary (MS, QS, B, W-SUN), an unknown one, or none."""
    try:
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError):
        return None
    return step if step > pd.Timedelta(0) else None


def check_fill(fill: str) -> None:
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")


def group_and_order(where, time_col, ids, codes, times, numbers, sort):
    """Gather each series' rows (file order kept) and check time increases within a series.

    Out-of-order times are refused unless `sort`; duplicates always. Returns codes, times,
    numbers and rows, reordered only when needed (a file already in order is not copied:
    comparisons of shifted views cost a byte per row, where np.diff would cost eight).
    """
    order = None
    if np.any(codes[1:] < codes[:-1]):  # a series' rows are not adjacent: gather them
        order = np.argsort(codes, kind="stable")
    c, t = (codes, times) if order is None else (codes[order], times[order])
    back = (c[1:] == c[:-1]) & (t[1:] < t[:-1])
    if back.any() and not sort:
        i = int(np.argmax(back)) + 1
        row = i if order is None else int(order[i])
        raise DataError(
            f"{where.path}: column {time_col!r}, {where.row(row)}{_series(ids, c[i])}: "
            f"timestamp {_time(where, t[i])} is earlier than {_time(where, t[i - 1])} before it; "
            f"sort the file by time, or set data.sort=true to sort it on reading"
        )
    if back.any():
        order = np.lexsort((times, codes))
        c, t = codes[order], times[order]
    del back
    rows = np.arange(len(codes), dtype=_index_type(len(codes))) if order is None else order
    same = (c[1:] == c[:-1]) & (t[1:] == t[:-1])
    if same.any():
        i = int(np.argmax(same)) + 1
        raise DataError(
            f"{where.path}: column {time_col!r}, {where.row(int(rows[i]))}{_series(ids, c[i])}: "
            f"timestamp {_time(where, t[i])} is a duplicate of {where.row(int(rows[i - 1]))}; "
            f"remove or aggregate the duplicate rows"
        )
    return c, t, numbers if order is None else numbers[order], rows


def _index_type(n: int) -> type:
    return np.int32 if n < 2**31 else np.int64


def regularise(where, time_col, ids, times, numbers, rows, offsets, freq, fill):
    """Refuse off-grid times; refuse gaps, or (fill != error) add their rows as NaN to be filled."""
    steps = np.diff(times)  # [N - 1]; a step across two series is no step: marked 0
    steps[offsets[1:-1] - 1] = 0
    step = _step(where, time_col, steps, freq)
    if np.all((steps == step) | (steps == 0)):  # the usual case, settled in one pass
        return times, numbers, rows, offsets
    off_grid = steps % step != 0
    if off_grid.any():
        i = int(np.argmax(off_grid)) + 1
        raise DataError(
            f"{where.path}: column {time_col!r}, {where.row(int(rows[i]))}"
            f"{_series_at(ids, offsets, i)}: timestamp {_time(where, times[i])} is not a whole "
            f"number of steps ({_span(where, step)}) after {_time(where, times[i - 1])}; "
            f"resample the file to a regular step, or set data.freq to its step (a fixed one "
            f"such as h or D, or a calendar one such as MS, ME, QS or B)"
        )
    gaps = steps > step
    if fill == "error":
        i = int(np.argmax(gaps)) + 1
        raise DataError(
            f"{where.path}: column {time_col!r}, {where.row(int(rows[i]))}"
            f"{_series_at(ids, offsets, i)}: {_count(steps[i - 1] // step - 1, 'timestamp')} "
            f"missing "
            f"between {_time(where, times[i - 1])} and {_time(where, times[i])} (step "
            f"{_span(where, step)}); add those rows, {FIX_BY_FILL}"
        )
    return _expand(where, times, numbers, rows, offsets, step, fill)


def _expand(where, times, numbers, rows, offsets, step, fill):
    """Put every series on its regular grid, the added rows NaN (row -1: not in the file)."""
    lengths = np.diff(offsets)
    first = np.repeat(times[offsets[:-1]], lengths)
    position = (times - first) // step  # [N] place of each row on its series' grid
    new_lengths = position[offsets[1:] - 1] + 1
    new_offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
    dest = np.repeat(new_offsets[:-1], lengths) + position
    total = int(new_offsets[-1])
    new_numbers = np.full((total, numbers.shape[1]), np.nan)
    new_numbers[dest] = numbers
    new_rows = np.full(total, -1)
    new_rows[dest] = rows
    start = np.repeat(times[offsets[:-1]], new_lengths)
    new_times = start + (np.arange(total) - np.repeat(new_offsets[:-1], new_lengths)) * step
    warnings.warn(
        f"{where.path}: {total - len(times)} missing timestamps in "
        f"{int((new_lengths > lengths).sum())} series were added; their values are filled by "
        f"data.fill={fill}",
        UserWarning,
        stacklevel=4,
    )
    return new_times, new_numbers, new_rows, new_offsets


def fill_missing(
    path: str,
    numbers: np.ndarray,
    offsets: np.ndarray,
    fill: str,
    locate: Callable[[int, int], str],
    categorical: Sequence[int] = (),
) -> np.ndarray:
    """Refuse NaN and inf (fill == error) or fill them within their own series, with a warning.
    The `categorical` columns hold codes of levels: whatever the fill, a missing one takes the
    level before it in its series (the one after it at the series' start), never a code
    between two levels (interpolate) or the first level (zero)."""
    check_fill(fill)
    bad = ~np.isfinite(numbers)
    if not bad.any():
        return numbers
    i, j = divmod(int(np.argmax(bad)), numbers.shape[1])
    if fill == "error":
        raise DataError(
            f"{path}: {locate(i, j)}: value {numbers[i, j]} is missing or infinite; fill or "
            f"remove it in the file, {FIX_BY_FILL}"
        )
    is_level = np.zeros(numbers.shape[1], dtype=bool)
    is_level[list(categorical)] = True
    numbers[bad] = np.nan
    if fill == "zero":
        numbers[bad & ~is_level] = 0.0
    if fill != "zero" or is_level.any():
        _fill_series(numbers, offsets, np.flatnonzero(bad.any(axis=1)), fill, is_level)
    still = np.isnan(numbers)
    if still.any():
        i, j = divmod(int(np.argmax(still)), numbers.shape[1])
        if is_level[j]:
            raise DataError(
                f"{path}: {locate(i, j)}: value missing and its series has no level of this "
                f"column to fill it from; give the series its values in the file"
            )
        raise DataError(
            f"{path}: {locate(i, j)}: value missing and nothing before it in its series to "
            f"fill it from (data.fill={fill}); use data.fill=interpolate or zero, or remove "
            f"the leading rows"
        )
    warnings.warn(
        f"{path}: {int(bad.sum())} missing or infinite values were filled (data.fill={fill}); "
        f"set data.fill=error to refuse them instead",
        UserWarning,
        stacklevel=3,
    )
    return numbers


def _fill_series(numbers, offsets, bad_rows, fill, is_level) -> None:
    """Fill NaN in place, series by series, so no value leaks from one series into the next:
    numbers as `fill` says (under zero they are filled already), the `is_level` columns (a
    mask) with the level before, else the one after."""
    numeric = ~is_level
    for s in np.unique(np.searchsorted(offsets, bad_rows, side="right") - 1):
        block = numbers[offsets[s] : offsets[s + 1]]  # a view: filled in place
        if fill != "zero" and numeric.any():
            part = pd.DataFrame(block[:, numeric])
            part = part.ffill() if fill == "ffill" else part.interpolate(limit_direction="both")
            block[:, numeric] = part.to_numpy()
        if is_level.any():
            block[:, is_level] = pd.DataFrame(block[:, is_level]).ffill().bfill().to_numpy()


def _step(where, time_col, steps, freq) -> int:
    """The regular step: `freq` when given, else the most common step (0s are not steps)."""
    if freq is not None:
        return _freq_step(where, time_col, freq)
    if not np.any(steps > 0):  # no series has two rows
        return 1
    first = np.argmax(steps > 0)
    if np.all((steps == steps[first]) | (steps == 0)):
        return int(steps[first])
    values, counts = np.unique(steps[steps > 0], return_counts=True)
    return int(values[np.argmax(counts)])


def _freq_step(where, time_col, freq) -> int:
    if not where.is_datetime or where.grid is not None:
        return int(freq)
    try:
        return int(pd.Timedelta(pd.tseries.frequencies.to_offset(freq)).value)
    except (ValueError, TypeError) as err:
        raise DataError(
            f"{where.path}: column {time_col!r}: data.freq={freq!r} is not a frequency pandas "
            f"knows; give a fixed step such as h, 15min or D, or a calendar one such as MS, ME, "
            f"QS or B"
        ) from err


def _time(where, t) -> str:
    if where.grid is not None:  # a position on a calendar grid
        return str(where.grid[int(t)])
    return str(pd.Timestamp(int(t))) if where.is_datetime else str(int(t))


def _span(where, step) -> str:
    if where.grid is not None:
        return f"{int(step)} x {where.calendar}"
    return str(pd.Timedelta(int(step))) if where.is_datetime else str(step)


def _series(ids, code) -> str:
    return f" (series {ids[int(code)]!r})" if len(ids) > 1 else ""


def _series_at(ids, offsets, i) -> str:
    return _series(ids, np.searchsorted(offsets, i, side="right") - 1)


# The largest magnitude a scaled value may have. The network computes in float32 (on GPUs its
# reductions accumulate in float32 too): RevIN squares deviations of up to twice this and sums
# them over the look-back, which must stay below float32's 3.4e38 for look-backs up to 1e5 steps.
SCALED_LARGEST = 1e16


def check_scaled(frame, starts, ends, mean, scale, scaler: str) -> None:
    """Refuse a value that scaling put beyond SCALED_LARGEST (or made non-finite): one that lies
    so far from the training rows (a placeholder such as 1e30 for a missing value, mostly) that
    the model's float32 arithmetic would overflow on it and its forecasts and metrics would be
    inf or NaN. `starts`/`ends` [S'] are the rows of the series that were scaled, `mean`/`scale`
    [G, C] their scaler (G = 1 or S')."""
    values = frame.values  # [N, C] scaled
    if values.size == 0 or (
        values.max() <= SCALED_LARGEST and values.min() >= -SCALED_LARGEST
    ):  # no copy: the usual case costs two passes over the data
        return
    for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
        part = values[start:end]
        bad = ~(np.abs(part) <= SCALED_LARGEST)  # NaN and inf too
        if not bad.any():
            continue
        i, j = divmod(int(np.argmax(bad)), part.shape[1])
        g = k if len(mean) > 1 else 0
        raw = float(part[i, j]) * float(scale[g, j]) + float(mean[g, j])
        series = int(np.searchsorted(frame.offsets, start, side="right") - 1)
        named = f"series {frame.ids[series]!r}, " if frame.n_series > 1 else ""
        t = frame.times[start + i]
        when = pd.Timestamp(t) if np.issubdtype(frame.times.dtype, np.datetime64) else int(t)
        distance = f"{abs(float(part[i, j])):.2g}" if np.isfinite(raw) else "overflowing"
        raise DataError(
            f"{frame.path}: column {frame.channels[j]!r}, {named}time {when}: value {raw:.4g} "
            f"lies {distance} scaled units (data.scaler={scaler}) from the training rows, beyond "
            f"the {SCALED_LARGEST:.0e} that the model's float32 arithmetic takes; fix the value "
            f"(a placeholder for a missing one? leave the cell empty and set data.fill), or "
            f"train on rows that hold such values"
        )


def _count(n: int, noun: str) -> str:
    """'1 timestamp is', '3 timestamps are'."""
    return f"{n} {noun} is" if n == 1 else f"{n} {noun}s are"


def check_scaled_covariates(frame, covariates) -> None:
    """Refuse a numeric covariate value that its standardisation (fitted on the training rows:
    `covariates`, a `forecast.data.covariates.Covariates`) puts beyond SCALED_LARGEST, as
    `check_scaled` does for the target: a placeholder such as 1e30 would reach the network as
    1e29 and its forecasts as garbage of that size. Codes of categorical columns are not
    numbers and are not checked here (the reading refuses unknown levels)."""
    fitted = {}
    for kind in ("past", "future", "static"):
        columns = getattr(covariates, kind)
        for name, mean, scale in zip(columns.names, columns.mean, columns.scale, strict=False):
            if name not in columns.levels:
                fitted[name] = (float(mean), float(scale))
    blocks = ((frame.covariates, frame.covariate_names, False),)
    if frame.static is not None:
        blocks += ((frame.static, frame.static_names, True),)
    for array, names, static in blocks:
        for j, name in enumerate(names):
            if name not in fitted:
                continue
            mean, scale = fitted[name]
            column = array[:, j].astype(np.float64)
            with np.errstate(all="ignore"):
                far = np.abs((column - mean) / scale) > SCALED_LARGEST  # NaN: the fill's
            if not far.any():
                continue
            i = int(np.argmax(far))
            series = i if static else int(np.searchsorted(frame.offsets, i, side="right") - 1)
            named = f"series {frame.ids[series]!r}" if frame.n_series > 1 else ""
            if not static:
                t = frame.times[i]
                when = pd.Timestamp(t) if np.issubdtype(frame.times.dtype, np.datetime64) else t
                named = f"{named + ', ' if named else ''}time {when}"
            raise DataError(
                f"{frame.path}: column {name!r}, {named}: value {column[i]:.4g} lies "
                f"{abs(column[i] - mean) / scale:.2g} scaled units from the training rows' values "
                f"(mean {mean:.4g}, scale {scale:.4g}), beyond the {SCALED_LARGEST:.0e} that the "
                f"model's float32 arithmetic takes; fix the value (a placeholder for a missing "
                f"one? leave the cell empty and set data.fill)"
            )
