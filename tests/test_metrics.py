"""Metrics against scikit-learn and hand computation."""

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    root_mean_squared_error,
)

from forecast import metrics as M


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(5, 12, 3, generator=g, dtype=torch.float64) + 0.5
    y_hat = y + 0.3 * torch.randn(5, 12, 3, generator=g, dtype=torch.float64)
    history = torch.rand(5, 48, 3, generator=g, dtype=torch.float64)
    return y_hat, y, history


def test_point_metrics_match_scikit_learn(data):
    y_hat, y, _ = data
    a, b = y.reshape(-1).numpy(), y_hat.reshape(-1).numpy()
    assert M.mse(y_hat, y).item() == pytest.approx(mean_squared_error(a, b), rel=1e-12)
    assert M.mae(y_hat, y).item() == pytest.approx(mean_absolute_error(a, b), rel=1e-12)
    assert M.rmse(y_hat, y).item() == pytest.approx(root_mean_squared_error(a, b), rel=1e-12)
    assert M.mape(y_hat, y).item() == pytest.approx(
        100 * mean_absolute_percentage_error(a, b), rel=1e-12
    )


def test_smape_mase_owa_pinball_by_hand():
    y = torch.tensor([[[2.0], [0.0], [4.0]]])  # [1, 3, 1]
    y_hat = torch.tensor([[[1.0], [0.0], [5.0]]])
    # sMAPE terms: 200*1/3, 0 (0/0 counts 0), 200*1/9
    assert M.smape(y_hat, y).item() == pytest.approx((200 / 3 + 200 / 9) / 3)
    history = torch.tensor([[[1.0], [3.0], [2.0], [6.0]]])  # lag-2 diffs: |2-1|, |6-3| -> 2
    assert M.mase(y_hat, y, history, season=2).item() == pytest.approx((1 + 0 + 1) / 3 / 2)
    # a season not shorter than the history falls back to lag 1: diffs 2, 1, 4 -> 7/3
    assert M.mase(y_hat, y, history, season=4).item() == pytest.approx((2 / 3) / (7 / 3))
    assert M.owa(10.0, 1.0, 20.0, 4.0) == pytest.approx(0.5 * (0.5 + 0.25))
    # pinball: q=0.9, y - y_hat = +1 -> 0.9; 0 -> 0; -1 -> 0.1
    assert M.pinball(y_hat, y, 0.9).flatten().tolist() == pytest.approx([0.9, 0.0, 0.1])


def test_mape_skips_zero_targets_and_mase_constant_history():
    y = torch.tensor([[[0.0], [2.0]]])
    y_hat = torch.tensor([[[1.0], [1.0]]])
    assert M.mape(y_hat, y).item() == pytest.approx(50.0)
    flat = torch.ones(1, 5, 1)
    assert torch.isnan(M.mase(y_hat, y, flat))


def test_accumulated_metrics_equal_the_whole_batch_definitions(data):
    y_hat, y, history = data
    acc = M.ForecastMetrics(horizon=12, season=24, quantiles=(0.1, 0.9))
    quantile_forecasts = torch.stack([y_hat - 0.2, y_hat + 0.2], dim=-1)
    for part in (slice(0, 2), slice(2, 5)):  # two batches of unequal size
        acc.update(y_hat[part], y[part], history[part], quantile_forecasts[part])
    out = acc.compute()
    assert out["mse"].item() == pytest.approx(M.mse(y_hat, y).item(), rel=1e-12)
    assert out["mae"].item() == pytest.approx(M.mae(y_hat, y).item(), rel=1e-12)
    assert out["rmse"].item() == pytest.approx(M.rmse(y_hat, y).item(), rel=1e-12)
    assert out["mape"].item() == pytest.approx(M.mape(y_hat, y).item(), rel=1e-12)
    assert out["smape"].item() == pytest.approx(M.smape(y_hat, y).item(), rel=1e-12)
    assert out["mase"].item() == pytest.approx(M.mase(y_hat, y, history, 24).item(), rel=1e-12)
    per_step = ((y_hat - y) ** 2).mean(dim=(0, 2))
    torch.testing.assert_close(out["mse_step"], per_step)
    low = M.pinball(quantile_forecasts[..., 0], y, 0.1).mean()
    assert out["pinball_q10"].item() == pytest.approx(low.item(), rel=1e-12)
    coverage = (y <= quantile_forecasts[..., 1]).double().mean()
    assert out["coverage_q90"].item() == pytest.approx(coverage.item())
    high = M.pinball(quantile_forecasts[..., 1], y, 0.9).mean()
    assert out["pinball"].item() == pytest.approx(((low + high) / 2).item(), rel=1e-12)


def test_seasonal_scale_matches_numpy():
    history = torch.randn(2, 50, 3, dtype=torch.float64)
    expected = np.abs(history.numpy()[:, 24:] - history.numpy()[:, :-24]).mean(axis=1)
    np.testing.assert_allclose(M.seasonal_scale(history, 24)[:, 0].numpy(), expected)


@pytest.mark.parametrize(
    ("frequency", "season"),
    [
        ("h", 24),
        ("15min", 96),
        ("D", 7),
        ("7D", 52),
        ("W-SUN", 52),
        ("MS", 12),
        ("ME", 12),
        ("QS-OCT", 4),
        ("YS-JAN", 1),
        ("B", 5),
        ("36h", 1),
        (5, 1),
        (None, 1),
        ("fortnightly", 1),
    ],
)
def test_the_season_of_a_frequency(frequency, season):
    from forecast.data.spec import season_of

    assert season_of(frequency) == season


def test_mase_season_comes_from_the_model_then_the_data_then_the_frequency(tmp_path):
    import numpy as np
    import pandas as pd

    from forecast.data import SeriesDataModule
    from forecast.models import Forecaster

    path = tmp_path / "monthly.csv"
    months = pd.date_range("2000-01-01", periods=120, freq="MS")
    pd.DataFrame({"date": months, "y": np.arange(120.0)}).to_csv(path, index=False)

    def spec(**options):
        dm = SeriesDataModule(path=str(path), lookback=24, horizon=6, **options)
        dm.setup("fit")
        return dm.spec

    assert spec().frequency == "MS" and spec().season == 12  # from the frequency
    assert spec(season=24).season == 24  # data.season
    model = Forecaster(spec(season=24), season=6, segment_len=6)  # model.season wins
    assert {m.season for m in model.metrics.values()} == {6}
    assert {m.season for m in Forecaster(spec(), segment_len=6).metrics.values()} == {12}


@pytest.mark.parametrize("season", [1, 5, 24, 60])
def test_naive_forecasts_and_skill_match_the_baselines(data, season):
    """The naive scores against forecast.baselines' naive and seasonal naive (numpy), window by
    window; skill against hand computation. A season longer than the history (60 > 48) falls
    back to the last value, as MASE's scale does."""
    from forecast.baselines import naive, seasonal_naive

    y_hat, y, history = data
    metric = M.ForecastMetrics(horizon=12, season=season)
    metric.update(y_hat[:2], y[:2], history[:2])
    metric.update(y_hat[2:], y[2:], history[2:])
    result = metric.compute()
    last, seasonal = np.zeros(y.shape), np.zeros(y.shape)
    for b in range(5):
        for c in range(3):
            h = history[b, :, c].numpy()
            last[b, :, c] = naive(h, 12)
            lag = season if len(h) >= season else 1
            seasonal[b, :, c] = seasonal_naive(h, 12, lag)
    truth = y.numpy()
    mse_last, mse_seasonal = ((last - truth) ** 2).mean(), ((seasonal - truth) ** 2).mean()
    assert result["mse_naive_last"].item() == pytest.approx(mse_last, rel=1e-12)
    assert result["mse_naive_seasonal"].item() == pytest.approx(mse_seasonal, rel=1e-12)
    mse = ((y_hat.numpy() - truth) ** 2).mean()
    assert result["skill"].item() == pytest.approx(1 - mse / min(mse_last, mse_seasonal), rel=1e-12)
    per_step = ((last - truth) ** 2).mean(axis=(0, 2))
    np.testing.assert_allclose(result["mse_naive_last_step"].numpy(), per_step, rtol=1e-12)


def test_skill_is_zero_for_the_naive_forecast_itself_and_nan_with_nothing_to_beat():
    history = torch.arange(24.0).reshape(1, 24, 1)
    y = torch.full((1, 6, 1), 30.0)
    metric = M.ForecastMetrics(horizon=6, season=1)
    metric.update(M.naive_last(history, 6), y, history)
    assert metric.compute()["skill"].item() == pytest.approx(0.0, abs=1e-12)
    flat = torch.ones(1, 24, 1)
    metric = M.ForecastMetrics(horizon=6, season=1)
    metric.update(torch.zeros(1, 6, 1), torch.ones(1, 6, 1), flat)
    assert torch.isnan(metric.compute()["skill"])


def test_diebold_mariano_against_numpy():
    """lag 0: a t statistic with the population variance (scipy's ttest_1samp uses n - 1);
    lag L: Newey-West's Bartlett-weighted autocovariances, from numpy's correlate."""
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(0)
    d = np.convolve(rng.normal(0.1, 1, 400), np.ones(5) / 5, mode="valid")  # autocorrelated
    n = len(d)
    t0 = M.diebold_mariano(torch.tensor(d), lag=0).item()
    assert t0 == pytest.approx(ttest_1samp(d, 0).statistic * np.sqrt(n / (n - 1)), rel=1e-10)
    centred = d - d.mean()
    autocovariance = np.correlate(centred, centred, mode="full")[n - 1 :] / n  # [n] lags 0..
    lag = 6
    weights = 1 - np.arange(1, lag + 1) / (lag + 1)
    variance = autocovariance[0] + 2 * (weights * autocovariance[1 : lag + 1]).sum()
    expected = d.mean() / np.sqrt(variance / n)
    assert M.diebold_mariano(torch.tensor(d), lag=lag).item() == pytest.approx(expected, rel=1e-10)
    assert M.diebold_mariano(torch.zeros(10), lag=3).item() == 0.0
    assert M.diebold_mariano(torch.full((10,), -2.0), lag=3).item() == -np.inf


def test_the_blend_test_takes_the_small_sample_correction():
    """Harvey, Leybourne and Newbold's factor, by hand, and what the metric's blend statistic is:
    the Newey-West statistic of the per-window differences times it."""
    assert M.small_sample_factor(205, 96) == pytest.approx(
        np.sqrt((205 + 1 - 192 + 96 * 95 / 205) / 205), rel=1e-12
    )
    for n in (10, 191):  # fewer than two windows that do not overlap: nothing is significant
        assert M.small_sample_factor(n, 96) == 0.0
    assert M.small_sample_factor(192, 96) < M.small_sample_factor(2785, 96) < 1
    g = torch.Generator().manual_seed(0)
    history = torch.randn(60, 24, 2, generator=g, dtype=torch.float64).cumsum(1)
    y = history[:, -1:] + torch.randn(60, 6, 2, generator=g, dtype=torch.float64).cumsum(1)
    y_hat = y + 0.5 * torch.randn(60, 6, 2, generator=g, dtype=torch.float64)
    metric = M.ForecastMetrics(horizon=6, season=1)
    metric.update(y_hat, y, history)
    result = metric.compute()
    w = result["blend_weight_last"]
    naive = history[:, -1:].expand_as(y)
    blend = (1 - w) * y_hat + w * naive
    d = (((blend - y) ** 2) - ((naive - y) ** 2)).sum(dim=(1, 2))
    expected = M.diebold_mariano(d, lag=5) * M.small_sample_factor(60, 6)
    assert result["blend_t_last"].item() == pytest.approx(expected.item(), rel=1e-9)


@pytest.mark.parametrize("channel_mode", ["joint", "independent"])
def test_smape_and_mase_losses_are_the_metrics_terms(tmp_path, channel_mode):
    """loss=smape is M4's sMAPE / 100 on the original values (each series unscaled by its own
    scaler), loss=mase the MASE terms on the look-back's seasonal difference; both by hand."""
    import pandas as pd

    from forecast.data import SeriesDataModule
    from forecast.models import Forecaster

    rng = np.random.default_rng(0)
    frames = []
    for sid, level in (("a", 5.0), ("b", 3000.0)):  # levels 600x apart: sMAPE weighs by level
        t = np.arange(80)
        frames.append(
            pd.DataFrame(
                {
                    "id": sid,
                    "t": pd.date_range("2020-01-01", periods=80, freq="h"),
                    "y": level + level / 10 * np.sin(t / 3) + rng.normal(0, level / 20, 80),
                    "z": level * 2 + rng.normal(0, level / 5, 80),
                }
            )
        )
    path = tmp_path / "long.csv"
    pd.concat(frames).to_csv(path, index=False)
    dm = SeriesDataModule(
        path=str(path), layout="long", id_col="id", time_col="t", target=["y", "z"],
        lookback=12, horizon=4, season=5,
        scale_by="series", channel_mode=channel_mode, batch_size=64,
    )  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    y_hat = batch["y"] + torch.randn_like(batch["y"])  # forecasts off by O(1) in scaled units
    y_hat[0, 0] = 0.0
    mean, scale = Forecaster(dm.spec, loss="mae", segment_len=4).scaler_of(batch)
    y_orig, f_orig = (t.double() * scale + mean for t in (batch["y"], y_hat))
    f_orig[0, 0] = -y_orig[0, 0]  # |y| + |f| > 0 and |e| = 2|y|: the term is 2

    smape = Forecaster(dm.spec, loss="smape", segment_len=4)
    expected = M.smape(f_orig, y_orig) / 100
    f_scaled = ((f_orig - mean) / scale).float()
    assert torch.isclose(smape.loss(f_scaled[..., None], batch).double(), expected, rtol=1e-5)

    mase = Forecaster(dm.spec, loss="mase", segment_len=4)
    x = batch["x"].numpy().astype(float)
    lag_diff = np.abs(x[:, 5:] - x[:, :-5]).mean(axis=1, keepdims=True)  # season 5
    by_hand = np.mean(np.abs(y_hat.numpy() - batch["y"].numpy()) / lag_diff)
    assert np.isclose(float(mase.loss(y_hat[..., None], batch)), by_hand, rtol=1e-5)
    # the same as the MASE metric's terms, on the original values (MASE ignores the scaler)
    x_orig = batch["x"].double() * scale + mean
    metric = M.mase(y_hat.double() * scale + mean, y_orig, x_orig, 5)
    assert np.isclose(by_hand, float(metric), rtol=1e-5)


def test_smape_and_mase_losses_have_finite_gradients_at_zero_and_on_flat_look_backs(tmp_path):
    """Where a target and its forecast are both 0 the sMAPE term is 0 with a finite gradient; a
    flat look-back (seasonal scale 0) gives MASE the floor, not an infinite weight."""
    import dataclasses

    import pandas as pd

    from forecast.data import SeriesDataModule
    from forecast.models import Forecaster
    from forecast.models.forecaster import MASE_SCALE_FLOOR

    path = tmp_path / "one.csv"
    dates = pd.date_range("2020-01-01", periods=40, freq="D")
    pd.DataFrame({"date": dates, "y": np.arange(40.0)}).to_csv(path, index=False)
    dm = SeriesDataModule(path=str(path), lookback=8, horizon=2)
    dm.setup("fit")  # the scaler made the identity: the batch below is in original units too
    spec = dataclasses.replace(dm.spec, scaler_mean=np.zeros((1, 1)), scaler_scale=np.ones((1, 1)))
    batch = {
        "x": torch.zeros(2, 8, 1),
        "y": torch.tensor([[[0.0], [1.0]], [[0.0], [-1.0]]]),
        "series": torch.zeros(2, dtype=torch.long),
    }
    y_hat = torch.tensor([[[0.0], [1.0]], [[0.0], [0.0]]], requires_grad=True)
    for loss, expected in (("smape", 2 / 4), ("mase", 1 / MASE_SCALE_FLOOR / 4)):
        value = Forecaster(spec, loss=loss, segment_len=4).loss(y_hat[..., None], batch)
        assert torch.isclose(value, torch.tensor(expected)), loss
        (grad,) = torch.autograd.grad(value, y_hat)
        assert torch.isfinite(grad).all(), loss
