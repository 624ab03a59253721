"""forecast-predict (python predict.py in a checkout): forecast many files from an exported model.

forecast-predict model_dir=outputs/<run> input=<file, folder or glob> output=<folder>

Exit status: 0 when every file is forecast or up to date, 1 when any file failed (each is
reported with the reason), 2 when the run is refused before anything is forecast (a clear
one-line message on stderr: a setting missing or mistyped, no inputs, no model, the output is a
file, outputs would clash).
"""

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from forecast.cli import run
from forecast.commands import CONFIG_PATH, prog
from forecast.config import register_resolvers
from forecast.runtime import apply_threads, prepare_process

register_resolvers()

# what the keys without a default (??? in forecast/conf/predict.yaml) take
REQUIRED = {"model_dir": "outputs/<date>/<time>", "input": "<file, folder or glob>"}
REQUIRED["output"] = "<folder>"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from forecast.cli import ConfigError, check_overrides, not_set, reported
    from forecast.export import ExportError
    from forecast.extras import require
    from forecast.predict import BatchForecaster, PredictError

    with reported(prog(), "predict"):
        missing = [key for key in REQUIRED if OmegaConf.is_missing(cfg, key)]
        if missing:
            example = " ".join(f"{key}={REQUIRED[key]}" for key in missing)
            raise ConfigError(not_set(missing, example))
        check_overrides(cfg, HydraConfig.get().overrides.task)
        if cfg.engine == "onnx":
            require("onnxruntime", "onnx", "engine=onnx")
        apply_threads(cfg.threads)
        try:
            forecaster = BatchForecaster(
                cfg.model_dir,
                engine=cfg.engine,
                batch_size=cfg.batch_size,
                format=cfg.format,
                overwrite=cfg.overwrite,
                backtest=cfg.backtest,
                n_windows=cfg.n_windows,
                # null keys (forecast/conf/predict.yaml lists them all) keep the export's options
                data_options=OmegaConf.to_container(cfg.data, resolve=True),
                future=cfg.get("future"),
            )
            summary = forecaster.run(cfg.input, cfg.output)
        except (PredictError, ExportError, FileNotFoundError) as err:
            print(f"{prog()}: {err}", file=sys.stderr)
            sys.exit(2)
    if summary.failed:
        sys.exit(1)


def entry() -> None:
    """The console script `forecast-predict`."""
    prepare_process()
    run(main, prog(), "predict")
