"""Optuna studies over `forecast.pipeline.train`, with their trials in a database.

A trial samples the search space (`sweep.space`), turns the values into Hydra overrides (so a
key may be a config group such as `model`), composes the train config with them, trains in its own
directory `<sweep dir>/trials/<number>` and returns `sweep.metric` from that run's metrics.json.
The storage is any SQLAlchemy URL (default: an SQLite file in the sweep directory); workers that
share one study take trials from it until the study holds `sweep.n_trials` finished or running
trials, so a re-run with the same study name resumes it and several workers split the budget.

A worker killed during a trial (kill -9, a lost machine) leaves it `RUNNING`. Running trials send a
heartbeat every `sweep.heartbeat_interval` seconds; one silent for `sweep.grace_period` seconds is
lost: a run fails it, removes its partial folder (when it was on this machine) and enqueues the
same parameters again (up to `sweep.max_retry` times), and a failed-and-retried trial does not use
up the budget. A run waits, before it ends, for the running trials of others: they finish or are
found lost, so that a run started again after a kill finishes the study.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import sqlalchemy.exc
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import FrozenTrial, TrialState

from forecast.atomic import remove_stale_parts
from forecast.atomic import write_text as write_atomic
from forecast.pipeline import build, train
from forecast.summary import LEADING_METRICS, write_tables

log = logging.getLogger(__name__)

# trials that use up the budget: finished either way, or being run by some worker
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


class PruningCallback(pl.Callback):
    """Reports `monitor` to the trial after each validation epoch of fit; raises
    `optuna.TrialPruned` when the pruner says so (Optuna then records the trial as pruned).

    optuna-integration's callback targets the `lightning` package; we use `pytorch_lightning`.
    """

    def __init__(self, trial: optuna.Trial, monitor: str):
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:  # not a per-epoch metric (e.g. test_mse): nothing to prune on
            return
        value, epoch = float(value), trainer.current_epoch
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {self.monitor}={value:.6g}")


def suggest(trial: optuna.Trial, space: dict[str, dict]) -> dict[str, Any]:
    """Sample every key of the search space.

    Each entry is `{type: float|int, low, high, [log], [step]}` or
    `{type: categorical, choices: [...]}`.
    """
    params = {}
    for key, spec in space.items():
        spec = dict(spec)
        kind = spec.pop("type", None)
        if kind == "float":
            params[key] = trial.suggest_float(key, **spec)
        elif kind == "int":
            params[key] = trial.suggest_int(key, **spec)
        elif kind == "categorical":
            params[key] = trial.suggest_categorical(key, list(spec["choices"]))
        else:
            raise ValueError(
                f"sweep.space.{key}: type {kind!r} is not one of float, int, categorical"
            )
    return params


def override(key: str, value: Any) -> str:
    """A Hydra command-line override `key=value` for a sampled value."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, str):
        text = value if value.replace("_", "").replace("-", "").isalnum() else json.dumps(value)
    else:
        text = repr(value)
    return f"{key}={text}"


def override_key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")


def merge_overrides(*groups: Sequence[str]) -> list[str]:
    """Overrides of later groups replace those of earlier ones with the same key."""
    merged: dict[str, str] = {}
    for group in groups:
        for text in group:
            merged[override_key(text)] = text
    return list(merged.values())


class Objective:
    """One trial: sample, compose the train config, train in the trial's directory, return the
    metric. A failing trial records its error (`error` user attribute) and re-raises, so that
    Optuna marks it failed and the study goes on."""

    def __init__(
        self,
        compose: Callable[[list[str]], DictConfig],
        space: dict[str, dict],
        metric: str,
        base_overrides: Sequence[str],
        sweep_dir: Path,
        storage: optuna.storages.RDBStorage | None = None,
    ):
        self.compose, self.space, self.metric = compose, space, metric
        self.base_overrides, self.sweep_dir = list(base_overrides), sweep_dir
        self.storage = storage

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        return suggest(trial, self.space)

    def __call__(self, trial: optuna.Trial) -> float:
        run_dir = self.sweep_dir / "trials" / str(trial.number)
        try:
            # parameters, a heartbeat, then `worker`, in this order: see fail_lost_trials
            params = self.sample(trial)
            if self.storage is not None:
                self.storage.record_heartbeat(trial_id(self.storage, trial.study, trial.number))
            trial.set_user_attr("worker", worker_name())
            overrides = merge_overrides(
                self.base_overrides, [override(k, v) for k, v in params.items()]
            )
            trial.set_user_attr("overrides", overrides)
            trial.set_user_attr("output_dir", str(run_dir))
            cfg = self.compose([*overrides, f"output_dir={run_dir}"])
            trial.set_user_attr("config", train_yaml(cfg))
            train(cfg, callbacks=[PruningCallback(trial, self.metric)])
            metrics = json.loads((run_dir / "metrics.json").read_text())
            scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            trial.set_user_attr("metrics", scalars)
            if self.metric not in scalars:
                raise KeyError(
                    f"sweep.metric={self.metric} is not in metrics.json: {sorted(scalars)}"
                )
        except optuna.TrialPruned:
            raise
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        value = float(scalars[self.metric])
        return value if math.isfinite(value) else float("inf")


def train_yaml(cfg: DictConfig) -> str:
    """The trial's train config as a primary config for train.py: unresolved, with `output_dir`
    back to the run directory Hydra gives, and without a study recipe's `sweep` settings (an
    experiment such as etth1_search sets them; train.py refuses them)."""
    cfg = cfg.copy()
    cfg.output_dir = "${hydra:runtime.output_dir}"
    with open_dict(cfg):
        cfg.pop("sweep", None)
    return OmegaConf.to_yaml(cfg, resolve=False)


def open_storage(
    url: str,
    attempts: int = 5,
    heartbeat_interval: int = 60,
    grace_period: int = 180,
    on_lost: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats, so a trial whose worker died is marked failed (and
    `on_lost` called with it) instead of staying `RUNNING` for ever.

    Workers started together on a new database race to create its tables ("table
    alembic_version already exists"); the loser waits and opens what the winner made.
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=on_lost,
                )
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == attempts:
                raise
            time.sleep(0.5 * attempt)


def run_study(
    settings: DictConfig,
    compose: Callable[[list[str]], DictConfig],
    base_overrides: Sequence[str],
    sweep_dir: Path,
) -> optuna.Study:
    """Create or load the study, run trials until it holds `settings.n_trials` (or
    `settings.timeout` seconds pass), then write the reports."""
    check_one_process(compose(list(base_overrides)))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(sweep_dir)  # reports a killed run was writing
    url = settings.storage or f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    heartbeat = dict(
        heartbeat_interval=settings.heartbeat_interval, grace_period=settings.grace_period
    )
    on_lost = LostTrials(sweep_dir, settings.max_retry, settings.grace_period)
    storage = open_storage(url, **heartbeat, on_lost=on_lost)
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=storage,
        sampler=build(settings.sampler) if settings.sampler else None,
        pruner=build(settings.pruner) if settings.pruner else optuna.pruners.NopPruner(),
        direction=settings.direction,
        load_if_exists=True,
    )
    objective = Objective(
        compose,
        OmegaConf.to_container(settings.space),
        settings.metric,
        base_overrides,
        sweep_dir,
        storage,
    )
    deadline = time.monotonic() + settings.timeout if settings.timeout else math.inf
    waiting_for: set[int] = set()
    while time.monotonic() < deadline:
        fail_lost_trials(study, storage, settings.grace_period, on_lost, objective.sample)
        trials = study.get_trials(deepcopy=False)
        if budget_used(trials) < settings.n_trials or any(
            t.state == TrialState.WAITING for t in trials
        ):
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            continue
        running = {t.number for t in trials if t.state == TrialState.RUNNING}
        if not running:
            break
        if running != waiting_for:
            log.info(
                "waiting for running trials %s: they finish, or are failed and retried once "
                "silent for sweep.grace_period=%d s",
                sorted(running),
                settings.grace_period,
            )
            waiting_for = running
        poll = min(settings.heartbeat_interval, 10)  # a query: cheap next to a trial
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
    write_reports(study, sweep_dir, settings.metric)
    return study


def worker_name() -> str:
    """Who runs this process's trials, as recorded in the `worker` user attribute: the machine
    and this process (asked each time: a process forked after the import is another worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def trial_id(storage: optuna.storages.RDBStorage, study: optuna.Study, number: int) -> int:
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def budget_used(trials: Sequence[FrozenTrial]) -> int:
    """Trials that count against `n_trials`: finished or running, but not the lost ones that
    were retried (their retry counts instead)."""
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return sum(t.state in COUNTED and t.number not in retried for t in trials)


def fail_lost_trials(study, storage, grace_period: int, on_lost, sample) -> None:
    """Fail the trials whose worker is gone, calling `on_lost` for each.

    Optuna fails a running trial whose heartbeat is older than the grace period. The objective
    samples the parameters, records a heartbeat and then sets `worker`; a trial without `worker`
    half a grace period after it started belongs to a worker killed in between (microseconds,
    mostly), and is failed here first, before Optuna would: one without a heartbeat Optuna never
    fails, and one without parameters, failed, would stop BruteForceSampler for good (its tree
    takes a finished trial without parameters for the whole search space). Such a trial has its
    parameters drawn now (`sample`), and is retried with them.
    """
    oldest = datetime.datetime.now() - datetime.timedelta(seconds=grace_period / 2)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "worker" in trial.user_attrs or trial.datetime_start > oldest:
            continue
        key = trial_id(storage, study, trial.number)
        if not trial.params:
            try:
                sample(optuna.Trial(study, key))
            except Exception as error:  # e.g. another worker sampled it meanwhile
                log.warning("trial %d: its parameters not drawn (%s)", trial.number, error)
        try:
            failed = storage.set_trial_state_values(key, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker was first
            continue
        if failed:
            on_lost(study, storage.get_trial(key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class LostTrials:
    """Called for each trial found lost (its worker stopped without a word): removes its partial
    folder when it was run on this machine, notes what happened in the study's user attributes
    (`trial <n> lost`), and enqueues its parameters again up to `max_retry` times."""

    def __init__(self, sweep_dir: Path, max_retry: int, grace_period: int):
        self.trials_dir = (sweep_dir / "trials").resolve()
        self.max_retry, self.grace_period = max_retry, grace_period

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        worker = trial.user_attrs.get("worker", "unknown (it never started)")
        note = f"worker {worker} sent no heartbeat for sweep.grace_period={self.grace_period} s"
        folder = self._partial_folder(trial)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            note += f"; its partial folder {folder} was removed"
        retries = trial.user_attrs.get("retries", 0)
        if retries < self.max_retry:
            study.enqueue_trial(
                trial.params, user_attrs={"retry_of": trial.number, "retries": retries + 1}
            )
            note += "; its parameters were enqueued again"
        else:
            note += f"; not retried (sweep.max_retry={self.max_retry})"
        study.set_user_attr(f"trial {trial.number} lost", note)
        log.warning("trial %d lost: %s", trial.number, note)

    def _partial_folder(self, trial: FrozenTrial) -> Path | None:
        """The trial's folder, if its worker ran on this machine and it lies in trials/."""
        worker, output_dir = trial.user_attrs.get("worker"), trial.user_attrs.get("output_dir")
        if not worker or not output_dir or worker.rsplit(":", 1)[0] != socket.gethostname():
            return None
        folder = Path(output_dir).resolve()
        return folder if folder.parent == self.trials_dir and folder.is_dir() else None


def check_one_process(cfg: DictConfig) -> None:
    """Trials train in this process: a multi-process strategy would start copies of the whole
    sweep. Several workers on one study are the way to use more devices."""
    strategy, devices = str(cfg.trainer.get("strategy", "auto")), cfg.trainer.get("devices", 1)
    if strategy.startswith("ddp") or (isinstance(devices, int) and devices > 1):
        raise ValueError(
            f"sweep trials run in one process, not with trainer.strategy={strategy} "
            f"trainer.devices={devices}: start several sweep.py workers on one study instead"
        )


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    lost = study.user_attrs
    for trial in study.get_trials(deepcopy=False):
        duration = trial.duration.total_seconds() if trial.duration else None
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "duration_s": duration,
                **trial.params,
                **trial.user_attrs.get("metrics", {}),
                "error": trial.user_attrs.get("error") or lost.get(f"trial {trial.number} lost"),
                "output_dir": trial.user_attrs.get("output_dir"),
                "retry_of": trial.user_attrs.get("retry_of"),
            }
        )
    return rows


def write_reports(study: optuna.Study, sweep_dir: Path, metric: str) -> None:
    """`trials.csv` / `trials.md` (every trial) and, once a trial completed, `best.yaml` (the best
    trial's train config) and `best.json` (its number, value, params, overrides)."""
    rows = trial_rows(study)
    params = dict.fromkeys(name for trial in study.trials for name in trial.params)
    leading = ("number", "state", "value", "duration_s", *params, *LEADING_METRICS, "error")
    write_tables(rows, leading, sweep_dir / "trials")
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        log.warning("study %s: no completed trial yet, so no best.yaml", study.study_name)
        return
    best = study.best_trial
    header = (
        f"# best trial {best.number} of study {study.study_name}: {metric}={best.value:.6g}\n"
        f"# python train.py --config-dir {sweep_dir} --config-name best\n"
    )
    write_atomic(sweep_dir / "best.yaml", header + best.user_attrs["config"])
    summary = {
        "study": study.study_name,
        "number": best.number,
        "metric": metric,
        "value": best.value,
        "params": best.params,
        "overrides": best.user_attrs.get("overrides", []),
        "output_dir": best.user_attrs.get("output_dir"),
        "trials": {s.name: sum(t.state == s for t in study.trials) for s in TrialState},
    }
    write_atomic(sweep_dir / "best.json", json.dumps(summary, indent=2) + "\n")
    log.info("best trial %d: %s=%.6g\n%s", best.number, metric, best.value, yaml.safe_dump(summary))
