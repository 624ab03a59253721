import numpy as np
import pandas as pd
import pytest

from forecast.data import DataError, WideDataModule, split_bounds


def test_ett_borders_follow_the_protocol():
    bounds = split_bounds(17420, lookback=96, borders=[8640, 11520, 14400])
    assert bounds == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}


def test_fractions_take_test_from_the_end():
    bounds = split_bounds(1000, lookback=10, fractions=[0.7, 0.1, 0.2])
    assert bounds == {"train": (0, 700), "val": (690, 800), "test": (790, 1000)}


def test_etth1_windows_and_scaling_follow_the_protocol(shared_data):
    dm = WideDataModule(path=str(shared_data / "ETTh1.csv"), borders=[8640, 11520, 14400])
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.datasets.items()} == {
        "train": 8640 - 192 + 1,
        "val": 2785,
        "test": 2785,
        "predict": 1,  # the last lookback rows of the file, to forecast what follows it
    }
    raw = pd.read_csv(shared_data / "ETTh1.csv")
    values = raw.drop(columns="date").to_numpy()
    mean, std = values[:8640].mean(0), values[:8640].std(0)
    # the first test window starts lookback rows before the test border, z-scored on train rows
    item = dm.datasets["test"][0]
    x, y = item["x"], item["y"]
    np.testing.assert_allclose(x.numpy(), (values[11424:11520] - mean) / std, atol=1e-4)
    np.testing.assert_allclose(y.numpy(), (values[11520:11616] - mean) / std, atol=1e-4)
    assert dm.channels == ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    np.testing.assert_allclose(dm.scaler_params()["mean"], mean, rtol=1e-6)


def test_a_split_too_short_for_a_window_names_the_file(tmp_path):
    path = tmp_path / "short.csv"
    pd.DataFrame(
        {"date": pd.date_range("2020", periods=100, freq="h"), "y": np.arange(100.0)}
    ).to_csv(path, index=False)
    dm = WideDataModule(path=str(path), lookback=24, horizon=12, fractions=[0.7, 0.1, 0.2])
    with pytest.raises(DataError, match=r"short\.csv.*val part"):
        dm.setup("fit")
