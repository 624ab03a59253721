"""Forecast accuracy metrics: one definition each.

Elementwise errors are defined once and used both by the plain functions (one batch of arrays) and
by `ForecastMetrics`, which accumulates sums over batches (and across processes: every state is a
sum) and reports each metric overall and per horizon step.

Conventions: `y_hat` and `y` are [..., horizon, channels]; MAPE and sMAPE are in percent; MAPE
skips targets that are exactly zero (undefined there) and sMAPE counts 0/0 as 0; MASE divides by the
mean absolute seasonal difference (lag `season`) of the in-sample history (the look-back window)
and skips series whose history is constant (scale 0, MASE undefined there).
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from forecast.naive import naive_last, naive_seasonal

POINT_METRICS = ("mse", "mae", "rmse", "mape", "smape", "mase")


def squared_error(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y_hat - y) ** 2


def absolute_error(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (y_hat - y).abs()


def absolute_percentage_error(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """100 |e| / |y|; NaN where y == 0 (excluded from MAPE)."""
    return torch.where(y != 0, 100 * (y_hat - y).abs() / y.abs(), torch.nan)


def symmetric_absolute_percentage_error(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """200 |e| / (|y| + |y_hat|), as in the M4 competition; 0 where both are 0."""
    denominator = y.abs() + y_hat.abs()
    ratio = 200 * (y_hat - y).abs() / denominator
    return torch.where(denominator > 0, ratio, torch.zeros_like(ratio))


def seasonal_scale(history: torch.Tensor, season: int) -> torch.Tensor:
    """Mean absolute lag-`season` difference of history [..., T, C] -> [..., 1, C].

    Falls back to lag 1 when the history is not longer than one season.
    """
    lag = season if history.shape[-2] > season else 1
    return (history[..., lag:, :] - history[..., :-lag, :]).abs().mean(dim=-2, keepdim=True)


def scaled_absolute_error(
    y_hat: torch.Tensor, y: torch.Tensor, history: torch.Tensor, season: int
) -> torch.Tensor:
    """|e| / seasonal_scale(history): the terms of MASE; NaN where the scale is 0."""
    scale = seasonal_scale(history, season)
    return torch.where(scale > 0, absolute_error(y_hat, y) / scale, torch.nan)


def pinball(y_hat_q: torch.Tensor, y: torch.Tensor, quantile: float) -> torch.Tensor:
    """Pinball (quantile) loss of the `quantile` forecast, elementwise."""
    error = y - y_hat_q
    return torch.maximum(quantile * error, (quantile - 1) * error)


def mse(y_hat, y):
    return squared_error(y_hat, y).mean()


def mae(y_hat, y):
    return absolute_error(y_hat, y).mean()


def rmse(y_hat, y):
    return mse(y_hat, y).sqrt()


def mape(y_hat, y):
    return absolute_percentage_error(y_hat, y).nanmean()


def smape(y_hat, y):
    return symmetric_absolute_percentage_error(y_hat, y).mean()


def mase(y_hat, y, history, season: int = 1):
    return scaled_absolute_error(y_hat, y, history, season).nanmean()


def skill(mse_model, mse_naive_last, mse_naive_seasonal):
    """1 - MSE / the better naive MSE: 1 is perfect, 0 no better than naive, below 0 worse.
    NaN where both naive forecasts are exact (nothing to compare with)."""
    best = torch.minimum(torch.as_tensor(mse_naive_last), torch.as_tensor(mse_naive_seasonal))
    return torch.where(best > 0, 1 - mse_model / best, torch.nan)


def diebold_mariano(differences: torch.Tensor, lag: int) -> torch.Tensor:
    """The Diebold-Mariano statistic of loss differences [n] (one per forecast, in time order):
    their mean over its standard error, the variance from Newey-West with `lag` autocovariances
    (forecasts h steps ahead from overlapping windows are correlated up to lag h - 1). Negative:
    the first forecast had the lower loss. 0 where the differences are all 0; NaN for n < 2."""
    d = differences.double()
    n = len(d)
    if n < 2:
        return torch.tensor(torch.nan, dtype=torch.float64)
    centred = d - d.mean()
    variance = (centred * centred).mean()
    for k in range(1, min(lag, n - 1) + 1):  # Bartlett weights keep the estimate positive
        variance = variance + 2 * (1 - k / (lag + 1)) * (centred[k:] * centred[:-k]).sum() / n
    if variance <= 0:  # every difference the same: no noise to weigh it against
        return torch.copysign(torch.tensor(torch.inf), d.mean()) if d.mean() != 0 else d.mean()
    return d.mean() / torch.sqrt(variance / n)


def small_sample_factor(n: int, horizon: int) -> float:
    """Harvey, Leybourne and Newbold's (1997) correction of the Diebold-Mariano statistic of
    `n` forecasts `horizon` steps ahead: sqrt((n + 1 - 2h + h(h - 1) / n) / n). Newey-West's
    variance with h - 1 lags is biased low when h is large against n (overlapping windows: 205
    validation windows of 96 steps hold about two independent ones), which makes the test pass
    too easily. 0 where n < 2h, fewer windows than two that do not overlap, where the formula
    no longer holds (it grows without bound as n falls): then nothing is significant."""
    if n < 2 * horizon:
        return 0.0
    inside = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    return math.sqrt(inside) if inside > 0 else 0.0


def owa(smape_value: float, mase_value: float, smape_naive2: float, mase_naive2: float) -> float:
    """Overall weighted average of the M4 competition, relative to Naive2."""
    return 0.5 * (smape_value / smape_naive2 + mase_value / mase_naive2)


class ForecastMetrics(Metric):
    """Accumulates MSE, MAE, RMSE, MAPE, sMAPE, MASE (and pinball loss and coverage per quantile)
    over batches, overall and per horizon step; and the MSE of the two naive forecasts on the
    same windows (repeat the last value, repeat the last season) with the model's skill against
    the better of them: 1 - MSE / min(naive MSEs) (0: no better than naive; below 0: worse).
    `blend_weight_<naive>` is the weight w in [0, 1] of the blend (1 - w) y_hat + w naive with
    the lowest MSE on these windows, `blend_mse_<naive>` that MSE, and `blend_t_<naive>` the
    Diebold-Mariano statistic of the blend against the naive forecast alone (`diebold_mariano`
    with the small-sample correction `small_sample_factor`: below -1.645, the blend is better at
    the one-sided 5% level).

    update(y_hat [B, H, C], y [B, H, C], history [B, L, C], y_hat_q [B, H, C, Q] or None).
    """

    full_state_update = False

    def __init__(self, horizon: int, season: int = 1, quantiles: tuple[float, ...] = ()):
        super().__init__()
        self.season, self.quantiles = season, tuple(quantiles)
        names = ("se", "ae", "ape", "sape", "sae", "count", "ape_count", "sae_count")
        for name in (*names, "se_naive_last", "se_naive_seasonal"):
            self.add_state(name, torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        # per window (summed over its steps and channels), for the blends and their test
        for name in ("cross_last", "gap_last", "cross_seasonal", "gap_seasonal"):
            self.add_state(name, [], dist_reduce_fx="cat")
        n_q = len(self.quantiles)
        self.add_state("pinball", torch.zeros(n_q, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("covered", torch.zeros(n_q, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, y_hat, y, history, y_hat_q=None) -> None:
        # contiguous, so that equal forecasts sum in the same order: the naive forecast scored
        # as a model's has exactly the naive MSE (and skill 0, not -1e-16)
        y_hat, y, history = (t.double().contiguous() for t in (y_hat, y, history))
        per_step = lambda t: t.sum(dim=(0, 2))  # noqa: E731  [B, H, C] -> [H]
        ape = absolute_percentage_error(y_hat, y)
        sae = scaled_absolute_error(y_hat, y, history, self.season)
        self.se += per_step(squared_error(y_hat, y))
        self.ae += per_step(absolute_error(y_hat, y))
        self.ape += per_step(ape.nan_to_num(0.0))
        self.ape_count += per_step((~ape.isnan()).double())
        self.sape += per_step(symmetric_absolute_percentage_error(y_hat, y))
        self.sae += per_step(sae.nan_to_num(0.0))
        self.sae_count += per_step((~sae.isnan()).double())
        self.count += per_step(torch.ones_like(y))
        horizon = y.shape[-2]
        last = naive_last(history, horizon).contiguous()
        seasonal = naive_seasonal(history, horizon, self.season).contiguous()
        self.se_naive_last += per_step(squared_error(last, y))
        self.se_naive_seasonal += per_step(squared_error(seasonal, y))
        # for the blend (1 - w) y_hat + w naive: its squared error is that of y_hat minus
        # 2 w cross + w^2 gap, per window (summed over steps and channels: [B])
        for kind, naive in (("last", last), ("seasonal", seasonal)):
            getattr(self, f"cross_{kind}").append(((y_hat - y) * (y_hat - naive)).sum(dim=(1, 2)))
            getattr(self, f"gap_{kind}").append(squared_error(y_hat, naive).sum(dim=(1, 2)))
        if y_hat_q is not None:
            y_hat_q = y_hat_q.double()
            for i, q in enumerate(self.quantiles):
                self.pinball[i] += pinball(y_hat_q[..., i], y, q).sum()
                self.covered[i] += (y <= y_hat_q[..., i]).double().sum()

    def compute(self) -> dict[str, torch.Tensor]:
        """Overall values under their names; per-step values under `<name>_step` ([H])."""
        step = {
            "mse": self.se / self.count,
            "mae": self.ae / self.count,
            "mape": self.ape / self.ape_count,
            "smape": self.sape / self.count,
            "mase": self.sae / self.sae_count,
        }
        step["rmse"] = step["mse"].sqrt()
        step["mse_naive_last"] = self.se_naive_last / self.count
        step["mse_naive_seasonal"] = self.se_naive_seasonal / self.count
        step["skill"] = skill(step["mse"], step["mse_naive_last"], step["mse_naive_seasonal"])
        total = self.count.sum()
        result = {
            "mse": self.se.sum() / total,
            "mae": self.ae.sum() / total,
            "mape": self.ape.sum() / self.ape_count.sum(),
            "smape": self.sape.sum() / total,
            "mase": self.sae.sum() / self.sae_count.sum(),
        }
        result["rmse"] = result["mse"].sqrt()
        result["mse_naive_last"] = self.se_naive_last.sum() / total
        result["mse_naive_seasonal"] = self.se_naive_seasonal.sum() / total
        naive = (result["mse_naive_last"], result["mse_naive_seasonal"])
        result["skill"] = skill(result["mse"], *naive)
        horizon = len(self.se)
        for kind in ("last", "seasonal"):  # the best blend with each naive forecast
            cross = dim_zero_cat(getattr(self, f"cross_{kind}"))  # [windows]
            gap = dim_zero_cat(getattr(self, f"gap_{kind}"))
            weight = torch.where(gap.sum() > 0, cross.sum() / gap.sum(), 0.0).clamp(0.0, 1.0)
            result[f"blend_weight_{kind}"] = weight
            result[f"blend_mse_{kind}"] = (
                result["mse"] - (2 * weight * cross.sum() - weight**2 * gap.sum()) / total
            )
            # blend minus naive, per window: (1 - w)(2 cross - (1 + w) gap), a difference of
            # squared errors summed over the window's steps and channels
            differences = (1 - weight) * (2 * cross - (1 + weight) * gap)
            statistic = diebold_mariano(differences, lag=horizon - 1)
            result[f"blend_t_{kind}"] = statistic * small_sample_factor(len(differences), horizon)
        result.update({f"{name}_step": values for name, values in step.items()})
        for i, q in enumerate(self.quantiles):
            label = f"q{round(q * 100):02d}"
            result[f"pinball_{label}"] = self.pinball[i] / total
            result[f"coverage_{label}"] = self.covered[i] / total
        if self.quantiles:
            result["pinball"] = self.pinball.sum() / (total * len(self.quantiles))
        return result
