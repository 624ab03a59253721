"""Data: read, validate, split, scale and window time series (no knowledge of models).

The DataModule (and with it Lightning) is imported on first use, so that reading and batch
forecasting (`forecast.predict`, `forecast.load`) run without Lightning.
"""

from forecast.data.errors import DataError
from forecast.data.fetch import FetchError, dataset_path
from forecast.data.io import Frame, read_long, read_rows, read_table, read_wide
from forecast.data.reading import ReadOptions, read
from forecast.data.spec import DataSpec
from forecast.data.splits import split_arrays, split_bounds

__all__ = [
    "DataError",
    "DataSpec",
    "FetchError",
    "Frame",
    "RandomWindows",
    "ReadOptions",
    "SeriesDataModule",
    "WideDataModule",
    "WindowDataset",
    "collate",
    "dataset_path",
    "read",
    "read_long",
    "read_rows",
    "read_table",
    "read_wide",
    "split_arrays",
    "split_bounds",
]
_LAZY = {
    "SeriesDataModule": "forecast.data.datamodule",
    "WideDataModule": "forecast.data.datamodule",
    "RandomWindows": "forecast.data.windows",
    "WindowDataset": "forecast.data.windows",
    "collate": "forecast.data.windows",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'forecast.data' has no attribute {name!r}")
