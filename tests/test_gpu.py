"""train.py on a CUDA device, at each precision, and what it ships.

CI has no GPU, so there this module is skipped as a whole; on a GPU machine run
`python -m pytest tests/nn/test_cuda.py tests/test_gpu.py`.
"""

import math

import numpy as np
import pytest
import torch

from forecast.export import ExportedModel
from forecast.models import Forecaster
from forecast.models.network import ScaledForecastNet
from tests import conftest

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

SMALL = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=8",
    "model.hidden_size=32",
    "model.proj_size=16",
    "data.batch_size=32",
]


@pytest.mark.parametrize(
    "model,impl,precision",
    [
        ("lstm", "torch", "bf16-mixed"),
        ("lstm", "custom", "32-true"),
        ("lstmp", "custom", "bf16-mixed"),
        ("lstmp", "torch", "16-mixed"),
        ("gru", "custom", "16-mixed"),
        ("gru", "torch", "32-true"),
    ],
)
def test_trains_on_the_gpu_and_ships_a_cpu_model(tmp_path, model, impl, precision):
    run_dir = tmp_path / "run"
    overrides = [f"model={model}", f"model.impl={impl}", "trainer=gpu"]
    overrides += [f"trainer.precision={precision}", *SMALL]
    if model != "lstmp":
        overrides.remove("model.proj_size=16")
    metrics = conftest.run_train(run_dir, *overrides, fresh=True)  # CUDA in a new interpreter
    assert metrics["test_windows"] == 2785
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith(("val_", "test_")))
    config = (run_dir / "config.yaml").read_text()
    assert "accelerator: gpu" in config and f"precision: {precision}" in config

    # the checkpoint, written from the GPU, loads on a CPU with weights_only
    best = run_dir / metrics["best_checkpoint"]
    state = torch.load(best, map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in state["state_dict"].values())
    trained = Forecaster.load_from_checkpoint(best, map_location="cpu").float().eval()
    reference = ScaledForecastNet(trained.net, trained.scaler_mean[0], trained.scaler_scale[0])

    # the export equals the trained network run on the CPU in float32
    raw = np.random.default_rng(0).normal(10, 3, (4, 96, 7)).astype("float32")
    with torch.no_grad():
        want = reference.eval()(torch.from_numpy(raw)).numpy()
    for engine in ("pt2", "onnx"):
        got = ExportedModel(run_dir, engine).predict(raw)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=engine)
