"""Covariates: past, future-known and static, read, encoded, learnt from, exported and forecast
with, on data whose target depends on them in ways its own history cannot tell."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import forecast
from forecast.data import DataError, ReadOptions, read
from forecast.data.covariates import Columns, Covariates
from forecast.data.spec import DataSpec
from forecast.export import ExportedModel, export_bundle
from forecast.models import Forecaster, ForecastNet, ScaledForecastNet
from forecast.models.covariates import CovariateEncoder
from tests.conftest import PT2_ONLY, run_entry

LONG = ReadOptions(layout="long", future_covariates=("promo",), static_covariates=("kind",))


def promo_frame(n_series=4, n=400, horizon=0, seed=0, future_target=False) -> pd.DataFrame:
    """Hourly series: y = 3 [promo] + 2 or -2 by the series' kind + noise; promo (yes/no) is
    random, so the target's history cannot predict it, and a series' kind sets its level."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(n_series):
        promo = rng.random(n + horizon) < 0.3
        kind = "up" if s % 2 else "down"
        y = 3.0 * promo + (2.0 if kind == "up" else -2.0) + rng.normal(0, 0.3, n + horizon)
        if future_target:
            y[n:] = np.nan
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": f"s{s}",
                    "ds": pd.date_range("2021-01-01", periods=n + horizon, freq="h"),
                    "y": y,
                    "promo": np.where(promo, "yes", "no"),
                    "kind": kind,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


# ---- reading -----------------------------------------------------------------------------


def test_categorical_covariates_read_as_codes_into_sorted_levels():
    frame = read(promo_frame(n=30), LONG)
    assert frame.covariate_names == ("promo",) and frame.n_past == 0
    assert frame.levels == {"promo": ("no", "yes"), "kind": ("down", "up")}
    assert frame.static_names == ("kind",) and frame.static[:, 0].tolist() == [0, 1, 0, 1]
    raw = promo_frame(n=30)
    np.testing.assert_array_equal(frame.covariates[:, 0], (raw["promo"] == "yes").to_numpy())
    # a model's levels: an unseen one is refused, naming it and the known ones
    bad = raw.copy()
    bad.loc[5, "promo"] = "maybe"
    with pytest.raises(DataError, match=r"column 'promo', row df.iloc\[5\]: 'maybe' is not one"):
        read(bad, LONG, levels=frame.levels)


def test_numbers_are_numbers_text_is_levels_and_a_column_mixing_them_is_refused(tmp_path):
    """A stray text value in a numeric column would make it hundreds of levels (one per
    price), and at forecasting time text in a column the model knows as numbers would become
    codes: both are refused naming the row. Numeric text reads as numbers, as a CSV's does."""
    raw = promo_frame(n=30).assign(price=lambda d: np.arange(len(d)) / 10.0)
    options = ReadOptions(layout="long", past_covariates=("price",), future_covariates=("promo",))
    frame = read(raw, options)
    assert frame.levels == {"promo": ("no", "yes")}
    as_text = read(raw.assign(price=raw["price"].astype(str)), options)  # '0.1', '0.2', ...
    np.testing.assert_array_equal(as_text.covariates, frame.covariates)
    assert as_text.levels == frame.levels
    stray = raw.astype({"price": object})
    stray.loc[7, "price"] = "?"
    with pytest.raises(
        DataError, match=r"column 'price', row df.iloc\[7\]: value '\?' is text in a column "
    ):
        read(stray, options)
    numbered = raw.astype({"promo": object})
    numbered.loc[3, "promo"] = 1
    with pytest.raises(DataError, match=r"'promo', row df.iloc\[3\]: value 1 is a number in"):
        read(numbered, options)
    # reading for a model: its numeric column takes numbers only
    with pytest.raises(DataError, match=r"'price', row df.iloc\[7\]: value '\?' is not a num"):
        read(stray, options, levels=frame.levels)
    # declared categorical, the mixed column is levels, and a model reads it as such
    declared = dataclasses.replace(options, categorical=("promo",))
    mixed = read(numbered, declared)
    assert mixed.levels["promo"] == ("1", "no", "yes")
    read(numbered, declared, levels=mixed.levels)


def test_integer_codes_are_numbers_unless_declared_categorical(tmp_path):
    """Integer store codes are numbers by default; `data.categorical` makes them levels, so
    an unseen code is refused. A blank cell makes a CSV's codes floats: 1.0 is still level 1."""
    raw = promo_frame(n=30).assign(store=lambda d: d["unique_id"].str[1:].astype(int) * 100)
    options = ReadOptions(layout="long", static_covariates=("store",), target="y")
    assert read(raw, options).levels == {}
    declared = dataclasses.replace(options, categorical=("store",))
    frame = read(raw, declared)
    assert frame.levels == {"store": ("0", "100", "200", "300")}
    assert frame.static[:, 0].tolist() == [0, 1, 2, 3]
    # one name alone, as `data.categorical=store` gives it: that column, not its letters
    alone = ReadOptions(layout="long", static_covariates="store", target="y", categorical="store")
    assert alone.categorical == alone.static_covariates == ("store",)
    assert read(raw, alone).levels == frame.levels
    unseen = raw.assign(store=raw["store"].replace({300: 5000}))
    with pytest.raises(DataError, match=r"'store', row df.iloc\[90\]: '5000' is not one of"):
        read(unseen, declared, levels=frame.levels)
    # a CSV of integer codes with a blank cell reads as floats; its codes are the same levels
    coded = raw.assign(code=np.where(np.arange(len(raw)) % 2, 1, 2))
    coded.to_csv(tmp_path / "coded.csv", index=False)
    gappy = coded.astype({"code": float})
    gappy.loc[4, "code"] = np.nan
    gappy.to_csv(tmp_path / "gappy.csv", index=False)
    by_code = ReadOptions(
        layout="long", future_covariates=("code",), categorical=("code",), fill="ffill"
    )
    trained = read(str(tmp_path / "coded.csv"), by_code)
    assert trained.levels == {"code": ("1", "2")}
    with pytest.warns(UserWarning, match="filled"):
        later = read(str(tmp_path / "gappy.csv"), by_code, levels=trained.levels)
    assert later.covariates[4, 0] == later.covariates[3, 0]  # the level before it
    # each value spelled alone: whole numbers as integers beside 1.5 (a file of only 2.0s
    # later is level '2', as in training), inf a level of its own; and a model that saved its
    # levels as '1.0' (older versions) reads today's '1'
    halves = raw.assign(code=np.where(np.arange(len(raw)) % 3, 1.5, 2.0))
    halves.loc[7, "code"] = np.inf
    trained = read(halves, by_code)
    assert trained.levels == {"code": ("1.5", "2", "inf")}
    assert trained.covariates[7, 0] == 2 and trained.covariates[0, 0] == 1
    twos = read(raw.assign(code=2.0), by_code, levels=trained.levels)
    assert (twos.covariates[:, 0] == 1).all()
    with pytest.warns(UserWarning, match="filled"):
        older = read(gappy, by_code, levels={"code": ("1.0", "2.0")})
    # integers as they are however large (hashed ids), float32 values as their CSV says them
    hashed = raw.assign(code=np.where(np.arange(len(raw)) % 2, 2**53 + 2, 5))
    assert read(hashed, by_code).levels == {"code": ("5", "9007199254740994")}
    tenths = raw.assign(code=np.where(np.arange(len(raw)) % 2, 0.1, 0.2).astype(np.float32))
    assert read(tenths, by_code).levels == {"code": ("0.1", "0.2")}
    assert older.covariates[:, 0].tolist() == later.covariates[:, 0].tolist()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(past_covariates=("a", "a")), "data.past_covariates names 'a' twice"),
        (
            dict(past_covariates=("a",), future_covariates=("a",)),
            "data.future_covariates names 'a' and data.past_covariates",
        ),
        (dict(future_covariates=("y",)), "data.future_covariates names 'y', which is the target"),
        (dict(past_covariates=("ds",), time_col="ds"), "names 'ds', the time column"),
        (
            dict(future_covariates=("calendar:hour",)),
            r"'calendar:hour' is the name of a computed calendar feature.*data.calendar=\[hour\]",
        ),
        (dict(categorical=("kind",)), "data.categorical names 'kind', which is not a covariate"),
    ],
)
def test_each_column_has_one_role(options, message):
    with pytest.raises(ValueError, match=message):
        ReadOptions(layout="long", **options)


def test_the_series_id_as_a_static_covariate_with_future_rows_from_a_table_of_their_own():
    raw = promo_frame(n=30, horizon=6, future_target=True)
    history = raw.groupby("unique_id").head(30)
    future = raw.groupby("unique_id").tail(6).drop(columns="y")
    options = ReadOptions(
        layout="long", future_covariates=("promo",), static_covariates=("unique_id", "kind")
    )
    frame = read(history, options, future=future)
    assert frame.future.tolist() == [6, 6, 6, 6]
    assert frame.static[:, 0].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("fill", ["interpolate", "zero", "ffill"])
def test_a_missing_category_takes_the_level_before_it_whatever_the_fill(fill):
    """Codes are not numbers: interpolating 'zz' (2) and 'no' (0) would give 'yes' (1), and
    zero-filling would give the first level; each takes its series' previous level instead
    (the next one at the series' start), while the target is filled as `fill` says."""
    raw = pd.DataFrame(
        {
            "unique_id": ["a"] * 6 + ["b"] * 3,
            "ds": [*pd.date_range("2021-01-01", periods=6, freq="h")]
            + [*pd.date_range("2021-01-01", periods=3, freq="h")],
            "y": [0.0, 1.0, np.nan, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0],
            "promo": [None, "yes", None, "zz", None, "no", "no", None, "no"],
        }
    )
    options = ReadOptions(layout="long", future_covariates=("promo",), fill=fill)
    with pytest.warns(UserWarning, match=f"were filled \\(data.fill={fill}\\)"):
        frame = read(raw, options)
    levels = frame.levels["promo"]
    assert [levels[int(c)] for c in frame.covariates[:, 0]] == (
        ["yes", "yes", "yes", "zz", "zz", "no", "no", "no", "no"]
    )
    assert frame.values[2, 0] == {"interpolate": 2.0, "zero": 0.0, "ffill": 1.0}[fill]
    # a series with no level at all has nothing to take: named, not given another series' level
    raw.loc[6:, "promo"] = None
    with pytest.raises(DataError, match=r"'promo', row df.iloc\[6\] \(series 'b'\): value "):
        read(raw, options)


def test_a_static_covariate_must_be_constant_and_needs_many_series():
    raw = promo_frame(n=30)
    raw.loc[7, "kind"] = "up"
    with pytest.raises(DataError, match=r"'kind', row df.iloc\[7\] \(series 's0'\): the static"):
        read(raw, LONG)
    wide = promo_frame(n_series=1, n=30).drop(columns="unique_id")
    with pytest.raises(DataError, match="static covariates \\['kind'\\] need many series"):
        read(wide, ReadOptions(static_covariates=("kind",), target=("y",)))


def test_future_rows_hold_the_horizon_and_need_their_future_covariates():
    raw = promo_frame(n=30, horizon=6, future_target=True)
    frame = read(raw, LONG, future_rows=True)
    assert frame.future.tolist() == [6, 6, 6, 6]
    with pytest.raises(DataError, match="missing or infinite"):  # rows without a target
        read(raw, LONG)
    raw.loc[33, "promo"] = None  # a future row of s0 without its promo
    with pytest.raises(DataError, match=r"column 'promo', row df.iloc\[33\] \(series 's0'\)"):
        read(raw, LONG, future_rows=True)


def test_with_a_table_of_future_rows_an_input_row_without_a_target_is_missing_not_future():
    """Future rows come from `future=`: the input's own rows without a target (its last two
    here) are missing values, refused under fill=error and filled otherwise; they do not move
    the forecast's start back or push the table's last rows out."""
    raw = promo_frame(n=30, horizon=6, future_target=True)
    history = raw.groupby("unique_id").head(30).copy()
    future = raw.groupby("unique_id").tail(6).drop(columns="y")
    history.loc[[28, 29], "y"] = np.nan  # series s0's last two targets
    with pytest.raises(DataError, match=r"column 'y', row df.iloc\[28\] \(series 's0'\)"):
        read(history, LONG, future=future)
    with pytest.warns(UserWarning, match="filled"):
        frame = read(history, dataclasses.replace(LONG, fill="ffill"), future=future)
    assert frame.future.tolist() == [6, 6, 6, 6]
    s0 = frame.values[frame.offsets[0] : frame.offsets[1], 0]
    assert s0[28] == s0[29] == s0[27] and np.isnan(s0[30:]).all()
    # a series the table has no rows for keeps its future rows from the input (s3's last 6)
    own = pd.concat([history[history.unique_id != "s3"], raw[raw.unique_id == "s3"]])
    partial = future[future.unique_id != "s3"]
    with pytest.warns(UserWarning, match="filled"):
        frame = read(own, dataclasses.replace(LONG, fill="ffill"), future=partial)
    assert frame.future.tolist() == [6, 6, 6, 6]
    s3 = slice(frame.offsets[3], frame.offsets[4])
    assert np.isnan(frame.values[s3, 0][30:]).all() and len(frame.values[s3]) == 36


def test_covariate_values_far_beyond_training_are_refused_and_backtests_need_no_future(tmp_path):
    """A placeholder such as 1e30 in a covariate reached the network as ~1e29 and came out as
    forecasts of 1e27: refused, naming column, series and time, in the rows a model is
    evaluated or forecast on. A backtest with future covariates needs no future rows (the API
    asked for them)."""
    raw = promo_frame(n=60).assign(price=lambda d: np.arange(len(d)) % 7 / 7.0)
    options = dict(
        layout="long",
        lookback=12,
        horizon=6,
        max_epochs=1,
        progress=False,
        past_covariates=["price"],
        future_covariates=["promo"],
        overrides=[*FIT[1:], "model.segment_len=6", "data.val_size=12", "data.test_size=12"],
    )
    bad = raw.copy()
    bad.loc[115, "price"] = 1e30  # in s1's test rows (in training rows it sets the scale)
    with pytest.raises(DataError, match=r"column 'price', series 's1', time 2021-01-03 07:00:00:"):
        forecast.fit(bad, output_dir=tmp_path / "bad", **options)
    run = forecast.fit(raw, output_dir=tmp_path / "run", **options)
    history = raw.groupby("unique_id").head(50).copy()
    step = raw.groupby("unique_id").cumcount()
    future = raw[step.between(50, 55)].drop(columns=["y", "price"])
    assert len(run.predict(history, future=future)) == 4 * 6
    # a backtest's horizons lie in the history: no future rows needed, the same where given
    backtest = run.predict(history, backtest=True, n_windows=2)
    assert len(backtest) == 4 * 2 * 6 and backtest["y"].notna().all()
    pd.testing.assert_frame_equal(
        backtest, run.predict(history, future=future, backtest=True, n_windows=2)
    )
    history.loc[5, "price"] = -1e30
    with pytest.raises(DataError, match=r"'price', series 's0', time .*value -1e\+30 lies"):
        run.predict(history, future=future)


# ---- the network -------------------------------------------------------------------------


def test_the_encoder_standardises_numbers_and_one_hot_encodes_levels():
    columns = Columns(("temp", "promo"), {"promo": ("no", "yes", "maybe")}, (10.0, 0.0), (2.0, 1.0))
    encoder = CovariateEncoder(columns)
    raw = torch.tensor([[14.0, 2.0], [10.0, 0.0]])
    expected = torch.tensor([[2.0, 0, 0, 1], [0.0, 1, 0, 0]])
    torch.testing.assert_close(encoder(raw), expected)
    assert encoder.width == 4 and encoder.n_columns == 2


def test_a_column_with_more_levels_than_the_embedding_gets_a_learned_vector_per_level():
    levels = {"id": tuple(f"s{i}" for i in range(40)), "promo": ("no", "yes")}
    columns = Columns(("temp", "id", "promo"), levels, (10.0, 0.0, 0.0), (2.0, 1.0, 1.0))
    encoder = CovariateEncoder(columns, embed=4)
    assert encoder.width == 1 + 4 + 2 and list(encoder.embeddings) == ["0"]
    table = encoder.embeddings["0"].weight  # [40, 4]: the id's levels; promo stays one-hot
    raw = torch.tensor([[14.0, 7.0, 1.0], [10.0, 39.0, 0.0], [12.0, 7.0, 0.0]])
    expected = torch.cat(
        [
            torch.tensor([[2.0], [0.0], [1.0]]),
            table[[7, 39, 7]],
            torch.tensor([[0.0, 1], [1, 0], [1, 0]]),
        ],
        dim=-1,
    )
    torch.testing.assert_close(encoder(raw), expected)
    # the vectors are learnt: a loss on one row's features reaches that level's row only
    encoder(raw[:1]).sum().backward()
    touched = table.grad.abs().sum(-1).nonzero().flatten().tolist()
    assert touched == [7]
    # 0 (or levels within the size) keep the one-hot
    assert CovariateEncoder(columns, embed=0).width == 1 + 40 + 2
    assert CovariateEncoder(columns, embed=40).width == 1 + 40 + 2
    with pytest.raises(ValueError, match="category_embedding must be >= 0"):
        CovariateEncoder(columns, embed=-1)


def test_a_series_id_over_100000_series_does_not_widen_the_network():
    """The one-hot of a 100,000-level id would be a 100,000-wide input to three layers, and
    repeated in every segment of every window; embedded, it adds 16 features."""
    ids = Columns(("id",), {"id": tuple(range(100_000))}, (0.0,), (1.0,))
    options = dict(hidden_size=8, segment_len=6, covariates=Covariates(static=ids))
    net = ForecastNet(1, 24, 12, category_embedding=16, **options)
    assert net.embed[0].in_features == 6 + 16
    assert net.covariate_query.in_features == 16 and net.covariate_skip.in_features == 16
    x, static = torch.randn(3, 24, 1), torch.tensor([[0.0], [99_999.0], [5.0]])
    y = net(x, static=static)
    assert y.shape == (3, 12, 1, 1) and torch.isfinite(y).all()
    one_hot = ForecastNet(1, 24, 12, category_embedding=0, **options)
    assert one_hot.embed[0].in_features == 6 + 100_000


def test_a_code_that_is_no_level_gives_zeros_as_its_one_hot_would():
    """Not a lookup of another level's vector: ONNX's Gather would wrap -1 to the last level."""
    columns = Columns(("id",), {"id": tuple(f"s{i}" for i in range(40))}, (0.0,), (1.0,))
    embedded, one_hot = CovariateEncoder(columns, embed=4), CovariateEncoder(columns)
    bad = torch.tensor([[-1.0], [40.0], [2.5]])
    for encoder in (embedded, one_hot):
        assert encoder(bad).abs().sum() == 0
    last = embedded.embeddings["0"].weight[39:]
    torch.testing.assert_close(embedded(torch.tensor([[39.0]])), last)


def test_runs_and_checkpoints_from_before_the_option_keep_their_one_hot():
    """A run's config.yaml or a checkpoint written before `model.category_embedding` existed
    lacks the key: brought up to date (`forecast.config.upgrade_config`,
    `upgrade_model_options`), its model is the one-hot one it was trained as (its weights load),
    and resuming it under today's default names the option to give. A model built today records
    the option even where it was not given, so its checkpoint is not taken for an older one."""
    from omegaconf import OmegaConf

    from forecast.config import compose_train_config, upgrade_config
    from forecast.errors import ConfigError
    from forecast.models.forecaster import refuse_other_checkpoint
    from forecast.pipeline import build_model

    ids = Columns(("id",), {"id": tuple(f"s{i}" for i in range(40))}, (0.0,), (1.0,))
    spec = dataclasses.replace(DataSpec.of(1, 24, 12), covariates=Covariates(static=ids))
    today_cfg = compose_train_config(["data=csv", "data.path=x.csv", "model.hidden_size=8"])
    old_cfg = OmegaConf.create(OmegaConf.to_container(today_cfg))  # as a config.yaml loads
    del old_cfg.model["category_embedding"]  # one from before the option
    assert upgrade_config(today_cfg.copy()) == today_cfg  # today's config is left as it is

    old = build_model(upgrade_config(old_cfg).model, spec)
    assert old_cfg.model.category_embedding == 0
    assert not old.net.static_encoder.embeddings and old.net.static_encoder.width == 40
    today = build_model(today_cfg.model, spec)
    assert today.net.static_encoder.width == 16 and today.hparams["category_embedding"] == 16
    checkpoint = {"hyper_parameters": dict(old.hparams), "data_spec": spec.to_dict()}
    del checkpoint["hyper_parameters"]["category_embedding"]  # written before the option
    with pytest.raises(ConfigError, match=r"model.category_embedding=0 \(this run: 16\)"):
        refuse_other_checkpoint(checkpoint, dict(today.hparams), spec.to_dict())
    refuse_other_checkpoint(checkpoint, dict(old.hparams), spec.to_dict())
    build_model(old_cfg.model, spec).load_state_dict(old.state_dict())
    with pytest.raises(RuntimeError, match="size mismatch"):
        today.load_state_dict(old.state_dict())
    # a Forecaster built in Python without the option records the default it was built with,
    # so its checkpoint resumes into itself (were it read as older, it would be refused)
    plain = Forecaster(spec, hidden_size=8, segment_len=6)
    assert plain.hparams["category_embedding"] == 16 and plain.net.static_encoder.width == 16
    saved = {"hyper_parameters": dict(plain.hparams), "data_spec": spec.to_dict()}
    refuse_other_checkpoint(saved, dict(plain.hparams), spec.to_dict())
    # nor does one built around a network of its own (it records no network options)
    given = Forecaster(spec, net=ForecastNet(1, 24, 12, hidden_size=8, segment_len=6))
    assert "category_embedding" not in given.hparams
    saved = {"hyper_parameters": dict(given.hparams), "data_spec": spec.to_dict()}
    refuse_other_checkpoint(saved, dict(given.hparams), spec.to_dict())


COVARIATES = Covariates(
    past=Columns(("load",), {}, (0.0,), (1.0,)),
    future=Columns(("promo", "calendar:hour"), {"promo": ("no", "yes")}, (0.0, 0.0), (1.0, 1.0)),
    static=Columns(("kind",), {"kind": ("down", "up")}, (0.0,), (1.0,)),
)


def inputs(batch=3, lookback=24, horizon=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, lookback, 2, generator=g)
    past = torch.randn(batch, lookback, 1, generator=g)
    promo = torch.randint(0, 2, (batch, lookback + horizon, 1), generator=g).float()
    future = torch.cat([promo, torch.rand(batch, lookback + horizon, 1, generator=g)], -1)
    static = torch.randint(0, 2, (batch, 1), generator=g).float()
    return x, past, future, static


@pytest.mark.parametrize("decoder", ["pmf", "direct"])
@pytest.mark.parametrize(
    ("cell", "impl", "layers", "independent"),
    [
        ("lstm", "torch", 1, True),
        ("gru", "custom", 1, False),
        ("lstmp", "custom", 2, True),
        ("lstm", "custom", 1, False),
    ],
)
def test_every_backbone_and_decoder_reads_each_kind_of_covariate(
    decoder, cell, impl, layers, independent
):
    torch.manual_seed(0)
    options = dict(cell=cell, impl=impl, num_layers=layers, proj_size=4 if cell == "lstmp" else 0)
    net = ForecastNet(
        2,
        24,
        10,
        hidden_size=8,
        segment_len=6,
        decoder=decoder,
        channel_independent=independent,
        covariates=COVARIATES,
        **options,
    ).eval()
    x, past, future, static = inputs()
    with torch.no_grad():
        y = net(x, past, future, static)
        assert y.shape == (3, 10, 2, 1)
        changed = {
            "past": net(x, past + 1, future, static),
            "future over the horizon": net(
                x, past, future.index_fill(1, torch.tensor([30]), 1.0), static
            ),
            "static": net(x, past, future, 1 - static),
        }
    for what, other in changed.items():
        assert not torch.allclose(other, y), what
    with pytest.raises(ValueError, match="takes past covariates, and was given none"):
        net(x, None, future, static)


# ---- export ------------------------------------------------------------------------------


# the static column with 40 levels, embedded in 4 features rather than one-hot
MANY_LEVELS = Covariates(
    past=COVARIATES.past,
    future=COVARIATES.future,
    static=Columns(("id",), {"id": tuple(f"s{i}" for i in range(40))}, (0.0,), (1.0,)),
)


@pytest.mark.parametrize(
    ("cell", "impl", "decoder", "independent", "covariates"),
    [
        ("lstm", "torch", "pmf", True, COVARIATES),
        ("gru", "custom", "direct", False, COVARIATES),
        ("lstmp", "torch", "pmf", False, COVARIATES),
        ("gru", "torch", "pmf", True, MANY_LEVELS),
    ],
)
def test_the_export_takes_covariates_as_named_inputs_and_equals_the_model(
    tmp_path, cell, impl, decoder, independent, covariates
):
    torch.manual_seed(0)
    net = ForecastNet(
        2,
        24,
        10,
        cell=cell,
        impl=impl,
        hidden_size=8,
        proj_size=4 if cell == "lstmp" else 0,
        segment_len=6,
        decoder=decoder,
        channel_independent=independent,
        covariates=covariates,
        category_embedding=4,
    ).eval()
    mean, scale = torch.tensor([5.0, -1.0]), torch.tensor([2.0, 0.5])
    reference = ScaledForecastNet(net, mean, scale).eval()
    meta = {
        "lookback": 24,
        "horizon": 10,
        "channels": ["a", "b"],
        "covariates": covariates.to_dict(),
    }
    export_bundle(net, mean, scale, meta, tmp_path)
    x, past, future, static = inputs(batch=5, seed=1)
    if covariates is MANY_LEVELS:  # codes of the id's levels, the last one among them
        static = torch.tensor([[0.0], [39.0], [17.0], [3.0], [17.0]])
        assert "0" in net.static_encoder.embeddings
    x = x * scale + mean
    with torch.no_grad():
        expected = reference(x, past, future, static).numpy()
    for engine in ("pt2", "onnx"):
        model = ExportedModel(tmp_path, engine)
        assert model.covariate_inputs == {
            "past": ["batch", 24, 1],
            "future": ["batch", 34, 2],
            "static": ["batch", 1],
        }
        got = model.predict(
            x.numpy(), past=past.numpy(), future=future.numpy(), static=static.numpy()
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=engine)
    with pytest.raises(ValueError, match="takes the covariates \\['future', 'past', 'static'\\]"):
        model.predict(x.numpy())
    if covariates is MANY_LEVELS:  # what no engine could tell from a level: refused by name
        for code in (-1.0, 40.0, 2.5, float("nan")):
            other = static.clone()
            other[3, 0] = code
            with pytest.raises(ValueError, match=r"static\[3, 0\] \('id'\) is .*, not a code"):
                model.predict(x.numpy(), past=past.numpy(), future=future.numpy(), static=other)


# ---- learning from them ------------------------------------------------------------------

SMALL = dict(lookback=48, horizon=24, max_epochs=12, progress=False)
FIT = ["model.segment_len=12", "model.hidden_size=32", "model.naive_blend=false", PT2_ONLY]


def signal_mse(run, history: pd.DataFrame, future: pd.DataFrame, signal: pd.Series) -> float:
    """MSE of the forecasts against the noise-free signal over the horizon."""
    forecasts = run.predict(history, future=future).set_index(["unique_id", "ds"])["y_hat"]
    return float(((forecasts - signal.loc[forecasts.index]) ** 2).mean())


@pytest.mark.slow
def test_a_future_covariate_that_history_cannot_predict_is_learnt(tmp_path):
    data = promo_frame(n=600, horizon=24, seed=3)
    signal = data.set_index(["unique_id", "ds"])
    signal = 3.0 * (signal["promo"] == "yes") + np.where(signal["kind"] == "up", 2.0, -2.0)
    last = data.groupby("unique_id").cumcount() >= 600
    history, future = data[~last], data[last].assign(y=np.nan)
    options = dict(SMALL, overrides=FIT)
    with_promo = forecast.fit(
        history, future_covariates=["promo"], output_dir=tmp_path / "with", **options
    )
    without = forecast.fit(
        history.drop(columns="promo"), output_dir=tmp_path / "without", **options
    )
    assert without.metrics["test_mse"] > 5 * with_promo.metrics["test_mse"], (
        without.metrics["test_mse"],
        with_promo.metrics["test_mse"],
    )
    ours = signal_mse(with_promo, history, future, signal)
    theirs = signal_mse(without, history.drop(columns="promo"), None, signal)
    assert theirs > 5 * ours, (theirs, ours)


@pytest.mark.slow
def test_a_past_covariate_that_leads_the_target_by_the_horizon_is_learnt(tmp_path):
    rng = np.random.default_rng(5)
    n, lead = 1500, 24
    driver = rng.normal(0, 1, n + lead)
    df = pd.DataFrame(
        {
            "ds": pd.date_range("2021-01-01", periods=n, freq="h"),
            "y": 2.0 * driver[:n] + rng.normal(0, 0.2, n),  # y_t = 2 x_(t - lead) + noise
            "x": driver[lead:],
        }
    )
    options = dict(SMALL, overrides=FIT)
    with_lead = forecast.fit(df, past_covariates=["x"], output_dir=tmp_path / "with", **options)
    without = forecast.fit(df.drop(columns="x"), output_dir=tmp_path / "without", **options)
    assert without.metrics["test_mse"] > 3 * with_lead.metrics["test_mse"], (
        without.metrics["test_mse"],
        with_lead.metrics["test_mse"],
    )


@pytest.mark.slow
def test_static_covariates_separate_series_levels(tmp_path):
    """Noise around a level of -1 or +1 set by the series' kind, with a short look-back: the
    window's mean guesses the level poorly, the kind tells it."""
    rng = np.random.default_rng(7)
    parts = []
    for s in range(8):
        kind = "high" if s % 2 else "low"
        level = 1.0 if kind == "high" else -1.0
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": f"s{s}",
                    "ds": pd.date_range("2021-01-01", periods=700, freq="h"),
                    "y": level + rng.normal(0, 2.0, 700),
                    "kind": kind,
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    options = dict(
        lookback=6,
        horizon=6,
        max_epochs=4,
        progress=False,
        overrides=[*FIT[1:], "model.segment_len=6", "model.revin=false"],
    )
    with_kind = forecast.fit(
        df, static_covariates=["kind"], output_dir=tmp_path / "with", **options
    )
    without = forecast.fit(df.drop(columns="kind"), output_dir=tmp_path / "without", **options)
    levels = df.groupby("unique_id")["kind"].first().map({"high": 1.0, "low": -1.0})

    def level_error(run, data):
        forecasts = run.predict(data)
        return float(((forecasts["y_hat"] - forecasts["unique_id"].map(levels)) ** 2).mean())

    ours, theirs = level_error(with_kind, df), level_error(without, df.drop(columns="kind"))
    assert theirs > 5 * ours, (theirs, ours)


@pytest.mark.parametrize(("embedding", "epochs"), [(16, 4), (4, 8)], ids=["one-hot", "embedded"])
def test_the_series_id_as_a_static_covariate_learns_each_series_level(tmp_path, embedding, epochs):
    """One series per row (the M4 layout), noise around a level of -1 or +1: with the id
    column as a static covariate the model learns a vector per series (its level here), which a
    short look-back guesses poorly; its 8 levels one-hot, or embedded in 4 features (a vector
    through a layer learns more slowly than a one-hot's column: level error 0.10 after 4 epochs
    against 0.06, both 0.036 after 8)."""
    rng = np.random.default_rng(7)
    rows, levels = [], {}
    for s in range(8):
        levels[f"S{s}"] = 1.0 if s % 2 else -1.0
        n = 400 + 10 * s  # ragged, as M4's rows are
        rows.append([f"S{s}", *(levels[f"S{s}"] + rng.normal(0, 2.0, n)), *[np.nan] * (500 - n)])
    df = pd.DataFrame(rows, columns=["id", *[f"V{i}" for i in range(500)]])
    options = dict(
        layout="rows",
        lookback=6,
        horizon=6,
        max_epochs=epochs,
        progress=False,
        overrides=[*FIT[1:], "model.segment_len=6", "model.revin=false"]
        + [f"model.category_embedding={embedding}"]
        + ["data.val_size=24", "data.test_size=24"],
    )
    with_id = forecast.fit(df, static_covariates=["id"], output_dir=tmp_path / "with", **options)
    without = forecast.fit(df, output_dir=tmp_path / "without", **options)

    def level_error(run):
        forecasts = run.predict(df)
        return float(((forecasts["y_hat"] - forecasts["unique_id"].map(levels)) ** 2).mean())

    ours, theirs = level_error(with_id), level_error(without)
    assert theirs > 4 * ours, (theirs, ours)
    # a series the model has no vector for is named, not forecast with another's
    unknown = df.assign(id=df["id"].replace({"S3": "S9"}))
    with pytest.raises(DataError, match=r"'S9' is not one of the levels the model was trained"):
        with_id.predict(unknown)


@pytest.mark.slow
def test_predict_py_reads_future_rows_like_the_api_and_names_what_is_missing(tmp_path):
    data = promo_frame(n=300, horizon=24, seed=4, future_target=True)
    history = data[data["y"].notna()]
    run = forecast.fit(
        history,
        lookback=48,
        horizon=24,
        max_epochs=1,
        future_covariates=["promo"],
        static_covariates=["kind"],
        calendar=["hour"],
        overrides=["model.segment_len=12", "model.hidden_size=8", "trainer.limit_train_batches=3"],
        output_dir=tmp_path / "run",
        progress=False,
    )
    inputs = tmp_path / "in"
    inputs.mkdir()
    data.to_csv(inputs / "with_future.csv", index=False)
    history.to_csv(inputs / "no_future.csv", index=False)

    def predict_py(output: str, *extra: str) -> list[str]:
        """predict.py over `inputs` into `output`: it fails one file (exit status 1); the
        FAILED lines of its stderr."""
        result = run_entry(
            "predict.py",
            *[f"model_dir={run.path}", f"input={inputs}", f"output={tmp_path / output}"],
            f"hydra.run.dir={tmp_path / 'log' / output}",
            *extra,
        )
        assert result.returncode == 1, result.stderr
        return [line for line in result.stderr.splitlines() if line.startswith("FAILED")]

    failed = predict_py("out")
    assert len(failed) == 1 and "no_future.csv: series 's0' has 0 rows after its last" in failed[0]
    assert "the model needs the future covariates ['promo'] for the 24 steps" in failed[0]
    written = pd.read_csv(tmp_path / "out" / "with_future.forecast.csv")
    expected = run.predict(data)
    assert expected.to_csv(index=False) == written.to_csv(index=False)
    assert run.predict(history, future=data[data["y"].isna()]).equals(expected)

    # future=: the future rows in a file of their own (no target column), or a folder with a
    # file of each input's name; an input without one fails alone, naming what is missing
    ahead = data[data["y"].isna()].drop(columns="y")
    (tmp_path / "ahead").mkdir()
    ahead.to_csv(tmp_path / "ahead" / "no_future.csv", index=False)
    failed = predict_py("out2", f"future={tmp_path / 'ahead'}")
    assert len(failed) == 1 and "with_future.csv: no future covariates for it" in failed[0]
    written = pd.read_csv(tmp_path / "out2" / "no_future.forecast.csv")
    assert expected.to_csv(index=False) == written.to_csv(index=False)
    assert run.predict(history, future=tmp_path / "ahead" / "no_future.csv").equals(expected)

    # what a future file cannot hold: one line naming the file, column and row, and the fix
    path = tmp_path / "bad_future.csv"
    gap = ahead.reset_index(drop=True)
    gap.loc[30, "promo"] = None  # series s1's seventh future hour
    gap.to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"column 'promo'.*data row 31 \(line 32 of the file\) "
        r"of .*bad_future.csv",
    ):
        run.predict(history, future=path)
    with_target = data[data["y"].isna()].fillna({"y": 1.0})
    with pytest.raises(
        DataError,
        match=r"the future DataFrame: column 'y', row future.iloc\[0\]: a future row "
        r"holds a value of the target 'y'",
    ):
        run.predict(history, future=with_target)
    with pytest.raises(DataError, match=r"bad_future.csv: column 'promo' not found"):
        ahead.drop(columns="promo").to_csv(path, index=False)
        run.predict(history, future=path)
    short = ahead.groupby("unique_id").head(20)  # 20 of the 24 hours the model needs
    with pytest.raises(DataError, match=r"series 's0' has 20 rows after its last target"):
        run.predict(history, future=short)


def test_a_true_low_precision_that_would_round_category_codes_is_refused(tmp_path):
    """bf16-true casts a batch's floats, categorical codes among them, to bfloat16, which holds
    257 as 256: series 257 would be trained and forecast as series 256. Refused in one line
    before training; bf16-mixed (float32 inputs) and codes within the exact range are not."""
    from forecast.errors import ConfigError
    from forecast.pipeline import refuse_inexact_codes

    assert torch.tensor([257.0]).to(torch.bfloat16).item() == 256  # why
    assert torch.tensor([2049.0]).to(torch.float16).item() == 2048
    rng = np.random.default_rng(0)
    rows = [[f"S{s}", *rng.normal(0, 1, 40)] for s in range(300)]
    df = pd.DataFrame(rows, columns=["id", *[f"V{i}" for i in range(40)]])
    with pytest.raises(ConfigError, match=r"trainer.precision=bf16-true: the categorical cova"):
        forecast.fit(
            df,
            layout="rows",
            static_covariates=["id"],
            lookback=6,
            horizon=6,
            precision="bf16-true",
            output_dir=tmp_path / "run",
            progress=False,
            overrides=["model.segment_len=6", "data.val_size=12", "data.test_size=12"],
        )

    def spec(n_levels):
        ids = Columns(("id",), {"id": tuple(f"s{i}" for i in range(n_levels))}, (0.0,), (1.0,))
        return dataclasses.replace(DataSpec.of(1, 6, 6), covariates=Covariates(static=ids))

    refuse_inexact_codes("bf16-true", spec(257))  # codes 0..256: exact
    with pytest.raises(ConfigError, match="has 258 levels.*exactly only up to 256"):
        refuse_inexact_codes("bf16-true", spec(258))
    for precision in ("bf16-mixed", "32-true", "16-mixed", None):
        refuse_inexact_codes(precision, spec(300))
    refuse_inexact_codes("16-true", spec(2049))
    with pytest.raises(ConfigError, match="has 2050 levels.*exactly only up to 2048"):
        refuse_inexact_codes("16-true", spec(2050))
