"""Ensembles (`ensemble.*`): K members over seeds, look-backs and losses, combined by their median
or mean into one model that evaluates, exports and forecasts as a single one.

The combination is checked against numpy's median and mean; the export against the in-memory
ensemble (pt2 and ONNX, members of different look-backs, with covariates); a trained ensemble's
export against the median of its members' own exports, computed by hand; predict.py against the
API; an ensemble of one against the plain run it must equal.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import forecast
from forecast.config import compose_train_config
from forecast.data.covariates import Columns, Covariates
from forecast.errors import ConfigError
from forecast.export import ExportedModel, export_bundle
from forecast.models.ensemble import EnsembleNet, combine
from forecast.models.network import ForecastNet, ScaledForecastNet
from forecast.pipeline import ensemble_members, member_config
from tests import conftest

TINY = ["trainer.limit_train_batches=4", "model.hidden_size=16", "data.batch_size=16"]
SCORES = ("val_mse", "val_mae", "test_mse", "test_mae", "test_skill")


def seasonal_frame(n_series=3, length=400, seed=0) -> pd.DataFrame:
    """Long-format hourly series of different levels and lengths: unique_id, ds, y."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(n_series):
        n = length - 40 * s
        t = np.arange(n)
        y = 10 * (s + 1) + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, n)
        ds = pd.date_range("2021-01-01", periods=n, freq="h")
        parts.append(pd.DataFrame({"unique_id": f"s{s}", "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


# -- the combination and the export, without training ---------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_the_median_and_mean_are_numpys(k):
    forecasts = torch.randn(k, 6, 5, 3, 2, generator=torch.Generator().manual_seed(k))
    for how, reference in (("median", np.median), ("mean", np.mean)):
        got = combine(forecasts, how).numpy()
        np.testing.assert_allclose(got, reference(forecasts.numpy(), axis=0), rtol=1e-6)
    # sorted quantiles stay sorted, member by member and combined
    ordered = forecasts.sort(dim=-1).values
    for how in ("median", "mean"):
        combined = combine(ordered, how)
        assert (combined.diff(dim=-1) >= 0).all()
    with pytest.raises(ValueError, match="combine must be one of"):
        combine(forecasts, "max")


COVARIATES = Covariates(
    past=Columns(("load",), {}, (5.0,), (2.0,)),
    future=Columns(("promo", "temp"), {"promo": ("no", "yes")}, (0.0, 20.0), (1.0, 4.0)),
    static=Columns(("kind",), {"kind": ("down", "up")}, (0.0,), (1.0,)),
)


def members_of(lookbacks, cells, quantiles=1):
    torch.manual_seed(0)
    return [
        ForecastNet(
            3,
            lookback,
            12,
            cell=cell,
            proj_size=4 if cell == "lstmp" else 0,
            hidden_size=8,
            segment_len=12,
            n_quantiles=quantiles,
            covariates=COVARIATES,
        ).eval()
        for lookback, cell in zip(lookbacks, cells, strict=True)
    ]


def test_an_ensemble_of_other_lookbacks_exports_as_it_forecasts(tmp_path):
    """Each member reads the last steps of the longest look-back (x and its covariates); the
    exports (pt2, ONNX) equal the in-memory ensemble, and its forecast is the mean of the
    members' own forecasts."""
    members = members_of([24, 48], ["lstmp", "gru"])  # lstmp: exported through our loop
    for member in members:  # a blend toward the naive forecast stays each member's own
        member.set_naive_blend(0.3, 24)
    mean, scale = torch.tensor([1.0, -2.0, 5.0]), torch.tensor([2.0, 0.5, 3.0])
    ensemble = EnsembleNet(members, "mean").eval()
    meta = {"lookback": 48, "horizon": 12, "channels": list("abc")}
    export_bundle(ensemble, mean, scale, meta, tmp_path)
    assert json.loads((tmp_path / "meta.json").read_text())["covariate_inputs"] == {
        "past": ["batch", 48, 1],
        "future": ["batch", 60, 2],
        "static": ["batch", 1],
    }
    rng = np.random.default_rng(0)
    x = rng.normal(3, 4, (5, 48, 3)).astype("float32")
    inputs = {
        "past": rng.normal(5, 2, (5, 48, 1)).astype("float32"),
        "future": np.stack(
            [rng.integers(0, 2, (5, 60)), rng.normal(20, 4, (5, 60))], axis=-1
        ).astype("float32"),
        "static": rng.integers(0, 2, (5, 1)).astype("float32"),
    }
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        expected = ScaledForecastNet(ensemble, mean, scale)(torch.from_numpy(x), **tensors)
        by_hand = []
        for member in members:
            skip = 48 - member.lookback
            alone = ScaledForecastNet(member, mean, scale)
            by_hand.append(
                alone(
                    torch.from_numpy(x[:, skip:]),
                    past=tensors["past"][:, skip:],
                    future=tensors["future"][:, skip:],
                    static=tensors["static"],
                ).numpy()
            )
    np.testing.assert_allclose(expected.numpy(), np.mean(by_hand, axis=0), rtol=1e-5, atol=1e-5)
    for engine in ("pt2", "onnx"):
        got = ExportedModel(tmp_path, engine).predict(x, **inputs)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5, err_msg=engine)


def test_quantile_members_combine_level_by_level():
    members = members_of([24, 48], ["gru", "lstm"], quantiles=3)
    ensemble = EnsembleNet(members, "median").eval()
    x = torch.randn(4, 48, 3)
    past, future, static = torch.randn(4, 48, 1), torch.zeros(4, 60, 2), torch.zeros(4, 1)
    with torch.no_grad():
        y = ensemble(x, past, future, static)
        alone = [m(x[:, -m.lookback :], past[:, -m.lookback :], future[:, -m.lookback - 12 :],
                   static) for m in members]  # fmt: skip
    assert y.shape == (4, 12, 3, 3)
    assert (y.diff(dim=-1) >= 0).all()  # the levels never cross
    np.testing.assert_allclose(y.numpy(), np.median(np.stack(alone), axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="differ in n_quantiles"):
        EnsembleNet([*members, *members_of([24], ["gru"])])


# -- the configuration ------------------------------------------------------------------------


def test_members_are_the_product_of_the_lists_in_order(tmp_path):
    cfg = compose_train_config(
        ["ensemble.seeds=[1,2]", "ensemble.lookbacks=[48,96]", "ensemble.losses=[mae,mse]"]
    )
    members = ensemble_members(cfg)
    assert [(m.seed, m.lookback, m.loss) for m in members] == [
        (seed, lookback, loss)
        for seed in (1, 2)
        for lookback in (48, 96)
        for loss in ("mae", "mse")
    ]
    member = member_config(cfg, members[5], tmp_path / "members" / "5")
    assert (member.seed, member.data.lookback, member.model.loss) == (2, 48, "mse")
    assert member.output_dir == str(tmp_path / "members" / "5")
    assert ensemble_members(member) is None  # a member trains one model
    assert list(member.export_formats) == ["pt2"]  # forecast.load reads each
    # a list left null is the run's own setting; none given: no ensemble, one model as before
    only_seeds = ensemble_members(compose_train_config(["ensemble.seeds=[3,4]", "seed=9"]))
    assert [(m.seed, m.lookback, m.loss) for m in only_seeds] == [(3, 96, "mae"), (4, 96, "mae")]
    assert ensemble_members(compose_train_config([])) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["ensemble.seeds=3"], r"ensemble\.seeds=3: give a list of integer seeds, e\.g\. "),
        (["ensemble.seeds=[]"], r"ensemble\.seeds=\[\]: give a list"),
        (["ensemble.seeds=[1,1]"], r"ensemble\.seeds=\[1, 1\]: a value given twice"),
        (["ensemble.seeds=[1,x]"], r"'x' is not one of the integer seeds"),
        (["ensemble.lookbacks=[12,96]"], r"look-back of 12 is shorter than model\.segment_len=24"),
        (["ensemble.losses=[mae,smap]"], r"'smap' is not a loss; choose from mse, mae, huber, sma"),
        (["ensemble.losses=[mae,quantile]"], r"ensemble members of one kind"),
        (["ensemble.combine=max"], r"ensemble\.combine=max: give ensemble\.combine=median or"),
        (["ensemble.seeds=[1,2]", "trainer.devices=2"], r"trainer\.devices=2: an ensemble trains"),
        (["ensemble.seeds=[1,2]", "ckpt_path=last"], r"ckpt_path=last: an ensemble trains its"),
        (["+ensemble.size=3"], r"ensemble\.size is not an ensemble option: give ensemble\.seeds"),
    ],
)
def test_a_bad_ensemble_setting_is_one_line_naming_the_key_and_the_fix(overrides, message):
    from forecast.cli import check_train_config

    cfg = compose_train_config(overrides)
    with pytest.raises(ConfigError, match=message) as caught:
        check_train_config(cfg, overrides)
    assert "\n" not in str(caught.value)


# -- trained ensembles ------------------------------------------------------------------------

LOOKBACKS = [24, 36, 48]


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    """Three members of three look-backs, their median, exported to pt2 and ONNX."""
    out = tmp_path_factory.mktemp("ensemble") / "run"
    return forecast.fit(
        seasonal_frame(),
        lookback=48,
        horizon=24,
        max_epochs=1,
        overrides=[*TINY, f"ensemble.lookbacks=[{','.join(map(str, LOOKBACKS))}]"],
        output_dir=out,
        progress=False,
    )


def windows(n=5, lookback=48, seed=1):
    """Raw windows of the frame's kind: [n, lookback, 1]."""
    frame = seasonal_frame(seed=seed)
    y = frame[frame.unique_id == "s1"].y.to_numpy("float32")
    starts = np.linspace(0, len(y) - lookback, n).astype(int)
    return np.stack([y[s : s + lookback] for s in starts])[..., None]


@pytest.mark.slow
def test_a_trained_ensemble_exports_the_median_of_its_members(ensemble_run):
    path = ensemble_run.path
    metrics = ensemble_run.metrics
    assert (metrics["ensemble_size"], metrics["ensemble_combine"]) == (3, "median")
    rows = metrics["members"]
    assert [(r["run"], r["lookback"]) for r in rows] == [
        (f"members/{k}", lookback) for k, lookback in enumerate(LOOKBACKS)
    ]
    for row in rows:
        member = json.loads((path / row["run"] / "metrics.json").read_text())
        assert {k: row[k] for k in SCORES} == {k: member[k] for k in SCORES}
        # scored on the same validation and test targets as the ensemble, whatever the look-back
        for split in ("val_windows", "test_windows"):
            assert member[split] == metrics[split]
    assert np.isclose(metrics["member_test_mse_mean"], np.mean([r["test_mse"] for r in rows]))

    x = windows()
    members = [forecast.load(path / row["run"]) for row in rows]
    # by hand: each member's own export on its look-back's last steps, then numpy's median
    by_hand = np.median(
        [ExportedModel(m.path).predict(x[:, -m.lookback :]) for m in members], axis=0
    )
    # the in-memory ensemble: the members' best weights with their blends (Run.module)
    nets = [m.module().net for m in members]
    meta = ensemble_run.meta
    scaler = [torch.tensor(meta["scaler"][k], dtype=torch.float32) for k in ("mean", "scale")]
    in_memory = ScaledForecastNet(EnsembleNet(nets, "median"), *scaler).eval()
    with torch.no_grad():
        expected = in_memory(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(by_hand, expected, rtol=1e-5, atol=1e-5)
    assert meta["lookback"] == 48 and meta["files"] == {"pt2": "model.pt2", "onnx": "model.onnx"}
    assert [m["lookback"] for m in meta["ensemble"]["members"]] == LOOKBACKS
    for engine in ("pt2", "onnx"):
        got = ExportedModel(path, engine).predict(x)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=engine)
    with pytest.raises(ValueError, match="is an ensemble: it has no checkpoint of its own"):
        ensemble_run.module()


@pytest.mark.slow
def test_predict_py_writes_what_the_api_forecasts(ensemble_run, tmp_path):
    from forecast.summary import run_summary

    df = seasonal_frame(seed=2)
    path = tmp_path / "incoming.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "out"
    conftest.run_script("predict.py", f"model_dir={ensemble_run.path}", f"input={path}",
                        f"output={out}")  # fmt: skip
    written = (out / "incoming.forecast.csv").read_text()
    api = ensemble_run.predict(df)
    assert api.to_csv(index=False) == written
    assert len(api) == 3 * 24 and api.y_hat.notna().all()
    summary = run_summary(ensemble_run.path)
    assert "median of 3 members (their test MSE" in summary
    assert "(metrics.json, forecast.png, members/, export/)" in summary


def train_on_frame(out: Path, *overrides: str) -> dict:
    """`pipeline.train` on the seasonal frame, as `forecast.fit` calls it (which keeps pt2: a
    Run forecasts through it); returns metrics.json."""
    from forecast.pipeline import train

    cfg = compose_train_config(
        ["data=csv", "data.path=null", "data.layout=long", "data.lookback=48", "data.horizon=24",
         "trainer.max_epochs=1", "seed=5", f"output_dir={out}", *TINY, *overrides]
    )  # fmt: skip
    train(cfg, data=seasonal_frame(), progress=False)
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_an_ensemble_of_one_scores_as_the_plain_run(tmp_path):
    """The ensemble's path (a member run, then the combination evaluated on the longest
    look-back's windows) changes nothing for one member: every metric equals the plain run's."""
    plain = train_on_frame(tmp_path / "plain", "export_formats=[]")
    one = train_on_frame(tmp_path / "one", "export_formats=[]", "ensemble.seeds=[5]")
    member = json.loads((tmp_path / "one" / "members" / "0" / "metrics.json").read_text())
    scores = sorted(k for k in plain if k.startswith(("val_", "test_")))
    assert len(scores) > 30
    assert {k: one[k] for k in scores} == {k: plain[k] for k in scores}
    assert {k: member[k] for k in scores} == {k: plain[k] for k in scores}
    assert one["members"][0]["seed"] == 5 and one["ensemble_size"] == 1
    # nothing exported, as asked: neither the ensemble nor its member
    assert not (tmp_path / "one" / "export").exists()
    assert not (tmp_path / "one" / "members" / "0" / "export").exists()
