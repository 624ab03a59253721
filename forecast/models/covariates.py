"""The network's view of covariates: raw values (numbers, codes of categorical levels) in,
features out. Part of the network, so an exported model takes covariates as they are read."""

from __future__ import annotations

import torch
from torch import nn

from forecast.data.covariates import Columns


class CovariateEncoder(nn.Module):
    """Raw covariates [..., K] -> features [..., K']: numeric columns standardised with the
    training rows' mean and scale, categorical ones (codes into their levels) one-hot, or, where
    a column has more than `embed` levels (and `embed` > 0), a learned `embed`-long vector per
    level (a series id over thousands of series: a one-hot as wide as the levels would be
    repeated in every segment of every window); numeric features first, then each categorical
    column's, in column order."""

    def __init__(self, columns: Columns, embed: int = 0):
        super().__init__()
        if embed < 0:
            raise ValueError(f"category_embedding must be >= 0 (0: one-hot), got {embed}")
        names, levels = columns.names, columns.levels
        numeric = [j for j, name in enumerate(names) if name not in levels]
        self.register_buffer("numeric", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.register_buffer("mean", torch.tensor([columns.mean[j] for j in numeric]))
        self.register_buffer("scale", torch.tensor([columns.scale[j] for j in numeric]))
        self.categorical = [
            (j, len(levels[name])) for j, name in enumerate(names) if name in levels
        ]
        # one Embedding per embedded column, by its position in self.categorical
        self.embeddings = nn.ModuleDict(
            {
                str(i): _embedding(n, embed)
                for i, (_, n) in enumerate(self.categorical)
                if 0 < embed < n
            }
        )
        self.width = len(numeric) + sum(  # features out
            embed if str(i) in self.embeddings else n for i, (_, n) in enumerate(self.categorical)
        )
        self.n_columns = len(names)  # columns in

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        parts = []
        if len(self.numeric):
            values = raw.index_select(-1, self.numeric)  # [..., Kn]
            parts.append((values - self.mean.to(raw.dtype)) / self.scale.to(raw.dtype))
        for i, (j, n) in enumerate(self.categorical):
            codes = raw[..., j : j + 1]  # [..., 1]
            if str(i) in self.embeddings:  # [..., embed]
                # a code that is no level (negative, beyond the levels, fractional) gives zeros,
                # as its one-hot would, in every engine (ONNX's Gather would wrap -1 to the last)
                code = codes[..., 0]
                valid = (code >= 0) & (code < n) & (code == code.floor())
                vectors = self.embeddings[str(i)](code.clamp(0, n - 1).long())
                parts.append((vectors * valid[..., None]).to(raw.dtype))
                continue
            levels = torch.arange(n, device=raw.device, dtype=raw.dtype)
            parts.append((codes == levels).to(raw.dtype))  # [..., n]
        return torch.cat(parts, dim=-1)


def _embedding(n: int, size: int) -> nn.Embedding:
    """n levels' vectors of `size`, drawn with norm about 1 as a one-hot's row has."""
    embedding = nn.Embedding(n, size)
    nn.init.normal_(embedding.weight, std=size**-0.5)
    return embedding
