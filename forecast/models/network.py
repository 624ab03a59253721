"""ForecastNet: the exportable network (pure torch) behind the Forecaster.

[batch, lookback, channels] -> [batch, horizon, channels, quantiles]. The options that make a
recurrent forecaster competitive on long horizons are switches here:

- RevIN: each window is normalised by its own mean and std and the forecast mapped back, so a
  level shift between training and test years does not become forecast error.
- channel independence: every channel is a separate univariate sequence through shared weights.
- segments (SegRNN): the look-back is cut into `segment_len`-long segments, each embedded into one
  recurrent step, so the recurrence runs lookback / segment_len steps instead of lookback.
- decoder `pmf` (SegRNN's parallel multi-step forecasting): every output segment is decoded in one
  recurrent step from the encoder's final state and a learnt position (and channel) embedding, all
  in parallel; `direct` maps the last output to every horizon step with one linear layer.
- categorical covariates: one-hot up to `category_embedding` levels, a learned vector of that
  length per level beyond (a series id over many series as a static covariate); 0: one-hot
  always (what networks built before the option had: `forecast.config.ADDED_MODEL_OPTIONS`).
- highway (LSTNet): a linear map from the look-back to the horizon, added to the recurrent forecast.
  Off by default: on ETTh1 every model forecast better without it at every horizon, by 0.01 in
  test MSE at horizon 96 and 0.02-0.04 at 336 and 720 (BENCHMARKS.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from forecast.data.covariates import KINDS, Covariates
from forecast.models.covariates import CovariateEncoder
from forecast.naive import naive_seasonal
from forecast.nn import Dropout, backbone_output_size, broadcast_step, build_backbone

DECODERS = ("direct", "pmf")


class RevIN(nn.Module):
    """Reversible instance normalisation over time, with a learnt per-channel affine map."""

    def __init__(self, n_channels: int, affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.affine = affine
        self.weight = nn.Parameter(torch.ones(n_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(n_channels)) if affine else None

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean = x.mean(dim=1, keepdim=True).detach()  # [B, 1, C]
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.weight is not None and self.bias is not None:
            x = x * self.weight + self.bias
        return x, mean, std

    def denormalize(self, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        # y: [B, H, C, Q]; mean, std: [B, 1, C]
        if self.weight is not None and self.bias is not None:
            y = (y - self.bias[:, None]) / (self.weight[:, None] + self.eps * self.eps)
        return y * std[..., None] + mean[..., None]


class ForecastNet(nn.Module):
    def __init__(
        self,
        n_channels: int,
        lookback: int,
        horizon: int,
        cell: str = "lstm",
        impl: str = "torch",
        hidden_size: int = 128,
        num_layers: int = 1,
        proj_size: int = 0,
        dropout: float = 0.0,
        bidirectional: bool = False,
        segment_len: int = 24,
        decoder: str = "pmf",
        embed_size: int | None = None,
        channel_independent: bool = True,
        revin: bool = True,
        highway: bool = False,
        head_dropout: float = 0.5,
        n_quantiles: int = 1,
        point_index: int = 0,
        covariates: Covariates | dict | None = None,
        category_embedding: int = 16,
    ):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if segment_len < 1 or segment_len > lookback:
            raise ValueError(f"segment_len must be in 1..lookback ({lookback}), got {segment_len}")
        self.n_channels, self.lookback, self.horizon = n_channels, lookback, horizon
        self.segment_len, self.decoder, self.n_quantiles = segment_len, decoder, n_quantiles
        self.channel_independent = channel_independent
        self.features = 1 if channel_independent else n_channels  # per unit of the recurrence
        self.n_in_segments = math.ceil(lookback / segment_len)
        self.n_out_segments = math.ceil(horizon / segment_len)
        embed_size = embed_size or hidden_size
        if isinstance(covariates, dict):
            covariates = Covariates.from_dict(covariates)
        covariates = covariates or Covariates()
        # raw covariates in, features out (forecast.models.covariates); None where there are none
        self.past_encoder, self.future_encoder, self.static_encoder = (
            CovariateEncoder(getattr(covariates, kind), category_embedding)
            if getattr(covariates, kind).names
            else None
            for kind in KINDS
        )
        k_past, k_future, k_static = (
            0 if e is None else e.width
            for e in (self.past_encoder, self.future_encoder, self.static_encoder)
        )
        # past and future covariates join each look-back step, static ones each segment
        step_size = self.features + k_past + k_future

        self.revin = RevIN(n_channels) if revin else None
        self.embed = nn.Sequential(
            nn.Linear(segment_len * step_size + k_static, embed_size), nn.ReLU()
        )
        self.rnn = build_backbone(
            cell,
            impl,
            input_size=embed_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            proj_size=proj_size,
            dropout=dropout,
            bidirectional=bidirectional,
            batch_first=True,
        )
        out_size = backbone_output_size(self.rnn)
        self.head_dropout = Dropout(head_dropout)
        if decoder == "pmf":
            channel_size = embed_size // 2 if channel_independent else 0
            self.position_embedding = nn.Parameter(
                torch.randn(self.n_out_segments, embed_size - channel_size)
            )
            self.channel_embedding = nn.Parameter(torch.randn(n_channels, channel_size))
            self.head = nn.Linear(out_size, segment_len * self.features * n_quantiles)
            # each output segment's query hears its future covariates and the static ones
            self.covariate_query = (
                nn.Linear(segment_len * k_future + k_static, embed_size)
                if k_future or k_static
                else None
            )
        else:
            self.head = nn.Linear(out_size, horizon * self.features * n_quantiles)
        # and a linear path from every covariate a window has (its look-back's, its horizon's,
        # its static ones) to the forecast, as the highway is for the target: a leading
        # indicator or a promotion's effect need not pass through the recurrent state
        known = lookback * (k_past + k_future) + horizon * k_future + k_static
        self.covariate_skip = (
            nn.Linear(known, horizon * self.features * n_quantiles) if known else None
        )
        self.highway = nn.Linear(lookback, horizon) if highway else None
        # the blend toward a naive forecast chosen on validation (Forecaster.blend_toward_naive):
        # y + w (naive - y_point), w in [0, 1]; 0 (the network alone) until then
        self.register_buffer("naive_weight", torch.zeros(()))
        self.naive_lag = 1  # 1: repeat the last value; a season: repeat the last season
        self.point_index = point_index  # which quantile output is the point forecast

    def set_naive_blend(self, weight: float, lag: int) -> None:
        """Blend every forecast toward the naive one that repeats the last `lag` values (1: the
        last value; a season: the last season) with `weight` in [0, 1]."""
        if not 0.0 <= weight <= 1.0 or lag < 1:
            raise ValueError(
                f"a naive blend needs 0 <= weight <= 1 and lag >= 1, got {weight}, {lag}"
            )
        self.naive_weight.fill_(weight)
        self.naive_lag = int(lag)

    def forward(
        self,
        x: torch.Tensor,
        past: torch.Tensor | None = None,
        future: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: [B, lookback, C] (scaled) -> forecast [B, horizon, C, Q]. Covariates as read
        (numbers, codes of categorical levels), where the network has them: past [B, lookback,
        Kp], future [B, lookback + horizon, Kf], static [B, Ks]."""
        y = self._forward(x, self._covariates(x, past, future, static))
        # every quantile moves with the point forecast: the blend shifts, it does not shrink
        naive = naive_seasonal(x, self.horizon, self.naive_lag)[..., None].to(
            y.dtype
        )  # [B, H, C, 1]
        point = y[..., self.point_index : self.point_index + 1]
        weight = self.naive_weight.to(y.dtype)
        # (1 - w) point + w naive is the naive forecast exactly at w = 1; spread is 0 at the point
        return (1 - weight) * point + weight * naive + (y - point)

    def _covariates(self, x, past, future, static) -> dict[str, torch.Tensor]:
        """The encoded covariates per window: `steps` [B, L, Kp' + Kf'] (each look-back step's),
        `horizon` [B, H, Kf'] (the future ones over the horizon), `static` [B, Ks']."""
        given = {"past": past, "future": future, "static": static}
        encoders = {
            "past": self.past_encoder,
            "future": self.future_encoder,
            "static": self.static_encoder,
        }
        for kind, encoder in encoders.items():
            if (encoder is None) != (given[kind] is None):
                raise ValueError(
                    f"this network takes {'no ' if encoder is None else ''}{kind} covariates, "
                    f"and was given {'none' if given[kind] is None else 'some'}"
                )
        out, steps = {}, []
        if past is not None:
            steps.append(self.past_encoder(past.to(x.dtype)))
        if future is not None:
            encoded = self.future_encoder(future.to(x.dtype))  # [B, L + H, Kf']
            steps.append(encoded[:, : self.lookback])
            out["horizon"] = encoded[:, self.lookback :]
        if steps:
            out["steps"] = torch.cat(steps, dim=-1)
        if static is not None:
            out["static"] = self.static_encoder(static.to(x.dtype))
        return out

    def _per_unit(self, t: torch.Tensor) -> torch.Tensor:
        """A window's tensor [B, ...] for each of its units [U, ...] (its channels, when they
        go through the recurrence one at a time: unit = b * C + c)."""
        return t.repeat_interleave(self.n_channels, dim=0) if self.channel_independent else t

    def _forward(self, x: torch.Tensor, covariates: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = x.shape[0]
        if self.revin is not None:
            x, mean, std = self.revin.normalize(x)
        else:
            mean = std = x.new_zeros(0)
        units = self._to_units(x)  # [U, lookback, F]
        y = self._recurrent(units, batch, covariates)  # [U, horizon, F, Q]
        if self.highway is not None:
            y = y + self.highway(units.transpose(1, 2)).transpose(1, 2)[..., None]
        y = self._from_units(y, batch)  # [B, horizon, C, Q]
        if self.n_quantiles > 1:  # quantile forecasts in order: q10 <= q50 <= q90, never crossed
            y = y.sort(dim=-1).values
        if self.revin is not None:
            y = self.revin.denormalize(y, mean, std)
        return y

    def _to_units(self, x: torch.Tensor) -> torch.Tensor:
        if not self.channel_independent:
            return x
        return x.transpose(1, 2).reshape(-1, self.lookback, 1)  # [B*C, L, 1]

    def _from_units(self, y: torch.Tensor, batch: int) -> torch.Tensor:
        if not self.channel_independent:
            return y
        # [B*C, H, 1, Q] -> [B, C, H, Q] -> [B, H, C, Q]
        return y.reshape(batch, self.n_channels, self.horizon, -1).transpose(1, 2)

    def _recurrent(self, units: torch.Tensor, batch: int, covariates: dict) -> torch.Tensor:
        n_units = units.shape[0]
        inputs = units
        if "steps" in covariates:  # [U, L, F + Kc]
            inputs = torch.cat([units, self._per_unit(covariates["steps"])], dim=-1)
        pad = self.n_in_segments * self.segment_len - self.lookback
        if pad:  # repeat the first value so every segment is full
            inputs = torch.cat([inputs[:, :1].expand(-1, pad, -1), inputs], dim=1)
        segments = inputs.reshape(n_units, self.n_in_segments, -1)  # [U, N, W * (F + Kc)]
        if "static" in covariates:  # [U, N, W * (F + Kc) + Ks]
            static = self._per_unit(covariates["static"])[:, None]
            segments = torch.cat([segments, static.expand(-1, self.n_in_segments, -1)], dim=-1)
        output, state = self.rnn(self.embed(segments))  # [U, N, D]
        if self.decoder == "direct":
            y = self.head(self.head_dropout(output[:, -1]))  # [U, H * F * Q]
            y = y.view(n_units, self.horizon, self.features, self.n_quantiles)
        else:
            y = self._decode_pmf(state, n_units, batch, covariates)
        if self.covariate_skip is not None:  # [B, L * Kc + H * Kf' + Ks'] -> [U, H, F, Q]
            keys = ("steps", "horizon", "static")
            known = torch.cat(
                [covariates[k].reshape(batch, -1) for k in keys if k in covariates], -1
            )
            y = y + self._per_unit(self.covariate_skip(known)).view_as(y)
        return y

    def _decode_pmf(self, state, n_units: int, batch: int, covariates: dict) -> torch.Tensor:
        queries = self._queries(covariates, batch)  # [G, M, E], or [B, G, M, E]
        if self.rnn.num_layers == 1 and not self.rnn.bidirectional:
            output = self._decode_pmf_broadcast(state, n_units, queries)
        else:
            output = self._decode_pmf_repeated(state, n_units, batch, queries)
        y = self.head(self.head_dropout(output))  # [U*M, W*F*Q]
        y = y.view(n_units, self.n_out_segments * self.segment_len, self.features, self.n_quantiles)
        return y[:, : self.horizon]

    def _queries(self, covariates: dict, batch: int) -> torch.Tensor:
        """The decoder's distinct inputs: [C, M, E] (position and channel embeddings) for
        channel-independent units, [1, M, E] (position only) for joint ones; with covariates,
        each window's [B, C or 1, M, E], its output segments' future covariates (and its static
        ones) added."""
        m = self.n_out_segments
        if not self.channel_independent:
            queries = self.position_embedding[None]
        else:
            position = self.position_embedding[None].expand(self.n_channels, -1, -1)
            channel = self.channel_embedding[:, None].expand(-1, m, -1)
            queries = torch.cat([position, channel], dim=-1)
        if self.covariate_query is None:
            return queries
        parts = []
        if "horizon" in covariates:  # [B, H, Kf'] -> [B, M, W * Kf'], the last step repeated
            known = covariates["horizon"]
            pad = m * self.segment_len - self.horizon
            if pad:
                known = torch.cat([known, known[:, -1:].expand(-1, pad, -1)], dim=1)
            parts.append(known.reshape(batch, m, -1))
        if "static" in covariates:  # [B, Ks'] -> [B, M, Ks']
            parts.append(covariates["static"][:, None].expand(-1, m, -1))
        extra = self.covariate_query(torch.cat(parts, dim=-1))  # [B, M, E]
        return queries[None] + extra[:, None]  # [B, G, M, E]

    def _decode_pmf_broadcast(self, state, n_units: int, queries: torch.Tensor) -> torch.Tensor:
        """The decoding step without repeating anything: each of the M x C distinct queries is
        projected once and each unit's state once (`broadcast_step`). [U*M, D]"""
        # unit = b * C + c (or b): states [B, C, 1, *] meet queries [C, M, E] or [B, C, M, E]
        groups = queries.shape[-3]
        if isinstance(state, tuple):
            state = tuple(s[0].reshape(-1, groups, 1, s.shape[-1]) for s in state)
        else:
            state = state[0].reshape(-1, groups, 1, state.shape[-1])
        output = broadcast_step(self.rnn, queries, state)  # [B, C, M, D]
        return output.reshape(n_units * self.n_out_segments, -1)

    def _decode_pmf_repeated(
        self, state, n_units: int, batch: int, queries: torch.Tensor
    ) -> torch.Tensor:
        """The decoding step as one call of the backbone on U*M one-step sequences (what
        SegRNN does; needed for stacked or bidirectional backbones). [U*M, D]"""
        m = self.n_out_segments
        queries = queries.expand(batch, -1, -1, -1)  # [B, C, M, E], unit = b * C + c
        queries = queries.reshape(n_units * m, 1, -1)  # [U*M, 1, E]
        if isinstance(state, tuple):
            state = tuple(s.repeat_interleave(m, dim=1) for s in state)
        else:
            state = state.repeat_interleave(m, dim=1)
        output, _ = self.rnn(queries, state)  # [U*M, 1, D]
        return output[:, 0]


class ScaledForecastNet(nn.Module):
    """Raw values in, raw forecasts out: the data scaler around a ForecastNet, for export.

    Takes [B, lookback, C] and returns [B, horizon, C] for a point forecast, [B, horizon, C, Q]
    for quantiles. `independent`: the net was trained on one channel at a time (the data's
    `channel_mode=independent`), so each of the C channels goes through it as its own series.
    """

    def __init__(
        self, net: ForecastNet, mean: torch.Tensor, scale: torch.Tensor, independent: bool = False
    ):
        super().__init__()
        self.net = net
        self.point = net.n_quantiles == 1
        self.independent = independent
        self.register_buffer("mean", mean.detach().clone())  # [C]
        self.register_buffer("scale", scale.detach().clone())  # [C]

    def forward(
        self,
        x: torch.Tensor,
        past: torch.Tensor | None = None,
        future: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Covariates as read (see ForecastNet.forward), where the network has them."""
        x = (x - self.mean) / self.scale
        covariates = {"past": past, "future": future, "static": static}
        if self.independent:
            batch, lookback, channels = x.shape
            x = x.transpose(1, 2).reshape(batch * channels, lookback, 1)
            covariates = {  # every channel's series has its window's covariates
                k: None if v is None else v.repeat_interleave(channels, dim=0)
                for k, v in covariates.items()
            }
            y = self.net(x, **covariates)  # [B*C, H, 1, Q]
            y = y.reshape(batch, channels, y.shape[1], -1).transpose(1, 2)
        else:
            y = self.net(x, **covariates)  # [B, H, C, Q]
        y = y * self.scale[:, None] + self.mean[:, None]
        return y[..., 0] if self.point else y
