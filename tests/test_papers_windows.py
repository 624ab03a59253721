"""benchmarks/etth1.py scores the papers' test windows as their code does (drop_last=True)."""

import sys

import numpy as np

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from etth1 import papers_windows  # noqa: E402


def test_the_last_incomplete_batch_of_origins_is_not_scored():
    # a channel-independent dataset: channel-major, 5 origins (rows 10..14) x 2 channels
    rows = np.array([10, 11, 12, 13, 14] * 2)
    kept = papers_windows(rows, batch=2)  # batches {10, 11}, {12, 13}; 14 dropped
    assert kept.tolist() == [True, True, True, True, False] * 2
    assert papers_windows(rows, batch=5).all()  # a whole number of batches: all scored
    assert papers_windows(rows, batch=1).all()
    assert not papers_windows(rows, batch=6).any()  # fewer origins than a batch: none


def test_origins_are_counted_in_time_order_whatever_the_window_order():
    rows = np.array([3, 1, 2, 0, 4])
    assert papers_windows(rows, batch=2).tolist() == [True, True, True, True, False]
    # the ETTh1 protocol's test split at horizon 96: 2785 origins, 10 batches of 256 scored
    assert papers_windows(np.arange(2785), batch=256).sum() == 2560
