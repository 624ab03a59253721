"""Optional dependencies (the package's extras): a feature whose extra is missing says, in one
line, which extra to install; a default run needs none of them. A missing module is simulated
with `sys.modules[name] = None` (import then fails as if it were not installed);
tests/test_install.py runs the commands where the extras are really absent."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from forecast import extras
from forecast.config import compose_train_config
from forecast.errors import ConfigError
from forecast.extras import MissingExtra, check_storage, require
from tests.conftest import ROOT


def hide(monkeypatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_a_missing_module_is_named_with_its_extra(monkeypatch):
    require("numpy", "plots", "x")  # installed: nothing happens
    hide(monkeypatch, "matplotlib")
    assert not extras.available("matplotlib")
    with pytest.raises(MissingExtra) as missing:
        require("matplotlib", "plots", "forecast.png")
    assert str(missing.value) == (
        'forecast.png needs matplotlib, which is not installed: pip install "forecast[plots]"'
    )
    # the entry points report a ConfigError as one line with exit status 2
    assert isinstance(missing.value, ConfigError) and isinstance(missing.value, ImportError)


def test_without_matplotlib_a_run_skips_its_plot_in_one_line(monkeypatch, tmp_path, caplog):
    from forecast.plots import forecast_figure, plot_forecasts

    hide(monkeypatch, "matplotlib", "matplotlib.pyplot")
    history, horizon = np.zeros((2, 24)), np.ones((2, 8))
    with caplog.at_level(logging.WARNING, logger="forecast.plots"):
        plot_forecasts(history, horizon, horizon, "OT", tmp_path / "forecast.png")
    assert not (tmp_path / "forecast.png").exists()
    assert [r.getMessage() for r in caplog.records] == [
        "forecast.png skipped: it needs matplotlib, which is not installed: "
        'pip install "forecast[plots]"'
    ]
    with pytest.raises(MissingExtra, match=r"forecast\[plots\]"):
        forecast_figure(history, horizon, horizon, "OT")


def test_a_logger_whose_extra_is_missing_is_refused_when_composed(monkeypatch):
    hide(monkeypatch, "tensorboard")
    with pytest.raises(MissingExtra) as missing:
        compose_train_config(["logger=tensorboard"])
    assert str(missing.value) == (
        "logger: TensorBoardLogger needs tensorboard, which is not installed: "
        'pip install "forecast[tensorboard]"'
    )
    compose_train_config(["logger=csv"])  # the default needs nothing optional


def test_a_postgresql_study_without_its_driver_names_the_sweep_extra(monkeypatch):
    check_storage(None)
    check_storage("sqlite:///study.db")
    hide(monkeypatch, "psycopg2")
    with pytest.raises(MissingExtra, match=r'psycopg2, .*pip install "forecast\[sweep\]"'):
        check_storage("postgresql+psycopg2://user@host/db")
    with pytest.raises(MissingExtra, match="psycopg2"):
        check_storage("postgresql://user@host/db")


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # Lightning's (forecast.quiet)
def test_without_rich_the_progress_bar_is_lightnings_plain_one_and_says_so(monkeypatch, caplog):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
    from pytorch_lightning.demos.boring_classes import BoringModel

    from forecast.callbacks import PlainProgressBar, progress_bar

    assert isinstance(progress_bar(), RichProgressBar)  # rich is installed here
    hide(monkeypatch, "rich")
    bar = progress_bar()
    assert isinstance(bar, PlainProgressBar) and isinstance(bar, TQDMProgressBar)
    trainer = pl.Trainer(
        max_steps=1,
        limit_val_batches=0,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    with caplog.at_level(logging.INFO, logger="forecast.callbacks"):
        trainer.fit(BoringModel())
    lines = [r.getMessage() for r in caplog.records if r.name == "forecast.callbacks"]
    assert lines == [
        'rich is not installed, so the progress bar is plain: pip install "forecast[rich]"'
    ]


def test_predict_on_a_terminal_without_rich_says_what_to_install(monkeypatch):
    from forecast.predict import Progress

    class Terminal:
        text = ""

        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    hide(monkeypatch, "rich", "rich.progress")
    progress = Progress(3)
    progress.advance(files=1, series=2)
    progress.close()
    assert progress.bar is None
    assert terminal.text == 'no progress bar: pip install "forecast[rich]" shows one\n'


# an entry script run with modules hidden: `sys.modules[...] = None`, then the script's `entry`
HIDDEN_RUN = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
app = sys.argv[2]
sys.argv = [app + ".py", *sys.argv[3:]]
from importlib import import_module
import_module("forecast.commands." + app).entry()
"""


def run_hidden(hidden: str, app: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FORECAST_KEEP_MALLOC": "1"}  # no re-exec: it would lose the hiding
    return subprocess.run(
        [sys.executable, "-c", HIDDEN_RUN, hidden, app, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hidden", "args", "expected"),
    [
        (
            "optuna",
            ["sweep"],
            "sweep.py: this command needs optuna, which is not installed: "
            'pip install "forecast[sweep]"',
        ),
        (
            "onnxruntime",
            ["predict", "model_dir=run", "input=x.csv", "output=out", "engine=onnx"],
            "predict.py: engine=onnx needs onnxruntime, which is not installed: "
            'pip install "forecast[onnx]"',
        ),
        (
            "tensorboard",
            ["train", "logger=tensorboard"],
            "train.py: logger: TensorBoardLogger needs tensorboard, which is not installed: "
            'pip install "forecast[tensorboard]"',
        ),
    ],
)
def test_a_command_whose_extra_is_missing_is_refused_in_one_line(hidden, args, expected, tmp_path):
    result = run_hidden(hidden, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines() == [expected]
    assert not (tmp_path / "run" / "metrics.json").exists()
