"""Train, evaluate and export a forecaster: python train.py [model=lstmp] [data.horizon=192] ...

Exit status 2 with a one-line message (no traceback) when the data cannot be used: the message
names the file, column and row, and the fix.
"""

import sys

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.runtime import tune_malloc

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from forecast.data.errors import DataError
    from forecast.pipeline import train

    try:
        return train(cfg)
    except DataError as err:
        print(f"train.py: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    tune_malloc()
    main()
