"""Forecaster: the LightningModule that trains and evaluates a ForecastNet."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from forecast.metrics import ForecastMetrics, median_index, pinball
from forecast.models.network import ForecastNet

LOSSES = ("mse", "mae", "huber", "quantile")


class Forecaster(pl.LightningModule):
    """Maps batch["x"] [B, lookback, C] (scaled) to a forecast of batch["y"] [B, horizon, C].

    `net_options` are ForecastNet's (cell, impl, hidden_size, segment_len, ...).
    `loss="quantile"` makes the network emit one forecast per entry of `quantiles`, trained with
    the pinball loss; its point forecast is the median (the quantile nearest 0.5). Metrics are
    kept on the scaled values and, through the data scaler's mean and scale (`set_scaler`), on
    the original ones. The scaler table is [groups, channels]: one group for one scaler over all
    series, one per series (picked by `batch["series"]`) otherwise; `batch["channel"]` picks the
    channel of a channel-independent batch.
    """

    def __init__(
        self,
        n_channels: int,
        lookback: int,
        horizon: int,
        loss: str = "mse",
        huber_delta: float = 1.0,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        season: int = 1,
        scaler_shape: Sequence[int] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., object] | None = None,
        **net_options,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.quantiles = tuple(float(q) for q in quantiles) if loss == "quantile" else ()
        q = self.quantiles
        if not all(0 < v < 1 for v in q) or any(a >= b for a, b in zip(q, q[1:], strict=False)):
            raise ValueError(
                f"quantiles must be increasing and between 0 and 1, got {list(quantiles)}: the "
                f"network's outputs are sorted, so they answer the levels in increasing order"
            )
        self.net = ForecastNet(
            n_channels, lookback, horizon, n_quantiles=max(len(self.quantiles), 1), **net_options
        )
        self.median = median_index(self.quantiles)

        scaler_shape = tuple(scaler_shape or (1, n_channels))
        self.register_buffer("scaler_mean", torch.zeros(scaler_shape))
        self.register_buffer("scaler_scale", torch.ones(scaler_shape))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.metrics = nn.ModuleDict(
            {
                f"{split}{scale}": ForecastMetrics(horizon, season, self.quantiles)
                for split in ("val", "test")
                for scale in ("", "_original")
            }
        )
        self.test_results: dict[str, torch.Tensor] = {}

    def set_scaler(self, mean, scale) -> None:
        """The data scaler's parameters [groups, channels]: original = scaled * scale + mean."""
        self.scaler_mean.copy_(torch.as_tensor(mean, dtype=self.scaler_mean.dtype))
        self.scaler_scale.copy_(torch.as_tensor(scale, dtype=self.scaler_scale.dtype))

    def scaler_of(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of each window of the batch: [B, 1, C]."""
        mean, scale = self.scaler_mean, self.scaler_scale  # [G, C']
        rows = batch["series"] if len(mean) > 1 else torch.zeros_like(batch["series"])
        mean, scale = mean[rows], scale[rows]  # [B, C']
        if "channel" in batch:  # channel-independent windows: one channel each
            pick = batch["channel"][:, None]
            mean, scale = mean.gather(1, pick), scale.gather(1, pick)  # [B, 1]
        return mean[:, None], scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, lookback, C] -> [B, horizon, C, Q] (Q = 1 for a point forecast)."""
        return self.net(x)

    def loss(self, y_hat_q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        name = self.hparams.loss
        if name == "quantile":
            terms = [pinball(y_hat_q[..., i], y, q) for i, q in enumerate(self.quantiles)]
            return torch.stack(terms).mean()
        y_hat = y_hat_q[..., 0]
        if name == "mae":
            return nn.functional.l1_loss(y_hat, y)
        if name == "huber":
            return nn.functional.huber_loss(y_hat, y, delta=self.hparams.huber_delta)
        return nn.functional.mse_loss(y_hat, y)

    def training_step(self, batch, batch_idx):
        loss = self.loss(self(batch["x"]), batch["y"])
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def _update_metrics(self, batch, split: str) -> None:
        x, y = batch["x"], batch["y"]
        y_hat_q = self(x).float()
        y_hat = y_hat_q[..., self.median]
        quantile_forecasts = y_hat_q if self.quantiles else None
        self.metrics[split].update(y_hat, y, x, quantile_forecasts)
        # original units in float64: values up to io.LARGEST times a forecast of a few units
        # overflow float32 there, and their squared errors in MSE would too
        mean, scale = (t.double() for t in self.scaler_of(batch))  # [B, 1, C]
        original = lambda t: t.double() * scale + mean  # noqa: E731
        self.metrics[f"{split}_original"].update(
            original(y_hat),
            original(y),
            original(x),
            (y_hat_q.double() * scale[..., None] + mean[..., None]) if self.quantiles else None,
        )

    def _log_metrics(self, split: str) -> dict[str, torch.Tensor]:
        results = {}
        for scale in ("", "_original"):
            metric = self.metrics[f"{split}{scale}"]
            for name, value in metric.compute().items():
                base, _, step = name.partition("_step")
                key = f"{split}_{base}{scale}" + ("_step" if _ else "")
                results[key] = value
            metric.reset()
        # logged in float64, as computed: MSE in original units may not fit float32
        scalars = {k: v for k, v in results.items() if v.dim() == 0}
        shown = scalars.pop(f"{split}_mse")
        self.log_dict(scalars)
        self.log(f"{split}_mse", shown, prog_bar=True)
        return results

    def validation_step(self, batch, batch_idx):
        self._update_metrics(batch, "val")

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def test_step(self, batch, batch_idx):
        self._update_metrics(batch, "test")

    def on_test_epoch_end(self):
        self.test_results = {k: v.detach().cpu() for k, v in self._log_metrics("test").items()}

    def configure_optimizers(self):
        optimizer = (
            self.optimizer_factory(params=self.parameters())
            if self.optimizer_factory is not None
            else torch.optim.Adam(self.parameters(), lr=1e-3)
        )
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_mse", "interval": "epoch"},
        }
