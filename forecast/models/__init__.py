"""LightningModules: backbone + head + loss + metrics + optimiser."""

from forecast.models.forecaster import Forecaster

__all__ = ["Forecaster"]
