"""Exported models (TorchScript, ONNX Runtime) against the in-memory model."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from forecast.export import ExportedModel, export_bundle
from forecast.models.network import ForecastNet, ScaledForecastNet
from tests.conftest import ROOT

CASES = [
    (cell, proj, impl, decoder)
    for cell, proj in [("lstm", 0), ("lstmp", 8), ("gru", 0)]
    for impl in ("torch", "custom")
    for decoder in ("pmf", "direct")
]


def bundle(tmp_path, cell, proj, impl, decoder, quantiles=1):
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
    export_bundle(net, mean, scale, meta, tmp_path)
    return ScaledForecastNet(net, mean, scale).eval()


def raw_inputs(etth1_csv):
    values = pd.read_csv(etth1_csv).drop(columns="date").to_numpy("float32")
    real = np.stack([values[i : i + 96] for i in (0, 5000, 12000)])
    fresh = np.random.default_rng(1).normal(10, 5, size=(5, 96, 7)).astype("float32")
    return [real, fresh, fresh[:1]]  # real windows, random ones, a batch of one


@pytest.mark.parametrize(("cell", "proj", "impl", "decoder"), CASES)
def test_torchscript_and_onnx_equal_the_in_memory_model(
    tmp_path, etth1_csv, cell, proj, impl, decoder
):
    reference = bundle(tmp_path, cell, proj, impl, decoder)
    for engine in ("torchscript", "onnx"):
        exported = ExportedModel(tmp_path, engine)
        for x in raw_inputs(etth1_csv):
            with torch.no_grad():
                expected = reference(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(exported.predict(x), expected, rtol=1e-5, atol=1e-5)


def test_quantile_export_keeps_the_quantile_axis(tmp_path):
    bundle(tmp_path, "gru", 0, "torch", "pmf", quantiles=3)
    for engine in ("torchscript", "onnx"):
        out = ExportedModel(tmp_path, engine).predict(np.zeros((2, 96, 7), "float32"))
        assert out.shape == (2, 24, 7, 3)


def test_bundle_files_and_meta(tmp_path):
    bundle(tmp_path, "lstm", 0, "torch", "pmf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "model.onnx", "model.pt"]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["files"] == {"torchscript": "model.pt", "onnx": "model.onnx"}
    assert meta["input_shape"] == ["batch", 96, 7]


def test_wrong_input_shape_is_refused(tmp_path):
    bundle(tmp_path, "gru", 0, "torch", "direct")
    model = ExportedModel(tmp_path)
    with pytest.raises(ValueError, match=r"takes \[batch, 96, 7\].*got \[2, 95, 7\]"):
        model.predict(np.zeros((2, 95, 7), "float32"))


def test_loading_needs_neither_lightning_nor_the_training_code(tmp_path):
    reference = bundle(tmp_path, "lstmp", 8, "torch", "pmf")
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
scripted = torch.jit.load("{tmp_path}/model.pt")(torch.from_numpy(x)).detach().numpy()
session = onnxruntime.InferenceSession("{tmp_path}/model.onnx")
onnx = session.run(None, {{"x": x}})[0]
np.testing.assert_allclose(scripted, expected, rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(onnx, expected, rtol=1e-5, atol=1e-5)
print("loaded without our code")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT.parent
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
    for engine in ("torchscript", "onnx"):
        got = ExportedModel(tmp_path, engine).predict(x.numpy())
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)
