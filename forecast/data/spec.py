"""DataSpec: what a model needs to know about its data, handed over in one object.

After `setup`, the DataModule gives the pipeline a `DataSpec`: the channels, look-back and
horizon, the data's frequency and seasonal period, the reading options and the fitted scaler.
The network is built from it (`forecast.models.Forecaster`), the export records it (meta.json),
and a checkpoint keeps it, so the model and its data cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.data.covariates import Covariates
from forecast.data.io import Frame
from forecast.data.reading import ReadOptions
from forecast.data.validate import fixed_step


@dataclass(frozen=True)
class DataSpec:
    channels: tuple[str, ...]  # [C] the data's channels (columns, or "y")
    lookback: int
    horizon: int
    independent: bool  # each channel a univariate series through the model (channel_mode)
    frequency: str | int | None  # an offset alias ("h", "MS"), an integer step, or None
    season: int  # the data's seasonal period (MASE's scale)
    reading: ReadOptions
    # the scaler: raw = scaled * scale + mean, one row per group ([G, C]): G = 1 when one
    # scaler serves every series, else one row per series (indexed like `series_ids`)
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    scaler_kind: str = "standard"
    series_ids: tuple[str, ...] = ()  # [S] the series; a batch's `series` indexes them
    covariates: Covariates = Covariates()  # past, future (calendar included) and static

    @classmethod
    def of(
        cls,
        channels: int | tuple[str, ...] | list[str],
        lookback: int,
        horizon: int,
        *,
        independent: bool = False,
        frequency: str | int | None = None,
        season: int | None = None,
    ) -> DataSpec:
        """A spec with an identity scaler, for a model built by hand (no DataModule):
        `channels` a count or the names."""
        if isinstance(channels, int):
            channels = tuple(f"y{i}" for i in range(channels)) if channels > 1 else ("y",)
        n = len(channels)
        return cls(
            channels=tuple(channels),
            lookback=lookback,
            horizon=horizon,
            independent=independent,
            frequency=frequency,
            season=season or season_of(frequency),
            reading=ReadOptions(),
            scaler_mean=np.zeros((1, n)),
            scaler_scale=np.ones((1, n)),
        )

    @property
    def n_channels(self) -> int:
        """Channels of each window the network sees: all of them, or 1 (independent)."""
        return 1 if self.independent else len(self.channels)

    @property
    def per_series(self) -> bool:
        return len(self.scaler_mean) > 1

    def to_dict(self) -> dict:
        """Plain JSON types, for meta.json and checkpoints (which load with weights_only)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(
            channels=list(self.channels),
            series_ids=list(self.series_ids),
            reading=self.reading.to_dict(),
            covariates=self.covariates.to_dict(),
            scaler_mean=np.asarray(self.scaler_mean).tolist(),
            scaler_scale=np.asarray(self.scaler_scale).tolist(),
        )
        return out

    @classmethod
    def from_dict(cls, values: dict) -> DataSpec:
        values = dict(values)
        return cls(
            **{
                **values,
                "channels": tuple(values["channels"]),
                "series_ids": tuple(values.get("series_ids", ())),
                "reading": ReadOptions.from_dict(values["reading"]),
                "covariates": Covariates.from_dict(values.get("covariates")),
                "scaler_mean": np.asarray(values["scaler_mean"], dtype=np.float64),
                "scaler_scale": np.asarray(values["scaler_scale"], dtype=np.float64),
            }
        )


def frequency(frame: Frame) -> str | int | None:
    """The step between the first two rows of the first series that has two: an offset alias
    ('h', 'D', '7D') or an integer; the calendar ('MS', 'B') where the steps are calendar units;
    None when no series has two rows."""
    if frame.calendar is not None:  # months, quarters, business days
        return frame.calendar
    longer = np.flatnonzero(frame.lengths >= 2)
    if not len(longer):
        return None
    first = frame.offsets[longer[0]]
    times = frame.times
    step = times[first + 1] - times[first]
    if np.issubdtype(times.dtype, np.datetime64):
        step = pd.Timedelta(step)
        if step >= pd.Timedelta(days=1) and step % pd.Timedelta(days=1) == pd.Timedelta(0):
            return f"{step.days}D" if step.days > 1 else "D"  # pandas would say "24h"
        return pd.tseries.frequencies.to_offset(step).freqstr
    return int(step)


def season_of(frequency: str | int | None) -> int:
    """The usual seasonal period of data at `frequency` (an offset alias, or an integer step):
    a day of sub-daily steps (24 hourly, 96 at 15 min), a week of days (7) or business days (5),
    a year of weeks (52), months (12) or quarters (4); 1 where none applies (years, integer time,
    unknown)."""
    if not isinstance(frequency, str):
        return 1
    try:
        offset = pd.tseries.frequencies.to_offset(frequency)
    except (ValueError, TypeError):
        return 1
    step, day = fixed_step(offset), pd.Timedelta(days=1)
    if step is not None:
        if step < day and day % step == pd.Timedelta(0):
            return int(day / step)
        return {day: 7, 7 * day: 52}.get(step, 1)
    name = offset.rule_code.split("-")[0]  # MS, ME, QS, QE, YS, YE, B, W, ...
    periods = {"MS": 12, "ME": 12, "M": 12, "BMS": 12, "BME": 12, "SMS": 24, "SME": 24}
    periods.update({"QS": 4, "QE": 4, "Q": 4, "BQS": 4, "BQE": 4, "B": 5, "C": 5, "W": 52})
    return periods.get(name, 1)
