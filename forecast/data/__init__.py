"""Data: read, validate, split, scale and window time series (no knowledge of models)."""

from forecast.data.datamodule import SeriesDataModule, WideDataModule
from forecast.data.errors import DataError
from forecast.data.fetch import FetchError, dataset_path
from forecast.data.io import Frame, read_long, read_rows, read_table, read_wide
from forecast.data.splits import split_arrays, split_bounds
from forecast.data.windows import RandomWindows, WindowDataset, collate

__all__ = [
    "DataError",
    "FetchError",
    "Frame",
    "RandomWindows",
    "SeriesDataModule",
    "WideDataModule",
    "WindowDataset",
    "collate",
    "dataset_path",
    "read_long",
    "read_rows",
    "read_table",
    "read_wide",
    "split_arrays",
    "split_bounds",
]
