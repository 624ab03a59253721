"""LightningDataModule: read one file of one or many series, split by time, scale, window."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from forecast.data.covariates import CALENDAR_PREFIX, Covariates, fit_columns
from forecast.data.errors import DataError
from forecast.data.features import calendar_features, check_calendar
from forecast.data.fetch import dataset_path
from forecast.data.io import Frame
from forecast.data.reading import ReadOptions, read
from forecast.data.scaling import fit_params, scale_in_place
from forecast.data.spec import DataSpec, frequency, season_of
from forecast.data.splits import SPLITS, split_arrays
from forecast.data.validate import check_scaled, check_scaled_covariates
from forecast.data.windows import RandomWindows, WindowDataset, collate
from forecast.errors import ConfigError

CHANNEL_MODES = ("joint", "independent")


class SeriesDataModule(pl.LightningDataModule):
    """Train, val, test and predict windows of one wide, long or row-per-series table.

    Data: `path`, a file or a pandas DataFrame (or `name`, a known data set fetched by
    `forecast.data.dataset_path`), and for `rows` a `test_path`/`test_name` with each series'
    held-out continuation (it becomes the test targets). Reading (`forecast.data.ReadOptions`,
    whose defaults these are): `layout` (wide | long | rows), `format` (csv | parquet, default by
    suffix), the column names (`time_col`, `id_col`, `target`, `past_covariates`,
    `future_covariates`, `static_covariates`; `categorical`: covariates read as levels whatever
    their type), `freq` (default: inferred), `fill` (error | ffill | interpolate | zero),
    `sort`, `short` (error | skip series too short for the split).
    Splits: `borders`, or `val_size`/`test_size` rows at each series' end, or `fractions`.
    Scaling: `scaler` (standard | minmax | robust | none) fitted on training rows, `scale_by`
    (channel | series). `channel_mode`: joint (all in, all out) or independent (each channel its own
    univariate series). `calendar`: features among hour, weekday, day, month, ..., computed
    from the timestamps, future covariates like the others. Batches hold `past` [B, L, Kp],
    `future` [B, L + H, Kf] and `static` [B, Ks] covariates as read (forecast.data.covariates).
    `stride` thins training windows; val, test and predict use every window.
    `windows_per_epoch`: each training epoch draws this many distinct training windows at random
    (seeded, a new draw each epoch) instead of all of them; val and test stay complete.
    `season`: the data's seasonal period, for MASE (None: from its frequency, see
    `forecast.data.spec.season_of`). After `setup`, `spec` is what a model needs to know.
    """

    def __init__(
        self,
        path: str | Path | pd.DataFrame | None = None,
        name: str | None = None,
        layout: str = ReadOptions.layout,
        format: str | None = ReadOptions.format,
        time_col: str | None = ReadOptions.time_col,
        id_col: str | None = ReadOptions.id_col,
        target: str | list[str] | None = ReadOptions.target,
        columns: list[str] | None = None,
        past_covariates: list[str] | None = ReadOptions.past_covariates,
        future_covariates: list[str] | None = ReadOptions.future_covariates,
        static_covariates: list[str] | None = ReadOptions.static_covariates,
        categorical: list[str] | None = ReadOptions.categorical,
        test_path: str | None = None,
        test_name: str | None = None,
        freq: str | int | None = ReadOptions.freq,
        fill: str = ReadOptions.fill,
        sort: bool = ReadOptions.sort,
        short: str = ReadOptions.short,
        lookback: int = 96,
        horizon: int = 96,
        borders: list[int] | None = None,
        fractions: list[float] | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        scaler: str = "standard",
        scale_by: str = "channel",
        channel_mode: str = "joint",
        calendar: list[str] | None = None,
        stride: int = 1,
        windows_per_epoch: int | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        season: int | None = None,
    ):
        super().__init__()
        if path is None and name is None:
            raise ConfigError(
                "data.path is not set: give data.path=<a file> (or a DataFrame from Python), "
                "or data.name=<a data set> (--help shows more)"
            )
        if channel_mode not in CHANNEL_MODES:
            raise ValueError(
                f"data.channel_mode must be one of {CHANNEL_MODES}, got {channel_mode!r}"
            )
        if windows_per_epoch is not None and windows_per_epoch < 1:
            raise ValueError(
                f"data.windows_per_epoch must be a positive number of windows or null (all), "
                f"got {windows_per_epoch}"
            )
        if target is not None and columns is not None and list(target) != list(columns):
            raise ValueError("data.columns is the older name of data.target: give one of them")
        self.path, self.name = path, name
        self.reading = ReadOptions(
            layout=layout,
            format=format,
            time_col=time_col,
            id_col=id_col,
            target=target if target is not None else columns,
            past_covariates=past_covariates,
            future_covariates=future_covariates,
            static_covariates=static_covariates,
            categorical=categorical,
            freq=freq,
            fill=fill,
            sort=sort,
            short=short,
        )
        self.test_path, self.test_name = test_path, test_name
        self.lookback, self.horizon, self.stride = lookback, horizon, stride
        self.windows_per_epoch = windows_per_epoch
        self.split_options = dict(
            borders=borders, fractions=fractions, val_size=val_size, test_size=test_size
        )
        self.scaler_kind, self.scale_by, self.channel_mode = scaler, scale_by, channel_mode
        self.calendar = list(calendar or [])
        check_calendar(self.calendar)
        self.season = season  # the data's seasonal period (MASE's scale); None: from its frequency
        self.loader_options = dict(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers and num_workers > 0,
        )
        self.frame: Frame | None = None
        self.spec: DataSpec | None = None  # what the model needs, after setup
        self.mean = self.scale = None  # [G, C]: G = 1, or one row per kept series
        self.datasets: dict[str, WindowDataset] = {}

    @property
    def short(self) -> str:
        return self.reading.short

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.frame = frame = self._read()
        kept, starts, ends = self._split(frame)
        base = frame.offsets[kept]
        self.mean, self.scale = fit_params(
            self.scaler_kind, frame.values, base, base + ends["train"], self.scale_by
        )
        scale_in_place(frame.values, base, frame.offsets[kept + 1], self.mean, self.scale)
        check_scaled(frame, base, frame.offsets[kept + 1], self.mean, self.scale, self.scaler_kind)
        covariates, raw = self._covariates(frame, kept, base, ends["train"])
        check_scaled_covariates(frame, covariates)
        values = torch.from_numpy(frame.values)  # [N, C], shares memory with the frame
        common = dict(series=kept, independent=self.channel_mode == "independent", **raw)
        for split in SPLITS:
            segments = np.stack([base + starts[split], base + ends[split]], axis=1)  # [S, 2]
            stride = self.stride if split == "train" else 1
            self.datasets[split] = WindowDataset(
                values, self.lookback, self.horizon, stride, segments=segments, **common
            )
        known_end = frame.offsets[kept + 1] - frame.holdout  # forecast from the last known rows
        segments = np.stack([known_end - self.lookback, known_end], axis=1)
        self.datasets["predict"] = WindowDataset(
            values, self.lookback, 0, segments=segments, **common
        )
        self.spec = self._spec(frame, kept, covariates)

    def _covariates(self, frame: Frame, kept, base, train_ends) -> tuple[Covariates, dict]:
        """What the model knows of the covariates (their scaling fitted on the training rows),
        and their values as read (numbers, and codes of categorical ones) as tensors: past
        [N, Kp], future [N, Kf] (calendar features last), static [S, Ks]; the network encodes
        them (forecast.models.covariates)."""
        n_past = len(frame.covariate_names) if frame.n_past is None else frame.n_past
        names = list(frame.covariate_names)
        past, future = frame.covariates[:, :n_past], frame.covariates[:, n_past:]
        future_names = names[n_past:]
        if self.calendar:
            if not np.issubdtype(frame.times.dtype, np.datetime64):
                raise DataError(
                    f"{frame.path}: data.calendar={list(self.calendar)} needs timestamps, and "
                    f"this table's time column holds steps (whole numbers); give its times as "
                    f"dates, or set data.calendar=null"
                )
            future = np.concatenate([future, calendar_features(frame.times, self.calendar)], 1)
            future_names += [f"{CALENDAR_PREFIX}{name}" for name in self.calendar]
        levels = frame.levels or {}
        parts = lambda a: [a[i : i + n] for i, n in zip(base, train_ends, strict=True)]  # noqa: E731
        calendar = tuple(n for n in future_names if n.startswith(CALENDAR_PREFIX))
        static = frame.static if frame.static is not None else np.zeros((frame.n_series, 0))
        covariates = Covariates(
            past=fit_columns(names[:n_past], past, parts(past), levels, self.scaler_kind),
            future=fit_columns(
                future_names, future, parts(future), levels, self.scaler_kind, calendar
            ),
            static=fit_columns(
                list(frame.static_names), static, [static[kept]], levels, self.scaler_kind
            ),
        )
        raw = {}
        for kind, array in (("past", past), ("future", future), ("static", static)):
            if array.shape[1]:
                raw[kind] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return covariates, raw

    def _spec(self, frame: Frame, kept: np.ndarray, covariates: Covariates) -> DataSpec:
        """The DataSpec: the scaler as a table a batch's `series` (an index into all the
        file's series) picks rows from: one row, or one per series (skipped ones unscaled)."""
        mean, scale = self.mean, self.scale
        if len(mean) > 1:
            mean = np.zeros((frame.n_series, mean.shape[1]))
            scale = np.ones_like(mean)
            mean[kept], scale[kept] = self.mean, self.scale
        step = frequency(frame)
        return DataSpec(
            channels=frame.channels,
            lookback=self.lookback,
            horizon=self.horizon,
            independent=self.channel_mode == "independent",
            frequency=step,
            season=self.season or season_of(step),
            reading=self.reading,
            scaler_mean=mean,
            scaler_scale=scale,
            scaler_kind=self.scaler_kind,
            series_ids=frame.ids,
            covariates=covariates,
        )

    def _read(self) -> Frame:
        source = self.path if self.path is not None else dataset_path(self.name)
        test = self.test_path
        if test is None and self.test_name is not None:
            test = dataset_path(self.test_name)
        return read(source, self.reading, test_source=test)

    def _split(self, frame: Frame):
        """Kept series [S'] and their split starts and ends (relative to each series)."""
        options = dict(self.split_options)
        if frame.holdout:  # the test file's rows are the test targets, and nothing else is
            options.update(borders=None, test_size=frame.holdout)
            options["val_size"] = options["val_size"] or self.horizon
        starts, ends = split_arrays(frame.lengths, self.lookback, **options)
        need = self.lookback + self.horizon
        # a part that starts before its series or ends after it is short of rows as well
        bad = {
            s: (ends[s] - starts[s] < need) | (starts[s] < 0) | (ends[s] > frame.lengths)
            for s in SPLITS
        }
        too_short = bad["train"] | bad["val"] | bad["test"]
        if too_short.any():
            self._refuse_or_skip(frame, too_short, bad, starts, ends, need)
        kept = np.flatnonzero(~too_short)
        return kept, {s: a[kept] for s, a in starts.items()}, {s: a[kept] for s, a in ends.items()}

    def _refuse_or_skip(self, frame, too_short, bad, starts, ends, need) -> None:
        s = int(np.argmax(too_short))
        split = next(p for p in SPLITS if bad[p][s])
        start, end = starts[split][s], ends[split][s]
        rows = min(end, frame.lengths[s]) - max(start, 0)
        message = (
            f"{frame.path}: series {frame.ids[s]!r} ({frame.lengths[s]} rows): the {split} part "
            f"(rows {start}..{end}) has {rows} rows, where it needs lookback + horizon = {need} "
            f"within the series; shorten lookback or horizon, or give more rows to {split}"
        )
        if self.reading.short == "error" or too_short.all():
            fix = "" if frame.n_series == 1 else ", or set data.short=skip to leave such series out"
            raise DataError(message + fix)
        warnings.warn(
            f"{frame.path}: skipped {int(too_short.sum())} of {frame.n_series} series too short "
            f"for lookback + horizon and the split (data.short=skip); the first: {message}",
            UserWarning,
            stacklevel=3,
        )

    @property
    def n_channels(self) -> int:
        """Channels the model sees: all of them (joint), or 1 (independent)."""
        return 1 if self.channel_mode == "independent" else len(self.frame.channels)

    @property
    def channels(self) -> tuple[str, ...]:
        """Names of the file's channels (in independent mode, a batch's `channel` indexes them)."""
        return self.frame.channels

    @property
    def series_ids(self) -> tuple[str, ...]:
        """Names of the series; a batch's `series` indexes them."""
        return self.frame.ids

    def scaler_params(self) -> dict[str, list[float]]:
        """Per-channel mean and scale [C]: raw = scaled * scale + mean (not for per-series)."""
        if len(self.mean) != 1:
            raise ValueError(
                "each series has its own scaler (scale_by=series): use series_scaler_params()"
            )
        return {"mean": self.mean[0].tolist(), "scale": self.scale[0].tolist()}

    def series_scaler_params(self) -> dict[str, list]:
        """Mean and scale per series: {"ids": [S'], "mean": [S'][C], "scale": [S'][C]}."""
        kept = self.datasets["train"].series
        rows = np.arange(len(kept)) if len(self.mean) > 1 else np.zeros(len(kept), int)
        return {
            "ids": [self.frame.ids[s] for s in kept],
            "mean": self.mean[rows].tolist(),
            "scale": self.scale[rows].tolist(),
        }

    def _loader(self, split: str) -> DataLoader:
        options = self.loader_options
        train = split == "train"
        dataset = self.datasets[split]
        # shuffle only training, and draw a subset of it only; val and test are complete
        sampler = RandomWindows(len(dataset), per_epoch=self.windows_per_epoch) if train else None
        return DataLoader(
            dataset,
            batch_size=options["batch_size" if train else "eval_batch_size"],
            sampler=sampler,
            num_workers=options["num_workers"],
            pin_memory=options["pin_memory"],
            persistent_workers=options["persistent_workers"],
            collate_fn=collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        if self.spec is not None and self.spec.covariates.future.names:
            raise DataError(
                f"{self.frame.path}: the model reads future covariates "
                f"{list(self.spec.covariates.future.names)}, which this data does not hold past "
                f"its end; forecast with the run's export (forecast.load(run).predict(df) or "
                f"predict.py) on data with rows for the horizon"
            )
        return self._loader("predict")


# The walking skeleton's name; its configs and code keep working (layout defaults to wide).
WideDataModule = SeriesDataModule
