"""Known-future covariates computed from timestamps (calendar features)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.errors import ConfigError

# Each feature scaled to [-0.5, 0.5], as Informer's time features are.
CALENDAR = {
    "minute": lambda t: t.minute / 59.0,
    "hour": lambda t: t.hour / 23.0,
    "weekday": lambda t: t.day_of_week / 6.0,
    "day": lambda t: (t.day - 1) / 30.0,
    "dayofyear": lambda t: (t.day_of_year - 1) / 365.0,
    "month": lambda t: (t.month - 1) / 11.0,
}


def check_calendar(names: list[str]) -> None:
    """`data.calendar` names only features of CALENDAR; a ConfigError naming the others."""
    unknown = [name for name in names if name not in CALENDAR]
    if unknown:
        raise ConfigError(
            f"data.calendar={list(names)}: {', '.join(map(str, unknown))} is not a calendar "
            f"feature; choose among {', '.join(CALENDAR)}"
        )


def calendar_features(times: np.ndarray, names: list[str]) -> np.ndarray:
    """[N, F] float32 features of `times` [N] datetime64, in the order of `names`."""
    check_calendar(names)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise ValueError(
            "calendar features need timestamps; this data has an integer time index "
            "(set data.calendar=null)"
        )
    index = pd.DatetimeIndex(times)
    columns = [np.asarray(CALENDAR[n](index), dtype=np.float32) - 0.5 for n in names]
    return np.stack(columns, axis=1) if columns else np.zeros((len(times), 0), np.float32)
