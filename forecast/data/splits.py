"""Splits by time: explicit borders, fractions, or fixed-size blocks at the end of each series.

Validation and test parts reach back `lookback` rows into the part before them, as the papers do,
so their first window forecasts the first row after the border.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def split_bounds(
    n_rows: int,
    lookback: int,
    borders: list[int] | None = None,
    fractions: list[float] | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) of each split of one series of `n_rows` rows.

    `borders` are the ends of train, val and test (the ETT protocol); else `val_size` and
    `test_size` rows at the end; else `fractions` (train, val, test; default 7:1:2), test
    taken from the end.
    """
    starts, ends = split_arrays(
        np.array([n_rows]), lookback, borders, fractions, val_size, test_size
    )
    train_end, val_end, test_end = int(ends["train"][0]), int(ends["val"][0]), int(ends["test"][0])
    if not 0 < train_end < val_end < test_end <= n_rows:
        raise ValueError(
            f"borders {[train_end, val_end, test_end]} do not fit a series of {n_rows} rows"
        )
    return {split: (int(starts[split][0]), int(ends[split][0])) for split in SPLITS}


def split_arrays(
    lengths: np.ndarray,
    lookback: int,
    borders: list[int] | None = None,
    fractions: list[float] | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Starts and ends [S] of each split for series of `lengths` [S] rows (relative to each)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if borders is not None:
        train_end, val_end, test_end = (np.full_like(lengths, b) for b in borders)
    elif val_size is not None or test_size is not None:
        test_end = lengths
        val_end = test_end - (test_size or 0)
        train_end = val_end - (val_size or 0)
    else:
        train_frac, _, test_frac = fractions or (0.7, 0.1, 0.2)
        train_end = np.floor(lengths * train_frac).astype(np.int64)
        test_end = lengths
        val_end = lengths - np.floor(lengths * test_frac).astype(np.int64)
    starts = {
        "train": np.zeros_like(lengths),
        "val": train_end - lookback,
        "test": val_end - lookback,
    }
    ends = {"train": train_end, "val": val_end, "test": test_end}
    return starts, ends
