import pytest
import torch

from forecast.data import WindowDataset


def test_window_k_is_rows_k_to_k_plus_lookback_and_target_the_next_horizon():
    series = torch.arange(50 * 3, dtype=torch.float32).view(50, 3)
    ds = WindowDataset(series, lookback=8, horizon=4, stride=3)
    assert len(ds) == (50 - 12) // 3 + 1
    for k in range(len(ds)):
        item = ds[k]
        x, y = item["x"], item["y"]
        start = 3 * k
        torch.testing.assert_close(x, series[start : start + 8], rtol=0, atol=0)
        torch.testing.assert_close(y, series[start + 8 : start + 12], rtol=0, atol=0)


def test_windows_are_views_of_one_storage():
    series = torch.randn(1000, 2)
    ds = WindowDataset(series, lookback=96, horizon=24)
    item = ds[500]
    x, y = item["x"], item["y"]
    storage = series.untyped_storage().data_ptr()
    assert x.untyped_storage().data_ptr() == storage
    assert y.untyped_storage().data_ptr() == storage
    series[500 + 96, 1] = 12345.0  # a write to the series shows through the window
    assert y[0, 1] == 12345.0


def test_too_short_series_is_refused():
    with pytest.raises(ValueError, match="shorter than lookback"):
        WindowDataset(torch.zeros(10, 1), lookback=8, horizon=4)
