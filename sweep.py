"""An Optuna study over train.py: python sweep.py [sweep.n_trials=50] [model.hidden_size=64] ...

The checkout's shell of `forecast-sweep` (forecast/commands/sweep.py): the same Hydra app."""

from forecast.commands.sweep import entry

if __name__ == "__main__":
    entry()
