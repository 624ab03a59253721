"""Exported models (torch.export's .pt2, ONNX Runtime) against the in-memory model; meta.json's
schema against hostile files."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from forecast.export import ExportedModel, ExportError, export_bundle
from forecast.models.network import ForecastNet, ScaledForecastNet

ENGINES = ("pt2", "onnx")
CASES = [
    (cell, proj, impl, decoder)
    for cell, proj in [("lstm", 0), ("lstmp", 8), ("gru", 0)]
    for impl in ("torch", "custom")
    for decoder in ("pmf", "direct")
]


def bundle(tmp_path, cell, proj, impl, decoder, quantiles=1, **kwargs):
    torch.manual_seed(0)
    net = ForecastNet(
        7,
        96,
        24,
        cell=cell,
        impl=impl,
        proj_size=proj,
        hidden_size=16,
        segment_len=24 if decoder == "pmf" else 12,
        decoder=decoder,
        n_quantiles=quantiles,
        highway=decoder == "direct",  # both with and without the highway's linear map
    ).eval()
    mean = torch.linspace(-5, 30, 7)
    scale = torch.linspace(0.5, 8, 7)
    meta = {"lookback": 96, "horizon": 24, "channels": list("abcdefg")}
    export_bundle(net, mean, scale, meta, tmp_path, **kwargs)
    return ScaledForecastNet(net, mean, scale).eval()


def raw_inputs(etth1_csv):
    values = pd.read_csv(etth1_csv).drop(columns="date").to_numpy("float32")
    real = np.stack([values[i : i + 96] for i in (0, 5000, 12000)])
    fresh = np.random.default_rng(1).normal(10, 5, size=(5, 96, 7)).astype("float32")
    return [real, fresh, fresh[:1]]  # real windows, random ones, a batch of one


@pytest.mark.parametrize(("cell", "proj", "impl", "decoder"), CASES)
def test_pt2_and_onnx_equal_the_in_memory_model(tmp_path, etth1_csv, cell, proj, impl, decoder):
    # quantile heads on the pmf decoder, point forecasts on the direct one
    quantiles = 3 if decoder == "pmf" else 1
    reference = bundle(tmp_path, cell, proj, impl, decoder, quantiles)
    for engine in ENGINES:
        exported = ExportedModel(tmp_path, engine)
        for x in raw_inputs(etth1_csv):
            with torch.no_grad():
                expected = reference(torch.from_numpy(x)).numpy()
            got = exported.predict(x)
            assert got.shape == (len(x), 24, 7, 3)[: 4 if quantiles > 1 else 3]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=engine)


def test_a_default_export_warns_nothing_and_writes_no_torchscript(tmp_path, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning, deprecations included, fails
        bundle(tmp_path, "lstm", 0, "torch", "pmf")
    assert capfd.readouterr() == ("", "")  # nor a word from the exporters
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "model.onnx", "model.pt2"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["files"] == {"pt2": "model.pt2", "onnx": "model.onnx"}
    assert meta["input_shape"] == ["batch", 96, 7]
    assert meta["format_version"] == 2


def test_torchscript_only_on_request_and_still_equal(tmp_path):
    reference = bundle(tmp_path, "gru", 0, "custom", "pmf", torchscript=True)
    assert json.loads((tmp_path / "meta.json").read_text())["files"]["torchscript"] == "model.pt"
    x = np.random.default_rng(0).normal(10, 5, size=(3, 96, 7)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = ExportedModel(tmp_path, "torchscript").predict(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_export_formats_write_only_what_is_asked_and_loading_names_what_is_there(tmp_path):
    """train.py's export_formats: the formats asked for, no other file; a missing engine is
    one line naming the engines the export holds and the setting that adds it."""
    from forecast.cli import ConfigError, check_export_formats

    reference = bundle(tmp_path, "gru", 0, "torch", "direct", formats=["onnx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "model.onnx"]
    assert json.loads((tmp_path / "meta.json").read_text())["files"] == {"onnx": "model.onnx"}
    x = np.random.default_rng(0).normal(10, 5, size=(2, 96, 7)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = ExportedModel(tmp_path, "onnx").predict(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(
        FileNotFoundError,
        match=r"holds no pt2 export \(it holds: onnx\).*"
        r"export_formats=\[pt2\]",
    ):
        ExportedModel(tmp_path)
    with pytest.raises(ValueError, match="'pt3' is not an export format; choose from pt2, onnx"):
        bundle(tmp_path / "bad", "gru", 0, "torch", "direct", formats=["pt2", "pt3"])
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    check_export_formats(["pt2", "onnx", "torchscript"])
    check_export_formats([])
    for bad, message in ((["pt3"], "'pt3' is not an export format"), ("pt2", "give a list")):
        with pytest.raises(ConfigError, match=message):
            check_export_formats(bad)
    # TorchScript takes x alone: refused up front for a model with covariates, not at its end
    check_export_formats(["torchscript"], {"calendar": None, "past_covariates": []})
    with pytest.raises(
        ConfigError,
        match=r"TorchScript exports take no covariates \(data."
        r"calendar is set\); drop torchscript",
    ):
        check_export_formats(["pt2", "torchscript"], {"calendar": ["hour"]})


def test_wrong_input_shape_is_refused(tmp_path):
    bundle(tmp_path, "gru", 0, "torch", "direct")
    model = ExportedModel(tmp_path)
    with pytest.raises(ValueError, match=r"takes \[batch, 96, 7\].*got \[2, 95, 7\]"):
        model.predict(np.zeros((2, 95, 7), "float32"))


def test_loading_needs_neither_lightning_nor_our_code(tmp_path):
    """A fresh interpreter that cannot import forecast (nor Lightning, Hydra) loads both files
    with torch.export.load and onnxruntime alone."""
    reference = bundle(tmp_path, "lstmp", 8, "torch", "pmf", quantiles=3)
    x = torch.randn(3, 96, 7)
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        np.save(tmp_path / "expected.npy", reference(x).numpy())
    script = f"""
import sys
for name in ("pytorch_lightning", "lightning", "hydra", "forecast"):
    sys.modules[name] = None  # any import of these fails
import numpy as np, onnxruntime, torch
x = np.load("{tmp_path}/x.npy")
expected = np.load("{tmp_path}/expected.npy")
program = torch.export.load("{tmp_path}/model.pt2")
pt2 = program.module()(torch.from_numpy(x)).detach().numpy()
session = onnxruntime.InferenceSession("{tmp_path}/model.onnx")
onnx = session.run(None, {{"x": x}})[0]
np.testing.assert_allclose(pt2, expected, rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(onnx, expected, rtol=1e-5, atol=1e-5)
print("loaded without our code")
"""
    # not from the project's folder: `forecast` must not be importable from the working directory
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded without our code" in result.stdout


def test_channel_independent_export_forecasts_each_channel_alone(tmp_path):
    torch.manual_seed(0)
    net = ForecastNet(1, 96, 24, cell="gru", hidden_size=16, segment_len=24).eval()
    mean, scale = torch.tensor([1.0, -2.0, 5.0]), torch.tensor([2.0, 0.5, 3.0])
    export_bundle(
        net,
        mean,
        scale,
        {"lookback": 96, "horizon": 24, "channels": list("abc")},
        tmp_path,
        independent=True,
    )
    x = torch.randn(4, 96, 3) * scale + mean
    with torch.no_grad():  # each channel through the one-channel net on its own
        expected = torch.stack(
            [
                net(((x[..., c] - mean[c]) / scale[c])[..., None])[..., 0, 0] * scale[c] + mean[c]
                for c in range(3)
            ],
            dim=-1,
        )
    for engine in ENGINES:
        got = ExportedModel(tmp_path, engine).predict(x.numpy())
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


# -- meta.json, hostile ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    bundle(folder, "gru", 0, "torch", "direct")
    return folder


def _with(**changes):
    def edit(meta):
        meta.update(changes)
        return meta

    return edit


def _without(key):
    def edit(meta):
        del meta[key]
        return meta

    return edit


def _nested(depth):
    def edit(meta):
        value = "leaf"
        for _ in range(depth):
            value = {"a": value}
        meta["config"] = value
        return meta

    return edit


# (name, a change of the good meta.json or its raw text, what the one-line message must say)
HOSTILE = [
    ("parent path", _with(files={"pt2": "../../other/model.pt2"}), r'"files\.pt2" must be a plain'),
    ("absolute path", _with(files={"pt2": "/etc/passwd"}), r'"files\.pt2" must be a plain path'),
    ("windows path", _with(files={"onnx": "C:\\x\\model.onnx"}), r'"files\.onnx" must be a plain'),
    ("not a name", _with(files={"torchscript": 123}), r'"files\.torchscript" must be a file name'),
    ("unknown engine", _with(files={"pickle": "m.pkl"}), "unknown engine 'pickle'"),
    ("files a list", _with(files=["model.pt2"]), r'"files" must map engines'),
    ("lookback text", _with(lookback="48"), r'"lookback" must be a positive integer, got "48"'),
    ("lookback negative", _with(lookback=-5), r'"lookback" must be a positive integer, got -5'),
    ("lookback bool", _with(lookback=True), r'"lookback" must be a positive integer, got true'),
    ("lookback float", _with(lookback=96.0), r'"lookback" must be a positive integer, got 96\.0'),
    ("horizon zero", _with(horizon=0), r'"horizon" must be a positive integer, got 0'),
    ("horizon missing", _without("horizon"), r'the field "horizon" is missing'),
    ("channels text", _with(channels="abcdefg"), r'"channels" must be a non-empty list'),
    ("channels numbers", _with(channels=list(range(7))), r'"channels" must be a list of non-em'),
    ("channels twice", _with(channels=list("abcdefa")), r'"channels" must name each channel once'),
    ("shape mismatch", _with(lookback=48), r'"input_shape" must be \["batch", 48, 7\]'),
    ("quantiles out", _with(quantiles=[0.1, 1.5]), r'"quantiles" must be a list of numbers betw'),
    ("quantiles order", _with(quantiles=[0.9, 0.1]), r'"quantiles" must be increasing'),
    ("frequency", _with(frequency=[1]), r'"frequency" must be a pandas frequency'),
    ("config", _with(config={"data": []}), r'"config" must hold its data options'),
    ("version", _with(format_version=99), r'"format_version" must be 1 or 2'),
    ("top level list", lambda meta: [], "must hold a JSON object, not a list"),
    ("deep nesting", _nested(40), "nested deeper than 32 levels"),
    ("very deep nesting", "[" * 100_000 + "]" * 100_000, "nested too deeply|nested deeper"),
    ("invalid JSON", '{"lookback": 96,', r"not valid JSON \(Expecting"),
    ("empty file", "", r"not valid JSON"),
    ("not UTF-8", b"\xff\xfe{}", "not UTF-8 text|not valid JSON"),
]


@pytest.mark.parametrize(("name", "change", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_meta_json_is_one_clear_line(good_export, tmp_path, name, change, message):
    folder = tmp_path / "export"
    folder.mkdir()
    for path in good_export.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    meta = json.loads((good_export / "meta.json").read_text())
    if callable(change):
        (folder / "meta.json").write_text(json.dumps(change(meta)))
    else:
        data = change if isinstance(change, bytes) else change.encode()
        (folder / "meta.json").write_bytes(data)
    with pytest.raises(ExportError, match=message) as error:
        ExportedModel(folder)
    text = str(error.value)
    assert "\n" not in text and len(text) < 400, text
    assert text.startswith(str(folder / "meta.json"))


def test_a_link_leaving_the_export_folder_is_refused(good_export, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.pt2").write_bytes((good_export / "model.pt2").read_bytes())
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "meta.json").write_bytes((good_export / "meta.json").read_bytes())
    (folder / "model.pt2").symlink_to(outside / "model.pt2")
    with pytest.raises(ExportError, match=r'"files\.pt2" leads outside the export folder'):
        ExportedModel(folder)


def test_an_export_error_is_a_value_error():
    assert issubclass(ExportError, ValueError)  # callers that catch ValueError keep working
