"""The blend toward a naive forecast, chosen on validation (model.naive_blend): the weight is the
MSE-optimal one, the network applies it to every output, and a default model does not lose to
repeating the last value on random walks."""

import numpy as np
import pandas as pd
import pytest
import torch

import forecast
from forecast import metrics as M
from forecast.models import ForecastNet, ScaledForecastNet
from forecast.naive import naive_last, naive_seasonal


def test_the_blend_weight_minimises_the_mse_of_the_blend():
    g = torch.Generator().manual_seed(3)
    history = torch.randn(40, 48, 2, generator=g, dtype=torch.float64).cumsum(1)
    y = history[:, -1:] + torch.randn(40, 12, 2, generator=g, dtype=torch.float64).cumsum(1)
    y_hat = history[:, -1:] + 0.5 * torch.randn(40, 12, 2, generator=g, dtype=torch.float64)
    metric = M.ForecastMetrics(horizon=12, season=6)
    metric.update(y_hat, y, history)
    result = metric.compute()
    grid = torch.linspace(0, 1, 10001, dtype=torch.float64)
    for kind, naive in (
        ("last", naive_last(history, 12)),
        ("seasonal", naive_seasonal(history, 12, 6)),
    ):
        mse = torch.stack([(((1 - w) * y_hat + w * naive - y) ** 2).mean() for w in grid])
        best = int(mse.argmin())
        assert result[f"blend_weight_{kind}"].item() == pytest.approx(grid[best].item(), abs=1e-4)
        assert result[f"blend_mse_{kind}"].item() == pytest.approx(mse[best].item(), rel=1e-6)
        assert result[f"blend_mse_{kind}"] <= result["mse"] + 1e-12


def test_a_full_blend_forecasts_the_naive_value_and_shifts_quantiles():
    torch.manual_seed(0)
    net = ForecastNet(2, 24, 8, hidden_size=8, segment_len=6, n_quantiles=3, point_index=1).eval()
    x = torch.randn(5, 24, 2).cumsum(1)
    with torch.no_grad():
        alone = net(x)
        net.set_naive_blend(1.0, 6)
        blended = net(x)
    naive = naive_seasonal(x, 8, 6)
    torch.testing.assert_close(blended[..., 1], naive)  # the point forecast is the naive one
    spread = lambda y: y - y[..., 1:2]  # noqa: E731
    torch.testing.assert_close(spread(blended), spread(alone))  # the intervals move, unshrunk
    with pytest.raises(ValueError, match="0 <= weight <= 1"):
        net.set_naive_blend(1.5, 1)


def test_the_blend_survives_the_scaler_of_an_export():
    """The naive forecast of scaled values, scaled back, is the naive forecast of raw values."""
    torch.manual_seed(0)
    net = ForecastNet(3, 24, 6, hidden_size=8, segment_len=6).eval()
    net.set_naive_blend(1.0, 1)
    mean, scale = torch.tensor([10.0, -3.0, 0.5]), torch.tensor([2.0, 0.1, 7.0])
    raw = mean + scale * torch.randn(4, 24, 3)
    with torch.no_grad():
        out = ScaledForecastNet(net, mean, scale).eval()(raw)
    torch.testing.assert_close(out, naive_last(raw, 6), rtol=1e-5, atol=1e-5)


def random_walks(n=1500, k=2, drift=0.0, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = 50 + np.cumsum(rng.normal(drift, 1.0, (n, k)), axis=0)
    df = pd.DataFrame(values, columns=[f"w{i}" for i in range(k)])
    return df.assign(ds=pd.date_range("2010-01-01", periods=n, freq="D"))


@pytest.mark.slow
@pytest.mark.parametrize("drift", [0.0, 0.3], ids=["walk", "drift"])
def test_default_models_do_not_lose_to_naive_on_random_walks(tmp_path, drift, caplog):
    """Shipped defaults (the horizon shortened to fit the series), nothing tuned: validation
    and test skill are not negative, the export forecasts with the chosen blend, and a run whose
    forecasts are the naive one's alone says so."""
    df = random_walks(drift=drift)
    with caplog.at_level("WARNING", logger="forecast.pipeline"):
        run = forecast.fit(df, horizon=24, output_dir=tmp_path / "run", progress=False)
    metrics = run.metrics
    assert metrics["val_skill"] >= 0 and metrics["test_skill"] >= 0, metrics
    assert metrics["naive_blend"] in ("last", "seasonal") and 0 <= metrics["naive_weight"] <= 1
    said = "the model forecasts by repeating the last" in caplog.text
    assert said == (metrics["naive_weight"] == 1.0), (metrics["naive_weight"], caplog.text)
    module = run.module()
    assert float(module.net.naive_weight) == pytest.approx(metrics["naive_weight"])
    future = run.predict(df)
    windows = torch.tensor(df[["w0", "w1"]].to_numpy()[-96:], dtype=torch.float32)[None]
    mean, scale = module.scaler_mean[0], module.scaler_scale[0]
    with torch.no_grad():
        expected = module((windows - mean) / scale)[..., 0] * scale + mean  # [1, H, C]
    got = future.pivot(index="step", columns="unique_id", values="y_hat")[["w0", "w1"]]
    np.testing.assert_allclose(got.to_numpy(), expected[0].numpy(), rtol=1e-5, atol=1e-4)
