"""forecast: recurrent time-series forecasters (LSTM, LSTMP, GRU) trained with Lightning.

import forecast
run = forecast.fit(df, model="lstm", horizon=24)   # a DataFrame or a file
run.predict(df); run.cross_validation(df); run.save("my_model")
forecast.load("my_model").predict(new_df)          # any run folder, without Lightning
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forecast.api import Run, fit, load

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "fit", "load"]


def __getattr__(name: str):
    """`forecast.fit`, `forecast.load` and `forecast.Run`, imported on first use: the entry
    scripts import `forecast.commands` before `prepare_process` may restart the process and sets
    OpenMP's wait policy, which torch reads once, when it is imported."""
    if name in ("Run", "fit", "load"):
        from forecast import api

        return getattr(api, name)
    raise AttributeError(f"module 'forecast' has no attribute {name!r}")
