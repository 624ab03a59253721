"""Sliding windows over one contiguous tensor, served as views (no copies)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class WindowDataset(Dataset):
    """Window k is `series[k*stride : k*stride + lookback]` with target the next `horizon` rows.

    `series` is [T, C]; items are dicts of views into it: `x` [lookback, C], `y` [horizon, C].
    """

    def __init__(self, series: torch.Tensor, lookback: int, horizon: int, stride: int = 1):
        if series.dim() != 2:
            raise ValueError(f"series must be [time, channels], got shape {tuple(series.shape)}")
        if len(series) < lookback + horizon:
            raise ValueError(
                f"a series of {len(series)} rows is shorter than lookback + horizon "
                f"({lookback} + {horizon})"
            )
        self.lookback, self.horizon = lookback, horizon
        # [N, C, lookback + horizon]: a strided view of `series`
        self.windows = series.unfold(0, lookback + horizon, stride)

    def __len__(self) -> int:
        return self.windows.shape[0]

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        window = self.windows[k].T  # [lookback + horizon, C]
        return {"x": window[: self.lookback], "y": window[self.lookback :]}
