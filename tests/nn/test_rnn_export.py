"""Our modules export with torch.export (dynamic batch) and through its ONNX exporter; both
equal eager, and the exported graph is plain aten ops (the fast path stands aside)."""

import io
import logging
import operator
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


def exported(cell):
    torch.manual_seed(0)
    model = LastStep(MODULES[cell]()).eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        model, (torch.randn(2, LOOKBACK, 3),), dynamic_shapes=({0: batch},)
    )
    return model, program


@pytest.mark.parametrize("cell", sorted(MODULES))
def test_torch_export_equals_eager_for_any_batch(cell):
    model, program = exported(cell)
    targets = {
        str(node.target)
        for node in program.graph.nodes
        if node.op == "call_function" and node.target is not operator.getitem
    }
    assert all(t.startswith("aten.") for t in targets), targets
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer).module()
    for batch in (1, 5):
        x = torch.randn(batch, LOOKBACK, 3)
        torch.testing.assert_close(loaded(x), model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", sorted(MODULES))
def test_onnx_runtime_equals_eager(cell):
    model, program = exported(cell)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # skipped torchvision ops
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        onnx_program = torch.onnx.export(
            program, (torch.randn(2, LOOKBACK, 3),), dynamo=True, verbose=False
        )
    session = onnxruntime.InferenceSession(
        onnx_program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    for batch in (1, 5):
        x = torch.randn(batch, LOOKBACK, 3)
        (onnx_out,) = session.run(None, {name: x.numpy()})
        torch.testing.assert_close(torch.from_numpy(onnx_out), model(x), atol=1e-5, rtol=0)
