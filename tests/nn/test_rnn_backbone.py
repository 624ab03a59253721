"""build_backbone: both implementations, their interchangeable state dicts, validation."""

import pytest
import torch
from torch import nn

from forecast.nn import GRU, LSTM, backbone_output_size, build_backbone

SIZES = {"input_size": 3, "hidden_size": 8, "num_layers": 2, "bidirectional": True}
EXPECTED = {
    ("lstm", "custom"): LSTM,
    ("lstmp", "custom"): LSTM,
    ("gru", "custom"): GRU,
    ("lstm", "torch"): nn.LSTM,
    ("lstmp", "torch"): nn.LSTM,
    ("gru", "torch"): nn.GRU,
}


def proj(cell):
    return 4 if cell == "lstmp" else 0


@pytest.mark.parametrize("cell,impl", sorted(EXPECTED))
def test_builds_the_requested_module(cell, impl):
    rnn = build_backbone(cell, impl, proj_size=proj(cell), **SIZES)
    assert type(rnn) is EXPECTED[cell, impl]
    assert rnn.batch_first
    out, _ = rnn(torch.randn(2, 5, 3))
    assert out.shape == (2, 5, backbone_output_size(rnn))
    assert backbone_output_size(rnn) == 2 * (proj(cell) or 8)


@pytest.mark.parametrize("cell", ("lstm", "lstmp", "gru"))
@pytest.mark.parametrize("source,target", [("custom", "torch"), ("torch", "custom")])
def test_state_dict_moves_between_impls(cell, source, target):
    torch.manual_seed(0)
    a = build_backbone(cell, source, proj_size=proj(cell), dropout=0.2, **SIZES).eval()
    b = build_backbone(cell, target, proj_size=proj(cell), dropout=0.2, **SIZES).eval()
    x = torch.randn(2, 5, 3)
    assert not torch.allclose(a(x)[0], b(x)[0])  # independent initialisations differ
    b.load_state_dict(a.state_dict(), strict=True)
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "args,message",
    [
        (("rnn", "custom"), "cell must be one of"),
        (("lstm", "cuda"), "impl must be one of"),
        (("lstmp", "custom"), "needs proj_size > 0"),
    ],
)
def test_rejects_bad_choices(args, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(*args, **SIZES)


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_rejects_a_projection_for_plain_cells(cell):
    with pytest.raises(ValueError, match="takes no projection"):
        build_backbone(cell, "custom", proj_size=2, **SIZES)
