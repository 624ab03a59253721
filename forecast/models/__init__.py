"""LightningModules: backbone + head + loss + metrics + optimiser."""

from forecast.models.forecaster import Forecaster
from forecast.models.network import ForecastNet, ScaledForecastNet

__all__ = ["ForecastNet", "Forecaster", "ScaledForecastNet"]
