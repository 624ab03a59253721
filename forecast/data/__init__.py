"""Data: read, validate, split, scale and window time series (no knowledge of models)."""

from forecast.data.datamodule import WideDataModule, split_bounds
from forecast.data.errors import DataError
from forecast.data.fetch import FetchError, dataset_path
from forecast.data.io import Frame, read_wide
from forecast.data.windows import WindowDataset

__all__ = [
    "DataError",
    "FetchError",
    "Frame",
    "WideDataModule",
    "WindowDataset",
    "dataset_path",
    "read_wide",
    "split_bounds",
]
