"""Fault injection: kill -9 of train.py, predict.py and sweep.py at random points, then the same
command again. The rerun must end, give what a run never killed gives, and leave no partial file.

Kill points are drawn from a seeded generator, as a time within the clean run's duration or, for
predict, the instant the n-th output (or a temporary file) appears in the output folder; the
machine's speed moves where a time falls, not what is asserted. The commands run in processes
forked from one that has imported them (conftest.start_entry), so that the kills fall in their
work rather than in the interpreter's start, where nothing is written yet. Each command is killed
several times in a row (the later kills hit a run recovering from the earlier ones), then run to
its end.
The extension cache is warm (the clean runs build it): a kill during the first-use compile is
forecast.nn's own test.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT, entry_server, run_entry, start_entry

pytestmark = pytest.mark.slow

SEED = 19
TIMEOUT = 600  # a safety net only: every run here ends in well under a minute on an idle machine
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "model.hidden_size=8",
    "data.horizon=24",
    "data.batch_size=16",
    "data.eval_batch_size=16",
    "callbacks.early_stopping=null",
]
TIMING = {"fit_seconds", "wall_seconds", "best_checkpoint"}


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "FORECAST_DATA_DIR"}


def run(*args: str) -> float:
    """Run an entry script to its end; fail the test unless it exits 0; its duration (the
    entry server started first: its imports are no part of the command's time)."""
    entry_server()
    start = time.monotonic()
    result = run_entry(*args, env=env(), timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-4000:]
    return time.monotonic() - start


def killed(*args: str, after: float | None = None, when=None) -> bool:
    """Start an entry script and kill -9 its process group `after` seconds, or as soon as
    `when()` holds; True if the kill ended it (False: it had ended first)."""
    process = start_entry(*args, env=env(), new_session=True)
    deadline = time.monotonic() + (after if after is not None else TIMEOUT)
    while time.monotonic() < deadline:
        if when is not None and when():
            break
        if process.poll() is not None:
            break
        time.sleep(0.002 if when is not None else 0.01)
    process.kill()  # nothing once it has been waited for; an ended, unwaited one ignores it
    status = process.wait(timeout=60).returncode
    assert status in (0, -signal.SIGKILL)
    return status == -signal.SIGKILL


def partial_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.name.endswith(".part"))


# --- train.py ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_train(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("clean") / "run"
    seconds = run("train.py", f"hydra.run.dir={run_dir}", *TINY)
    return run_dir, seconds


def test_train_killed_at_random_points_reruns_to_the_same_metrics(clean_train, tmp_path):
    clean_dir, seconds = clean_train
    clean = json.loads((clean_dir / "metrics.json").read_text())
    rng = random.Random(SEED)
    run_dir = tmp_path / "run"
    command = ["train.py", f"hydra.run.dir={run_dir}", *TINY]
    hits = [killed(*command, after=rng.uniform(0, seconds)) for _ in range(2)]
    assert any(hits)  # the draws fall within the clean run's time
    run(*command)  # the same command again, into the same folder
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {k: v for k, v in metrics.items() if k not in TIMING} == {
        k: v for k, v in clean.items() if k not in TIMING
    }
    assert (run_dir / metrics["best_checkpoint"]).is_file()
    assert (run_dir / "export" / "meta.json").is_file()
    assert partial_files(run_dir) == []


# --- predict.py --------------------------------------------------------------------------------


def etth1_like(rows: int, shift: float) -> pd.DataFrame:
    columns = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    values = np.sin(np.arange(rows)[:, None] / 5.0 + np.arange(7) + shift) * 5 + 10
    df = pd.DataFrame(values.round(3), columns=columns)
    df.insert(0, "date", pd.date_range("2018-01-01", periods=rows, freq="h").astype(str))
    return df


def forecasts(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.forecast.csv"))}


def test_predict_killed_at_random_points_reruns_to_the_same_forecasts(clean_train, tmp_path):
    model_dir, _ = clean_train
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for i in range(40):
        etth1_like(200, shift=i / 10).to_csv(inputs / f"f{i:02d}.csv", index=False)

    def command(output: Path) -> list[str]:
        return ["predict.py", f"model_dir={model_dir}", f"input={inputs}", f"output={output}"]

    seconds = run(*command(tmp_path / "clean"))
    clean = forecasts(tmp_path / "clean")
    assert len(clean) == 40
    rng = random.Random(SEED)
    hits = [
        killed(*command(out), after=rng.uniform(0, seconds)),
        killed(*command(out), when=writing(out, rng.randint(1, 80))),  # the n-th output (of 80)
    ]
    assert any(hits)
    killed(*command(out), when=writing(out, 10_000))  # a temporary file, if one is seen
    # and one surely left: a writer killed between its temporary file and the rename
    writer = (
        "import os, signal, sys\nfrom forecast.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(out / "f00.forecast.csv")], cwd=ROOT)
    assert partial_files(out)
    run(*command(out))
    assert forecasts(out) == clean
    assert sorted(os.listdir(out)) == sorted([*clean, *(f"{name}.json" for name in clean)])


def writing(out: Path, n: int):
    """True once `out` holds n entries, or a temporary file."""

    def when() -> bool:
        names = os.listdir(out) if out.is_dir() else []
        return len(names) >= n or any(name.endswith(".part") for name in names)

    return when


# --- sweep.py ----------------------------------------------------------------------------------

SWEEP = [
    *TINY,
    "~sweep.space",
    "+sweep.space={model.hidden_size:{type:categorical,choices:[4,8]}}",
    "sweep.sampler._target_=optuna.samplers.BruteForceSampler",
    "sweep.sampler.seed=0",
    "sweep.n_trials=2",
    "sweep.heartbeat_interval=1",
    "sweep.grace_period=2",
]


def completed(sweep_dir: Path) -> dict[int, float]:
    """hidden_size -> value of every completed trial; each trial's folder as it should be."""
    rows = pd.read_csv(sweep_dir / "trials.csv")
    done = rows[rows["state"] == "COMPLETE"]
    for row in rows.itertuples():
        folder = sweep_dir / "trials" / str(row.number)
        assert folder.exists() == (folder / "metrics.json").is_file() == (row.state == "COMPLETE")
    assert len(done) == len(set(done["model.hidden_size"]))
    assert set(rows["state"]) <= {"COMPLETE", "FAIL"}
    assert all("sent no heartbeat" in error for error in rows[rows["state"] == "FAIL"]["error"])
    return dict(zip(done["model.hidden_size"], done["value"], strict=True))


def test_sweep_killed_at_random_points_finishes_the_study_as_a_clean_one(tmp_path):
    seconds = run("sweep.py", f"hydra.run.dir={tmp_path / 'clean'}", *SWEEP)
    clean = completed(tmp_path / "clean")
    assert sorted(clean) == [4, 8]
    rng = random.Random(SEED)
    sweep_dir = tmp_path / "killed"
    command = ["sweep.py", f"hydra.run.dir={sweep_dir}", *SWEEP]
    # killed, and killed again while it recovers
    assert any([killed(*command, after=rng.uniform(0, seconds)) for _ in range(2)])
    run(*command)
    assert completed(sweep_dir) == clean
    best = json.loads((sweep_dir / "best.json").read_text())
    clean_best = json.loads((tmp_path / "clean" / "best.json").read_text())
    assert (best["value"], best["params"]) == (clean_best["value"], clean_best["params"])
    assert partial_files(sweep_dir) == []
