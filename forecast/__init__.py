"""forecast: recurrent time-series forecasters (LSTM, LSTMP, GRU) trained with Lightning."""

__version__ = "0.1.0"
