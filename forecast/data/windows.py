"""Sliding windows over many series stored end to end in one tensor, served without copies.

A window is `values[row : row + lookback + horizon]`, the same view as row k of
`values.unfold(0, lookback + horizon, stride)` over its series' part. Nothing is materialised:
window k is found from cumulative window counts per segment by binary search, so 10,000 series
of unequal length cost a few integers each.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate


class WindowDataset(Dataset):
    """Windows over segments [start, end) of `values` [N, C]; each segment is one series' part.

    Item k is a dict of views into `values`: `x` [lookback, C] and `y` [horizon, C] (no `y`
    when horizon is 0: forecasting), `series` (the series index), with `independent=True` also
    `channel` (then x, y are [.., 1]: each channel is a univariate series); covariates when
    given: `past` [lookback, Kp] from `past` [N, Kp], `future` [lookback + horizon, Kf] from
    `future` [N, Kf], `static` [Ks] from `static` [S, Ks] (a row per series index).
    `dataset.__getitems__(indices)` returns a whole batch at once (the DataLoader uses it: pass
    `collate_fn=collate`).
    """

    def __init__(
        self,
        values: torch.Tensor,
        lookback: int,
        horizon: int,
        stride: int = 1,
        *,
        segments: np.ndarray | None = None,
        series: np.ndarray | None = None,
        independent: bool = False,
        past: torch.Tensor | None = None,
        future: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
    ):
        if values.dim() != 2:
            raise ValueError(f"values must be [time, channels], got shape {tuple(values.shape)}")
        segments = np.asarray([[0, len(values)]] if segments is None else segments, np.int64)
        self.values, self.lookback, self.horizon, self.stride = values, lookback, horizon, stride
        self.past, self.future, self.static = past, future, static
        self.independent = independent
        self.starts = segments[:, 0]  # [S]
        self.series = np.arange(len(segments)) if series is None else np.asarray(series)
        per_segment = np.maximum(
            (segments[:, 1] - self.starts - lookback - horizon) // stride + 1, 0
        )
        self.n_channels = values.shape[1] if independent else 1  # units per segment
        self.counts = np.repeat(per_segment, self.n_channels)  # [S * units]
        self.ends = np.cumsum(self.counts)  # window k lies in the unit where ends > k first
        if len(self) == 0:
            raise ValueError(
                f"no window fits: every series part is shorter than lookback + horizon "
                f"({lookback} + {horizon})"
            )
        self.unfolded = _unfold(values, lookback + horizon)  # [N - L - H + 1, C, L + H], a view

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _locate(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment, channel and first row [B] of windows `k` [B]."""
        if k.size and (k.min() < 0 or k.max() >= len(self)):
            raise IndexError(f"window index out of range for {len(self)} windows")
        unit = np.searchsorted(self.ends, k, side="right")
        within = k - (self.ends[unit] - self.counts[unit])
        segment, channel = np.divmod(unit, self.n_channels)
        return segment, channel, self.starts[segment] + within * self.stride

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        k = int(k) + len(self) if int(k) < 0 else int(k)
        segment, channel, row = (int(a[0]) for a in self._locate(np.array([k])))
        window = self.values[row : row + self.lookback + self.horizon]  # [L + H, C], a view
        if self.independent:
            window = window[:, channel : channel + 1]  # [L + H, 1], still a view
        item = {"x": window[: self.lookback], "series": torch.tensor(self.series[segment])}
        if self.horizon:
            item["y"] = window[self.lookback :]
        if self.independent:
            item["channel"] = torch.tensor(channel)
        if self.past is not None:
            item["past"] = self.past[row : row + self.lookback]
        if self.future is not None:
            item["future"] = self.future[row : row + self.lookback + self.horizon]
        if self.static is not None:
            item["static"] = self.static[self.series[segment]]
        return item

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A batch in one gather per tensor, instead of one view and one stack per window.

        Gathering rows of the unfolded view copies each window once and, with one index per
        window rather than per element, is several times faster than indexing `values`.
        """
        segment, channel, row = self._locate(np.asarray(indices, dtype=np.int64))
        row = torch.from_numpy(row)
        if self.independent:
            window = self.unfolded[row, torch.from_numpy(channel)].unsqueeze(-1)  # [B, L + H, 1]
        else:
            window = self.unfolded[row].transpose(1, 2)  # [B, L + H, C]
        batch = {
            "x": window[:, : self.lookback].contiguous(),
            "series": torch.from_numpy(self.series[segment]),
        }
        if self.horizon:
            batch["y"] = window[:, self.lookback :].contiguous()
        if self.independent:
            batch["channel"] = torch.from_numpy(channel)
        if self.past is not None:
            past = _unfold(self.past, self.lookback)[row].transpose(1, 2)
            batch["past"] = past.contiguous()  # [B, L, Kp]
        if self.future is not None:
            future = _unfold(self.future, self.lookback + self.horizon)[row].transpose(1, 2)
            batch["future"] = future.contiguous()  # [B, L + H, Kf]
        if self.static is not None:
            batch["static"] = self.static[torch.from_numpy(self.series[segment])]  # [B, Ks]
        return batch


def _unfold(values: torch.Tensor, size: int) -> torch.Tensor:
    """[N - size + 1, C, size]: every window of `size` rows, as a view of `values` [N, C]."""
    return values.unfold(0, size, 1)


class RandomWindows(Sampler[int]):
    """Every window index once per epoch, in random order: RandomSampler without its list; or,
    with `per_epoch`, a random subset of that many distinct windows, drawn again each epoch.

    torch's RandomSampler turns its permutation into one Python list, about 36 bytes per window:
    300 MB for 8 million windows, eight times the data they index. Here the permutation stays a
    tensor of 4 bytes per window, handed out a chunk at a time. A subset much smaller than the
    windows is drawn without any permutation of them all (`_subset`): its cost follows the
    subset, not the data. Everything is drawn from torch's generator when an epoch's iteration
    starts, as RandomSampler's permutation is, so `seed_everything` makes it repeatable and a
    checkpoint that keeps the generator's state (forecast.callbacks.RNGStateCheckpoint) resumes
    the same sequence of epochs.
    """

    def __init__(self, n_windows: int, chunk: int = 1 << 16, per_epoch: int | None = None):
        if per_epoch is not None and per_epoch < 1:
            raise ValueError(f"windows per epoch must be at least 1, got {per_epoch}")
        self.n_windows, self.chunk = n_windows, chunk
        self.per_epoch = n_windows if per_epoch is None else min(per_epoch, n_windows)

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self):
        dtype = torch.int32 if self.n_windows < 2**31 else torch.int64
        if 4 * self.per_epoch >= self.n_windows:  # a permutation of all costs little more
            order = torch.randperm(self.n_windows, dtype=dtype)[: self.per_epoch]
        else:
            order = _subset(self.n_windows, self.per_epoch)
        for start in range(0, self.per_epoch, self.chunk):
            yield from order[start : start + self.chunk].tolist()


def _subset(n: int, k: int) -> torch.Tensor:
    """k distinct indices of range(n) in random order [k], for k well below n, in O(k) memory.

    The distinct values of a stream of uniform draws, in the order they first appear, are a
    uniformly random ordered subset: draw what is still missing, keep first occurrences, repeat
    (with k <= n / 4 fewer than 12% repeat, so a few rounds do).
    """
    picks = torch.empty(0, dtype=torch.int64)
    while len(picks) < k:
        picks = torch.cat([picks, torch.randint(n, (k - len(picks),), dtype=torch.int64)])
        _, first = np.unique(picks.numpy(), return_index=True)
        picks = picks[torch.from_numpy(np.sort(first))]
    return picks


def collate(batch):
    """Collate for DataLoader: a batch from `__getitems__` is already stacked."""
    return batch if isinstance(batch, dict) else default_collate(batch)
