"""A user's configuration mistakes: one line on stderr naming the key and the fix, exit status 2,
no traceback; and each entry point's --help."""

import os
import subprocess
import sys
import typing

import pytest

from forecast.cli import ConfigError, describe_type, matches, not_set
from tests.conftest import ROOT, run_entry


def refused(*args: str) -> str:
    """Run an entry script that must refuse its arguments; its one line of stderr."""
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout
    return lines[0]


MISTAKES = [
    (
        ["predict.py"],
        "predict.py: model_dir, input and output are not set: give model_dir=",
    ),
    (["predict.py", "model_dir=run"], "predict.py: input and output are not set"),
    (["train.py", "data=csv"], "train.py: data.path is not set: give data.path="),
    (
        ["train.py", "data.calendar=[hour,fortnight]"],
        "train.py: data.calendar=['hour', 'fortnight']: fortnight is not a calendar feature",
    ),
    (
        ["train.py", "model.hiden_size=64"],
        "train.py: model.hiden_size is not a key of this config: did you mean model.hidden_size?",
    ),
    (["train.py", "modle=gru"], "did you mean model?"),
    (
        ["train.py", "model=lstx"],
        "train.py: model=lstx: model has no option 'lstx'; choose one of gru, lstm, lstmp",
    ),
    (["train.py", "data.lookback=abc"], "data.lookback=abc: data.lookback takes an integer"),
    (["train.py", "trainer.max_epochs=1.5"], "trainer.max_epochs takes an integer or null"),
    (["train.py", "threads=0"], "threads=0: give auto or a positive number of threads"),
    (["train.py", "data.horizon=0"], "data.horizon=0: give a positive number of steps"),
    (["train.py", "ckpt_path=nowhere/last.ckpt"], "ckpt_path=nowhere/last.ckpt: no such file"),
    (["train.py", "data.calendar=[hour"], "cannot read 'data.calendar=[hour'"),
    (["train.py", "model.cell=lstx"], "model: cell must be one of"),
    (["train.py", "+model.colour=red"], "model.colour is not an option here: remove it"),
    (["predict.py", "model=gru"], "model is not a config group of this app"),
    (
        ["predict.py", "model_dir=a", "input=b", "output=c", "batch_size=big"],
        "batch_size=big: batch_size takes an integer",
    ),
    (
        ["train.py", "experiment=etth1_search"],
        "train.py: experiment=etth1_search is a study's recipe (it sets sweep.*): run it with "
        "`sweep.py experiment=etth1_search`",
    ),
    (["train.py", "model.loss=smap"], "model.loss must be one of"),
    (
        ["train.py", "trainer.limit_val_batches=0"],
        "train.py: trainer.limit_val_batches=0 runs no validation, and "
        "callbacks.early_stopping stops on val_mse: add callbacks.early_stopping=null",
    ),
    (
        [
            "train.py",
            "trainer.limit_val_batches=0",
            "callbacks.early_stopping=null",
            "schedule=plateau",
        ],
        "schedule=plateau lowers the learning rate on val_mse: give schedule=none",
    ),
    (["sweep.py", "sweep.n_trials=many"], "sweep.n_trials=many: sweep.n_trials takes an"),
    (["sweep.py", "sweep.timeout=soon"], "sweep.timeout takes a number or null"),
    (["sweep.py", "trainer=ddp"], "sweep trials run in one process"),
]


@pytest.fixture(scope="module")
def mistakes_refused(tmp_path_factory) -> list[subprocess.CompletedProcess]:
    """Every command line of MISTAKES, run as the user would run it, each in its own process
    (forked from one that imported the entry points once: conftest.run_entry)."""
    runs = tmp_path_factory.mktemp("mistakes")
    return [
        run_entry(*args, f"hydra.run.dir={runs / str(k)}") for k, (args, _) in enumerate(MISTAKES)
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("k", "args", "expected"),
    [(k, *case) for k, case in enumerate(MISTAKES)],
    ids=[" ".join(args) for args, _ in MISTAKES],
)
def test_a_config_mistake_is_one_line_with_exit_status_2(mistakes_refused, k, args, expected):
    run = mistakes_refused[k]
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stdout
    assert lines[0].startswith(args[0] + ": ")
    assert expected in lines[0]


@pytest.mark.slow
def test_a_mistake_is_refused_alike_by_a_new_interpreter(mistakes_refused, tmp_path):
    # the entry server's children above skip the interpreter's start and the allocator's
    # restart
    k = next(k for k, (args, _) in enumerate(MISTAKES) if "model.hiden_size=64" in args)
    line = refused(*MISTAKES[k][0], f"hydra.run.dir={tmp_path}")
    assert line == mistakes_refused[k].stderr.strip()


@pytest.mark.slow
def test_hydra_full_error_shows_the_traceback(tmp_path):
    result = run_entry(
        "train.py",
        "data.lookback=abc",
        f"hydra.run.dir={tmp_path}",
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def help_of(script: str) -> str:
    result = run_entry(script, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "predict.py", "sweep.py"])
def test_help_starts_with_what_it_does_options_and_examples_then_the_config(script):
    text = help_of(script)
    assert text.startswith(f"{script}: ")
    words = ("Usage:", "ptions (defaults first):", "Examples:")
    usage, options, examples = (text.index(word) for word in words)
    config = text.index("== Config (")
    assert usage < options < examples < config
    assert f"python {script}" in text[examples:config]


@pytest.mark.slow
def test_predict_help_lists_only_its_own_keys():
    text = help_of("predict.py")
    assert "model_dir: ???" in text
    for group in ("model: gru, lstm, lstmp", "trainer: ", "callbacks: ", "Config groups"):
        assert group not in text
    assert "model: gru, lstm, lstmp" in help_of("train.py")


def test_types_are_described_and_checked_as_hydra_gives_values():
    assert matches(96, int) and not matches("abc", int) and not matches(True, int)
    assert matches(1, float) and matches(0.5, float) and not matches("x", float)
    assert matches(None, int | None) and matches([1, 2], list[int]) and not matches("x", list)
    precision = typing.Literal["16-mixed", "bf16-mixed"] | typing.Literal[32] | None
    assert matches("bf16-mixed", precision) and matches(32, precision)
    assert not matches("17", precision)
    assert describe_type(int | None) == "an integer or null"
    assert describe_type(precision) == "one of 16-mixed, bf16-mixed, 32 or null"


def test_missing_values_are_named_with_their_fix():
    message = not_set(["input", "output"], "input=<file> output=<folder>")
    assert message.startswith("input and output are not set: give input=<file> output=<folder>")
    assert issubclass(ConfigError, ValueError)
