"""LightningDataModule: read a wide file, split it by time, scale on training rows, window."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from forecast.data.errors import DataError
from forecast.data.fetch import dataset_path
from forecast.data.io import read_wide
from forecast.data.scaling import fit_scaler, transform
from forecast.data.windows import WindowDataset

SPLITS = ("train", "val", "test")


def split_bounds(
    n_rows: int,
    lookback: int,
    borders: list[int] | None = None,
    fractions: list[float] | None = None,
) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) of each split; val and test reach back `lookback` rows.

    `borders` are the ends of train, val and test (the ETT protocol); otherwise `fractions`
    (train, val, test) of the rows, test taken from the end, as the papers do.
    """
    if borders is None:
        train_frac, _, test_frac = fractions or (0.7, 0.1, 0.2)
        n_train, n_test = int(n_rows * train_frac), int(n_rows * test_frac)
        borders = [n_train, n_rows - n_test, n_rows]
    train_end, val_end, test_end = borders
    if not 0 < train_end < val_end < test_end <= n_rows:
        raise ValueError(f"borders {borders} do not fit a series of {n_rows} rows")
    return {
        "train": (0, train_end),
        "val": (train_end - lookback, val_end),
        "test": (val_end - lookback, test_end),
    }


class WideDataModule(pl.LightningDataModule):
    """Windows of one wide file (all channels in, all channels out).

    `path=None` with a known `name` (e.g. `ETTh1.csv`) uses the built-in copy or fetches it.
    """

    def __init__(
        self,
        path: str | None = None,
        name: str | None = None,
        time_col: str = "date",
        columns: list[str] | None = None,
        lookback: int = 96,
        horizon: int = 96,
        borders: list[int] | None = None,
        fractions: list[float] | None = None,
        scaler: str = "standard",
        stride: int = 1,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        num_workers: int = 0,
    ):
        super().__init__()
        if path is None and name is None:
            raise ValueError("give data.path (a CSV file) or data.name (a known data set)")
        self.path, self.name = path, name
        self.time_col, self.columns = time_col, columns
        self.lookback, self.horizon, self.stride = lookback, horizon, stride
        self.borders, self.fractions, self.scaler_kind = borders, fractions, scaler
        self.batch_size, self.eval_batch_size, self.num_workers = (
            batch_size,
            eval_batch_size,
            num_workers,
        )
        self.frame = self.scaler = None
        self.datasets: dict[str, WindowDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        path = self.path if self.path is not None else dataset_path(self.name)
        self.frame = read_wide(path, self.time_col, self.columns)
        bounds = split_bounds(len(self.frame.values), self.lookback, self.borders, self.fractions)
        train_start, train_end = bounds["train"]
        self.scaler = fit_scaler(self.scaler_kind, self.frame.values[train_start:train_end])
        series = torch.from_numpy(transform(self.scaler, self.frame.values))  # [T, C]
        for split, (start, end) in bounds.items():
            if end - start < self.lookback + self.horizon:
                raise DataError(
                    f"{path}: the {split} part (rows {start}..{end}) has {end - start} rows, fewer "
                    f"than lookback + horizon = {self.lookback + self.horizon}; shorten them or "
                    f"give more rows to {split}"
                )
            stride = self.stride if split == "train" else 1
            self.datasets[split] = WindowDataset(
                series[start:end], self.lookback, self.horizon, stride
            )

    @property
    def n_channels(self) -> int:
        return len(self.frame.channels)

    @property
    def channels(self) -> tuple[str, ...]:
        return self.frame.channels

    def scaler_params(self) -> dict[str, list[float]]:
        """Per-channel mean and scale of the fitted scaler (identity for `none`)."""
        if self.scaler is None:
            n = self.n_channels
            return {"mean": [0.0] * n, "scale": [1.0] * n}
        if hasattr(self.scaler, "mean_"):
            mean, scale = self.scaler.mean_, self.scaler.scale_
        elif hasattr(self.scaler, "center_"):
            mean, scale = self.scaler.center_, self.scaler.scale_
        else:  # MinMaxScaler: x * scale_ + min_
            mean, scale = -self.scaler.min_ / self.scaler.scale_, 1.0 / self.scaler.scale_
        return {"mean": np.asarray(mean).tolist(), "scale": np.asarray(scale).tolist()}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
