"""The three Hydra apps of the package (forecast/commands): the console scripts and the
checkout's shells are one app, their configs ship inside the package, `--config-dir` adds a
user's own, and what they print names the command the way the user called it."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from forecast.commands import command, prog
from forecast.config import CONF_DIR
from forecast.summary import run_summary, study_message
from tests.conftest import ROOT, run_entry


def test_commands_are_named_as_the_user_called_them(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/forecast-train", "model=gru"])
    assert prog() == "forecast-train"
    assert prog("predict") == "forecast-predict"
    assert command("predict") == "forecast-predict"
    monkeypatch.setattr(sys, "argv", ["train.py"])
    assert prog() == "train.py" and prog("sweep") == "sweep.py"
    assert command("predict") == "python predict.py"


def test_the_configs_live_inside_the_package():
    import forecast

    assert CONF_DIR == ROOT / "forecast" / "conf"
    assert CONF_DIR.parent == Path(forecast.__file__).parent
    for name in ("config.yaml", "predict.yaml", "sweep.yaml", "hydra/help/train.yaml"):
        assert (CONF_DIR / name).is_file(), name
    assert not (ROOT / "conf").exists()


def test_the_end_of_a_run_names_the_predict_command_and_only_what_it_wrote(tmp_path):
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    (run / "export" / "meta.json").write_text("{}")
    (run / "metrics.json").write_text(json.dumps({"test_mse": 0.5, "epochs": 1, "fit_seconds": 2}))
    _, folder, next_step = run_summary(run, predict="forecast-predict").splitlines()
    assert folder == f"run folder: {run} (metrics.json, checkpoints/, export/)"  # no plot
    assert next_step.startswith(f"next: forecast-predict model_dir={run} input=")
    (run / "forecast.png").write_bytes(b"")
    assert "(metrics.json, forecast.png, checkpoints/" in run_summary(run)
    (tmp_path / "best.json").write_text(
        json.dumps(
            {
                "study": "s",
                "trials": {"COMPLETE": 1},
                "metric": "val_mse",
                "value": 1.0,
                "number": 0,
            }
        )
    )
    assert "train the best again: forecast-train --config-dir" in study_message(
        tmp_path, train="forecast-train"
    )


def shown_config(*args: str, cwd) -> dict:
    """The job config train.py composes for `args` (`--cfg job`: composed, nothing run)."""
    result = run_entry(ROOT / "train.py", *args, "--cfg", "job", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout)


@pytest.mark.slow
def test_config_dir_adds_a_users_own_configs_from_any_folder(tmp_path):
    mine = tmp_path / "my_conf" / "model"
    mine.mkdir(parents=True)
    # a model of one's own: the shipped lstm with other sizes
    (mine / "small.yaml").write_text("defaults:\n  - lstm\n  - _self_\n\nhidden_size: 12\n")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    shipped = shown_config("model=gru", cwd=elsewhere)  # not the checkout: the package's configs
    assert shipped["model"]["cell"] == "gru"
    cfg = shown_config("--config-dir", str(tmp_path / "my_conf"), "model=small", cwd=elsewhere)
    assert cfg["model"]["hidden_size"] == 12
    assert cfg["model"]["cell"] == shown_config(cwd=elsewhere)["model"]["cell"] == "lstm"
    refused = run_entry(ROOT / "train.py", "model=small", "--cfg", "job", cwd=elsewhere)
    assert refused.returncode == 2
    assert "model has no option 'small'" in refused.stderr  # only with --config-dir


@pytest.mark.slow
def test_help_names_the_console_script_when_called_as_one(tmp_path):
    result = run_entry("forecast-train", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("forecast-train: train a recurrent forecaster")
    assert "Usage: forecast-train [group=option ...]" in result.stdout
    assert "python train.py" not in result.stdout
