"""benchmarks/mfu.py's hand count of a training step's multiply-adds against torch's FLOP counter.

FlopCounterMode counts every matrix product torch runs, forward and backward; over our reference
recurrence (public ops only) it must find exactly the hand count, for every layout of the
network. Inside torch's fused oneDNN LSTM it sees nothing: there the hand count is the only one.
"""

import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from forecast.models.network import ForecastNet
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from mfu import count_step, emulated_precisions, gemm_floor, shapes_of  # noqa: E402

BATCH = 16


def counted(net: ForecastNet) -> FlopCounterMode:
    torch.manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(BATCH, 96, 7)).sum().backward()
    return counter


def by_hand(net: ForecastNet) -> dict[str, int]:
    return {layer: f + b for layer, (f, b) in count_step(net, BATCH).items()}


@pytest.mark.parametrize(
    "options",
    [
        dict(cell="lstm"),  # the default model
        dict(cell="lstmp", hidden_size=256, proj_size=128),
        dict(cell="gru"),
        dict(cell="lstm", num_layers=2),  # the decoder repeats states: a different count
        dict(cell="gru", bidirectional=True),
        dict(cell="lstm", decoder="direct", highway=True),
        dict(cell="lstmp", hidden_size=64, proj_size=32, channel_independent=False),
    ],
    ids=str,
)
def test_the_hand_count_is_what_torch_counts_over_the_reference_recurrence(options):
    net = ForecastNet(7, 96, 96, impl="custom", **options)
    net.rnn.backend = "reference"  # every product a public op, which the counter sees
    counter = counted(net)
    hand = by_hand(net)
    assert sum(hand.values()) == counter.get_total_flops() // 2  # a multiply-add is 2 FLOPs
    seen = {module: sum(ops.values()) // 2 for module, ops in counter.get_flop_counts().items()}
    assert hand["embed"] == seen["ForecastNet.embed"]
    assert hand["head"] == seen["ForecastNet.head"]
    # a stacked or bidirectional backbone decodes by running the module itself again
    repeated = net.rnn.num_layers > 1 or net.rnn.bidirectional
    assert hand["encoder"] + hand["decoder"] * repeated == seen["ForecastNet.rnn"]


@pytest.mark.parametrize(
    ("cell", "options"),
    [("lstm", {}), ("lstmp", dict(hidden_size=256, proj_size=128)), ("gru", {})],
)
def test_torchs_modules_hide_only_the_fused_lstm_from_the_counter(cell, options):
    net = ForecastNet(7, 96, 96, cell=cell, impl="torch", **options)
    hand = by_hand(net)
    seen = counted(net).get_total_flops() // 2
    # oneDNN's fused LSTM runs the plain LSTM's encoder; LSTMP and GRU run as public ops
    hidden = hand["encoder"] if cell == "lstm" else 0
    assert seen == sum(hand.values()) - hidden


def test_a_precision_slower_than_float32_is_emulated_and_gets_no_mfu():
    """bfloat16 on a CPU without bfloat16 instructions: its product peak is below float32's,
    and a step's rate against it (300-450% on such a host) would be no utilisation."""
    native = {"32-true": {"macs_per_s": 80e9}, "bf16-mixed": {"macs_per_s": 160e9}}
    assert emulated_precisions(native) == set()
    emulated = {"32-true": {"macs_per_s": 80e9}, "bf16-mixed": {"macs_per_s": 0.5e9}}
    assert emulated_precisions(emulated) == {"bf16-mixed"}
    assert (
        emulated_precisions({"bf16-mixed": {"macs_per_s": 0.5e9}}) == set()
    )  # nothing to judge by


@pytest.mark.parametrize(
    "options",
    [dict(cell="lstm"), dict(cell="lstmp", hidden_size=256, proj_size=128), dict(cell="gru")],
    ids=str,
)
def test_the_shapes_timed_alone_are_the_products_counted(options):
    """The ceiling's products (`shapes_of`) are the counted ones, shape by shape: their
    multiply-adds add up to the count, the backward's as well."""
    net = ForecastNet(7, 96, 96, impl="torch", **options)
    shapes = shapes_of(net, BATCH)
    forward = sum(t * r * i * o for r, i, o, _, t in shapes)
    backward = sum(t * r * i * o * (2 if g else 1) for r, i, o, g, t in shapes)
    counts = count_step(net, BATCH).values()
    assert (forward, backward) == (sum(f for f, _ in counts), sum(b for _, b in counts))
    # the recurrence's steps are products one after another, not one product of all rows
    assert any(t == net.n_in_segments - 1 for *_, t in shapes)
    assert gemm_floor(shapes[:2], torch.float32, repeats=1) > 0
