"""Export a trained network as a self-contained bundle, and load it back without our code.

`export/` holds `model.pt` (TorchScript), `model.onnx` (dynamic batch; when the `onnx` package is
installed) and `meta.json`. Both models take raw values [batch, lookback, channels] (float32) and
return raw forecasts [batch, horizon, channels] (or [..., quantiles]): the data scaler is inside.
Loading needs torch (TorchScript) or onnxruntime (ONNX) only: no Lightning, no training code.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from forecast.atomic import atomic_path

FORMAT_VERSION = 1
ENGINES = ("torchscript", "onnx")


def export_bundle(
    net, mean, scale, meta: dict, out_dir: str | Path, independent: bool = False
) -> dict[str, Path]:
    """Write model.pt, model.onnx (if onnx is installed) and meta.json into `out_dir`.

    `mean`, `scale` [C]: the data scaler (raw = scaled * scale + mean); `independent`: the net
    forecasts one channel at a time (see ScaledForecastNet).
    """
    from forecast.models.network import ScaledForecastNet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mean = torch.as_tensor(mean, dtype=torch.float32)
    scale = torch.as_tensor(scale, dtype=torch.float32)
    module = ScaledForecastNet(exportable_copy(net), mean, scale, independent).float().eval()
    example = torch.randn(2, net.lookback, len(mean))
    written = {}
    with torch.no_grad():
        traced = torch.jit.trace(module, example)
    written["torchscript"] = _write_atomic(out_dir / "model.pt", lambda p: traced.save(str(p)))
    if _onnx_available():
        written["onnx"] = _write_atomic(
            out_dir / "model.onnx", lambda p: _to_onnx(module, example, p)
        )
    meta = {
        "format_version": FORMAT_VERSION,
        "input": "x",
        "output": "y_hat",
        "input_shape": ["batch", net.lookback, len(mean)],
        "files": {engine: path.name for engine, path in written.items()},
        **meta,
    }
    text = json.dumps(meta, indent=2, default=_jsonable) + "\n"
    written["meta"] = _write_atomic(out_dir / "meta.json", lambda p: Path(p).write_text(text))
    return written


def exportable_copy(net):
    """A CPU float32 copy of `net` whose recurrent backbone every exporter accepts.

    torch's ONNX exporter rejects `nn.LSTM` with `proj_size`; our cell loop takes its weights
    unchanged (the state dicts are interchangeable) and exports.
    """
    from forecast.nn import build_backbone

    net = copy.deepcopy(net).cpu().float().eval()
    rnn = net.rnn
    if isinstance(rnn, torch.nn.LSTM) and rnn.proj_size > 0:
        ours = build_backbone(
            "lstmp",
            "custom",
            input_size=rnn.input_size,
            hidden_size=rnn.hidden_size,
            num_layers=rnn.num_layers,
            proj_size=rnn.proj_size,
            dropout=rnn.dropout,
            bidirectional=rnn.bidirectional,
            batch_first=rnn.batch_first,
            bias=rnn.bias,
        )
        ours.load_state_dict(rnn.state_dict(), strict=True)
        net.rnn = ours.eval()
    return net


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _to_onnx(module, example, path) -> None:
    # The exporter warns that recurrent layers may not generalise across batch sizes; ours do
    # (the initial states are built from the input), as tests/test_export.py checks.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size")
        _export_onnx(module, example, path)


def _export_onnx(module, example, path) -> None:
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["x"],
        output_names=["y_hat"],
        dynamic_axes={"x": {0: "batch"}, "y_hat": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def _write_atomic(path: Path, write) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def _jsonable(value):
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to meta.json")


class ExportedModel:
    """An exported forecaster: `predict(x [B, lookback, C] raw) -> raw forecasts`."""

    def __init__(self, model_dir: str | Path, engine: str = "torchscript"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        model_dir = Path(model_dir)
        if (model_dir / "export" / "meta.json").is_file():
            model_dir = model_dir / "export"  # a run directory
        meta_path = model_dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: give a run directory or its export/")
        self.meta = json.loads(meta_path.read_text())
        self.engine = engine
        if engine not in self.meta["files"]:
            raise FileNotFoundError(
                f"{model_dir} holds no {engine} export (install onnx, re-export)"
            )
        path = model_dir / self.meta["files"][engine]
        if engine == "torchscript":
            self._module = torch.jit.load(str(path), map_location="cpu").eval()
        else:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )

    @property
    def lookback(self) -> int:
        return self.meta["lookback"]

    @property
    def horizon(self) -> int:
        return self.meta["horizon"]

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = (self.lookback, len(self.meta["channels"]))
        if x.ndim != 3 or x.shape[1:] != expected:
            raise ValueError(
                f"the model takes [batch, {expected[0]}, {expected[1]}] (lookback, channels "
                f"{self.meta['channels']}), got {list(x.shape)}"
            )
        if self.engine == "onnx":
            return self._session.run(None, {"x": x})[0]
        with torch.inference_mode():
            return self._module(torch.from_numpy(x)).numpy()
