from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import SequentialSampler

from forecast.config import compose_train_config
from forecast.data import DataError, SeriesDataModule, WideDataModule, split_bounds
from forecast.data.windows import RandomWindows, collate


def test_ett_borders_follow_the_protocol():
    bounds = split_bounds(17420, lookback=96, borders=[8640, 11520, 14400])
    assert bounds == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}


def test_fractions_take_test_from_the_end():
    bounds = split_bounds(1000, lookback=10, fractions=[0.7, 0.1, 0.2])
    assert bounds == {"train": (0, 700), "val": (690, 800), "test": (790, 1000)}


def test_sizes_take_val_and_test_blocks_from_the_end():
    bounds = split_bounds(1000, lookback=10, val_size=48, test_size=48)
    assert bounds == {"train": (0, 904), "val": (894, 952), "test": (942, 1000)}


def test_etth1_windows_and_scaling_follow_the_protocol(etth1_csv):
    dm = WideDataModule(path=str(etth1_csv), borders=[8640, 11520, 14400])
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.datasets.items()} == {
        "train": 8640 - 192 + 1,
        "val": 2785,
        "test": 2785,
        "predict": 1,  # the last lookback rows of the file, to forecast what follows it
    }
    raw = pd.read_csv(etth1_csv)
    values = raw.drop(columns="date").to_numpy()
    mean, std = values[:8640].mean(0), values[:8640].std(0)
    # the first test window starts lookback rows before the test border, z-scored on train rows
    item = dm.datasets["test"][0]
    x, y = item["x"], item["y"]
    np.testing.assert_allclose(x.numpy(), (values[11424:11520] - mean) / std, atol=1e-4)
    np.testing.assert_allclose(y.numpy(), (values[11520:11616] - mean) / std, atol=1e-4)
    assert dm.channels == ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    np.testing.assert_allclose(dm.scaler_params()["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(dm.scaler_params()["scale"], std, rtol=1e-6)


def test_a_split_too_short_for_a_window_names_the_file(tmp_path):
    path = tmp_path / "short.csv"
    pd.DataFrame(
        {"date": pd.date_range("2020", periods=100, freq="h"), "y": np.arange(100.0)}
    ).to_csv(path, index=False)
    dm = WideDataModule(path=str(path), lookback=24, horizon=12, fractions=[0.7, 0.1, 0.2])
    with pytest.raises(DataError, match=r"short\.csv.*the val part .*lookback \+ horizon = 36"):
        dm.setup("fit")
    beyond = WideDataModule(path=str(path), lookback=24, horizon=12, borders=[60, 80, 120])
    with pytest.raises(DataError, match=r"the test part \(rows 56\.\.120\) has 44 rows"):
        beyond.setup("fit")


def long_file(tmp_path, lengths, channels=1, name="long.csv") -> Path:
    """Series s0, s1, ... of the given lengths; value = 1000 * series + 10 * row + channel."""
    frames = []
    for s, n in enumerate(lengths):
        frame = pd.DataFrame(
            {"unique_id": f"s{s}", "ds": pd.date_range("2021", periods=n, freq="h")}
        )
        for c in range(channels):
            frame[f"y{c}"] = 1000.0 * s + 10.0 * np.arange(n) + c
        frames.append(frame)
    path = tmp_path / name
    pd.concat(frames).to_csv(path, index=False)
    return path


def long_module(path, n_channels=1, **kwargs) -> SeriesDataModule:
    options = dict(
        layout="long",
        time_col="ds",
        target=[f"y{c}" for c in range(n_channels)],
        lookback=8,
        horizon=4,
        val_size=4,
        test_size=4,
        scale_by="series",
    )
    return SeriesDataModule(path=str(path), **{**options, **kwargs})


def test_long_windows_are_rows_of_the_scaled_series(tmp_path):
    dm = long_module(long_file(tmp_path, [40, 30, 25]))
    dm.setup("fit")
    # per series: train = n - 8 rows, so (n - 8) - 12 + 1 windows
    assert len(dm.datasets["train"]) == sum(n - 8 - 11 for n in (40, 30, 25))
    assert [len(dm.datasets[s]) for s in ("val", "test", "predict")] == [3, 3, 3]
    # one copy of the series: scaled in place, every split a view of the frame's array
    assert {ds.values.data_ptr() for ds in dm.datasets.values()} == {dm.frame.values.ctypes.data}
    params = dm.series_scaler_params()
    assert params["ids"] == ["s0", "s1", "s2"]
    train = dm.datasets["train"]
    k = (40 - 19) + 5  # the sixth window of the second series
    item = train[k]
    raw = 1000.0 + 10.0 * np.arange(5, 5 + 12)[:, None]  # rows 5..17 of series s1
    scaled = (raw - np.array(params["mean"][1])) / np.array(params["scale"][1])
    np.testing.assert_allclose(item["x"].numpy(), scaled[:8], rtol=1e-5)
    np.testing.assert_allclose(item["y"].numpy(), scaled[8:], rtol=1e-5)
    assert item["series"].item() == 1
    # test: the last 4 rows of each series, after its lookback
    test = dm.datasets["test"][2]
    np.testing.assert_allclose(
        test["y"].numpy() * params["scale"][2][0] + params["mean"][2][0],
        (2000.0 + 10.0 * np.arange(21, 25))[:, None],
        rtol=1e-5,
    )


def test_scalers_are_fitted_on_training_rows_only(tmp_path):
    path = tmp_path / "trend.csv"
    values = np.concatenate([np.zeros(70), np.full(30, 100.0)]) + np.arange(100) % 2
    dates = pd.date_range("2020", periods=100, freq="D")
    pd.DataFrame({"date": dates, "y": values}).to_csv(path, index=False)
    for kind, expected in [("standard", (0.5, 0.5)), ("minmax", (0.0, 1.0)), ("none", (0, 1))]:
        dm = SeriesDataModule(path=str(path), lookback=4, horizon=2, scaler=kind)
        dm.setup("fit")
        params = dm.scaler_params()
        assert (params["mean"][0], params["scale"][0]) == pytest.approx(expected)
        restored = dm.frame.values[:, 0] * params["scale"][0] + params["mean"][0]
        np.testing.assert_allclose(restored, values, atol=1e-4)  # raw = scaled * scale + mean
    dm = SeriesDataModule(path=str(path), lookback=4, horizon=2, scaler="robust")
    dm.setup("fit")
    assert dm.scaler_params()["mean"] == pytest.approx([np.median(values[:70])])


def test_per_series_scaling_has_its_own_params(tmp_path):
    dm = long_module(long_file(tmp_path, [40, 30]))
    dm.setup("fit")
    with pytest.raises(ValueError, match="series_scaler_params"):
        dm.scaler_params()
    params = dm.series_scaler_params()
    train_rows = 10.0 * np.arange(40 - 8)
    assert params["mean"][0] == pytest.approx([train_rows.mean()])
    assert params["scale"][0] == pytest.approx([train_rows.std()])


def test_short_series_are_refused_or_skipped_with_a_count(tmp_path):
    path = long_file(tmp_path, [40, 10, 12, 30])
    with pytest.raises(DataError, match=r"long\.csv: series 's1' \(10 rows\).*data.short=skip"):
        long_module(path).setup("fit")
    dm = long_module(path, short="skip")
    with pytest.warns(UserWarning, match="skipped 2 of 4 series"):
        dm.setup("fit")
    assert dm.series_scaler_params()["ids"] == ["s0", "s3"]
    assert sorted({int(item["series"]) for item in dm.datasets["test"]}) == [0, 3]


def test_independent_mode_serves_each_channel_as_a_univariate_series(tmp_path):
    path = long_file(tmp_path, [40, 30], channels=3)
    joint = long_module(path, n_channels=3, scale_by="channel")
    joint.setup("fit")
    independent = long_module(path, n_channels=3, scale_by="channel", channel_mode="independent")
    independent.setup("fit")
    assert joint.n_channels == 3 and independent.n_channels == 1
    for split in ("train", "val", "test", "predict"):
        assert len(independent.datasets[split]) == 3 * len(joint.datasets[split])
    per_channel = 40 - 8 - 11  # windows of series 0 in each channel, channel after channel
    item = independent.datasets["train"][2 * per_channel + 1]  # series 0, channel 2, window 1
    assert (item["series"].item(), item["channel"].item()) == (0, 2)
    torch.testing.assert_close(item["x"], joint.datasets["train"][1]["x"][:, 2:])
    assert item["y"].shape == (4, 1)


def test_covariates_and_calendar_join_the_batch_as_read(tmp_path):
    path = tmp_path / "cov.csv"
    n = 200
    dates = pd.date_range("2020-01-01", periods=n, freq="h")
    promo = np.where(np.arange(n) % 3 == 0, "on", "off")
    frame = pd.DataFrame(
        {"date": dates, "load": np.sin(np.arange(n)), "temp": np.arange(n), "promo": promo}
    )
    frame.to_csv(path, index=False)
    dm = SeriesDataModule(
        path=str(path),
        lookback=24,
        horizon=6,
        past_covariates=["temp"],
        future_covariates=["promo"],
        calendar=["hour", "weekday"],
    )
    dm.setup("fit")
    assert dm.channels == ("load",) and dm.n_channels == 1
    batch = next(iter(dm.test_dataloader()))
    assert batch["x"].shape[1:] == (24, 1) and batch["y"].shape[1:] == (6, 1)
    assert batch["past"].shape[1:] == (24, 1)
    assert batch["future"].shape[1:] == (30, 3)  # promo, hour, weekday over look-back + horizon
    first_row = dm.datasets["test"].starts[0]
    # as read: temp's own values, promo's codes into its sorted levels, calendar features
    np.testing.assert_array_equal(batch["past"][0, :, 0], np.arange(first_row, first_row + 24))
    codes = (promo[first_row : first_row + 30] == "on").astype(np.float32)
    np.testing.assert_array_equal(batch["future"][0, :, 0], codes)
    hour = dates[first_row + 24].hour
    assert batch["future"][0, 24, 1].item() == pytest.approx(hour / 23 - 0.5)
    covariates = dm.spec.covariates
    assert covariates.past.mean == pytest.approx([np.arange(140).mean()])  # training rows
    assert covariates.future.levels == {"promo": ("off", "on")}
    assert covariates.future.names == ("promo", "calendar:hour", "calendar:weekday")


def test_calendar_features_of_a_table_without_timestamps_are_refused_in_one_line(tmp_path):
    path = tmp_path / "steps.csv"
    pd.DataFrame({"t": np.arange(200), "load": np.sin(np.arange(200))}).to_csv(path, index=False)
    dm = SeriesDataModule(path=str(path), time_col="t", lookback=24, horizon=6, calendar=["hour"])
    with pytest.raises(DataError, match=r"steps.csv: data.calendar=\['hour'\] needs timestamps"):
        dm.setup("fit")


def test_loaders_shuffle_only_training_and_batch_like_single_items(tmp_path):
    dm = long_module(long_file(tmp_path, [40, 30]), batch_size=5, eval_batch_size=7)
    dm.setup("fit")
    train = dm.train_dataloader()
    assert isinstance(train.sampler, RandomWindows) and train.batch_size == 5
    torch.manual_seed(0)
    first = [int(k) for batch in train for k in batch["series"]]
    torch.manual_seed(0)
    assert [int(k) for batch in train for k in batch["series"]] == first  # seeded by torch
    assert len(first) == len(dm.datasets["train"])
    for loader in (dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        assert isinstance(loader.sampler, SequentialSampler) and loader.batch_size == 7
    batch = next(iter(dm.val_dataloader()))
    for k in range(2):
        item = dm.datasets["val"][k]
        for key, value in item.items():
            torch.testing.assert_close(batch[key][k], value)
    assert "y" not in next(iter(dm.predict_dataloader()))


def test_windows_per_epoch_draws_a_subset_of_training_and_keeps_val_and_test_whole(tmp_path):
    dm = long_module(long_file(tmp_path, [60, 50, 40]), batch_size=4, windows_per_epoch=10)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) > 40  # 30 + 20 + 10 minus the val and test rows: far more than 10

    def epoch(loader) -> list[tuple[int, float]]:  # (series, first value) of each window
        return [
            (int(s), float(x[0, 0]))
            for batch in loader
            for s, x in zip(batch["series"], batch["x"], strict=True)
        ]

    loader = dm.train_dataloader()
    assert len(loader) == 3  # batches of 4, 4 and 2
    torch.manual_seed(0)
    first, second = epoch(loader), epoch(loader)
    assert len(first) == len(set(first)) == len(second) == 10
    assert set(first) != set(second)  # another subset each epoch
    torch.manual_seed(0)
    assert epoch(dm.train_dataloader()) == first  # seeded by torch's generator
    everything = set(epoch(torch.utils.data.DataLoader(train, batch_size=64, collate_fn=collate)))
    assert set(first) <= everything
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        # every window: one per series (val_size = test_size = horizon)
        assert len(epoch(loader)) == len(dm.datasets[split]) == 3
    with pytest.raises(ValueError, match=r"data\.windows_per_epoch"):
        long_module(long_file(tmp_path, [60]), windows_per_epoch=0)


def compose(name: str, **overrides) -> SeriesDataModule:
    """The data config `name` as train.py composes it (its `base` defaults included)."""
    cfg = compose_train_config([f"data={name}"]).data
    return instantiate(OmegaConf.merge(cfg, overrides))


def test_m4_hourly_test_windows_end_at_the_train_part_and_target_the_test_file(
    shared_data, monkeypatch
):
    monkeypatch.setenv("FORECAST_DATA_DIR", str(shared_data))
    dm = compose("m4_hourly")
    dm.setup("fit")
    assert dm.frame.n_series == 414 and dm.n_channels == 1 and dm.horizon == 48
    assert len(dm.datasets["test"]) == 414 and len(dm.datasets["val"]) == 414
    params = dm.series_scaler_params()
    test_file = pd.read_csv(shared_data / "M4-Hourly-test.csv").set_index("V1")
    train_file = pd.read_csv(shared_data / "M4-Hourly-train.csv").set_index("V1")
    batch = next(iter(dm.test_dataloader()))
    for k in (0, 1, 200, 413):
        s = int(batch["series"][k])
        sid = params["ids"][s]
        mean, scale = params["mean"][s][0], params["scale"][s][0]
        y = batch["y"][k, :, 0].double().numpy() * scale + mean
        np.testing.assert_allclose(y, test_file.loc[sid].to_numpy(), rtol=1e-5)
        x = batch["x"][k, :, 0].double().numpy() * scale + mean
        history = train_file.loc[sid].dropna().to_numpy()
        np.testing.assert_allclose(x, history[-96:], rtol=1e-5)
        # scaled on the training rows only: the last 48 of the train file are validation
        assert mean == pytest.approx(history[:-48].mean())


def test_etth1_and_csv_configs_build(tmp_path):
    etth1 = compose("etth1", columns=["OT"])
    etth1.setup("fit")
    assert etth1.n_channels == 1 and len(etth1.datasets["test"]) == 2785
    path = str(long_file(tmp_path, [300, 200]))
    options = dict(path=path, layout="long", time_col="ds", target="y0", lookback=24, horizon=12)
    csv = compose("csv", **options)
    csv.setup("fit")
    assert csv.series_ids == ("s0", "s1") and len(csv.datasets["test"]) > 0
