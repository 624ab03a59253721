"""The naive forecasts every model is measured against, in torch (no other dependency): repeat
the last value, repeat the last season. `forecast.baselines` has the numpy reference."""

from __future__ import annotations

import torch

NAIVE_KINDS = ("last", "seasonal")


def naive_last(history: torch.Tensor, horizon: int) -> torch.Tensor:
    """Repeat the last value: history [..., L, C] -> [..., horizon, C]."""
    return history[..., -1:, :].expand(*history.shape[:-2], horizon, history.shape[-1])


def naive_seasonal(history: torch.Tensor, horizon: int, season: int) -> torch.Tensor:
    """Repeat the last season: history [..., L, C] -> [..., horizon, C]; the last value where
    the history is shorter than a season (or the season is 1), as MASE's scale falls back."""
    length = history.shape[-2]
    if season <= 1 or length < season:
        return naive_last(history, horizon)
    rows = length - season + torch.arange(horizon, device=history.device) % season  # [H]
    return history[..., rows, :]
