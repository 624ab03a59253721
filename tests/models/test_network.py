import itertools

import pytest
import torch

from forecast.models.network import ForecastNet, RevIN, ScaledForecastNet
from tests.nn.rnn_helpers import flat_states, initial_state

CELLS = [("lstm", 0), ("lstmp", 6), ("gru", 0)]


def make(cell="lstm", proj_size=0, **kwargs):
    torch.manual_seed(0)
    options = dict(hidden_size=12, segment_len=8, decoder="pmf")
    options.update(kwargs)
    return ForecastNet(3, 24, 20, cell=cell, proj_size=proj_size, **options).eval()


@pytest.mark.parametrize(
    ("cell", "decoder", "independent", "segment_len", "n_quantiles"),
    [
        (cell, decoder, independent, seg, q)
        for (cell, _), decoder, independent, (seg, q) in itertools.product(
            CELLS, ["direct", "pmf"], [True, False], [(1, 1), (8, 3), (7, 1)]
        )
    ],
)
def test_output_shape(cell, decoder, independent, segment_len, n_quantiles):
    proj = dict(CELLS)[cell]
    net = make(
        cell,
        proj,
        decoder=decoder,
        channel_independent=independent,
        segment_len=segment_len,
        n_quantiles=n_quantiles,
    )
    assert net(torch.randn(5, 24, 3)).shape == (5, 20, 3, n_quantiles)


def test_revin_round_trip_is_identity():
    revin = RevIN(4)
    with torch.no_grad():
        revin.weight.uniform_(0.5, 2.0)
        revin.bias.normal_()
    x = torch.randn(6, 30, 4, dtype=torch.float64) * 5 + 3
    revin = revin.double()
    z, mean, std = revin.normalize(x)
    assert z.mean(dim=1).sub(revin.bias).abs().max() < 1e-9
    back = revin.denormalize(z[..., None], mean, std)[..., 0]
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_revin_makes_forecasts_shift_and_scale_equivariant(cell):
    net = make(cell).double()
    net.revin.eps = 0.0  # the guard against constant windows is what breaks exact scaling
    x = torch.randn(4, 24, 3, dtype=torch.float64)
    shift = torch.tensor([10.0, -3.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(net(x + shift), net(x) + shift[:, None], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(net(7 * x), 7 * net(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("decoder", ["direct", "pmf"])
def test_channel_independence_keeps_channels_apart(decoder):
    x = torch.randn(2, 24, 3)
    x_changed = x.clone()
    x_changed[..., 2] += torch.randn(2, 24)
    independent = make(decoder=decoder, channel_independent=True)
    assert torch.equal(independent(x)[..., :2, :], independent(x_changed)[..., :2, :])
    joint = make(decoder=decoder, channel_independent=False)
    assert not torch.allclose(joint(x)[..., :2, :], joint(x_changed)[..., :2, :])


def test_forecast_does_not_depend_on_other_windows_in_the_batch():
    net = make()
    x = torch.randn(5, 24, 3)
    torch.testing.assert_close(net(x)[2:3], net(x[2:3]), rtol=1e-5, atol=1e-6)


def test_scaled_net_maps_raw_to_raw():
    net = make(revin=False)
    mean, scale = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 0.5, 4.0])
    raw = torch.randn(3, 24, 3) * scale + mean
    expected = net((raw - mean) / scale)[..., 0] * scale + mean
    torch.testing.assert_close(ScaledForecastNet(net, mean, scale)(raw), expected)


@pytest.mark.parametrize("independent", [True, False])
def test_highway_adds_a_linear_map_of_each_channels_lookback(independent):
    # the highway is created last, so the same seed gives both nets the same other weights
    without = make(revin=False, highway=False, channel_independent=independent)
    with_highway = make(revin=False, highway=True, channel_independent=independent)
    x = torch.randn(4, 24, 3)
    added = with_highway.highway(x.transpose(1, 2)).transpose(1, 2)  # [B, horizon, C]
    torch.testing.assert_close(with_highway(x)[..., 0], without(x)[..., 0] + added)
    assert not torch.allclose(added, torch.zeros_like(added))
    assert not any("highway" in name for name, _ in without.named_parameters())


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="segment_len must be in 1..lookback"):
        make(segment_len=25)
    with pytest.raises(ValueError, match="decoder must be one of"):
        make(decoder="autoregressive")


@pytest.mark.parametrize(
    ("cell", "impl", "independent"),
    [
        (cell, impl, independent)
        for cell, _ in CELLS
        for impl in ("torch", "custom")
        for independent in (True, False)
    ],
)
def test_broadcast_decoder_equals_decoding_every_repeated_row(cell, impl, independent):
    """The pmf decoder projects each distinct query and state once: the same values and
    gradients as running the backbone on every (unit, output segment) pair, as SegRNN does.
    Only the summation order differs: 2.7e-15 at most over these cases, in float64."""
    net = make(cell, dict(CELLS)[cell], impl=impl, channel_independent=independent).double()
    batch = 4
    n_units = batch * 3 if independent else batch
    state = initial_state(net.rnn, n_units, torch.float64, seed=5)
    leaves = flat_states(state)
    gen = torch.Generator().manual_seed(5)
    shared = net._queries({}, batch)  # [G, M, E]: the same for every window
    # with future or static covariates each window has its own queries: [B, G, M, E]
    own = shared + torch.randn((batch, 1, 1, shared.shape[-1]), generator=gen, dtype=shared.dtype)
    for queries in (shared, own):
        fast = net._decode_pmf_broadcast(state, n_units, queries)
        slow = net._decode_pmf_repeated(state, n_units, batch, queries)
        assert fast.shape == slow.shape == (n_units * net.n_out_segments, leaves[0].shape[-1])
        torch.testing.assert_close(fast, slow, rtol=0, atol=1e-13)
        weights = torch.randn(fast.shape, generator=gen, dtype=torch.float64)
        params = [p for p in net.parameters() if p.requires_grad]
        wrt = [*leaves, *params]
        got = torch.autograd.grad((fast * weights).sum(), wrt, allow_unused=True)
        want = torch.autograd.grad((slow * weights).sum(), wrt, allow_unused=True)
        for a, b in zip(got, want, strict=True):
            if b is None:
                assert a is None or not a.any()
            else:
                torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_stacked_or_bidirectional_backbones_decode_by_repeating():
    for options in (dict(num_layers=2), dict(bidirectional=True)):
        net = make(**options)
        with pytest.raises(ValueError, match="one-layer, one-direction"):
            net._decode_pmf_broadcast(net.rnn(torch.randn(3, 2, 12))[1], 3, net._queries({}, 3))
        assert net(torch.randn(2, 24, 3)).shape == (2, 20, 3, 1)


@pytest.mark.parametrize("decoder", ["pmf", "direct"])
def test_quantile_forecasts_never_cross(decoder):
    """An untrained head crosses its quantiles freely; the forecasts come out sorted, so q10 <=
    q50 <= q90 for every window, step and channel."""
    torch.manual_seed(0)
    net = ForecastNet(3, 24, 12, hidden_size=8, segment_len=6, decoder=decoder, n_quantiles=3)
    y = net(torch.randn(64, 24, 3))
    assert (y.diff(dim=-1) >= 0).all()


def test_quantile_levels_must_increase():
    from forecast.data import DataSpec
    from forecast.models import Forecaster

    spec = DataSpec.of(3, 24, 12)
    Forecaster(spec, loss="quantile", quantiles=[0.1, 0.5, 0.9], segment_len=6)
    for bad in ([0.5, 0.1, 0.9], [0.1, 0.1, 0.9], [0.0, 0.5], [0.5, 1.0]):
        with pytest.raises(ValueError, match="quantiles must be increasing"):
            Forecaster(spec, loss="quantile", quantiles=bad, segment_len=6)
