"""End-to-end: run train.py as a user would, with a small budget, and check what it writes."""

import json
import math
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

SMALL = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "model.hidden_size=16"]


def run_train(run_dir, *overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FORECAST_DATA_DIR"}  # use the shipped copy
    result = subprocess.run(
        [sys.executable, "train.py", f"hydra.run.dir={run_dir}", *SMALL, *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("model", ["lstm", "lstmp", "gru"])
def test_each_model_trains_tests_and_writes_its_artefacts(tmp_path, model):
    run_dir = tmp_path / model
    extra = ["model.proj_size=8"] if model == "lstmp" else []
    metrics = run_train(run_dir, f"model={model}", *extra)
    for key in ("test_mse", "test_mae", "val_mse", "val_mae"):
        assert math.isfinite(metrics[key]), key
    assert metrics["test_windows"] == 2785  # ETTh1 protocol, lookback 96, horizon 96
    assert metrics["best_checkpoint"].startswith("checkpoints/")
    assert (run_dir / metrics["best_checkpoint"]).is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["cell"] == model
    assert config["model"]["lookback"] == 96  # resolved, not an interpolation


def test_same_seed_gives_same_metrics_and_overrides_apply(tmp_path):
    overrides = ["data.lookback=48", "data.horizon=24", "seed=7"]
    first = run_train(tmp_path / "a", *overrides)
    second = run_train(tmp_path / "b", *overrides)
    other_seed = run_train(tmp_path / "c", *overrides[:2], "seed=8")
    keys = ("val_mse", "val_mae", "test_mse", "test_mae")
    assert {k: first[k] for k in keys} == {k: second[k] for k in keys}
    assert first["test_mse"] != other_seed["test_mse"]
    assert first["test_windows"] == (14400 - 11520 + 48) - 48 - 24 + 1


def test_data_path_override_reads_another_file(tmp_path, shared_data):
    metrics = run_train(tmp_path / "p", f"data.path={shared_data / 'ETTh1.csv'}", "data.horizon=24")
    assert metrics["test_windows"] == (14400 - 11520 + 96) - 96 - 24 + 1
