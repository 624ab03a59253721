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
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from forecast.atomic import remove_stale_parts
from forecast.atomic import write_text as write_atomic
from forecast.callbacks import RNGStateCheckpoint
from forecast.config import register_configs
from forecast.data.spec import DataSpec
from forecast.errors import ConfigError
from forecast.export import export_bundle
from forecast.versions import versions

log = logging.getLogger(__name__)
register_configs()
# ckpt_path values Lightning resolves itself (the run folder's last or best checkpoint, ...); it
# loads them with weights_only=True like any other
LIGHTNING_CHECKPOINTS = ("last", "best", "hpc", "registry")


def train(
    cfg: DictConfig,
    callbacks: list[pl.Callback] | None = None,
    *,
    data: pd.DataFrame | None = None,
    progress: bool | None = None,
) -> float:
    """Fit and evaluate the configured model; return the best validation MSE (the objective).

    `callbacks` join the configured ones (a sweep passes its pruning callback here). `data`, a
    DataFrame, is read in place of `data.path` (the API's `forecast.fit`). `progress`: a progress
    bar (Lightning's TQDM bar, which notebooks show too); None: the configured bar, on a terminal.
    """
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for folder in (output_dir, output_dir / "export", output_dir / "checkpoints"):
        remove_stale_parts(folder)  # what a run killed in this folder left half-written
    write_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    refuse_unused_inputs(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = construct(cfg.data, "data", **({} if data is None else {"path": data}))
    datamodule.setup("fit")
    # the network is built from the data's spec, in the Forecaster (lightning-hydra-template's
    # injection: the config names the model, the data fills in what only it knows)
    model = build_model(cfg.model, datamodule.spec)
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*build_callbacks(cfg, progress), *(callbacks or [])],
        logger=instantiate(cfg.logger),
        default_root_dir=str(output_dir),
        enable_progress_bar=sys.stdout.isatty() if progress is None else progress,
    )

    start = time.perf_counter()
    with no_nan_fill(), local_checkpoint(cfg.ckpt_path) as ckpt_path:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit_seconds = time.perf_counter() - start
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or None
        # an empty list where the trainer runs no batches (e.g. trainer.limit_val_batches=0)
        evaluate = dict(datamodule=datamodule, verbose=False, weights_only=True)
        val = first(trainer.validate(model, ckpt_path=ckpt, **evaluate))
        # the best weights are loaded now; with model.naive_blend, blended toward the naive
        # forecast as validation chose, which is what is scored, tested and exported
        blend = model.blend_toward_naive()
        if blend is not None:
            val = first(trainer.validate(model, ckpt_path=None, **evaluate))
        test = first(trainer.test(model, ckpt_path=None if blend else ckpt, **evaluate))
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
        **(blend or {}),
        "versions": versions(),
    }
    refuse_diverged(metrics, cfg)
    if metrics.get("val_skill", 0.0) < 0:
        log.warning(
            "validation skill %.3f: this model forecasts the validation windows worse than a "
            "naive forecast (val_mse %.4g; repeating the last value %.4g, the last season %.4g)",
            metrics["val_skill"],
            metrics["val_mse"],
            metrics["val_mse_naive_last"],
            metrics["val_mse_naive_seasonal"],
        )
    if trainer.is_global_zero:
        write_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        write_atomic(output_dir / "metrics_per_step.csv", per_step_csv(model.test_results))
        plot_test_windows(model, datamodule, output_dir / "forecast.png")
        export(cfg, datamodule.spec, model, output_dir / "export")
    objective = metrics.get("val_mse", math.inf)
    return objective if math.isfinite(objective) else float("inf")


def refuse_diverged(metrics: dict, cfg: DictConfig) -> None:
    """A model whose validation or test MSE is not finite diverged (or met values it overflows
    on): refused before anything is exported or recorded as done."""
    bad = [k for k in ("val_mse", "test_mse") if k in metrics and not math.isfinite(metrics[k])]
    if bad:
        lr = OmegaConf.select(cfg, "model.optimizer.lr", default=None)
        raise ConfigError(
            f"model.optimizer.lr={lr}: the model diverged ({bad[0]}={metrics[bad[0]]}), so it "
            f"is not exported; lower the learning rate or trainer.gradient_clip_val, or check "
            f"the data for values far outside the training rows"
        )


@contextlib.contextmanager
def local_checkpoint(ckpt_path: str | None, timeout: float = 60.0) -> Iterator[str | None]:
    """`ckpt_path` as a local file whose content is only weights and plain data (it loads with
    `weights_only=True`, so loading it runs no code): an http(s) URL is fetched into a temporary
    folder first (removed afterwards); other URLs, a missing file, or a file holding Python
    objects are refused (ConfigError)."""
    if ckpt_path is None or str(ckpt_path) in LIGHTNING_CHECKPOINTS:
        yield ckpt_path
        return
    text = str(ckpt_path)
    with tempfile.TemporaryDirectory(prefix="forecast-ckpt-") as folder:
        if text.startswith(("http://", "https://")):
            path = Path(folder) / "fetched.ckpt"
            try:
                with urllib.request.urlopen(text, timeout=timeout) as response:
                    path.write_bytes(response.read())
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise ConfigError(f"ckpt_path={text}: could not fetch it ({err})") from err
        elif "://" in text:
            raise ConfigError(
                f"ckpt_path={text}: give a local file or an http(s) URL (fetch other URLs first)"
            )
        else:
            path = Path(text)
            if not path.is_file():
                raise ConfigError(f"ckpt_path={text}: no such file; give a checkpoint file")
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - corrupt, or objects beyond weights: one line
            raise ConfigError(
                f"ckpt_path={text}: does not load as weights and plain data (a damaged file, or "
                f"one holding Python objects, which could run code on loading): refused; give a "
                f"checkpoint that train.py wrote (checkpoints/last.ckpt of a run)"
            ) from err
        yield str(path)


def refuse_unused_inputs(cfg: DictConfig) -> None:
    """Settings the data and the model cannot honour together: covariates of the one-series-
    per-row layout (it has no columns for them)."""
    kinds = ("past_covariates", "future_covariates", "static_covariates", "calendar")
    given = [k for k in kinds if cfg.data.get(k)]
    if given and cfg.data.get("layout") == "rows":
        raise ConfigError(
            f"data.{given[0]}: data.layout=rows holds values only (no columns, no timestamps); "
            f"give the data in the long layout to use covariates"
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


def export(cfg: DictConfig, spec: DataSpec, model, out_dir: Path) -> None:
    """Export with the data scaler inside, so the bundle maps raw values to raw forecasts.

    A scaler per series cannot travel to series the model has not seen; with RevIN it need not:
    each window is normalised by its own statistics, which cancels any per-series affine scaling,
    so the bundle is exported without one. Without RevIN such a model is not exported.
    """
    if spec.per_series:
        if model.net.revin is None:
            log.warning("not exported: scale_by=series needs model.revin=true to serve new series")
            return
        mean, scale = np.zeros(len(spec.channels)), np.ones(len(spec.channels))
    else:
        mean, scale = spec.scaler_mean[0], spec.scaler_scale[0]
    meta = export_meta(cfg, spec, model)
    export_bundle(model.net, mean, scale, meta, out_dir, independent=spec.independent)


def build_model(node: DictConfig, spec: DataSpec) -> pl.LightningModule:
    """The configured model (`cfg.model`) for data `spec`: the network is built from the spec."""
    return construct(node, "model", spec=spec)


def construct(node: DictConfig, key: str, **kwargs):
    """`node` built with `kwargs` that only the run knows (the data's spec, a DataFrame), which
    Hydra cannot merge into a config. A key the class does not take, or a value it refuses, is a
    one-line ConfigError naming `key`, as it would be from `instantiate` itself."""
    factory = instantiate(node, _partial_=True)
    try:
        return factory(**kwargs)
    except TypeError as err:
        text = str(err)
        if "unexpected keyword argument" not in text:
            raise
        name = text.rsplit("'", 2)[-2]
        raise ConfigError(f"{key}.{name} is not an option here: remove it") from err
    except ValueError as err:
        if type(err) is not ValueError:  # DataError, ConfigError: already one line
            raise
        raise ConfigError(f"{key}: {err}") from err


def build(node: DictConfig, **kwargs):
    """Instantiate one configured object for a caller outside this module (the sweep's sampler
    and pruner), so that every `instantiate` stays here."""
    return instantiate(node, **kwargs)


def build_callbacks(cfg: DictConfig, progress: bool | None = None) -> list[pl.Callback]:
    """The configured callbacks, and our RNG state keeper. The configured progress bar only on
    a terminal (progress=None); with progress=True none of them, so that Lightning adds its TQDM
    bar (which notebooks show), with False none at all."""
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values() if callback]
    if progress is not None or not sys.stdout.isatty():
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
    batch = {k: v.to(model.device) for k, v in batch.items()}
    x = batch["x"]
    model.eval()
    with torch.no_grad():
        y_hat = model.forecast(batch)[..., model.median].float()
    mean, scale = model.scaler_of(batch)
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


def export_meta(cfg: DictConfig, spec: DataSpec, model) -> dict:
    """meta.json's own fields: what a forecaster of new data needs (the reading options, the
    frequency and season), the scaler for the record, and the run's whole config."""
    return {
        "lookback": spec.lookback,
        "horizon": spec.horizon,
        "channels": list(spec.channels),
        "frequency": spec.frequency,
        "season": spec.season,
        "reading": spec.reading.to_dict(),
        "covariates": spec.covariates.to_dict(),
        "scaler": {
            "kind": spec.scaler_kind,
            "by": "series" if spec.per_series else "channel",
            **({"ids": list(spec.series_ids)} if spec.per_series else {}),
            "mean": spec.scaler_mean.tolist() if spec.per_series else spec.scaler_mean[0].tolist(),
            "scale": (
                spec.scaler_scale.tolist() if spec.per_series else spec.scaler_scale[0].tolist()
            ),
        },
        "quantiles": list(model.quantiles),
        "naive_blend": {"weight": float(model.net.naive_weight), "lag": model.net.naive_lag},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(),
    }
