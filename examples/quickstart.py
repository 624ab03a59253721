"""Quickstart: fit a forecaster on a DataFrame, forecast, cross-validate, save, reload, plot.

    python examples/quickstart.py              # a few minutes on a laptop CPU
    python examples/quickstart.py --quick      # a tiny budget, to check it runs (the tests do)

The data is the ETTh1 copy that ships with forecast (hourly, 7 columns); any DataFrame works:
long (`unique_id, ds, y`) or wide (a time column, or a DatetimeIndex, and a column per series).
"""

import argparse
import sys
import tempfile
from pathlib import Path

from forecast.extras import available, missing_message

if not available("matplotlib"):  # the `plots` extra
    sys.exit(missing_message("matplotlib", "plots", "examples/quickstart.py (its plot)"))
import matplotlib  # noqa: E402

matplotlib.use("Agg")  # write the plot to a file; drop this line in a notebook
import matplotlib.pyplot as plt
import pandas as pd

import forecast
from forecast.data import dataset_path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="a tiny training budget")
parser.add_argument("--out", default=None, help="folder for the runs and the plot")
args = parser.parse_args()
out = Path(args.out or tempfile.mkdtemp(prefix="forecast-quickstart-"))

# A DataFrame of your own: here two years of hourly ETTh1, in long form (one row per series
# and time), the convention of NeuralForecast and friends.
wide = pd.read_csv(dataset_path("ETTh1.csv"), parse_dates=["date"]).iloc[: 24 * 365]
df = wide.melt(id_vars="date", var_name="unique_id", value_name="y").rename(columns={"date": "ds"})

budget = ["trainer.limit_train_batches=5", "model.hidden_size=32"] if args.quick else []
run = forecast.fit(
    df,
    model="gru",
    lookback=96,
    horizon=24,
    max_epochs=1 if args.quick else 10,
    overrides=budget,  # any train.py setting, as on its command line
    output_dir=out / "run",
    progress=not args.quick,
)
print(f"test MSE {run.metrics['test_mse']:.3f} (normalised), run folder {run.path}")

future = run.predict(df)  # unique_id, ds, step, y_hat: the next 24 hours of every series
cv = run.cross_validation(df, n_windows=3)  # unique_id, ds, cutoff, y, y_hat
print(f"cross-validation MAE: {(cv['y'] - cv['y_hat']).abs().mean():.3f}")

saved = run.save(out / "saved")  # a whole run folder, self-contained
again = forecast.load(saved.path)  # forecasting needs only its export (no Lightning)
assert again.predict(df).equals(future)

fig, ax = plt.subplots(figsize=(10, 3))
series = "OT"
history = df[df["unique_id"] == series].tail(96)
ax.plot(history["ds"], history["y"], color="0.4", label="history")
mine = future[future["unique_id"] == series]
ax.plot(mine["ds"], mine["y_hat"], color="tab:red", label="forecast")
ax.set_title(f"{series}: the next {run.horizon} hours")
ax.legend()
fig.tight_layout()
fig.savefig(out / "quickstart.png", dpi=80)
print(f"plot: {out / 'quickstart.png'}")
