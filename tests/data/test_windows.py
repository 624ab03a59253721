import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.data import WindowDataset
from forecast.data.windows import RandomWindows


def test_window_k_is_rows_k_to_k_plus_lookback_and_target_the_next_horizon():
    series = torch.arange(50 * 3, dtype=torch.float32).view(50, 3)
    ds = WindowDataset(series, lookback=8, horizon=4, stride=3)
    assert len(ds) == (50 - 12) // 3 + 1
    for k in range(len(ds)):
        item = ds[k]
        x, y = item["x"], item["y"]
        start = 3 * k
        torch.testing.assert_close(x, series[start : start + 8], rtol=0, atol=0)
        torch.testing.assert_close(y, series[start + 8 : start + 12], rtol=0, atol=0)
    torch.testing.assert_close(ds[-1]["x"], ds[len(ds) - 1]["x"])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_windows_are_views_of_one_storage():
    series = torch.randn(1000, 2)
    ds = WindowDataset(series, lookback=96, horizon=24)
    item = ds[500]
    x, y = item["x"], item["y"]
    storage = series.untyped_storage().data_ptr()
    assert x.untyped_storage().data_ptr() == storage
    assert y.untyped_storage().data_ptr() == storage
    series[500 + 96, 1] = 12345.0  # a write to the series shows through the window
    assert y[0, 1] == 12345.0


def test_too_short_series_is_refused():
    with pytest.raises(ValueError, match="shorter than lookback"):
        WindowDataset(torch.zeros(10, 1), lookback=8, horizon=4)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    lookback=st.integers(1, 8),
    horizon=st.integers(0, 5),
    stride=st.integers(1, 4),
    independent=st.booleans(),
)
def test_global_index_covers_every_window_of_every_series_once(
    lengths, lookback, horizon, stride, independent
):
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = torch.arange(offsets[-1] * 2, dtype=torch.float32).view(-1, 2)
    segments = np.stack([offsets[:-1], offsets[1:]], axis=1)
    per_series = [max((n - lookback - horizon) // stride + 1, 0) for n in lengths]
    if sum(per_series) == 0:
        with pytest.raises(ValueError):
            WindowDataset(values, lookback, horizon, stride, segments=segments)
        return
    ds = WindowDataset(
        values, lookback, horizon, stride, segments=segments, independent=independent
    )
    channels = [0, 1] if independent else [slice(None)]
    expected = [
        (s, c, offsets[s] + j * stride)
        for s, n in enumerate(per_series)
        for c in channels
        for j in range(n)
    ]
    assert len(ds) == len(expected)
    batch = ds.__getitems__(list(range(len(ds))))
    for k, (s, c, row) in enumerate(expected):
        item = ds[k]
        want = values[row : row + lookback + horizon]
        want = want[:, c : c + 1] if independent else want
        torch.testing.assert_close(item["x"], want[:lookback], rtol=0, atol=0)
        torch.testing.assert_close(batch["x"][k], want[:lookback], rtol=0, atol=0)
        assert item["series"].item() == batch["series"][k].item() == s
        if horizon:
            torch.testing.assert_close(batch["y"][k], want[lookback:], rtol=0, atol=0)


def test_windows_over_ten_million_values_allocate_no_more_than_the_data():
    n_series, length = 10_000, 1_000
    tracemalloc.start()
    try:
        data = np.ones((n_series * length, 1), dtype=np.float32)  # 10 million values, 40 MB
        values = torch.from_numpy(data)
        offsets = np.arange(n_series + 1) * length
        segments = np.stack([offsets[:-1], offsets[1:]], axis=1)
        ds = WindowDataset(values, lookback=96, horizon=24, segments=segments)
        picks = np.random.default_rng(0).integers(0, len(ds), 2_000)
        items = [ds[int(k)] for k in picks]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ds) == n_series * (length - 120 + 1)  # 8.8 million windows
    # windows of 120 rows would be 12x the data; the index costs a few integers per series
    assert peak <= data.nbytes + 2 * 2**20
    storage = values.untyped_storage().data_ptr()
    assert all(item["x"].untyped_storage().data_ptr() == storage for item in items)
    assert all(item["y"].untyped_storage().data_ptr() == storage for item in items)


def test_random_windows_draw_each_index_once_per_epoch():
    sampler = RandomWindows(100_003, chunk=1_000)
    torch.manual_seed(1)
    epoch = list(sampler)
    assert sorted(epoch) == list(range(100_003)) and epoch != sorted(epoch)
    torch.manual_seed(1)
    assert list(sampler) == epoch


@pytest.mark.parametrize("per_epoch", [50, 30_000])  # a subset drawn alone; a cut permutation
def test_random_windows_per_epoch_draw_that_many_distinct_windows_anew_each_epoch(per_epoch):
    sampler = RandomWindows(100_003, chunk=1_000, per_epoch=per_epoch)
    torch.manual_seed(1)
    first, second = list(sampler), list(sampler)
    assert len(sampler) == len(first) == len(second) == per_epoch
    for epoch in (first, second):
        assert len(set(epoch)) == per_epoch and 0 <= min(epoch) and max(epoch) < 100_003
    assert set(first) != set(second)  # a new subset every epoch
    torch.manual_seed(1)
    assert [list(sampler), list(sampler)] == [first, second]  # the same sequence of epochs


def test_random_windows_subset_is_uniform():
    # n = 20, k = 3 takes the subset path (k < n / 4): every window is as likely to be drawn,
    # and to come first; 20,000 seeded epochs, so the counts are within 5 sd of the expectation
    sampler = RandomWindows(20, per_epoch=3)
    torch.manual_seed(0)
    draws = np.array([list(sampler) for _ in range(20_000)])  # [epochs, 3]
    assert all(len(set(row)) == 3 for row in draws[:500])
    included = np.bincount(draws.ravel(), minlength=20)
    first = np.bincount(draws[:, 0], minlength=20)
    p = 3 / 20
    assert np.abs(included - 20_000 * p).max() < 5 * np.sqrt(20_000 * p * (1 - p))
    assert np.abs(first - 1_000).max() < 5 * np.sqrt(20_000 * 0.05 * 0.95)


def test_random_windows_subset_costs_the_subset_not_the_windows():
    # 2**40 windows: a permutation of them all would take 8 TB; a subset of 1,000 does not
    sampler = RandomWindows(2**40, per_epoch=1_000)
    picks = list(sampler)
    assert len(set(picks)) == 1_000 and max(picks) < 2**40 and max(picks) > 2**31


def test_random_windows_per_epoch_beyond_the_windows_takes_each_once():
    sampler = RandomWindows(100, per_epoch=1_000)
    assert len(sampler) == 100 and sorted(sampler) == list(range(100))
    with pytest.raises(ValueError, match="at least 1"):
        RandomWindows(100, per_epoch=0)
