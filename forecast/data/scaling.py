"""Scalers from scikit-learn, fitted on training rows only, kept as affine parameters.

Every supported scaler is affine per channel, so a fitted one is kept as `mean` and `scale` with
raw = scaled * scale + mean: the form that travels with an exported model and that undoes the
scaling of a forecast.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
SCALE_BY = ("channel", "series")


def fit_affine(kind: str, parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Fit one scaler on the rows of `parts` (each [T_i, C]); return its mean and scale [C]."""
    if kind not in (*SCALERS, "none"):
        raise ValueError(f"scaler must be one of {[*SCALERS, 'none']}, got {kind!r}")
    n_channels = parts[0].shape[1]
    if kind == "none" or n_channels == 0:
        return np.zeros(n_channels), np.ones(n_channels)
    scaler = SCALERS[kind]()
    if len(parts) == 1:
        scaler.fit(parts[0])
    elif hasattr(scaler, "partial_fit"):  # many series: no copy of all their rows at once
        for chunk in _chunks(parts):
            scaler.partial_fit(chunk)
    else:
        scaler.fit(np.concatenate(parts))
    return affine(scaler)


def _chunks(parts: list[np.ndarray], rows: int = 1 << 20):
    """Consecutive parts concatenated into chunks of about `rows` rows: few calls, small copies."""
    start, size = 0, 0
    for end, part in enumerate(parts, start=1):
        size += len(part)
        if size >= rows or end == len(parts):
            yield np.concatenate(parts[start:end])
            start, size = end, 0


def affine(scaler) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) [C] of a fitted scaler, such that raw = scaled * scale + mean."""
    if isinstance(scaler, StandardScaler):
        mean, scale = scaler.mean_, scaler.scale_
    elif isinstance(scaler, RobustScaler):
        mean, scale = scaler.center_, scaler.scale_
    else:  # MinMaxScaler: scaled = raw * scale_ + min_
        mean, scale = -scaler.min_ / scaler.scale_, 1.0 / scaler.scale_
    return np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)


def fit_params(
    kind: str, values: np.ndarray, starts: np.ndarray, ends: np.ndarray, by: str
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale [G, C] from the training rows starts[s]:ends[s] of `values` [N, C].

    G is 1 (`by="channel"`: one scaler over every series) or S (`by="series"`).
    """
    if by not in SCALE_BY:
        raise ValueError(f"scale_by must be one of {SCALE_BY}, got {by!r}")
    parts = [values[a:b] for a, b in zip(starts, ends, strict=True)]  # views, no copies
    if by == "channel":
        mean, scale = fit_affine(kind, parts)
        return mean[None], scale[None]
    lengths = ends - starts
    if len(parts) > 1 and lengths.max() * len(parts) <= 2 * lengths.sum():
        return _fit_side_by_side(kind, parts, int(lengths.max()))
    fitted = [fit_affine(kind, [part]) for part in parts]
    return np.stack([m for m, _ in fitted]), np.stack([s for _, s in fitted])


def _fit_side_by_side(kind: str, parts: list[np.ndarray], longest: int):
    """One scaler over the series as columns, NaN-padded (scikit-learn's scalers skip NaN).

    One fit instead of one per series: 10,000 series take a second, not a minute. Used when
    the padding costs no more than the rows themselves.
    """
    n_channels = parts[0].shape[1]
    side_by_side = np.full((longest, len(parts), n_channels), np.nan, dtype=np.float32)
    for s, part in enumerate(parts):
        side_by_side[: len(part), s] = part
    mean, scale = fit_affine(kind, [side_by_side.reshape(longest, -1)])  # [S * C]
    return mean.reshape(len(parts), n_channels), scale.reshape(len(parts), n_channels)


def scale_in_place(
    values: np.ndarray, starts: np.ndarray, ends: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> None:
    """values[starts[s]:ends[s]] = (raw - mean) / scale, in place: no second copy of the data."""
    if len(mean) == 1:
        values -= mean[0].astype(values.dtype)
        values /= scale[0].astype(values.dtype)
        return
    mean, scale = mean.astype(values.dtype), scale.astype(values.dtype)
    for a, b, m, s in zip(starts, ends, mean, scale, strict=True):
        values[a:b] -= m
        values[a:b] /= s
