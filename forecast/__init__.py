"""forecast: recurrent time-series forecasters (LSTM, LSTMP, GRU) trained with Lightning.

import forecast
run = forecast.fit(df, model="lstm", horizon=24)   # a DataFrame or a file
run.predict(df); run.cross_validation(df); run.save("my_model")
forecast.load("my_model").predict(new_df)          # any run folder, without Lightning
"""

from forecast.api import Run, fit, load

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "fit", "load"]
