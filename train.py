"""Train, evaluate and export a forecaster: python train.py [model=lstmp] [data.horizon=192] ...

The checkout's shell of `forecast-train` (forecast/commands/train.py): the same Hydra app."""

from forecast.commands.train import entry

if __name__ == "__main__":
    entry()
