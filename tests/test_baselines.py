"""Reference forecasts: by hand, and M4 Hourly's published Naive2 scores reproduced."""

import numpy as np
import pandas as pd
import pytest
import torch

from forecast import baselines as B
from forecast import metrics as M


def test_naive_and_seasonal_naive_by_hand():
    history = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert B.naive(history, 3).tolist() == [5.0, 5.0, 5.0]
    assert B.seasonal_naive(history, 5, season=2).tolist() == [4.0, 5.0, 4.0, 5.0, 4.0]


def test_a_pure_seasonal_pattern_is_found_and_continued():
    season = np.array([1.0, 2.0, 4.0, 2.0])
    history = np.tile(season, 10) * 3.0
    assert B.is_seasonal(history, 4)
    np.testing.assert_allclose(B.naive2(history, 6, 4), np.resize(season * 3.0, 6), rtol=1e-12)


def test_noise_is_not_seasonal():
    history = np.random.default_rng(0).normal(10, 1, 500)
    assert not B.is_seasonal(history, 24)
    assert B.naive2(history, 3, 24).tolist() == [history[-1]] * 3


def test_m4_hourly_naive2_matches_the_published_scores(shared_data):
    train = pd.read_csv(shared_data / "M4-Hourly-train.csv", index_col=0)
    test = pd.read_csv(shared_data / "M4-Hourly-test.csv", index_col=0)
    smapes, mases = [], []
    for series_id, row in train.iterrows():
        history = torch.tensor(row.dropna().to_numpy(float))
        truth = torch.tensor(test.loc[series_id].to_numpy(float))
        forecast = torch.tensor(B.naive2(history.numpy(), 48, 24))
        smapes.append(M.smape(forecast, truth).item())
        mases.append(M.mase(forecast[:, None], truth[:, None], history[:, None], 24).item())
    # Makridakis et al., The M4 Competition, IJF 2020: Naive2 on Hourly, sMAPE 18.383, MASE 2.395
    assert np.mean(smapes) == pytest.approx(18.383, abs=5e-4)
    assert np.mean(mases) == pytest.approx(2.395, abs=5e-4)
