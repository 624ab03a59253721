"""Forecaster: a recurrent backbone read over the look-back window, a direct multi-horizon head."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from forecast.nn import backbone_output_size, build_backbone


class Forecaster(pl.LightningModule):
    """Maps a window [batch, lookback, channels] to a forecast [batch, horizon, channels].

    The backbone's last output feeds one linear head that emits all horizon steps at once.
    """

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
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.n_channels, self.lookback, self.horizon = n_channels, lookback, horizon
        self.rnn = build_backbone(
            cell,
            impl,
            input_size=n_channels,
            hidden_size=hidden_size,
            num_layers=num_layers,
            proj_size=proj_size,
            dropout=dropout,
            batch_first=True,
        )
        self.head = nn.Linear(backbone_output_size(self.rnn), horizon * n_channels)
        self.optimizer_factory = optimizer
        self.metrics = nn.ModuleDict(
            {
                f"{split}_{name}": metric()
                for split in ("val", "test")
                for name, metric in (("mse", MeanSquaredError), ("mae", MeanAbsoluteError))
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(x)  # [B, lookback, features]
        return self.head(output[:, -1]).view(-1, self.horizon, self.n_channels)

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self(batch["x"]), batch["y"])
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def _evaluate(self, batch, split: str) -> None:
        y_hat = self(batch["x"])
        for name in ("mse", "mae"):
            metric = self.metrics[f"{split}_{name}"]
            metric.update(y_hat, batch["y"])
            self.log(f"{split}_{name}", metric, prog_bar=name == "mse")

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        return self.optimizer_factory(params=self.parameters())
