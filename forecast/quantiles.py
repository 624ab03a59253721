"""Quantile forecasts' conventions, shared by training, metrics and forecasting (no torch)."""

from __future__ import annotations


def median_index(quantiles) -> int:
    """Which of `quantiles` serves as the point forecast: the one nearest 0.5 (0 if none)."""
    return min(range(len(quantiles)), key=lambda i: abs(quantiles[i] - 0.5)) if quantiles else 0
