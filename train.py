"""Train, evaluate and export a forecaster: python train.py [model=lstmp] [data.horizon=192] ..."""

import hydra
from omegaconf import DictConfig

from forecast.config import register_resolvers
from forecast.runtime import tune_malloc

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from forecast.pipeline import train

    return train(cfg)


if __name__ == "__main__":
    tune_malloc()
    main()
