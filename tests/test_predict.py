"""Batch forecasting from exported models: shapes, timestamps, units, bad files, atomicity."""

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from forecast import predict as P
from forecast.metrics import smape
from tests.conftest import ROOT, require_shared_data, run_script

pytestmark = pytest.mark.slow

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "model.hidden_size=16"]


def train(run_dir, *overrides):
    run_script("train.py", f"hydra.run.dir={run_dir}", *TINY, *overrides)
    return run_dir


@pytest.fixture(scope="module")
def m4_model(tmp_path_factory, request):
    shared = request.getfixturevalue("shared_data")
    return train(
        tmp_path_factory.mktemp("m4") / "run",
        "data=m4_hourly",
        f"data.path={shared / 'M4-Hourly-train.csv'}",
        f"data.test_path={shared / 'M4-Hourly-test.csv'}",
    )


@pytest.fixture(scope="module")
def etth1_model(tmp_path_factory):
    return train(tmp_path_factory.mktemp("etth1") / "run", "model.loss=quantile", "data.horizon=24")


@pytest.fixture(scope="module")
def shared_data():
    return require_shared_data()


def quiet(*args, **kwargs):
    return P.BatchForecaster(*args, log=lambda message: None, **kwargs)


def test_m4_every_series_gets_48_steps_after_its_end_in_original_units(
    m4_model, shared_data, tmp_path
):
    summary = quiet(m4_model).run(shared_data / "M4-Hourly-train.csv", tmp_path)
    assert (summary.files, summary.series, summary.forecasts) == (1, 414, 414 * 48)
    out = pd.read_csv(tmp_path / "M4-Hourly-train.forecast.csv")
    assert list(out.columns) == ["unique_id", "ds", "step", "y_hat"]
    train_rows = pd.read_csv(shared_data / "M4-Hourly-train.csv", index_col=0)
    lengths = train_rows.notna().sum(axis=1)
    assert sorted(out["unique_id"].unique()) == sorted(lengths.index)
    h1 = out[out["unique_id"] == "H1"]
    assert h1["step"].tolist() == list(range(1, 49))
    assert h1["ds"].tolist() == list(range(lengths["H1"], lengths["H1"] + 48))
    # original units: forecasts sit at the level of each series' last day, not near 0 +- 1
    last_day = {sid: row.dropna().to_numpy()[-24:].mean() for sid, row in train_rows.iterrows()}
    ratio = out.groupby("unique_id")["y_hat"].mean() / pd.Series(last_day)
    assert ratio.between(0.2, 5).mean() > 0.95
    test = pd.read_csv(shared_data / "M4-Hourly-test.csv", index_col=0)
    y = test.loc[out["unique_id"].unique()].to_numpy()
    y_hat = out.pivot(index="unique_id", columns="step", values="y_hat").loc[test.index[: len(y)]]
    import torch

    score = smape(torch.tensor(y_hat.to_numpy()), torch.tensor(y[: len(y_hat)])).item()
    assert 0 < score < 60  # sMAPE in percent of a barely trained model; Naive2 scores 18.4


def test_forecasts_scale_with_their_series(m4_model, shared_data, tmp_path):
    rows = pd.read_csv(shared_data / "M4-Hourly-train.csv", index_col=0).loc[["H1", "H2"]]
    rows.loc["H1x1000"] = rows.loc["H1"] * 1000
    rows.to_csv(tmp_path / "scaled.csv")
    quiet(m4_model).run(tmp_path / "scaled.csv", tmp_path / "out")
    out = pd.read_csv(tmp_path / "out" / "scaled.forecast.csv").set_index(["unique_id", "step"])
    np.testing.assert_allclose(
        out.loc["H1x1000", "y_hat"].to_numpy(), 1000 * out.loc["H1", "y_hat"].to_numpy(), rtol=1e-3
    )


def test_wide_quantile_forecast_continues_the_timestamps(etth1_model, shared_data, tmp_path):
    summary = quiet(etth1_model, format="parquet").run(shared_data / "ETTh1.csv", tmp_path)
    assert summary.series == 7
    out = pd.read_parquet(tmp_path / "ETTh1.forecast.parquet")
    assert list(out.columns) == [
        "unique_id",
        "ds",
        "step",
        "y_hat",
        "y_hat_q10",
        "y_hat_q50",
        "y_hat_q90",
    ]
    assert out["unique_id"].unique().tolist() == [
        "HUFL",
        "HULL",
        "MUFL",
        "MULL",
        "LUFL",
        "LULL",
        "OT",
    ]
    ot = out[out["unique_id"] == "OT"]
    expected = pd.date_range("2018-06-26 20:00", periods=24, freq="h")
    assert pd.DatetimeIndex(ot["ds"]).equals(expected)
    np.testing.assert_array_equal(out["y_hat"], out["y_hat_q50"])


def test_engines_agree(etth1_model, shared_data, tmp_path):
    quiet(etth1_model).run(shared_data / "ETTh1.csv", tmp_path / "ts")
    quiet(etth1_model, engine="onnx").run(shared_data / "ETTh1.csv", tmp_path / "onnx")
    a = pd.read_csv(tmp_path / "ts" / "ETTh1.forecast.csv")
    b = pd.read_csv(tmp_path / "onnx" / "ETTh1.forecast.csv")
    np.testing.assert_allclose(a["y_hat"], b["y_hat"], rtol=1e-5, atol=1e-4)


def test_batches_across_files_give_the_same_forecasts(m4_model, shared_data, tmp_path):
    rows = pd.read_csv(shared_data / "M4-Hourly-train.csv", index_col=0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        rows.iloc[i * 5 : i * 5 + 5].to_csv(inputs / f"part{i}.csv")
    quiet(m4_model, batch_size=3).run(inputs, tmp_path / "small")
    quiet(m4_model, batch_size=1000).run(inputs, tmp_path / "large")
    for i in range(4):
        small = pd.read_csv(tmp_path / "small" / f"part{i}.forecast.csv")
        large = pd.read_csv(tmp_path / "large" / f"part{i}.forecast.csv")
        pd.testing.assert_frame_equal(small, large, rtol=1e-6)
        assert small["unique_id"].nunique() == 5


def test_bad_files_are_reported_and_the_others_forecast(etth1_model, shared_data, tmp_path):
    good = pd.read_csv(shared_data / "ETTh1.csv").iloc[:300]
    inputs = tmp_path / "in"
    inputs.mkdir()
    good.to_csv(inputs / "good.csv", index=False)
    bad = good.astype({"OT": object})
    bad.loc[150, "OT"] = "n/a?"
    bad.to_csv(inputs / "bad_value.csv", index=False)
    good.rename(columns={"OT": "oil"}).to_csv(inputs / "renamed.csv", index=False)
    good.iloc[:50].to_csv(inputs / "short.csv", index=False)
    result = subprocess.run(
        [
            sys.executable,
            "predict.py",
            f"model_dir={etth1_model}",
            f"input={inputs}",
            f"output={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'log'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    report = result.stdout + result.stderr
    assert "1 files forecast" in report and "3 failed" in report
    assert "bad_value.csv" in report and "'OT'" in report and "data row 151" in report
    assert "renamed.csv" in report and "column 'OT' not found" in report
    assert "short.csv" in report and "needs the last 96" in report
    assert sorted(os.listdir(tmp_path / "out")) == ["good.forecast.csv"]  # no partial files


def test_up_to_date_files_are_skipped_unless_overwrite(etth1_model, shared_data, tmp_path):
    source = tmp_path / "etth1.csv"
    pd.read_csv(shared_data / "ETTh1.csv").iloc[-200:].to_csv(source, index=False)
    assert quiet(etth1_model).run(source, tmp_path / "out").files == 1
    again = quiet(etth1_model).run(source, tmp_path / "out")
    assert (again.files, again.skipped) == (0, 1)
    assert quiet(etth1_model, overwrite=True).run(source, tmp_path / "out").files == 1
    later = time.time() + 5
    os.utime(source, (later, later))  # the input changed after its forecast
    assert quiet(etth1_model).run(source, tmp_path / "out").files == 1


def test_backtest_lines_up_forecasts_with_the_truth(etth1_model, shared_data, tmp_path):
    source = tmp_path / "tail.csv"
    data = pd.read_csv(shared_data / "ETTh1.csv").iloc[-300:]
    data.to_csv(source, index=False)
    quiet(etth1_model, backtest=True, n_windows=2).run(source, tmp_path)
    bt = pd.read_csv(tmp_path / "tail.backtest.csv", parse_dates=["origin", "ds"])
    assert len(bt) == 2 * 24 * 7
    assert bt["origin"].nunique() == 2
    truth = data.assign(date=pd.to_datetime(data["date"])).set_index("date")
    ot = bt[bt["unique_id"] == "OT"]
    np.testing.assert_allclose(ot["y"], truth.loc[ot["ds"], "OT"], rtol=1e-6)
    np.testing.assert_allclose(bt["error"], bt["y_hat"] - bt["y"], rtol=1e-6, atol=1e-6)
    assert ot["origin"].max() == truth.index[-24]


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(KeyboardInterrupt):
        P.write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.forecast.csv", "csv")
    assert os.listdir(tmp_path) == []
