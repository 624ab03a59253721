import numpy as np
import pytest

from forecast.data.scaling import fit_params, scale_in_place


@pytest.mark.parametrize("lengths", [[50, 40, 45], [1000, 20, 20]])  # side by side, or one by one
@pytest.mark.parametrize("kind", ["standard", "minmax", "robust", "none"])
def test_per_series_params_match_each_series_own_scaler(lengths, kind):
    rng = np.random.default_rng(0)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    values = (rng.normal(size=(offsets[-1], 2)) * [1, 50] + [3, -7]).astype(np.float32)
    starts, ends = offsets[:-1], offsets[:-1] + 15  # the first 15 rows of each are training
    mean, scale = fit_params(kind, values, starts, ends, "series")
    assert mean.shape == scale.shape == (3, 2)
    for s, a in enumerate(starts):
        train = values[a : a + 15].astype(np.float64)
        expected = {
            "standard": (train.mean(0), train.std(0)),
            "minmax": (train.min(0), train.max(0) - train.min(0)),
            "robust": (np.median(train, 0), np.subtract(*np.percentile(train, [75, 25], 0))),
            "none": (np.zeros(2), np.ones(2)),
        }[kind]
        np.testing.assert_allclose(mean[s], expected[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scale[s], expected[1], rtol=1e-5)
    raw = values.copy()
    scale_in_place(values, offsets[:-1], offsets[1:], mean, scale)
    for s in range(3):
        part = slice(offsets[s], offsets[s + 1])
        np.testing.assert_allclose(values[part] * scale[s] + mean[s], raw[part], atol=1e-3)


def test_one_scaler_over_many_series_equals_one_over_their_rows():
    rng = np.random.default_rng(1)
    offsets = np.arange(0, 5001, 50)  # 100 series of 50 rows; 30 training rows each
    values = rng.normal(size=(5000, 2)).astype(np.float32)
    mean, scale = fit_params("standard", values, offsets[:-1], offsets[:-1] + 30, "channel")
    train = np.concatenate([values[a : a + 30] for a in offsets[:-1]]).astype(np.float64)
    np.testing.assert_allclose(mean[0], train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(scale[0], train.std(0), rtol=1e-5)
