"""forecast.png: a title naming the model, the data and the test MSE; a time axis where the data
has timestamps."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from forecast.data import SeriesDataModule
from forecast.plots import forecast_figure, plot_forecasts, plot_title, window_times


def test_windows_are_placed_at_their_timestamps(etth1_csv):
    data = SeriesDataModule(path=str(etth1_csv), borders=[8640, 11520, 14400], horizon=24)
    data.setup("fit")
    dataset = data.datasets["test"]
    past, future = window_times(dataset, [0, len(dataset) - 1], data.frame.times)
    dates = pd.to_datetime(pd.read_csv(etth1_csv)["date"]).to_numpy()
    # the first test window starts `lookback` rows before the test border; the last ends the split
    np.testing.assert_array_equal(past[0], dates[11520 - 96 : 11520])
    np.testing.assert_array_equal(future[0], dates[11520 : 11520 + 24])
    np.testing.assert_array_equal(future[1], dates[14400 - 24 : 14400])
    assert past.shape == (2, 96) and future.shape == (2, 24)


def test_integer_time_keeps_the_step_axis():
    times = np.arange(50)
    assert window_times(None, [0], times) is None


def test_title_names_model_data_and_test_mse():
    model = SimpleNamespace(
        hparams={"cell": "gru", "impl": "custom"}, test_results={"test_mse": torch.tensor(0.38149)}
    )
    data = SimpleNamespace(path="/somewhere/my.csv", name=None)
    assert plot_title(model, data) == "gru (custom) on my.csv, test MSE 0.3815"
    model.test_results = {}
    assert (
        plot_title(model, SimpleNamespace(path=None, name="ETTh1.csv"))
        == "gru (custom) on ETTh1.csv"
    )


def test_figure_has_the_title_and_a_date_axis(tmp_path):
    t = pd.date_range("2021-03-01", periods=40, freq="h").to_numpy()
    times = (np.stack([t[:24], t[8:32]]), np.stack([t[24:32], t[32:40]]))
    history, horizon = np.zeros((2, 24)), np.ones((2, 8))
    fig = forecast_figure(history, horizon, horizon, "OT", "lstm (torch) on x.csv", times)
    assert fig.texts[0].get_text() == "lstm (torch) on x.csv"  # the suptitle
    axis = fig.axes[1].xaxis
    assert "date" in type(axis.get_major_formatter()).__module__  # matplotlib.dates
    line_x = fig.axes[1].lines[1].get_xdata()  # the truth of the second window
    np.testing.assert_array_equal(line_x, t[32:40])
    assert fig.axes[-1].get_xlabel() == "time"
    steps = forecast_figure(history, horizon, horizon, "OT")
    assert steps.axes[-1].get_xlabel() == "steps from the forecast origin"
    plot_forecasts(history, horizon, horizon, "OT", tmp_path / "f.png", "title", times)
    assert (tmp_path / "f.png").stat().st_size > 0
