"""forecast-train (python train.py in a checkout): train, evaluate and export a forecaster.

forecast-train [model=lstmp] [data.horizon=192] ...: ends with the main test metrics, the run
folder and the command that forecasts with the run. Exit status 2 with a one-line message (no
traceback) when the config or the data cannot be used: the message names the key (or the file,
column and row) and the fix.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from forecast.cli import run
from forecast.commands import CONFIG_PATH, command, prog
from forecast.config import register_configs, upgrade_config
from forecast.runtime import apply_threads, prepare_process


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from pytorch_lightning.utilities import rank_zero_only

    from forecast.cli import check_train_config, refuse_study_recipe, reported
    from forecast.data.errors import DataError
    from forecast.extras import check_config
    from forecast.pipeline import train
    from forecast.summary import run_summary

    hydra_cfg = HydraConfig.get()
    with reported(prog(), "config"):
        upgrade_config(cfg)  # a best.yaml of an older sweep: the options added since
        check_train_config(cfg, hydra_cfg.overrides.task)
        refuse_study_recipe(cfg, hydra_cfg.runtime.choices.get("experiment"))
        check_config(cfg)  # an object whose optional dependency is missing
        apply_threads(cfg.threads)
        try:
            objective = train(cfg)
        except DataError as err:
            print(f"{prog()}: {err}", file=sys.stderr)
            sys.exit(2)
    # once per run (DDP runs this in every process); a multirun says where its summary went
    if hydra_cfg.mode == RunMode.RUN and rank_zero_only.rank == 0:
        print(run_summary(Path(cfg.output_dir), predict=command("predict")))
    return objective


def entry() -> None:
    """The console script `forecast-train`."""
    prepare_process()  # may restart the process: nothing heavy is imported before it
    register_configs()  # imports the model classes (and so Lightning) for their signatures
    run(main, prog(), "config")
