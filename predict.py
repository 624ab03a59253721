"""Forecast many files from an exported model:
python predict.py model_dir=outputs/<run> input=<file, folder or glob> output=<folder>

The checkout's shell of `forecast-predict` (forecast/commands/predict.py): the same Hydra app."""

from forecast.commands.predict import entry

if __name__ == "__main__":
    entry()
