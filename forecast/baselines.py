"""Reference forecasts the field compares against: naive, seasonal naive and M4's Naive2."""

from __future__ import annotations

import numpy as np


def naive(history: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last value: history [T] -> [horizon]."""
    return np.full(horizon, history[-1], dtype=np.float64)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last season: history [T] -> [horizon]."""
    last = history[-season:]
    return np.resize(last, horizon).astype(np.float64)


def is_seasonal(history: np.ndarray, season: int) -> bool:
    """M4's 90% autocorrelation test at lag `season` (needs three seasons of history)."""
    n = len(history)
    if season <= 1 or n < 3 * season:
        return False
    centred = history - history.mean()
    denominator = np.dot(centred, centred)
    acf = np.array([np.dot(centred[k:], centred[: n - k]) / denominator for k in range(season + 1)])
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(acf[1:season] ** 2)) / n)
    return bool(abs(acf[season]) > limit)


def seasonal_indices(history: np.ndarray, season: int) -> np.ndarray:
    """Classical multiplicative decomposition's seasonal indices [season], mean 1.

    Index j belongs to the positions t with t % season == j (t counted from the first value).
    """
    kernel = np.ones(season + 1) / season  # centred 2 x m moving average for an even season
    kernel[0] = kernel[-1] = 0.5 / season
    if season % 2:
        kernel = np.ones(season) / season
    trend = np.convolve(history, kernel, mode="valid")
    offset = (len(kernel) - 1) // 2
    ratios = history[offset : offset + len(trend)] / trend
    positions = (np.arange(len(trend)) + offset) % season
    indices = np.array([ratios[positions == j].mean() for j in range(season)])
    return indices / indices.mean()


def naive2(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """M4's Naive2: the naive forecast of the seasonally adjusted series, reseasonalised."""
    history = np.asarray(history, dtype=np.float64)
    if not is_seasonal(history, season):
        return naive(history, horizon)
    indices = seasonal_indices(history, season)
    n = len(history)
    adjusted_last = history[-1] / indices[(n - 1) % season]
    future = indices[(n + np.arange(horizon)) % season]
    return adjusted_last * future
