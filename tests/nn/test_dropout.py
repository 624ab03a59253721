"""forecast.nn.Dropout: torch's dropout semantics with a mask drawn by rand_like on CPU."""

import pytest
import torch
from torch import nn

from forecast.nn import Dropout
from forecast.nn.dropout import dropout


@pytest.mark.parametrize("p", (0.1, 0.5, 0.9))
def test_keeps_a_1_minus_p_share_scaled_by_its_inverse(p):
    torch.manual_seed(0)
    x = torch.rand(1000, 1000, dtype=torch.float64) + 1.0  # no zeros of its own
    out = dropout(x, p, training=True)
    kept = out != 0
    # one million draws: the share kept is within 0.003 of 1 - p (about 5 standard deviations)
    assert abs(kept.double().mean().item() - (1 - p)) < 3e-3
    assert torch.equal(out[kept], x[kept] * (1.0 / (1 - p)))  # as torch scales


@pytest.mark.parametrize("low", (torch.bfloat16, torch.float16))
def test_low_precision_input_keeps_the_exact_share(low):
    """bf16-mixed training drops bfloat16 activations. A mask drawn in bfloat16 is rounded:
    it kept 0.6982 at p = 0.3; drawn in float32 it keeps 1 - p, and the output keeps x's dtype."""
    torch.manual_seed(0)
    x = (torch.rand(2000, 2000) + 1.0).to(low)
    out = dropout(x, 0.3, training=True)
    assert out.dtype == low
    # four million draws: the share kept has a standard deviation of 0.00023
    assert abs((out != 0).double().mean().item() - 0.7) < 1e-3


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(0)
    x = torch.randn(300, 40, requires_grad=True)
    out = dropout(x, 0.3, training=True)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, (out != 0).float() * (1.0 / 0.7))  # exactly the mask, scaled


def test_identity_in_eval_and_at_p_0_zero_at_p_1():
    x = torch.randn(5, 7)
    assert Dropout(0.5).eval()(x) is x
    assert dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_is_a_drop_in_nn_dropout():
    ours, torchs = Dropout(0.25), nn.Dropout(0.25)
    assert isinstance(ours, nn.Dropout)
    assert repr(ours) == repr(torchs) and ours.state_dict() == torchs.state_dict() == {}


def test_a_seed_gives_the_same_mask():
    x = torch.randn(64, 32)
    torch.manual_seed(3)
    first = dropout(x, 0.5, training=True)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.5, training=True))
