"""End-to-end: run train.py as a user would, with a small budget, and check what it writes."""

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from forecast.config import CONF_DIR
from forecast.export import ExportedModel
from tests import conftest

pytestmark = pytest.mark.slow

SMALL = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "model.hidden_size=16",
    "data.batch_size=16",
]


# for the runs whose export no test looks at (the export takes a third of a small run)
NO_EXPORT = "export_formats=[]"


def run_train(run_dir, *overrides: str) -> dict:
    """train.py itself, in a process of its own (conftest.run_entry): what a user runs."""
    return conftest.run_train(run_dir, *SMALL, *overrides)


def train_here(run_dir, *overrides: str) -> dict:
    """The same config and training, in this process (conftest.train_here): for what a run
    computes and writes, not what the command adds."""
    return conftest.train_here(run_dir, *SMALL, *overrides)


@pytest.mark.parametrize(
    ("model", "impl"),
    [("lstm", "torch"), ("lstmp", "torch"), ("gru", "torch"), ("lstmp", "custom")],
)
def test_each_model_trains_tests_and_writes_its_artefacts(tmp_path, model, impl):
    run_dir = tmp_path / model
    extra = ["model.proj_size=8"] if model == "lstmp" else []
    metrics = run_train(run_dir, f"model={model}", f"model.impl={impl}", *extra)
    for scale in ("", "_original"):
        for name in ("mse", "mae", "rmse", "mape", "smape", "mase"):
            for split in ("val", "test"):
                assert math.isfinite(metrics[f"{split}_{name}{scale}"]), (split, name, scale)
    assert metrics["test_windows"] == 2785  # ETTh1 protocol, lookback 96, horizon 96
    for split in ("val", "test"):  # the naive forecasts on the same windows, and the skill
        naive = min(metrics[f"{split}_mse_naive_last"], metrics[f"{split}_mse_naive_seasonal"])
        assert metrics[f"{split}_skill"] == pytest.approx(1 - metrics[f"{split}_mse"] / naive)
    assert metrics["best_checkpoint"].startswith("checkpoints/")
    best = run_dir / metrics["best_checkpoint"]
    torch.load(best, weights_only=True)  # no arbitrary pickles
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["cell"] == model
    assert config["data"]["lookback"] == 96
    assert isinstance(config["model"]["proj_size"], int)  # resolved, not an interpolation
    with open(run_dir / "metrics_per_step.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 97))
    per_step_mse = np.array([float(r["test_mse"]) for r in rows])
    assert per_step_mse.mean() == pytest.approx(metrics["test_mse"], rel=1e-4)
    assert (run_dir / "forecast.png").stat().st_size > 10_000

    exported = ExportedModel(run_dir, "onnx")
    assert exported.meta["channels"] == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    raw = np.random.default_rng(0).normal(10, 3, (2, 96, 7)).astype("float32")
    pt2 = ExportedModel(run_dir, "pt2").predict(raw)
    np.testing.assert_allclose(exported.predict(raw), pt2, rtol=1e-5, atol=1e-5)


def test_a_run_without_validation_or_test_batches_still_writes_and_exports(tmp_path):
    # Lightning's own switches to skip evaluation: the run trains, says what it skipped, and
    # ships the last weights (without validation nothing can pick a best epoch)
    run_dir = tmp_path / "skip"
    metrics = train_here(
        run_dir,
        "trainer.limit_val_batches=0",
        "trainer.limit_test_batches=0",
        "callbacks.early_stopping=null",
        conftest.PT2_ONLY,
    )
    assert not [
        k for k in metrics if k.startswith(("val_", "test_")) and k.endswith(("mse", "mae"))
    ]
    assert metrics["best_checkpoint"] is None and metrics["epochs"] == 1
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    raw = np.random.default_rng(0).normal(10, 3, (2, 96, 7)).astype("float32")
    assert np.isfinite(ExportedModel(run_dir).predict(raw)).all()


def test_same_seed_gives_same_metrics_and_overrides_apply(tmp_path):
    overrides = ["data.lookback=48", "data.horizon=24", NO_EXPORT, "seed=7"]
    first = run_train(tmp_path / "a", *overrides)  # train.py, and in this process twice:
    second = train_here(tmp_path / "b", *overrides)  # nothing carries over between runs
    other_seed = train_here(tmp_path / "c", *overrides[:3], "seed=8")
    assert not (tmp_path / "a" / "export").exists()  # export_formats=[]: nothing exported
    keys = ("val_mse", "val_mae", "test_mse", "test_mae")
    assert {k: first[k] for k in keys} == {k: second[k] for k in keys}
    assert first["test_mse"] != other_seed["test_mse"]
    assert first["test_windows"] == (14400 - 11520 + 48) - 48 - 24 + 1


def test_data_path_override_reads_another_file(tmp_path, etth1_csv):
    metrics = train_here(tmp_path / "p", f"data.path={etth1_csv}", "data.horizon=24", NO_EXPORT)
    assert metrics["test_windows"] == (14400 - 11520 + 96) - 96 - 24 + 1


@pytest.mark.parametrize(
    "schedule",
    # the schedule's state resumes with the weights; the cosine's length is the whole run's
    # (T_max is trainer.max_epochs, which the interrupted part below lowers)
    [["schedule=none"], ["schedule=cosine", "model.scheduler.T_max=3"]],
    ids=["none", "cosine"],
)
def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, schedule):
    common = [
        "trainer.limit_train_batches=3",
        "model.head_dropout=0.3",
        "callbacks.early_stopping=null",
        *schedule,
        NO_EXPORT,
    ]
    whole = train_here(tmp_path / "whole", *common, "trainer.max_epochs=3")
    train_here(tmp_path / "part", *common, "trainer.max_epochs=1")
    resumed = train_here(
        tmp_path / "resumed",
        *common,
        "trainer.max_epochs=3",
        f"ckpt_path={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}",
    )
    assert resumed["epochs"] == whole["epochs"] == 3
    for key in ("val_mse", "test_mse", "test_mae"):
        assert resumed[key] == whole[key], key


def test_learning_rate_schedules_move_the_learning_rate_as_documented(tmp_path):
    """schedule=cosine ends trainer.max_epochs at eta_min; schedule=plateau halves the rate after
    an epoch without a better val_mse; schedule=none (the default) keeps model.optimizer's."""
    common = ["trainer.limit_train_batches=2", "callbacks.early_stopping=null", NO_EXPORT]

    def last(name: str, *overrides: str) -> dict:
        train_here(tmp_path / name, *common, *overrides)
        path = tmp_path / name / "checkpoints" / "last.ckpt"
        return torch.load(path, weights_only=True, map_location="cpu")

    lr = lambda ckpt: ckpt["optimizer_states"][0]["param_groups"][0]["lr"]  # noqa: E731
    default = last("none", "trainer.max_epochs=2")
    assert default["lr_schedulers"] == [] and lr(default) == 1e-3
    cosine = last("cosine", "schedule=cosine", "trainer.max_epochs=3")
    assert cosine["lr_schedulers"][0]["T_max"] == 3
    assert lr(cosine) == pytest.approx(1e-5)  # the end of the half cosine, after 3 epochs
    # at a learning rate of 1e-6 val_mse cannot improve by plateau's 1e-4 (relative) after the
    # first epoch: the third is the second bad one (> patience 1), whose step halves the rate
    plateau = last("plateau", "schedule=plateau", "model.optimizer.lr=1e-6", "trainer.max_epochs=4")
    state = plateau["lr_schedulers"][0]
    assert (state["factor"], state["patience"]) == (0.5, 1)
    assert lr(plateau) == pytest.approx(0.5e-6)


@pytest.mark.parametrize(
    "model",
    [
        ["model=lstm"],
        ["model=lstmp", "model.proj_size=8", "model.impl=custom"],
        ["model=gru", "model.impl=custom"],
    ],
    ids=("lstm-torch", "lstmp-custom", "gru-custom"),
)
def test_bf16_mixed_precision_runs_on_cpu(tmp_path, model):
    metrics = train_here(tmp_path / "bf16", "trainer.precision=bf16-mixed", NO_EXPORT, *model)
    assert math.isfinite(metrics["test_mse"])
    assert (
        yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text())["trainer"]["precision"]
        == "bf16-mixed"
    )


def test_m4_hourly_with_a_scaler_per_series_trains_and_exports(tmp_path, shared_data):
    run_dir = tmp_path / "m4"
    env_overrides = [
        f"data.path={shared_data / 'M4-Hourly-train.csv'}",
        f"data.test_path={shared_data / 'M4-Hourly-test.csv'}",
    ]
    metrics = train_here(run_dir, "data=m4_hourly", *env_overrides, conftest.PT2_ONLY)
    assert metrics["test_windows"] == metrics["val_windows"] == 414
    assert math.isfinite(metrics["test_smape_original"])
    # MASE divides by the history's own scale: the same on either scale
    assert metrics["test_mase_original"] == pytest.approx(metrics["test_mase"], rel=1e-5)
    meta = json.loads((run_dir / "export" / "meta.json").read_text())
    assert meta["horizon"] == 48 and meta["frequency"] == 1
    assert meta["scaler"]["by"] == "series" and len(meta["scaler"]["ids"]) == 414


def test_independent_channels_train_and_export(tmp_path):
    run_dir = tmp_path / "independent"
    metrics = train_here(
        run_dir, "data.channel_mode=independent", "data.horizon=24", conftest.PT2_ONLY
    )
    assert metrics["test_windows"] == 7 * ((14400 - 11520 + 96) - 96 - 24 + 1)
    out = ExportedModel(run_dir).predict(np.zeros((1, 96, 7), "float32"))
    assert out.shape == (1, 24, 7)


def test_tensorboard_logger_writes_events(tmp_path):
    train_here(tmp_path / "tb", "logger=tensorboard", NO_EXPORT)
    assert list((tmp_path / "tb" / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.fixture
def restore_determinism():
    """pipeline.train's trainer turns torch's deterministic algorithms on for the process."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    fill = torch.utils.deterministic.fill_uninitialized_memory
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.utils.deterministic.fill_uninitialized_memory = fill


def test_deterministic_training_skips_only_the_nan_fill(tmp_path, restore_determinism):
    """trainer.deterministic=true: deterministic algorithms during the fit, without torch's NaN
    fill of every new tensor (5-6 ms of a 41 ms training step); the fill setting is restored."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from forecast.pipeline import train

    seen = []

    class Look(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            fill = torch.utils.deterministic.fill_uninitialized_memory
            seen.append((torch.are_deterministic_algorithms_enabled(), fill))

    torch.utils.deterministic.fill_uninitialized_memory = True
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*SMALL, NO_EXPORT, f"output_dir={tmp_path}"])
    assert cfg.trainer.deterministic
    train(cfg, callbacks=[Look()])
    assert seen == [(True, False)] * 4
    assert torch.utils.deterministic.fill_uninitialized_memory


def test_etth1_ms_the_loads_as_past_covariates_and_the_calendar(tmp_path):
    """The "MS" setting: target OT, the six loads as past covariates; calendar features as
    future ones. The export takes them as named inputs and forecasts as the model does."""
    run_dir = tmp_path / "ms"
    loads = "[HUFL,HULL,MUFL,MULL,LUFL,LULL]"
    metrics = train_here(
        run_dir,
        "data.target=[OT]",
        f"data.past_covariates={loads}",
        "data.calendar=[hour]",
        conftest.PT2_ONLY,
    )
    assert math.isfinite(metrics["test_mse"]) and metrics["test_windows"] == 2785
    meta = json.loads((run_dir / "export" / "meta.json").read_text())
    assert meta["channels"] == ["OT"]
    assert meta["covariate_inputs"] == {"past": ["batch", 96, 6], "future": ["batch", 192, 1]}
    assert meta["covariates"]["future"]["names"] == ["calendar:hour"]


def test_the_recorded_frequency_skips_a_first_series_of_one_row():
    """frequency() is the step within a series: a one-row first series has none, and the step
    from its row to the next series' first row is no step at all."""
    from types import SimpleNamespace

    from forecast.data.spec import frequency

    def frame(times, offsets):
        offsets = np.array(offsets)
        return SimpleNamespace(
            times=times, offsets=offsets, lengths=np.diff(offsets), calendar=None
        )

    times = np.array(
        ["2020-01-05T00", "2019-01-01T00", "2019-01-01T01", "2019-01-01T02"], "datetime64[ns]"
    )
    assert frequency(frame(times, [0, 1, 4])) == "h"
    assert frequency(frame(times[:2], [0, 1, 2])) is None
    for step, alias in (("15min", "15min"), ("1D", "D"), ("7D", "7D"), ("36h", "36h")):
        start = pd.Timestamp("2020-01-01")
        stepped = pd.DatetimeIndex([start, start + pd.Timedelta(step)]).to_numpy()
        assert frequency(frame(stepped, [0, 2])) == alias
        assert pd.Timedelta(pd.tseries.frequencies.to_offset(alias)) == pd.Timedelta(step)


def test_bad_data_is_one_line_and_exit_status_2(tmp_path):
    """A user's messy file: the reader's message (file, column, row, fix), not a traceback."""
    bad = tmp_path / "bad.csv"
    bad.write_text("date,y\n2020-01-01 00:00,1\n2020-01-01 01:00,oops\n")
    result = conftest.run_entry(
        "train.py",
        *[f"hydra.run.dir={tmp_path / 'run'}", "data=csv", f"data.path={bad}"],
        *["data.lookback=1", "data.horizon=1"],
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"train.py: {bad}: column 'y', data row 2 (line 3 of the file)" in result.stderr
