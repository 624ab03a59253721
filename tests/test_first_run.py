"""A new user's first runs: nothing printed that they cannot act on, and an ending that says what
happened and what to do next."""

import re
import subprocess
import sys
import warnings

import pytest

from forecast.quiet import quiet_known_notices
from tests.conftest import ROOT

# the notices a default run printed before (issue 24)
NOTICES = [
    "LeafSpec",  # Lightning's use of a torch API that torch deprecates
    "litlogger",  # Lightning's tip for its cloud logger
    "log_every_n_steps",  # Lightning: an epoch shorter than the logging interval
    "oneDNN",  # torch: model=lstmp falls back from oneDNN
    "ExperimentalWarning",  # Optuna: the storage's heartbeat
    "does not have many workers",  # Lightning, on machines with more than 2 cores
    "Restoring states from the checkpoint",  # Lightning: test reloads the best checkpoint
    "Loaded model weights",
    "`Trainer.fit` stopped",
    "was configured so 100%",
]
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
]


def run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_quiet(result: subprocess.CompletedProcess) -> None:
    for notice in NOTICES:
        assert notice not in result.stderr + result.stdout, notice
    assert not re.search(r"warn|deprecat", result.stderr, re.IGNORECASE), result.stderr


@pytest.mark.slow
def test_a_default_lstmp_run_is_quiet_and_ends_with_its_summary(tmp_path):
    run_dir = tmp_path / "run"
    result = run("train.py", f"hydra.run.dir={run_dir}", "model=lstmp", *TINY)
    assert_quiet(result)
    done, folder, next_step = result.stdout.splitlines()[-3:]
    assert re.match(
        r"done: test MSE [0-9.]+, MAE [0-9.]+, MASE [0-9.]+, skill against naive -?[0-9.]+ "
        r"\(normalised",
        done,
    )
    assert folder.startswith(f"run folder: {run_dir} ")
    assert next_step.startswith(f"next: python predict.py model_dir={run_dir} input=")


@pytest.mark.slow
def test_a_sweep_is_quiet_and_says_where_its_summary_went(tmp_path):
    space = "+sweep.space={model.hidden_size:{type:int,low:4,high:8}}"
    sweep_dir = tmp_path / "sweep"
    result = run(
        "sweep.py", f"hydra.run.dir={sweep_dir}", "sweep.n_trials=1", "~sweep.space", space, *TINY
    )
    assert_quiet(result)
    last = result.stdout.splitlines()[-1]
    assert last.startswith("done: study forecast (1 complete); best val_mse ")
    assert (
        f"{sweep_dir}/trials.md" in last and f"--config-dir {sweep_dir} --config-name best" in last
    )


def test_known_notices_are_silenced_by_message_and_category_only():
    raised = [
        ("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning),
        ("LSTM with projections is not supported with oneDNN. Using default", UserWarning),
        ("Argument ``heartbeat_interval`` is an experimental feature.", UserWarning),
        ("LSTM with projections is not supported with oneDNN.", FutureWarning),  # kept
        ("something else is deprecated", FutureWarning),  # kept
    ]
    with warnings.catch_warnings(record=True) as seen:  # the filters end with the block
        warnings.simplefilter("always")
        quiet_known_notices()
        for message, category in raised:
            warnings.warn(message, category, stacklevel=1)
    assert [str(w.message) for w in seen] == [message for message, _ in raised[3:]]
