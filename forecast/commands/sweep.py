"""forecast-sweep (python sweep.py in a checkout): an Optuna study over forecast-train.

forecast-sweep [sweep.n_trials=50] [model.hidden_size=64] ... writes, in the sweep directory
(`outputs/sweeps/<study name>` unless hydra.run.dir says otherwise): study.db (the default
storage), trials/<number>/ (one train run each), trials.csv and trials.md (every trial),
best.yaml (the best trial's config for forecast-train) and best.json; and says so at the end. A
configuration mistake is one line on stderr, exit status 2. Needs the `sweep` extra (Optuna).
"""

import re
from pathlib import Path

import hydra
from omegaconf import DictConfig

from forecast.cli import run
from forecast.commands import CONFIG_PATH, command, prog
from forecast.config import register_configs
from forecast.runtime import apply_threads, prepare_process

# keys of this app that are not train keys; every other command-line override goes to each trial
OWN_KEYS = ("sweep", "hydra")


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="sweep")
def main(cfg: DictConfig) -> float | None:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    from forecast.cli import ConfigError, check_train_config, reported
    from forecast.extras import check_config, check_storage, require
    from forecast.summary import study_message

    hydra_cfg = HydraConfig.get()
    with reported(prog(), "sweep"):
        require("optuna", "sweep", "this command")
        from forecast.sweep import check_one_process, override_key, run_study

        train_overrides = [
            o
            for o in hydra_cfg.overrides.task
            if re.split(r"[./]", override_key(o))[0] not in OWN_KEYS
        ]
        check_train_config(cfg, hydra_cfg.overrides.task, known={"sweep.timeout": float | None})
        check_config(cfg)  # an object whose optional dependency is missing
        check_storage(cfg.sweep.storage)
        try:
            check_one_process(cfg)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        apply_threads(cfg.threads)
        sweep_dir = Path(hydra_cfg.runtime.output_dir)
        study = run_study(
            cfg.sweep,
            lambda overrides: compose(config_name="config", overrides=overrides),
            train_overrides,
            sweep_dir,
        )
    print(study_message(sweep_dir, train=command("train")))
    completed = [t for t in study.trials if t.value is not None]
    return study.best_value if completed else None


def entry() -> None:
    """The console script `forecast-sweep`."""
    prepare_process()  # may restart the process: nothing heavy is imported before it
    register_configs()  # imports the model classes (and so Lightning) for their signatures
    run(main, prog(), "sweep")
