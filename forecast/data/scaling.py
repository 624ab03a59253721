"""Scalers from scikit-learn, fitted on training rows only."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}


def fit_scaler(kind: str, train_values: np.ndarray):
    """Fit a per-channel scaler on `train_values` [T, C]; `none` returns None."""
    if kind == "none":
        return None
    if kind not in SCALERS:
        raise ValueError(f"scaler must be one of {[*SCALERS, 'none']}, got {kind!r}")
    return SCALERS[kind]().fit(train_values)


def transform(scaler, values: np.ndarray) -> np.ndarray:
    if scaler is None:
        return values.astype(np.float32, copy=False)
    return scaler.transform(values).astype(np.float32)
