"""The Python API: fit on a DataFrame or file, predict to a DataFrame, cross-validate, save, load.

Checked against the command line: the API's metrics equal train.py's for the same seed and
overrides, and its forecasts equal what predict.py writes for the same input and export.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import forecast
from forecast.config import data_defaults, model_defaults
from forecast.data import DataError
from tests import conftest
from tests.conftest import PT2_ONLY

pytestmark = pytest.mark.slow

TINY = ["trainer.limit_train_batches=4", "model.hidden_size=16", "data.batch_size=16", PT2_ONLY]
SCORES = ("val_mse", "val_mae", "test_mse", "test_mae", "test_mase_original", "test_windows")


def seasonal_frame(n_series=3, length=400, seed=0, shorter=40) -> pd.DataFrame:
    """Long-format hourly series of different levels and lengths (each `shorter` rows shorter
    than the one before): unique_id, ds, y."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(n_series):
        n = length - shorter * s
        t = np.arange(n)
        y = 10 * (s + 1) + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, n)
        ds = pd.date_range("2021-01-01", periods=n, freq="h")
        parts.append(pd.DataFrame({"unique_id": f"s{s}", "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


def wide_frame() -> pd.DataFrame:
    """Two series side by side: a time column `ds` and one column per series."""
    long = seasonal_frame(n_series=2, length=360, shorter=0)
    return long.pivot(index="ds", columns="unique_id", values="y").reset_index()


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "long"
    return forecast.fit(
        seasonal_frame(),
        lookback=48,
        horizon=24,
        max_epochs=1,
        overrides=TINY,
        output_dir=out,
        progress=False,
    )


def test_fit_on_a_long_frame_writes_a_run_and_forecasts_every_series(long_run):
    df = seasonal_frame()
    assert long_run.metrics["test_windows"] > 0 and np.isfinite(long_run.metrics["test_mse"])
    assert long_run.config.data.layout == "long"  # a unique_id, ds frame is read as long
    assert (long_run.path / "config.yaml").is_file() and (long_run.path / "export").is_dir()
    future = long_run.predict(df)
    assert list(future.columns) == ["unique_id", "ds", "step", "y_hat"]
    assert sorted(future["unique_id"].unique()) == ["s0", "s1", "s2"]
    for name, part in future.groupby("unique_id"):
        last = df.loc[df["unique_id"] == name, "ds"].max()
        expected = pd.date_range(last, periods=25, freq="h")[1:]
        assert list(part["ds"]) == list(expected)
        assert list(part["step"]) == list(range(1, 25))
    # the level of each series comes through (original units, not the scaled ones)
    means = future.groupby("unique_id")["y_hat"].mean()
    assert means["s0"] < means["s1"] < means["s2"]


def test_api_forecasts_equal_what_predict_py_writes(long_run, tmp_path):
    df = seasonal_frame(seed=1)
    path = tmp_path / "incoming.csv"
    df.to_csv(path, index=False)
    conftest.run_script(
        "predict.py", f"model_dir={long_run.path}", f"input={path}", f"output={tmp_path / 'out'}"
    )
    written = (tmp_path / "out" / "incoming.forecast.csv").read_text()
    assert long_run.predict(df).to_csv(index=False) == written  # from the DataFrame
    assert long_run.predict(path).to_csv(index=False) == written  # from the file


def test_cross_validation_follows_neuralforecast_and_agrees_with_the_backtest(long_run):
    df = seasonal_frame()
    cv = long_run.cross_validation(df, n_windows=2)
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "y_hat"]
    assert len(cv) == 3 * 2 * 24  # series x windows x horizon
    truth = df.set_index(["unique_id", "ds"])["y"]
    keys = list(zip(cv["unique_id"], cv["ds"], strict=True))
    np.testing.assert_allclose(cv["y"], truth.loc[keys], rtol=1e-6)
    for name, part in cv.groupby("unique_id"):
        cutoffs = sorted(part["cutoff"].unique())
        last = df.loc[df["unique_id"] == name, "ds"].max()
        # the last window ends at the series' end; windows a horizon apart by default
        assert part["ds"].max() == last
        assert cutoffs[1] - cutoffs[0] == pd.Timedelta(hours=24)
        assert (part["ds"] > part["cutoff"]).all()
    backtest = long_run.predict(df, backtest=True, n_windows=2)
    np.testing.assert_array_equal(cv["y_hat"].to_numpy(), backtest["y_hat"].to_numpy())
    np.testing.assert_array_equal(cv["ds"].to_numpy(), backtest["ds"].to_numpy())
    stepped = long_run.cross_validation(df, n_windows=3, step=1)
    gaps = stepped.groupby("unique_id")["cutoff"].unique().map(lambda c: np.diff(np.sort(c)))
    assert all((g == pd.Timedelta(hours=1)).all() for g in gaps)


def test_save_and_load_give_the_same_forecasts(long_run, tmp_path):
    df = seasonal_frame()
    saved = long_run.save(tmp_path / "kept")
    assert forecast.load(tmp_path / "kept").predict(df).equals(long_run.predict(df))
    assert forecast.load(tmp_path / "kept" / "export").path == saved.path
    assert saved.metrics == long_run.metrics
    with pytest.raises(FileExistsError):
        long_run.save(tmp_path / "kept")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # no staging folder left
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        forecast.load(tmp_path)


def test_loading_and_forecasting_need_no_lightning(long_run, tmp_path):
    path = tmp_path / "in.csv"
    seasonal_frame().to_csv(path, index=False)
    code = (
        "import sys, forecast\n"
        "LIGHTNING = ('pytorch_lightning', 'lightning', 'lightning_fabric', 'torchmetrics')\n"
        f"run = forecast.load({str(long_run.path)!r})\n"
        f"assert len(run.predict({str(path)!r})) == 72\n"
        f"assert len(run.cross_validation({str(path)!r}, n_windows=1)) == 72\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in LIGHTNING))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip() == "[]"


def test_api_metrics_equal_train_py_metrics(tmp_path):
    """One config and seed, three ways in: train.py on the file, fit() on the file, fit() on the
    same data as a DataFrame."""
    df = wide_frame()
    path = tmp_path / "wide.csv"
    df.to_csv(path, index=False)
    overrides = [*TINY, "seed=5", "trainer.max_epochs=2"]
    cli = conftest.run_train(
        tmp_path / "cli",
        "model=gru",
        "data=csv",
        f"data.path={path}",
        "data.lookback=48",
        "data.horizon=24",
        *overrides,
    )
    common = dict(model="gru", lookback=48, horizon=24, overrides=overrides, progress=False)
    from_file = forecast.fit(path, output_dir=tmp_path / "file", **common).metrics
    from_frame = forecast.fit(df, output_dir=tmp_path / "frame", **common).metrics
    assert {k: cli[k] for k in SCORES} == {k: from_file[k] for k in SCORES}
    assert {k: cli[k] for k in SCORES} == {k: from_frame[k] for k in SCORES}


def test_wide_frames_with_a_time_index_and_quantiles(tmp_path):
    df = wide_frame().set_index("ds")
    run = forecast.fit(
        df,
        lookback=48,
        horizon=12,
        max_epochs=1,
        loss="quantile",
        overrides=TINY,
        output_dir=tmp_path / "q",
        progress=False,
    )
    future = run.predict(df)
    assert list(future.columns) == [
        "unique_id",
        "ds",
        "step",
        "y_hat",
        "y_hat_q10",
        "y_hat_q50",
    ] + ["y_hat_q90"]
    assert sorted(future["unique_id"].unique()) == ["s0", "s1"]
    assert (future["y_hat_q10"] <= future["y_hat_q90"]).all()
    np.testing.assert_array_equal(future["y_hat"], future["y_hat_q50"])


def test_trainer_predict_gives_the_exports_forecast(long_run):
    """predict_step: Trainer.predict(model, datamodule) forecasts each series from its last
    rows, in original units, as the export does."""
    import pytorch_lightning as pl

    from forecast.data import SeriesDataModule

    model = long_run.module()
    dm = SeriesDataModule(seasonal_frame(), layout="long", lookback=48, horizon=24)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    (batch,) = trainer.predict(model, datamodule=dm)
    y_hat = batch["y_hat"][..., 0, 0]  # [series, horizon]
    future = long_run.predict(seasonal_frame())
    expected = future.pivot(index="unique_id", columns="step", values="y_hat")
    ids = [dm.series_ids[s] for s in batch["series"]]
    torch.testing.assert_close(
        y_hat, torch.tensor(expected.loc[ids].to_numpy(), dtype=torch.float32), rtol=1e-5, atol=1e-4
    )


def test_unknown_options_and_bad_frames_are_refused_clearly(tmp_path):
    with pytest.raises(TypeError, match="unknown options \\['epochs'\\].*overrides"):
        forecast.fit(seasonal_frame(), epochs=3)
    bad = seasonal_frame().astype({"y": object})
    bad.loc[7, "y"] = "n/a"
    with pytest.raises(DataError, match=r"DataFrame: column 'y', row df.iloc\[7\]: value 'n/a'"):
        forecast.fit(bad, output_dir=tmp_path / "bad", progress=False)


def test_one_source_of_defaults_for_the_classes_and_the_configs():
    """The composed configs hold exactly the classes' defaults: model=lstm and data=csv restate
    none of them, so the two cannot disagree."""
    from forecast.config import compose_train_config

    cfg = compose_train_config(["data=csv", "data.path=x.csv"])
    for key, value in model_defaults().items():
        # the config names Adam's class; the class's None is Adam
        if key != "optimizer":
            assert cfg.model[key] == value, key
    for key, value in data_defaults().items():
        if key != "path":
            assert cfg.data[key] == value, key
    assert cfg.model.optimizer.lr == 1e-3 and cfg.model.optimizer._target_ == "torch.optim.Adam"


def test_the_quickstart_example_runs(tmp_path):
    result = conftest.run_script("examples/quickstart.py", "--quick", "--out", str(tmp_path))
    assert "test MSE" in result.stdout and "cross-validation MAE" in result.stdout
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1
