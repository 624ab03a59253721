"""The network's view of covariates: raw values (numbers, codes of categorical levels) in,
features out. Part of the network, so an exported model takes covariates as they are read."""

from __future__ import annotations

import torch
from torch import nn

from forecast.data.covariates import Columns


class CovariateEncoder(nn.Module):
    """Raw covariates [..., K] -> features [..., K']: numeric columns standardised with the
    training rows' mean and scale, categorical ones (codes into their levels) one-hot; numeric
    features first, then each categorical column's levels, in column order."""

    def __init__(self, columns: Columns):
        super().__init__()
        names, levels = columns.names, columns.levels
        numeric = [j for j, name in enumerate(names) if name not in levels]
        self.register_buffer("numeric", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.register_buffer("mean", torch.tensor([columns.mean[j] for j in numeric]))
        self.register_buffer("scale", torch.tensor([columns.scale[j] for j in numeric]))
        self.categorical = [
            (j, len(levels[name])) for j, name in enumerate(names) if name in levels
        ]
        self.width = columns.width  # features out
        self.n_columns = len(names)  # columns in

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        parts = []
        if len(self.numeric):
            values = raw.index_select(-1, self.numeric)  # [..., Kn]
            parts.append((values - self.mean.to(raw.dtype)) / self.scale.to(raw.dtype))
        for j, n in self.categorical:
            codes = raw[..., j : j + 1]  # [..., 1]
            levels = torch.arange(n, device=raw.device, dtype=raw.dtype)
            parts.append((codes == levels).to(raw.dtype))  # [..., n]
        return torch.cat(parts, dim=-1)
