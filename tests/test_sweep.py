"""Optuna studies over train: sweep.py end to end, and forecast.sweep in-process with tiny budgets
on ETTh1 (the shipped copy)."""

import csv
import json
import os
import socket
import threading
import time
import uuid

import optuna
import pandas as pd
import pytest
import sqlalchemy.exc
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from optuna.trial import TrialState

import forecast
from forecast.config import ADDED_MODEL_OPTIONS, ADDED_RUN_OPTIONS, CONF_DIR
from forecast.data import dataset_path
from forecast.sweep import (
    merge_overrides,
    open_storage,
    override,
    run_study,
    suggest,
    trial_id,
)
from tests.conftest import PT2_ONLY, run_script, start_entry

TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "model.hidden_size=8",
    "data.batch_size=16",
    "data.eval_batch_size=16",
    "callbacks.early_stopping=null",
    PT2_ONLY,
]
SPACE = "+sweep.space={model:{type:categorical,choices:[lstm,gru]},model.hidden_size:{type:int,low:4,high:16,log:true}}"  # noqa: E501


def sweep_command(sweep_dir, *overrides: str) -> list[str]:
    return [
        "sweep.py",
        f"hydra.run.dir={sweep_dir}",
        *TINY,
        "~sweep.space",
        SPACE,
        *overrides,
    ]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "FORECAST_DATA_DIR"}


def run_sweep(sweep_dir, *overrides: str) -> None:
    run_script(*sweep_command(sweep_dir, *overrides))


def load(sweep_dir, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'study.db'}")


def read_csv(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


# --- unit: search space and overrides ---------------------------------------------------------


def test_space_samples_each_kind_and_values_become_hydra_overrides():
    space = {
        "model": {"type": "categorical", "choices": ["lstm", "gru"]},
        "model.hidden_size": {"type": "int", "low": 8, "high": 64, "log": True},
        "model.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    }
    trial = optuna.create_study().ask()
    params = suggest(trial, space)
    assert params["model"] in ("lstm", "gru")
    assert 8 <= params["model.hidden_size"] <= 64
    assert 1e-4 <= params["model.optimizer.lr"] <= 1e-2
    assert override("model", "gru") == "model=gru"
    assert override("model.revin", False) == "model.revin=false"
    assert override("model.scheduler", None) == "model.scheduler=null"
    assert override("model.optimizer.lr", 0.001) == "model.optimizer.lr=0.001"
    assert override("data.name", "a b.csv") == 'data.name="a b.csv"'
    assert merge_overrides(["model=lstm", "+trainer.x=1"], ["model=gru", "trainer.x=2"]) == [
        "model=gru",
        "trainer.x=2",
    ]
    with pytest.raises(ValueError, match="sweep.space.x: type 'normal'"):
        suggest(trial, {"x": {"type": "normal"}})


# --- sweep.py end to end ----------------------------------------------------------------------


@pytest.mark.slow
def test_study_in_sqlite_resumes_and_its_best_config_trains_again(tmp_path):
    sweep_dir = tmp_path / "study"
    run_sweep(sweep_dir, "sweep.n_trials=3", "sweep.study_name=s")
    study = load(sweep_dir, "s")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    rows = read_csv(sweep_dir / "trials.csv")
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert {r["model"] for r in rows} <= {"lstm", "gru"}
    assert all(float(r["val_mse"]) == pytest.approx(float(r["value"])) for r in rows)
    tail = pd.read_csv(dataset_path("ETTh1.csv")).tail(200)
    for trial in study.trials:
        # each trial is a run folder the API loads and forecasts with
        run = forecast.load(sweep_dir / "trials" / str(trial.number))
        assert run.metrics["val_mse"] == pytest.approx(trial.value)
        assert run.config.model.cell == trial.params["model"]
        assert len(run.predict(tail)) == 7 * run.horizon

    # same study name: the study is loaded, not replaced; its trials grow to the new n_trials
    run_sweep(sweep_dir, "sweep.n_trials=4", "sweep.study_name=s")
    assert len(optuna.get_all_study_names(f"sqlite:///{sweep_dir / 'study.db'}")) == 1
    study = load(sweep_dir, "s")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert len(read_csv(sweep_dir / "trials.csv")) == 4

    best = json.loads((sweep_dir / "best.json").read_text())
    assert best["number"] == study.best_trial.number
    assert best["value"] == study.best_value

    def train_from(name: str, folder: str, *overrides: str) -> dict:
        """train.py on the sweep folder's config `name` into tmp_path / folder: its metrics."""
        config = ["--config-dir", str(sweep_dir), "--config-name", name]
        run_script("train.py", *config, *overrides, f"hydra.run.dir={tmp_path / folder}")
        return json.loads((tmp_path / folder / "metrics.json").read_text())

    # best.yaml is a config train.py accepts, and it gives the best trial's result again
    again = train_from("best", "again")
    assert again["val_mse"] == study.best_value
    # a best.yaml of an older sweep, without the options added since, trains as it did then
    older = OmegaConf.load(sweep_dir / "best.yaml")
    for key in ADDED_RUN_OPTIONS:
        del older[key]
    for key in ADDED_MODEL_OPTIONS:
        del older.model[key]
    OmegaConf.save(older, sweep_dir / "older.yaml")
    train_from("older", "older")
    older_run = forecast.load(tmp_path / "older")
    # "as it did then": the options it lacks take the values they had before they were added
    # (no naive blend, the one-hot), not today's defaults, so it equals best.yaml with those
    then_options = [f"model.{k}={str(v).lower()}" for k, v in ADDED_MODEL_OPTIONS.items()]
    then = train_from("best", "then", *then_options)
    assert older_run.metrics["val_mse"] == then["val_mse"]
    assert older_run.config.model.category_embedding == 0  # the one-hot it had then
    assert sorted(p.name for p in (tmp_path / "older" / "export").glob("model.*")) == [
        "model.onnx",
        "model.pt2",
    ]


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study_without_duplicates(tmp_path):
    sweep_dir = tmp_path / "shared"
    command = sweep_command(sweep_dir, "sweep.n_trials=4", "sweep.study_name=w")
    workers = [start_entry(*command, env=clean_env()) for _ in range(2)]
    for worker in workers:
        result = worker.wait(timeout=600)
        assert result.returncode == 0, result.stderr[-4000:]
    trials = load(sweep_dir, "w").trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    output_dirs = [t.user_attrs["output_dir"] for t in trials]
    assert len(set(output_dirs)) == 4
    assert sorted(os.listdir(sweep_dir / "trials")) == ["0", "1", "2", "3"]
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took trials


# --- forecast.sweep in-process: pruned, failed, PostgreSQL ------------------------------------


def study_in_process(tmp_path, *overrides: str, name: str = "p") -> optuna.Study:
    """run_study as sweep.py calls it; sweep.* overrides configure the study, the others the
    trials."""
    own = [o for o in overrides if o.lstrip("+~").startswith("sweep.")]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="sweep", overrides=[f"sweep.study_name={name}", *own])
        return run_study(
            cfg.sweep,
            lambda o: compose(config_name="config", overrides=o),
            [*TINY, *(o for o in overrides if o not in own)],
            tmp_path / "sweep",
        )


@pytest.mark.slow
def test_pruned_trial_shows_as_pruned(tmp_path):
    # every value is above the threshold, so the pruner stops the trial after its first epoch
    study = study_in_process(
        tmp_path,
        "sweep.n_trials=1",
        "sweep.pruner._target_=optuna.pruners.ThresholdPruner",
        "~sweep.pruner.n_startup_trials",
        "~sweep.pruner.n_warmup_steps",
        "+sweep.pruner.upper=0.0",
        "~sweep.space",
        "+sweep.space={model.hidden_size:{type:int,low:4,high:8}}",
    )
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # reported once, by our callback
    rows = read_csv(tmp_path / "sweep" / "trials.csv")
    assert rows[0]["state"] == "PRUNED"
    assert not (tmp_path / "sweep" / "best.yaml").exists()  # no completed trial


@pytest.mark.slow
def test_failing_trial_is_recorded_with_its_error_and_the_study_goes_on(tmp_path):
    # lookback 9000 does not fit ETTh1's validation part: DataError in that trial only
    study = study_in_process(
        tmp_path,
        "sweep.n_trials=2",
        "sweep.sampler._target_=optuna.samplers.BruteForceSampler",
        "sweep.sampler.seed=0",
        "~sweep.space",
        "+sweep.space={data.lookback:{type:categorical,choices:[48,9000]}}",
    )
    states = {t.params["data.lookback"]: t for t in study.trials}
    assert states[9000].state == TrialState.FAIL
    assert "DataError" in states[9000].user_attrs["error"]
    assert states[48].state == TrialState.COMPLETE
    rows = {r["data.lookback"]: r for r in read_csv(tmp_path / "sweep" / "trials.csv")}
    assert rows["9000"]["state"] == "FAIL" and "DataError" in rows["9000"]["error"]
    assert (tmp_path / "sweep" / "best.yaml").is_file()


def test_a_multi_process_trainer_is_refused_before_any_trial(tmp_path):
    with pytest.raises(ValueError, match="start several sweep.py workers"):
        study_in_process(tmp_path, "trainer=ddp")


# --- workers that die: heartbeats, lost trials, retries ---------------------------------------

QUICK_HEARTBEAT = ["sweep.heartbeat_interval=1", "sweep.grace_period=1"]
HIDDEN_4_OR_8 = [
    "~sweep.space",
    "+sweep.space={model.hidden_size:{type:categorical,choices:[4,8]}}",
]


def open_study(tmp_path, name: str = "p") -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """The study as run_study will open it, for a test to put trials of dead workers in."""
    (tmp_path / "sweep").mkdir(parents=True, exist_ok=True)
    storage = open_storage(
        f"sqlite:///{tmp_path / 'sweep' / 'study.db'}", heartbeat_interval=1, grace_period=1
    )
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    return study, storage


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")  # our ask()
def test_trials_of_dead_workers_are_failed_retried_and_their_folders_removed(tmp_path):
    study, storage = open_study(tmp_path)
    # trial 0: a worker on this machine killed mid-trial, after heartbeats and a partial folder
    dead = study.ask()
    dead.suggest_categorical("model.hidden_size", [4, 8])
    folder = tmp_path / "sweep" / "trials" / "0"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / ".last.ckpt.abcd1234.part").write_text("half")
    storage.record_heartbeat(trial_id(storage, study, dead.number))
    dead.set_user_attr("worker", f"{socket.gethostname()}:999999999")
    dead.set_user_attr("output_dir", str(folder))
    # trial 1: a worker killed between creating its trial and the first heartbeat
    study.ask()
    # and the reports a killed run was writing (no process holds the file's lock)
    (tmp_path / "sweep" / ".trials.csv.k1ll3d_0.part").write_text("half")
    time.sleep(3)  # both lost (silent for over the 1 s grace period) when the run starts
    # BruteForceSampler: it takes a finished trial without parameters for the whole space
    study = study_in_process(
        tmp_path,
        "sweep.n_trials=2",
        "sweep.sampler._target_=optuna.samplers.BruteForceSampler",
        "sweep.sampler.seed=0",
        *QUICK_HEARTBEAT,
        *HIDDEN_4_OR_8,
    )
    states = [(t.number, t.state, t.user_attrs.get("retry_of")) for t in study.trials]
    assert states == [
        (0, TrialState.FAIL, None),
        (1, TrialState.FAIL, None),
        (2, TrialState.COMPLETE, 1),
        (3, TrialState.COMPLETE, 0),
    ]  # no trial beyond: a failed trial that was retried does not use up the budget
    assert study.trials[3].params == dead.params  # the same point, tried again
    # the trial that never drew its parameters had them drawn when found lost: the other point
    assert study.trials[2].params == study.trials[1].params != dead.params
    assert not folder.exists()
    assert sorted(os.listdir(tmp_path / "sweep" / "trials")) == ["2", "3"]
    assert not (tmp_path / "sweep" / ".trials.csv.k1ll3d_0.part").exists()
    rows = read_csv(tmp_path / "sweep" / "trials.csv")
    assert "sent no heartbeat" in rows[0]["error"] and f"{folder} was removed" in rows[0]["error"]
    assert "unknown (it never started)" in rows[1]["error"]
    assert [r["retry_of"] for r in rows] == ["", "", "1", "0"]
    best = json.loads((tmp_path / "sweep" / "best.json").read_text())
    assert best["trials"]["COMPLETE"] == 2


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_run_waits_for_a_live_workers_trial_before_it_reports(tmp_path, monkeypatch):
    study, storage = open_study(tmp_path)
    trial = study.ask()
    trial.suggest_categorical("model.hidden_size", [4, 8])
    key = trial_id(storage, study, trial.number)
    trial.set_user_attr("worker", "elsewhere:1")
    trial.set_user_attr("config", "seed: 1\n")  # a completed trial's train config (best.yaml)
    waiting, pause = threading.Event(), threading.Event()
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (waiting.set(), real_sleep(s)))

    def live_worker():  # beats until the run waits for it, past the grace period, then finishes
        for beat in range(240):
            storage.record_heartbeat(key)
            pause.wait(0.5)
            if waiting.is_set() and beat >= 6:
                break
        study.tell(trial, 0.5)

    worker = threading.Thread(target=live_worker)
    worker.start()
    try:
        study = study_in_process(tmp_path, "sweep.n_trials=1", *QUICK_HEARTBEAT, *HIDDEN_4_OR_8)
    finally:
        worker.join()
    assert waiting.is_set()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]  # not failed: it was alive
    rows = read_csv(tmp_path / "sweep" / "trials.csv")
    assert [(r["state"], r["value"]) for r in rows] == [("COMPLETE", "0.5")]


POSTGRES_URL = os.environ.get("FORECAST_TEST_POSTGRES_URL")


@pytest.mark.slow
@pytest.mark.skipif(
    not POSTGRES_URL,
    reason="no PostgreSQL server: set FORECAST_TEST_POSTGRES_URL (e.g. "
    "postgresql+psycopg2://postgres@127.0.0.1:5432/forecast_test); .ci/run starts one",
)
def test_study_in_postgresql(tmp_path):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    overrides = [
        f"sweep.storage={POSTGRES_URL}",
        "~sweep.space",
        "+sweep.space={model.hidden_size:{type:int,low:4,high:8}}",
    ]
    study_in_process(tmp_path / "a", "sweep.n_trials=1", *overrides, name=name)
    study_in_process(tmp_path / "b", "sweep.n_trials=2", *overrides, name=name)  # resumes
    study = optuna.load_study(study_name=name, storage=POSTGRES_URL)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert not (tmp_path / "a" / "sweep" / "study.db").exists()
    optuna.delete_study(study_name=name, storage=POSTGRES_URL)


def test_a_worker_that_loses_the_race_to_create_the_tables_opens_them(tmp_path, monkeypatch):
    real = optuna.storages.RDBStorage
    calls = []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # what the second of two simultaneous workers sees
            raise sqlalchemy.exc.OperationalError("CREATE TABLE", {}, "table already exists")
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert isinstance(storage, real) and len(calls) == 2


def test_a_process_forked_after_the_import_is_a_worker_of_its_own():
    """The `worker` a trial records names the process running it, also one forked from a
    process that had imported forecast.sweep (a fork-based pool, tests' entry server)."""
    from forecast.sweep import worker_name

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its name, then out without pytest's teardown
        try:
            os.write(write, worker_name().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as child:
        name = child.read()
    os.waitpid(pid, 0)
    assert name == f"{socket.gethostname()}:{pid}"
    assert worker_name() == f"{socket.gethostname()}:{os.getpid()}" != name
