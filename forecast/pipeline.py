"""train(cfg): build everything the config names, fit, test on the best checkpoint, write results.

The only module below the entry scripts that sees Hydra config objects, and the one place that
calls `hydra.utils.instantiate`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from forecast.atomic import write_text as write_atomic
from forecast.callbacks import RNGStateCheckpoint
from forecast.config import register_resolvers
from forecast.data.validate import fixed_step
from forecast.export import export_bundle

log = logging.getLogger(__name__)
register_resolvers()


def train(cfg: DictConfig, callbacks: list[pl.Callback] | None = None) -> float:
    """Fit and evaluate the configured model; return the best validation MSE (the objective).

    `callbacks` join the configured ones (a sweep passes its pruning callback here).
    """
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    refuse_unused_inputs(cfg)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    mean, scale = scaler_table(datamodule)
    model = instantiate(
        cfg.model,
        n_channels=datamodule.n_channels,
        scaler_shape=list(mean.shape),
        season=resolve_season(cfg.model.get("season"), datamodule),
    )
    model.set_scaler(mean, scale)
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*build_callbacks(cfg), *(callbacks or [])],
        logger=instantiate(cfg.logger),
        default_root_dir=str(output_dir),
        enable_progress_bar=sys.stdout.isatty(),
    )

    start = time.perf_counter()
    with no_nan_fill():
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        fit_seconds = time.perf_counter() - start
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or None
        # an empty list where the trainer runs no batches (e.g. trainer.limit_val_batches=0)
        val = first(trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False))
        test = first(trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False))
    for split, results in (("val", val), ("test", test)):
        if not results:
            log.warning(
                "no %s batches (trainer.limit_%s_batches=0?): metrics.json has no %s_* metrics",
                *[split] * 3,
            )

    metrics = {
        **{k: float(v) for k, v in sorted({**val, **test}.items())},
        "val_windows": len(datamodule.datasets["val"]),
        "test_windows": len(datamodule.datasets["test"]),
        "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 3),
        "wall_seconds": round(time.perf_counter() - start, 3),
        "best_checkpoint": os.path.relpath(best, output_dir) if best else None,
    }
    if trainer.is_global_zero:
        write_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        write_atomic(output_dir / "metrics_per_step.csv", per_step_csv(model.test_results))
        plot_test_windows(model, datamodule, output_dir / "forecast.png")
        export(cfg, datamodule, model, output_dir / "export")
    objective = metrics.get("val_mse", math.inf)
    return objective if math.isfinite(objective) else float("inf")


def refuse_unused_inputs(cfg: DictConfig) -> None:
    """Covariates and calendar features are served by the DataModule (batch keys x_cov,
    x_mark, y_mark) but read by none of our forecasters: refuse them rather than train without
    them while the config says otherwise."""
    given = {key: cfg.data.get(key) for key in ("covariates", "calendar") if cfg.data.get(key)}
    if given:
        listed = ", ".join(f"data.{key}={list(value)}" for key, value in given.items())
        raise ValueError(
            f"{listed}: the recurrent forecasters (forecast.models) do not read covariates or "
            f"calendar features yet, so this run would ignore them; remove the setting (the "
            f"DataModule serves them as batch keys x_cov / x_mark / y_mark to a model of your own)"
        )


@contextlib.contextmanager
def no_nan_fill():
    """Deterministic mode without its NaN fill of every new tensor, for the duration.

    `trainer.deterministic=true` turns on torch's deterministic algorithms, and with them
    `torch.utils.deterministic.fill_uninitialized_memory`: every `torch.empty` is filled with NaN,
    a guard against kernels that read memory they have not written. On CPU that filled ~1,200
    buffers per training step of the default model, 5-6 ms of 41 (BENCHMARKS.md). The algorithms
    stay deterministic; runs with the same seed still give the same metrics, bit for bit
    (tests/test_train_e2e.py).
    """
    before = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = before


def first(results: list[dict]) -> dict:
    return results[0] if results else {}


def scaler_table(datamodule) -> tuple[np.ndarray, np.ndarray]:
    """The data scaler as [groups, channels] arrays: one row, or one row per series id."""
    if datamodule.scale_by != "series":
        params = datamodule.scaler_params()
        return np.array([params["mean"]]), np.array([params["scale"]])
    params = datamodule.series_scaler_params()
    row_of = {series_id: i for i, series_id in enumerate(datamodule.series_ids)}
    rows = [row_of[series_id] for series_id in params["ids"]]
    n_channels = len(params["mean"][0])
    mean = np.zeros((len(row_of), n_channels))
    scale = np.ones((len(row_of), n_channels))
    mean[rows], scale[rows] = params["mean"], params["scale"]
    return mean, scale


def export(cfg: DictConfig, datamodule, model, out_dir: Path) -> None:
    """Export with the data scaler inside, so the bundle maps raw values to raw forecasts.

    A scaler per series cannot travel to series the model has not seen; with RevIN it need not:
    each window is normalised by its own statistics, which cancels any per-series affine scaling,
    so the bundle is exported without one. Without RevIN such a model is not exported.
    """
    if datamodule.scale_by == "series":
        if model.net.revin is None:
            log.warning("not exported: scale_by=series needs model.revin=true to serve new series")
            return
        n_channels = len(datamodule.channels)
        mean, scale = np.zeros(n_channels), np.ones(n_channels)
    else:
        params = datamodule.scaler_params()
        mean, scale = np.array(params["mean"]), np.array(params["scale"])
    export_bundle(
        model.net,
        mean,
        scale,
        export_meta(cfg, datamodule, model),
        out_dir,
        independent=datamodule.channel_mode == "independent",
    )


def frequency(datamodule) -> str | int | None:
    """The step between the first two rows of the first series that has two: an offset alias
    ('h') or an integer; None when no series has two rows."""
    frame = datamodule.frame
    if getattr(frame, "calendar", None) is not None:  # months, quarters, business days
        return frame.calendar
    longer = np.flatnonzero(frame.lengths >= 2)
    if not len(longer):
        return None
    first = frame.offsets[longer[0]]
    times = frame.times
    step = times[first + 1] - times[first]
    if np.issubdtype(times.dtype, np.datetime64):
        step = pd.Timedelta(step)
        if step >= pd.Timedelta(days=1) and step % pd.Timedelta(days=1) == pd.Timedelta(0):
            return f"{step.days}D" if step.days > 1 else "D"  # pandas would say "24h"
        return pd.tseries.frequencies.to_offset(step).freqstr
    return int(step)


def resolve_season(model_season: int | None, datamodule) -> int:
    """MASE's seasonal period: model.season where set, else data.season, else the usual period
    of the data's frequency (`season_of`)."""
    return model_season or datamodule.season or season_of(frequency(datamodule))


def season_of(frequency: str | int | None) -> int:
    """The usual seasonal period of data at `frequency` (an offset alias, or an integer step):
    a day of sub-daily steps (24 hourly, 96 at 15 min), a week of days (7) or business days (5),
    a year of weeks (52), months (12) or quarters (4); 1 where none applies (years, integer time,
    unknown)."""
    if not isinstance(frequency, str):
        return 1
    try:
        offset = pd.tseries.frequencies.to_offset(frequency)
    except (ValueError, TypeError):
        return 1
    step, day = fixed_step(offset), pd.Timedelta(days=1)
    if step is not None:
        if step < day and day % step == pd.Timedelta(0):
            return int(day / step)
        return {day: 7, 7 * day: 52}.get(step, 1)
    name = offset.name.split("-")[0]  # MS, ME, QS, QE, YS, YE, B, W, ...
    periods = {"MS": 12, "ME": 12, "M": 12, "BMS": 12, "BME": 12, "SMS": 24, "SME": 24}
    periods.update({"QS": 4, "QE": 4, "Q": 4, "BQS": 4, "BQE": 4, "B": 5, "C": 5, "W": 52})
    return periods.get(name, 1)


def build(node: DictConfig, **kwargs):
    """Instantiate one configured object for a caller outside this module (the sweep's sampler
    and pruner), so that every `instantiate` stays here."""
    return instantiate(node, **kwargs)


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The configured callbacks, and our RNG state keeper; progress bars only on a terminal."""
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values() if callback]
    if not sys.stdout.isatty():
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return [*callbacks, RNGStateCheckpoint()]


def per_step_csv(results: dict[str, torch.Tensor]) -> str:
    """One row per horizon step, one column per per-step metric."""
    columns = sorted(k for k, v in results.items() if v.dim() == 1)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *(c.removesuffix("_step") for c in columns)])
    if columns:
        for step, row in enumerate(
            zip(*(results[c].tolist() for c in columns), strict=True), start=1
        ):
            writer.writerow([step, *(f"{v:.6g}" for v in row)])
    return out.getvalue()


def plot_test_windows(model, datamodule, path: Path, n_windows: int = 4) -> None:
    """History, truth and forecast of a few evenly spaced test windows, last channel, in the
    original units, on the data's time axis where it has timestamps; titled with the model, the
    data and the test MSE."""
    from forecast.plots import plot_forecasts, plot_title, window_times

    dataset = datamodule.datasets["test"]
    picks = np.linspace(0, len(dataset) - 1, n_windows).astype(int).tolist()
    batch = datamodule.test_dataloader().collate_fn(dataset.__getitems__(picks))
    x = batch["x"].to(model.device)
    model.eval()
    with torch.no_grad():
        y_hat = model(x)[..., model.median].float()
    mean, scale = model.scaler_of({k: v.to(model.device) for k, v in batch.items()})
    original = lambda t: (t.to(mean) * scale + mean)[..., -1].cpu().numpy()  # noqa: E731
    channel = datamodule.channels[-1] if "channel" not in batch else "value"
    plot_forecasts(
        original(x),
        original(batch["y"]),
        original(y_hat),
        channel,
        path,
        title=plot_title(model, datamodule),
        times=window_times(dataset, picks, datamodule.frame.times),
    )


def export_meta(cfg: DictConfig, datamodule, model) -> dict:
    return {
        "lookback": datamodule.lookback,
        "horizon": datamodule.horizon,
        "channels": list(datamodule.channels),
        "frequency": frequency(datamodule),
        "scaler": scaler_meta(datamodule),
        "quantiles": list(model.quantiles),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def scaler_meta(datamodule) -> dict:
    """The fitted scaler, for the record (the exported models already contain it)."""
    if datamodule.scale_by == "series":
        return {"kind": datamodule.scaler_kind, "by": "series", **datamodule.series_scaler_params()}
    return {"kind": datamodule.scaler_kind, "by": "channel", **datamodule.scaler_params()}
