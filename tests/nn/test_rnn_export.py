"""Our modules trace with torch.jit.trace and export to ONNX; ONNX Runtime agrees with eager."""

import io
import warnings

import onnxruntime
import pytest
import torch
from torch import nn

from forecast.nn import GRU, LSTM

MODULES = {
    "lstm": lambda: LSTM(3, 8, num_layers=2, batch_first=True, bidirectional=True),
    "lstmp": lambda: LSTM(3, 8, num_layers=2, batch_first=True, proj_size=4),
    "gru": lambda: GRU(3, 8, num_layers=2, batch_first=True, bidirectional=True),
}
LOOKBACK = 6  # exported forecasters see a fixed window; the batch stays dynamic


class LastStep(nn.Module):
    """A forecaster-like wrapper: the backbone's output at the last step."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        output, _ = self.rnn(x)
        return output[:, -1]


@pytest.mark.parametrize("cell", sorted(MODULES))
def test_trace_equals_eager(cell):
    torch.manual_seed(0)
    model = LastStep(MODULES[cell]()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: known, harmless
        traced = torch.jit.trace(model, torch.randn(2, LOOKBACK, 3))
    x = torch.randn(5, LOOKBACK, 3)
    torch.testing.assert_close(traced(x), model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", sorted(MODULES))
def test_onnx_runtime_equals_eager(cell):
    torch.manual_seed(0)
    model = LastStep(MODULES[cell]()).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, LOOKBACK, 3),),
            buffer,
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
        )
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(5, LOOKBACK, 3)
    (onnx_out,) = session.run(None, {"x": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(onnx_out), model(x), atol=1e-5, rtol=0)
