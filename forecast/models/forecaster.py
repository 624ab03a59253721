"""Forecaster: the LightningModule that trains and evaluates a ForecastNet."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from forecast.config import ADDED_MODEL_OPTIONS, defaults_of, upgrade_model_options
from forecast.data.spec import DataSpec
from forecast.errors import ConfigError
from forecast.metrics import ForecastMetrics, pinball, seasonal_scale
from forecast.models.network import ForecastNet
from forecast.naive import NAIVE_KINDS
from forecast.quantiles import median_index

LOSSES = ("mse", "mae", "huber", "smape", "mase", "quantile")
# a look-back whose mean absolute seasonal difference is below this (in scaled units, where a
# series' training values have standard deviation 1) is flat: MASE's scale is held at this floor
# there, so that its windows weigh a bounded amount rather than infinitely
MASE_SCALE_FLOOR = 1e-3
# the one-sided 5% point of the standard normal: a blend is kept only if it beats the naive
# forecast on validation at that level
DM_CRITICAL = 1.645


class Forecaster(pl.LightningModule):
    """Maps batch["x"] [B, lookback, C] (scaled) to a forecast of batch["y"] [B, horizon, C].

    `spec` is the data's DataSpec (from the DataModule after setup, or its dict from a
    checkpoint): the network is built from it and `net_options` (ForecastNet's: cell, impl,
    hidden_size, segment_len, ...), unless a network is given as `net`.
    `loss="quantile"` makes the network emit one forecast per entry of `quantiles`, trained with
    the pinball loss; its point forecast is the median (the quantile nearest 0.5). Metrics are
    kept on the scaled values and, through the spec's scaler, on the original ones. The scaler
    table is [groups, channels]: one group for one scaler over all series, one per series
    (picked by `batch["series"]`) otherwise; `batch["channel"]` picks the channel of a
    channel-independent batch. `season` (MASE's period) defaults to the spec's.
    """

    def __init__(
        self,
        spec: DataSpec | dict,
        net: nn.Module | None = None,
        loss: str = "mae",
        huber_delta: float = 1.0,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        season: int | None = None,
        naive_blend: bool = True,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., object] | None = None,
        **net_options,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {LOSSES}, got {loss!r}")
        spec = spec if isinstance(spec, DataSpec) else DataSpec.from_dict(spec)
        if net is not None and net_options:
            raise ValueError(f"give a network or its options, not both: {sorted(net_options)}")
        self.save_hyperparameters(ignore=["spec", "net", "optimizer", "scheduler"])
        if net is None:  # the options added since older checkpoints, recorded even when not given
            # (a checkpoint without one is read as older: forecast.config.upgrade_model_options)
            built = defaults_of(ForecastNet.__init__)
            self.hparams.update({k: built[k] for k in ADDED_MODEL_OPTIONS if k not in self.hparams})
        self.spec = spec
        self.quantiles = tuple(float(q) for q in quantiles) if loss == "quantile" else ()
        q = self.quantiles
        if not all(0 < v < 1 for v in q) or any(a >= b for a, b in zip(q, q[1:], strict=False)):
            raise ValueError(
                f"quantiles must be increasing and between 0 and 1, got {list(quantiles)}: the "
                f"network's outputs are sorted, so they answer the levels in increasing order"
            )
        n_quantiles = max(len(self.quantiles), 1)
        self.median = median_index(self.quantiles)
        self.net = net or ForecastNet(
            spec.n_channels,
            spec.lookback,
            spec.horizon,
            n_quantiles=n_quantiles,
            point_index=self.median,
            covariates=spec.covariates,
            **net_options,
        )
        # the data scaler [groups, channels]: original = scaled * scale + mean
        self.register_buffer("scaler_mean", torch.as_tensor(spec.scaler_mean, dtype=torch.float32))
        self.register_buffer(
            "scaler_scale", torch.as_tensor(spec.scaler_scale, dtype=torch.float32)
        )
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.season = season = season or spec.season
        self.metrics = nn.ModuleDict(
            {
                f"{split}{scale}": ForecastMetrics(spec.horizon, season, self.quantiles)
                for split in ("val", "test")
                for scale in ("", "_original")
            }
        )
        self.test_results: dict[str, torch.Tensor] = {}
        # per split, the best blends with each naive forecast on its last evaluation
        self.naive_candidates: dict[str, dict[str, float]] = {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["data_spec"] = self.spec.to_dict()  # plain types: loads with weights_only

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, **kwargs):
        """Lightning's `load_from_checkpoint` for our checkpoints, weights only: the network is
        built from the data's spec the checkpoint records, with the options added since an
        older checkpoint set to what it was trained with (`forecast.config`). `kwargs` as
        Lightning's (`strict`, or hyper-parameters to override). The weights as saved: a run's
        blend toward the naive forecast, chosen after, is `forecast.load(run).module()`'s."""
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if "data_spec" not in state:
            raise ConfigError(
                f"{checkpoint_path}: the checkpoint records no data (it was written by an older "
                f"version of forecast, or is not a forecast checkpoint); train a new run"
            )
        saved = state.get("hyper_parameters", {})
        # Lightning builds the model through these when a checkpoint names them (older versions
        # import and call any class or function so named), read from the hyper-parameters or
        # the older keys it merges into them; ours never name any
        from pytorch_lightning.core.saving import CHECKPOINT_PAST_HPARAMS_KEYS

        for key in ("hyper_parameters", *CHECKPOINT_PAST_HPARAMS_KEYS):
            given = state.get(key)
            asked = sorted({"_instantiator", "_class_path"} & set(given or ()))
            if asked:
                raise ConfigError(
                    f"{checkpoint_path}: the checkpoint names code to build its model with "
                    f"({', '.join(f'{key}.{k}={given[k]!r}' for k in asked)}), which a "
                    f"forecast checkpoint never does; it was altered or is not ours: load only "
                    f"checkpoints you trust"
                )
        added = {k: v for k, v in upgrade_model_options(saved).items() if k not in saved}
        kwargs = {"spec": state["data_spec"], **added, **kwargs, "weights_only": True}
        return super().load_from_checkpoint(checkpoint_path, map_location, **kwargs)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse, before any weight is loaded, a checkpoint made for another model or data:
        its weights would not fit (a wall of size mismatches), or fit and be wrong (another
        data set's scaler)."""
        refuse_other_checkpoint(checkpoint, dict(self.hparams), self.spec.to_dict())

    def scaler_of(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of each window of the batch: [B, 1, C]."""
        mean, scale = self.scaler_mean, self.scaler_scale  # [G, C']
        rows = batch["series"] if len(mean) > 1 else torch.zeros_like(batch["series"])
        mean, scale = mean[rows], scale[rows]  # [B, C']
        if "channel" in batch:  # channel-independent windows: one channel each
            pick = batch["channel"][:, None]
            mean, scale = mean.gather(1, pick), scale.gather(1, pick)  # [B, 1]
        return mean[:, None], scale[:, None]

    def forward(
        self,
        x: torch.Tensor,
        past: torch.Tensor | None = None,
        future: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, lookback, C] -> [B, horizon, C, Q] (Q = 1 for a point forecast); covariates as
        a batch holds them (see ForecastNet.forward)."""
        return self.net(x, past, future, static)

    def forecast(self, batch: dict) -> torch.Tensor:
        """The forecast [B, horizon, C, Q] of a batch: its windows with their covariates."""
        return self(batch["x"], batch.get("past"), batch.get("future"), batch.get("static"))

    def loss(self, y_hat_q: torch.Tensor, batch: dict) -> torch.Tensor:
        """The training loss of forecasts [B, horizon, C, Q] against batch["y"] [B, horizon, C].

        mse, mae, huber: on the scaled values. smape: the M4 competition's symmetric absolute
        percentage error (/ 100) on the original values, so it weighs each window by its level as
        the metric does. mase: the absolute error over the look-back's mean absolute seasonal
        difference (lag `season`, lag 1 for a look-back not longer than a season), per window and
        channel: M4's MASE terms (invariant to the scaler, so taken on the scaled values).
        quantile: the mean pinball loss over the quantiles."""
        name, y = self.hparams.loss, batch["y"]
        if name == "quantile":
            terms = [pinball(y_hat_q[..., i], y, q) for i, q in enumerate(self.quantiles)]
            return torch.stack(terms).mean()
        y_hat = y_hat_q[..., 0]
        if name == "mae":
            return nn.functional.l1_loss(y_hat, y)
        if name == "huber":
            return nn.functional.huber_loss(y_hat, y, delta=self.hparams.huber_delta)
        if name == "smape":
            mean, scale = self.scaler_of(batch)
            y_hat, y = y_hat.float() * scale + mean, y.float() * scale + mean
            denominator = y.abs() + y_hat.abs()
            # both 0: no error; the other branch's 1 keeps the gradient finite there
            safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
            return (2 * (y_hat - y).abs() / safe).mean()
        if name == "mase":
            seasonal = seasonal_scale(batch["x"].float(), self.season)  # [B, 1, C]
            return ((y_hat.float() - y).abs() / seasonal.clamp_min(MASE_SCALE_FLOOR)).mean()
        return nn.functional.mse_loss(y_hat, y)

    def training_step(self, batch, batch_idx):
        loss = self.loss(self.forecast(batch), batch)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def _update_metrics(self, batch, split: str) -> None:
        x, y = batch["x"], batch["y"]
        y_hat_q = self.forecast(batch).float()
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
        blends = {
            k: results.pop(k) for k in list(results) if k.split("_", 1)[1].startswith("blend_")
        }
        naive = {k: results[k] for k in (f"{split}_mse_naive_last", f"{split}_mse_naive_seasonal")}
        self.naive_candidates[split] = {
            k.split("_", 1)[1]: float(v)
            for k, v in {**blends, **naive}.items()
            if not k.endswith("_original")
        }
        # logged in float64, as computed: MSE in original units may not fit float32
        scalars = {k: v for k, v in results.items() if v.dim() == 0}
        shown = scalars.pop(f"{split}_mse")
        self.log_dict(scalars)
        self.log(f"{split}_mse", shown, prog_bar=True)
        return results

    def blend_toward_naive(self) -> dict | None:
        """With `naive_blend`, make the naive forecast always within reach, as the last
        validation decides. The network's forecasts are blended toward the naive forecast (the
        last value or the last season, whichever blends better) by the MSE-optimal weight, if
        that blend beats the naive forecast alone significantly (Diebold-Mariano, one-sided 5%);
        otherwise the naive forecast with the lower validation MSE is used alone (weight 1): on
        data the network cannot forecast better, such as random walks, it does not add noise.
        Returns what was chosen (None: off, or no validation ran)."""
        found = self.naive_candidates.get("val")
        if not self.hparams.naive_blend or not found:
            return None
        kind = min(NAIVE_KINDS, key=lambda k: found[f"blend_mse_{k}"])
        weight = found[f"blend_weight_{kind}"]
        if not found[f"blend_t_{kind}"] < -DM_CRITICAL:
            kind, weight = min(NAIVE_KINDS, key=lambda k: found[f"mse_naive_{k}"]), 1.0
        lag = 1 if kind == "last" else self.metrics["val"].season
        self.net.set_naive_blend(weight, lag)
        return {"naive_blend": kind, "naive_weight": weight, "naive_lag": lag}

    def validation_step(self, batch, batch_idx):
        self._update_metrics(batch, "val")

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def test_step(self, batch, batch_idx):
        self._update_metrics(batch, "test")

    def predict_step(self, batch, batch_idx):
        """Forecasts in the data's own units: `y_hat` [B, horizon, C, Q] (C = 1 for
        channel-independent windows, whose `channel` says which), with the window's `series`."""
        y_hat = self.forecast(batch).float()
        mean, scale = self.scaler_of(batch)  # [B, 1, C]
        out = {"series": batch["series"], "y_hat": y_hat * scale[..., None] + mean[..., None]}
        if "channel" in batch:
            out["channel"] = batch["channel"]
        return out

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


def refuse_other_checkpoint(checkpoint: dict, hparams: dict, spec: dict) -> None:
    """ConfigError when `checkpoint` was trained with other model options or on other data
    (lookback, horizon, channels, scaler) than the model about to load it (`hparams`, `spec`)."""
    # a checkpoint from before an option was added was built with the option's old value (and a
    # model given its network records no network options: it gets the same, so both sides match)
    ours = upgrade_model_options(hparams)
    theirs = upgrade_model_options(checkpoint.get("hyper_parameters", {}))
    saved_spec = checkpoint.get("data_spec")
    # the data is compared below (load_from_checkpoint passes it in as `spec`)
    keys = (set(ours) | set(theirs)) - {"spec"}
    differ = sorted(k for k in keys if ours.get(k) != theirs.get(k))
    if differ:
        shown = ", ".join(
            f"model.{k}={theirs.get(k)!r} (this run: {ours.get(k)!r})" for k in differ[:4]
        )
        raise ConfigError(
            f"ckpt_path: the checkpoint was trained with {shown}; resume with the options it was "
            f"trained with (the overrides of its run, in its config.yaml)"
        )
    if saved_spec is None:
        raise ConfigError(
            "ckpt_path: the checkpoint records no data (it was written by an older version of "
            "forecast); start a new run"
        )
    for key in ("lookback", "horizon", "channels", "independent"):
        if spec[key] != saved_spec[key]:
            raise ConfigError(
                f"ckpt_path: the checkpoint was trained on data with {key}={saved_spec[key]!r}, "
                f"this run's data has {spec[key]!r}; resume with the data and options of its run"
            )
    for key in ("scaler_mean", "scaler_scale"):
        a, b = np.asarray(spec[key]), np.asarray(saved_spec[key])
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=0):
            raise ConfigError(
                "ckpt_path: the checkpoint was trained on other data (its scaler, fitted on its "
                "training rows, differs from this run's); resume on the data of its run, or "
                "start a new run on this data"
            )
