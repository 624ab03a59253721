"""Batch forecasting from exported models: shapes, timestamps, units, bad files, atomicity."""

import json
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from forecast import predict as P
from forecast.config import CONF_DIR
from forecast.data.errors import DataError
from forecast.data.io import Frame
from forecast.metrics import smape
from tests.conftest import run_entry, train_here

pytestmark = pytest.mark.slow

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "model.hidden_size=16"]


def train(run_dir, *overrides):
    train_here(run_dir, *TINY, *overrides)  # train.py's config and training, in this process
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


def test_wide_quantile_forecast_continues_the_timestamps(etth1_model, etth1_csv, tmp_path):
    summary = quiet(etth1_model, format="parquet").run(etth1_csv, tmp_path)
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


def test_engines_agree(etth1_model, etth1_csv, tmp_path):
    quiet(etth1_model).run(etth1_csv, tmp_path / "ts")
    quiet(etth1_model, engine="onnx").run(etth1_csv, tmp_path / "onnx")
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


def test_bad_files_are_reported_and_the_others_forecast(etth1_model, etth1_csv, tmp_path):
    good = pd.read_csv(etth1_csv).iloc[:300]
    inputs = tmp_path / "in"
    inputs.mkdir()
    good.to_csv(inputs / "good.csv", index=False)
    bad = good.astype({"OT": object})
    bad.loc[150, "OT"] = "n/a?"
    bad.to_csv(inputs / "bad_value.csv", index=False)
    good.rename(columns={"OT": "oil"}).to_csv(inputs / "renamed.csv", index=False)
    good.iloc[:50].to_csv(inputs / "short.csv", index=False)
    result = run_entry(
        "predict.py",
        f"model_dir={etth1_model}",
        f"input={inputs}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'log'}",
    )
    assert result.returncode == 1
    report = result.stdout + result.stderr
    assert "1 file forecast" in report and "3 failed" in report
    assert "bad_value.csv" in report and "'OT'" in report and "data row 151" in report
    assert "renamed.csv" in report and "column 'OT' not found" in report
    assert "short.csv" in report and "needs the last 96" in report
    # no partial files: the good file's forecast and its record only
    assert sorted(os.listdir(tmp_path / "out")) == ["good.forecast.csv", "good.forecast.csv.json"]


def predict(*args, timeout=300):
    """predict.py in its own process (conftest.run_entry): (exit status, stdout + stderr)."""
    result = run_entry("predict.py", *args, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def etth1_tail(etth1_csv, path, rows=200):
    data = pd.read_csv(etth1_csv).iloc[-rows:]
    data.to_csv(path, index=False)
    return data


def test_up_to_date_files_are_skipped_unless_overwrite(etth1_model, etth1_csv, tmp_path):
    source = tmp_path / "etth1.csv"
    etth1_tail(etth1_csv, source)
    assert quiet(etth1_model).run(source, tmp_path / "out").files == 1
    record = json.loads((tmp_path / "out" / "etth1.forecast.csv.json").read_text())
    assert record["input"]["path"] == str(source.resolve())
    assert list(record["outputs"]) == ["etth1.forecast.csv"]
    again = quiet(etth1_model).run(source, tmp_path / "out")
    assert (again.files, again.skipped) == (0, 1)
    assert quiet(etth1_model, overwrite=True).run(source, tmp_path / "out").files == 1
    later = time.time() + 5
    os.utime(source, (later, later))  # touched, the same content: still up to date
    assert quiet(etth1_model).run(source, tmp_path / "out").skipped == 1
    (tmp_path / "out" / "etth1.forecast.csv").unlink()  # a lost forecast is made again
    assert quiet(etth1_model).run(source, tmp_path / "out").files == 1


def test_an_input_replaced_by_an_older_copy_is_forecast_again(etth1_model, etth1_csv, tmp_path):
    """`cp -p` keeps the copy's old time: the forecast is newer, yet made from other data."""
    source, other = tmp_path / "etth1.csv", tmp_path / "archive" / "etth1.csv"
    etth1_tail(etth1_csv, source)
    other.parent.mkdir()
    data = pd.read_csv(source)
    data["OT"] = data["OT"] * 2
    data.to_csv(other, index=False)
    os.utime(other, (time.time() - 86400, time.time() - 86400))
    first = quiet(etth1_model).run(source, tmp_path / "out")
    before = pd.read_csv(tmp_path / "out" / "etth1.forecast.csv")
    shutil.copy2(other, source)  # cp -p
    assert source.stat().st_mtime < (tmp_path / "out" / "etth1.forecast.csv").stat().st_mtime
    again = quiet(etth1_model).run(source, tmp_path / "out")
    assert (first.files, again.files, again.skipped) == (1, 1, 0)
    after = pd.read_csv(tmp_path / "out" / "etth1.forecast.csv")
    assert not np.allclose(before["y_hat"], after["y_hat"])


def test_a_forecast_by_another_model_is_made_again(etth1_model, etth1_csv, tmp_path):
    """Retrained in place (another horizon) or another run directory: not up to date."""
    source = tmp_path / "etth1.csv"
    etth1_tail(etth1_csv, source)
    run = tmp_path / "run"
    shutil.copytree(etth1_model / "export", run / "export")
    out = tmp_path / "out"
    assert quiet(run).run(source, out).files == 1
    assert quiet(run).run(source, out).skipped == 1  # the same model and input
    other = train(tmp_path / "other", "data.horizon=12")
    redone = quiet(other).run(source, out)  # another model directory
    assert (redone.files, redone.skipped) == (1, 0)
    assert pd.read_csv(out / "etth1.forecast.csv")["step"].max() == 12
    assert quiet(run).run(source, out).files == 1  # back to the first model: redone
    assert pd.read_csv(out / "etth1.forecast.csv")["step"].max() == 24
    shutil.rmtree(run / "export")
    shutil.copytree(other / "export", run / "export")  # retrained into the same run directory
    redone = quiet(run).run(source, out)
    assert (redone.files, redone.skipped) == (1, 0)
    assert pd.read_csv(out / "etth1.forecast.csv")["step"].max() == 12
    assert quiet(run, engine="onnx").run(source, out).files == 1  # another engine


def test_a_forecast_read_with_other_options_is_made_again(etth1_model, etth1_csv, tmp_path):
    source, out = tmp_path / "etth1.csv", tmp_path / "out"
    etth1_tail(etth1_csv, source)
    assert quiet(etth1_model).run(source, out).files == 1
    assert quiet(etth1_model, data_options={"fill": "error"}).run(source, out).skipped == 1
    assert quiet(etth1_model, data_options={"fill": "ffill"}).run(source, out).files == 1
    assert quiet(etth1_model, data_options={"fill": "ffill"}).run(source, out).skipped == 1
    assert quiet(etth1_model).run(source, out).files == 1
    with_backtest = quiet(etth1_model, backtest=True, n_windows=2).run(source, out)
    assert with_backtest.files == 1 and (out / "etth1.backtest.csv").is_file()
    assert quiet(etth1_model, backtest=True, n_windows=2).run(source, out).skipped == 1
    assert quiet(etth1_model).run(source, out).skipped == 1  # a backtest was not asked for
    assert quiet(etth1_model, backtest=True, n_windows=3).run(source, out).files == 1


def test_inputs_that_would_write_the_same_forecast_are_refused(etth1_model, tmp_path):
    for name in ("a/data.csv", "b/data.csv", "a/data.parquet", "a/other.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("date,OT\n")
    with pytest.raises(P.PredictError) as refused:
        quiet(etth1_model).run(str(tmp_path / "**" / "*.*"), tmp_path / "out")
    message = str(refused.value)
    assert "data.forecast.csv" in message and "other" not in message
    for name in ("a/data.csv", "b/data.csv", "a/data.parquet"):
        assert str(tmp_path / name) in message
    assert "separate output folders" in message
    assert not (tmp_path / "out").exists()  # nothing was forecast
    # a forecast that would overwrite an input
    (tmp_path / "c").mkdir()
    for name in ("other.csv", "other.forecast.csv"):
        (tmp_path / "c" / name).write_text("date,OT\n")
    with pytest.raises(P.PredictError, match="would overwrite the input"):
        quiet(etth1_model).run(tmp_path / "c", tmp_path / "c")
    assert sorted(os.listdir(tmp_path / "c")) == ["other.csv", "other.forecast.csv"]
    code, report = predict(
        f"model_dir={etth1_model}",
        f"input={tmp_path}/**/*.*",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'log'}",
    )
    assert code == 2
    assert "Traceback" not in report and report.count("\n") == 1
    assert str(tmp_path / "b" / "data.csv") in report


def test_an_output_that_is_a_file_is_refused(etth1_model, etth1_csv, tmp_path):
    source, out = tmp_path / "etth1.csv", tmp_path / "forecasts"
    etth1_tail(etth1_csv, source)
    out.write_text("keep me")
    with pytest.raises(P.PredictError, match=f"output={out} is a file, not a folder"):
        quiet(etth1_model).run(source, out)
    assert out.read_text() == "keep me"


def test_reading_options_are_set_on_the_command_line(etth1_model, etth1_csv, tmp_path):
    source = tmp_path / "gappy.csv"
    data = etth1_tail(etth1_csv, source)
    data.loc[data.index[150], "OT"] = np.nan
    data.to_csv(source, index=False)
    common = [
        f"model_dir={etth1_model}",
        f"input={source}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'log'}",
    ]
    code, report = predict(*common)
    assert code == 1 and "gappy.csv" in report and "'OT'" in report
    code, report = predict(*common, "data.fill=ffill")
    assert code == 0, report
    out = pd.read_csv(tmp_path / "out" / "gappy.forecast.csv")
    assert len(out) == 24 * 7 and out["y_hat"].notna().all()
    code, report = predict(*common, "data.fil=ffill")  # a typo is not silently ignored
    assert code != 0 and "fil" in report


def test_the_config_lists_every_reading_option():
    from omegaconf import OmegaConf

    data = OmegaConf.load(CONF_DIR / "predict.yaml").data
    assert sorted(data) == sorted(P.READ_KEYS)
    assert all(value is None for value in data.values())


def test_unknown_reading_options_are_refused(etth1_model):
    with pytest.raises(P.PredictError, match="data.lookback is not a reading option"):
        quiet(etth1_model, data_options={"lookback": 48, "fill": None})


def test_a_file_at_another_frequency_is_refused(etth1_model, etth1_csv, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    data = etth1_tail(etth1_csv, inputs / "hourly.csv")
    daily = data.assign(date=pd.date_range("2020-01-01", periods=len(data), freq="D"))
    daily.to_csv(inputs / "daily.csv", index=False)
    summary = quiet(etth1_model).run(inputs, tmp_path / "out")
    assert summary.files == 1 and list(summary.failed) == [str(inputs / "daily.csv")]
    message = summary.failed[str(inputs / "daily.csv")]
    assert "by 24h" in message and "every 1h" in message and "resample" in message
    assert sorted(os.listdir(tmp_path / "out")) == [
        "hourly.forecast.csv",
        "hourly.forecast.csv.json",
    ]
    # an export from before the frequency was recorded: not checked
    old = tmp_path / "old"
    shutil.copytree(etth1_model / "export", old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["frequency"]
    (old / "meta.json").write_text(json.dumps(meta))
    assert quiet(old).run(inputs / "daily.csv", tmp_path / "old_out").files == 1


def frame(times, offsets):
    times = np.asarray(times)
    values = np.zeros((len(times), 1), dtype=np.float32)
    ids = tuple(f"s{i}" for i in range(len(offsets) - 1))
    empty = np.zeros((len(times), 0), dtype=np.float32)
    return Frame("x.csv", ids, np.asarray(offsets), times, values, ("y",), empty)


def test_check_frequency_compares_steps_not_strings():
    hourly = pd.date_range("2020-01-01", periods=4, freq="60min").to_numpy()
    P.check_frequency(frame(hourly, [0, 4]), "h")
    P.check_frequency(frame(hourly, [0, 4]), "60min")
    with pytest.raises(DataError, match="the series steps by 1h.*every 15min"):
        P.check_frequency(frame(hourly, [0, 4]), "15min")
    steps = np.array([0, 2, 4, 0, 1, 2], dtype=np.int64)  # s0 steps by 2, s1 by 1
    P.check_frequency(frame(steps[:3], [0, 3]), 2)
    with pytest.raises(DataError, match="series 's1' steps by 1 .*every 2 "):
        P.check_frequency(frame(steps, [0, 3, 6]), 2)
    P.check_frequency(frame(steps, [0, 3, 6]), None)  # old exports: no frequency, no check
    P.check_frequency(frame(steps[:3], [0, 3]), "h")  # integer time has no unit to compare


def test_backtest_lines_up_forecasts_with_the_truth(etth1_model, etth1_csv, tmp_path):
    source = tmp_path / "tail.csv"
    data = pd.read_csv(etth1_csv).iloc[-300:]
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


def test_a_file_too_short_for_its_backtest_fails_once_and_writes_nothing(
    etth1_model, etth1_csv, tmp_path
):
    """backtest=true n_windows=3 needs lookback + 3 horizons: a file with fewer rows is one
    failure, reported once on stderr (its name once), and none of its outputs is written."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    etth1_tail(etth1_csv, inputs / "long.csv", rows=24 * 4 + 96)
    etth1_tail(etth1_csv, inputs / "short.csv", rows=24 * 2 + 96)
    result = run_entry(
        "predict.py",
        *[f"model_dir={etth1_model}", f"input={inputs}", f"output={tmp_path / 'out'}"],
        *["backtest=true", "n_windows=3", f"hydra.run.dir={tmp_path / 'log'}"],
    )
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failures) == 1 and failures[0].count("short.csv") == 1, result.stderr
    assert "3 backtest windows need lookback + horizon + 2 x horizon = 168" in failures[0]
    assert "FAILED" not in result.stdout
    assert "1 file forecast, 0 up to date, 1 failed" in result.stdout
    assert "backtest long.csv: 3 windows" in result.stdout
    assert not [p for p in os.listdir(tmp_path / "out") if p.startswith("short")]


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(KeyboardInterrupt):
        P.write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.forecast.csv", "csv")
    assert os.listdir(tmp_path) == []


def test_zoned_input_is_forecast_in_labelled_utc(etth1_model, etth1_csv, tmp_path):
    """Times with an offset are read as UTC instants; the forecasts say +00:00 rather than
    passing UTC off as the file's local time (a naive label an hour behind here)."""
    rows = pd.read_csv(etth1_csv).tail(200)
    local = pd.DatetimeIndex(rows["date"]).tz_localize("Etc/GMT-1")  # UTC+01:00, no DST
    rows["date"] = local.astype(str)
    assert rows["date"].iloc[-1].endswith("+01:00")
    (tmp_path / "in").mkdir()
    rows.to_csv(tmp_path / "in" / "zoned.csv", index=False)
    quiet(etth1_model, backtest=True, n_windows=2).run(tmp_path / "in", tmp_path / "out")
    out = pd.read_csv(tmp_path / "out" / "zoned.forecast.csv")
    ds = pd.to_datetime(out[out["unique_id"] == "OT"]["ds"])
    assert str(ds.dt.tz) == "UTC" and out["ds"].iloc[0].endswith("+00:00")
    first = local[-1].tz_convert("UTC") + pd.Timedelta(hours=1)
    assert ds.iloc[0] == first and len(ds) == 24
    back = pd.read_csv(tmp_path / "out" / "zoned.backtest.csv")
    assert back["ds"].str.endswith("+00:00").all() and back["origin"].str.endswith("+00:00").all()


def test_short_series_are_left_out_by_name_only_when_asked(m4_model, shared_data, tmp_path):
    """One 20-value series among long ones fails the whole file, unless data.short=skip: then
    the others are forecast and the short one is named in the log and counted."""
    rows = pd.read_csv(shared_data / "M4-Hourly-train.csv", index_col=0).iloc[:3]
    tiny = pd.DataFrame(
        [[float(v) for v in range(1, 21)]], index=["tiny"], columns=rows.columns[:20]
    )
    pd.concat([rows, tiny]).to_csv(tmp_path / "four.csv")
    summary = quiet(m4_model).run(tmp_path / "four.csv", tmp_path / "strict")
    assert (
        summary.files == 0
        and "series 'tiny' has 20 rows" in summary.failed[str(tmp_path / "four.csv")]
    )
    assert "data.short=skip" in summary.failed[str(tmp_path / "four.csv")]
    said = []
    skipping = P.BatchForecaster(m4_model, data_options={"short": "skip"}, log=said.append)
    summary = skipping.run(tmp_path / "four.csv", tmp_path / "out")
    assert (summary.files, summary.series, summary.short) == (1, 3, 1)
    out = pd.read_csv(tmp_path / "out" / "four.forecast.csv")
    assert sorted(out["unique_id"].unique()) == sorted(rows.index)
    assert any("1 series shorter than the look-back" in s and "tiny" in s for s in said), said
    assert "1 too short and left out" in str(summary)


def test_monthly_data_trains_and_forecasts_the_next_month_starts(tmp_path):
    """A calendar frequency end to end: train.py on month-start data records 'MS', and
    predict.py continues each series by calendar months (not by 31-day steps)."""
    dates = pd.date_range("2005-01-01", periods=240, freq="MS")
    season = np.sin(2 * np.pi * np.arange(240) / 12)
    data = pd.DataFrame({"month": dates.strftime("%Y-%m-%d"), "sales": 100 + 10 * season})
    data.to_csv(tmp_path / "sales.csv", index=False)
    run = train(
        tmp_path / "run",
        "data=csv",
        f"data.path={tmp_path / 'sales.csv'}",
        "data.time_col=month",
        "data.lookback=24",
        "data.horizon=6",
        "model.segment_len=6",
        "data.batch_size=16",
    )
    meta = json.loads((run / "export" / "meta.json").read_text())
    assert meta["frequency"] == "MS"
    assert meta["season"] == 12  # MASE's scale: a year of months, not 24 steps
    (tmp_path / "in").mkdir()
    data.iloc[:-5].to_csv(tmp_path / "in" / "sales.csv", index=False)  # ends 2024-07-01
    quiet(run).run(tmp_path / "in", tmp_path / "out")
    out = pd.read_csv(tmp_path / "out" / "sales.forecast.csv")
    want = pd.date_range("2024-08-01", periods=6, freq="MS")
    assert pd.DatetimeIndex(out["ds"]).equals(want), out["ds"].tolist()
    # an hourly file is not forecast by a monthly model
    hourly = data.assign(month=pd.date_range("2024-01-01", periods=240, freq="h").astype(str))
    hourly.to_csv(tmp_path / "in" / "sales.csv", index=False)
    summary = quiet(run, overwrite=True).run(tmp_path / "in", tmp_path / "out")
    assert "trained on data at 'MS'" in summary.failed[str(tmp_path / "in" / "sales.csv")]


def test_daily_files_pass_a_daily_models_check(tmp_path):
    """meta.json says "D" for daily data; pandas 3's Day is a calendar offset, not a Tick, and
    must still count as the fixed one-day step a regular daily file has."""
    from forecast.data.io import read_wide

    dates = pd.date_range("2021-01-01", periods=40, freq="D").strftime("%Y-%m-%d")
    pd.DataFrame({"date": dates, "y": np.arange(40.0)}).to_csv(tmp_path / "d.csv", index=False)
    frame = read_wide(tmp_path / "d.csv")
    assert frame.calendar is None
    P.check_frequency(frame, "D")
    P.check_frequency(frame, "24h")
    with pytest.raises(DataError, match="trained on data every 1h"):
        P.check_frequency(frame, "h")
    gap = pd.DataFrame({"date": dates.delete(7), "y": np.arange(39.0)})
    gap.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.warns(UserWarning, match="1 missing timestamps"):
        filled = read_wide(tmp_path / "gap.csv", fill="ffill")
    assert filled.calendar is None and len(filled.times) == 40
    P.check_frequency(filled, "D")
