"""EnsembleNet: K trained ForecastNets as one network (pure torch), for evaluation and export.

The members may read different look-backs: the ensemble takes the longest, and each member its
last `lookback` steps of it (of x [B, L, C], of the past covariates [B, L, Kp] and of the future
covariates [B, L + H, Kf], whose last H steps are the horizon for every member). Their forecasts
[B, H, C, Q] are combined step by step by their median or mean. Each member keeps its own blend
toward the naive forecast, chosen on validation when it trained; quantile forecasts are
combined level by level (the median and the mean of sorted quantiles stay sorted).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from forecast.models.network import ForecastNet

COMBINES = ("median", "mean")


def combine(forecasts: torch.Tensor, how: str) -> torch.Tensor:
    """The median or mean over the first dimension (the members) of `forecasts` [K, ...].

    The median of an even number of members is the mean of the two middle ones (numpy's), not
    torch.median's lower one; it is taken from a sort, which torch.export and ONNX (TopK) take.
    """
    if how not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {how!r}")
    k = forecasts.shape[0]
    if k == 1:
        return forecasts[0]
    if how == "mean":
        return forecasts.mean(dim=0)
    ordered = forecasts.sort(dim=0).values
    middle = k // 2
    if k % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


class EnsembleNet(nn.Module):
    """[B, lookback, C] (scaled, the longest look-back of the members) -> [B, horizon, C, Q]:
    the `how` (median or mean) of the members' forecasts. Takes what a ForecastNet takes and has
    what the export reads of one (lookback, horizon, n_quantiles, the covariate encoders)."""

    def __init__(self, members: Sequence[ForecastNet], how: str = "median"):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if how not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {how!r}")
        first = members[0]
        for name in ("horizon", "n_channels", "n_quantiles", "point_index"):
            values = [getattr(m, name) for m in members]
            if len(set(values)) > 1:
                raise ValueError(f"the members of an ensemble differ in {name}: {values}")
        for kind in ("past", "future", "static"):
            widths = [_columns(getattr(m, f"{kind}_encoder")) for m in members]
            if len(set(widths)) > 1:
                raise ValueError(f"the members of an ensemble differ in {kind} covariates")
        self.members = nn.ModuleList(members)
        self.how = how
        self.lookback = max(m.lookback for m in members)
        self.horizon, self.n_channels = first.horizon, first.n_channels
        self.n_quantiles, self.point_index = first.n_quantiles, first.point_index

    # what forecast.export reads of a network: the covariate inputs (the members share their
    # columns) and whether it normalises each window (RevIN: then it needs no scaler per series)
    @property
    def past_encoder(self):
        return self.members[0].past_encoder

    @property
    def future_encoder(self):
        return self.members[0].future_encoder

    @property
    def static_encoder(self):
        return self.members[0].static_encoder

    @property
    def revin(self):
        """A member's RevIN where every member has one, else None."""
        return None if any(m.revin is None for m in self.members) else self.members[0].revin

    def forward(
        self,
        x: torch.Tensor,
        past: torch.Tensor | None = None,
        future: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: [B, lookback, C] -> [B, horizon, C, Q]; covariates as ForecastNet.forward takes
        them, over the longest look-back (past [B, lookback, Kp], future [B, lookback + H, Kf])."""
        forecasts = []
        for member in self.members:
            skip = self.lookback - member.lookback  # the member reads the last steps only
            forecasts.append(
                member(
                    x[:, skip:],
                    None if past is None else past[:, skip:],
                    None if future is None else future[:, skip:],
                    static,
                )
            )
        return combine(torch.stack(forecasts), self.how)


def _columns(encoder) -> int:
    return 0 if encoder is None else encoder.n_columns
