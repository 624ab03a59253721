"""train(cfg): build everything the config names, fit, test on the best checkpoint, write results.

The only module below the entry scripts that sees Hydra config objects, and the one place that
calls `hydra.utils.instantiate`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ProgressBar

from forecast.atomic import remove_stale_parts
from forecast.atomic import write_text as write_atomic
from forecast.callbacks import RNGStateCheckpoint
from forecast.config import imported_class, register_configs, upgrade_config
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
    With `ensemble.*` set, `train_ensemble` trains the members and returns the ensemble's
    validation MSE. A config saved by an older version is brought up to date first.
    """
    members = ensemble_members(upgrade_config(cfg))
    if members is not None:
        return train_ensemble(cfg, members, callbacks, data=data, progress=progress)
    return objective_of(fit_run(cfg, callbacks, data=data, progress=progress).metrics)


@dataclasses.dataclass
class Trained:
    """What `fit_run` leaves in memory: the model (its best weights, blended as validation
    chose), its set-up DataModule and the metrics it wrote."""

    model: pl.LightningModule
    datamodule: pl.LightningDataModule
    metrics: dict


def fit_run(
    cfg: DictConfig,
    callbacks: list[pl.Callback] | None = None,
    *,
    data: pd.DataFrame | None = None,
    progress: bool | None = None,
) -> Trained:
    """One model: fit, evaluate and write its run folder (`train` without an ensemble)."""
    output_dir = start_run(cfg, ("export", "checkpoints"))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = construct(cfg.data, "data", **({} if data is None else {"path": data}))
    datamodule.setup("fit")
    refuse_inexact_codes(cfg.trainer.get("precision"), datamodule.spec)
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
        warn_if_naive_alone(blend, len(datamodule.datasets["val"]))
        if blend is not None:
            val = first(trainer.validate(model, ckpt_path=None, **evaluate))
        test = first(trainer.test(model, ckpt_path=None if blend else ckpt, **evaluate))
    warn_if_unevaluated(val, test)

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
    finish_run(cfg, output_dir, metrics, model, datamodule, write=trainer.is_global_zero)
    return Trained(model, datamodule, metrics)


def start_run(cfg: DictConfig, folders: tuple[str, ...]) -> Path:
    """The run folder `cfg.output_dir`, made, rid of what a run killed there left half-written
    (in it and in its `folders`), with the run's config.yaml; refuses inputs no model reads."""
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for folder in (output_dir, *(output_dir / name for name in folders)):
        remove_stale_parts(folder)
    write_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    refuse_unused_inputs(cfg)
    return output_dir


def finish_run(
    cfg: DictConfig,
    output_dir: Path,
    metrics: dict,
    model,
    datamodule,
    *,
    write: bool,
    name: str | None = None,
    ensemble: dict | None = None,
) -> None:
    """Refuse a diverged run, warn when it loses to a naive forecast on validation, then (where
    `write`: the process of rank zero) write metrics.json, metrics_per_step.csv, forecast.png
    (titled `name`, else by the model) and export/ (with an ensemble's `ensemble` record)."""
    refuse_diverged(metrics, cfg)
    warn_if_worse_than_naive(metrics)
    if write:
        write_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        write_atomic(output_dir / "metrics_per_step.csv", per_step_csv(model.test_results))
        plot_test_windows(model, datamodule, output_dir / "forecast.png", name=name)
        export(cfg, datamodule.spec, model, output_dir / "export", ensemble=ensemble)


def objective_of(metrics: dict) -> float:
    """A run's objective: its validation MSE (inf where it has none, or not a finite one)."""
    objective = metrics.get("val_mse", math.inf)
    return objective if math.isfinite(objective) else float("inf")


def warn_if_naive_alone(blend: dict | None, windows: int) -> None:
    """Say so when validation left the naive forecast alone (model.naive_blend): the run's
    forecasts are then the naive one's, whatever the network learnt."""
    if blend is None or blend["naive_weight"] < 1.0:
        return
    naive = (
        "repeating the last value"
        if blend["naive_blend"] == "last"
        else f"repeating the last season ({blend['naive_lag']} steps)"
    )
    log.warning(
        "the network did not beat %s significantly on the %d validation windows: the model "
        "forecasts by %s alone (model.naive_blend=false keeps the network's forecasts)",
        naive,
        windows,
        naive,
    )


def warn_if_unevaluated(val: dict, test: dict) -> None:
    for split, results in (("val", val), ("test", test)):
        if not results:
            log.warning(
                "no %s batches (trainer.limit_%s_batches=0?): metrics.json has no %s_* metrics",
                *[split] * 3,
            )


def warn_if_worse_than_naive(metrics: dict) -> None:
    if metrics.get("val_skill", 0.0) < 0:
        log.warning(
            "validation skill %.3f: this model forecasts the validation windows worse than a "
            "naive forecast (val_mse %.4g; repeating the last value %.4g, the last season %.4g)",
            metrics["val_skill"],
            metrics["val_mse"],
            metrics["val_mse_naive_last"],
            metrics["val_mse_naive_seasonal"],
        )


# the largest whole number the input dtype of each `-true` precision holds exactly: Lightning
# casts a batch's float tensors to it, categorical codes among them (the mixed precisions do not)
EXACT_INTEGERS = {
    "bf16-true": 256,
    "16-true": 2048,
    "transformer-engine": 256,  # Transformer Engine's inputs are bf16
    "transformer-engine-float16": 2048,
}


def refuse_inexact_codes(precision, spec: DataSpec) -> None:
    """ConfigError when `precision` would round a categorical covariate's codes: a code above
    the dtype's exact whole numbers would reach the network as another level (bf16 holds 257
    as 256), silently."""
    limit = EXACT_INTEGERS.get(str(precision))
    if limit is None:
        return
    for column, levels in spec.covariates.levels.items():
        if len(levels) - 1 > limit:
            raise ConfigError(
                f"trainer.precision={precision}: the categorical covariate {column!r} has "
                f"{len(levels)} levels, and {precision} holds codes exactly only up to {limit} "
                f"(higher ones would be read as other levels); give trainer.precision=bf16-mixed "
                f"(its inputs stay float32) or 32-true"
            )


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
    """Settings the data and the model cannot honour together: covariates that change over time
    in the one-series-per-row layout (its columns are time steps, and it has no timestamps)."""
    kinds = ("past_covariates", "future_covariates", "calendar")
    given = [k for k in kinds if cfg.data.get(k)]
    if given and cfg.data.get("layout") == "rows":
        raise ConfigError(
            f"data.{given[0]}: data.layout=rows has one value per column and no timestamps, so "
            f"only static covariates (data.static_covariates); give the data in the long "
            f"layout to use {given[0].replace('_', ' ')}"
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


def export(
    cfg: DictConfig, spec: DataSpec, model, out_dir: Path, ensemble: dict | None = None
) -> None:
    """Export with the data scaler inside, so the bundle maps raw values to raw forecasts.

    A scaler per series cannot travel to series the model has not seen; with RevIN it need not:
    each window is normalised by its own statistics, which cancels any per-series affine scaling,
    so the bundle is exported without one. Without RevIN such a model is not exported.
    `ensemble`: meta.json's record of an ensemble's members (`train_ensemble`).
    """
    formats = list(cfg.export_formats)
    if not formats:
        return
    if spec.per_series:
        if model.net.revin is None:
            log.warning("not exported: scale_by=series needs model.revin=true to serve new series")
            return
        mean, scale = np.zeros(len(spec.channels)), np.ones(len(spec.channels))
    else:
        mean, scale = spec.scaler_mean[0], spec.scaler_scale[0]
    meta = export_meta(cfg, spec, model, ensemble)
    export_bundle(
        model.net, mean, scale, meta, out_dir, independent=spec.independent, formats=formats
    )


def build_model(node: DictConfig, spec: DataSpec) -> pl.LightningModule:
    """The configured model (`cfg.model`) for data `spec`: the network is built from the spec."""
    return construct(node, "model", spec=spec)


def saved_training_factories(node: DictConfig) -> tuple:
    """The optimizer and schedule factories a saved model config (`model` of a run folder's
    config.yaml) names, for a model loaded from it (`Run.module`) to train on with. A loaded file
    runs no code: only torch's own optimizer and schedule classes (`torch.optim.*`) are built,
    with plain values (numbers, text, lists of them); for anything else, a warning says what and
    the Forecaster's default (Adam, no schedule) is kept."""
    return tuple(saved_training_factory(node, key) for key in ("optimizer", "scheduler"))


def saved_training_factory(node: DictConfig, key: str):
    """One of `saved_training_factories`: a `functools.partial` of the class, or None."""
    import functools

    import torch.optim

    sub = node.get(key)
    if sub is None:
        return None
    bases = {
        "optimizer": (torch.optim.Optimizer,),
        "scheduler": (
            torch.optim.lr_scheduler.LRScheduler,
            torch.optim.lr_scheduler.ReduceLROnPlateau,
        ),
    }[key]
    plain = OmegaConf.to_container(sub, resolve=False) if isinstance(sub, DictConfig) else sub
    target = plain.get("_target_") if isinstance(plain, dict) else None
    kwargs = {k: v for k, v in plain.items() if not str(k).startswith("_")} if target else {}
    # the names torch.optim's two modules define themselves (not an attribute path, which
    # reaches any module torch imports); nothing is imported
    module = str(target).rpartition(".")[0]
    found = (
        imported_class(target) if module in ("torch.optim", "torch.optim.lr_scheduler") else None
    )
    problem = None
    if not (
        isinstance(found, type)
        and issubclass(found, bases)
        and found.__module__.startswith("torch.optim.")
    ):
        problem = f"names {target!r}, not one of torch.optim's {key} classes"
    elif set(plain) - set(kwargs) - {"_target_", "_partial_"}:
        problem = f"has {sorted(set(plain) - set(kwargs) - {'_target_', '_partial_'})}"
    elif not all(isinstance(k, str) and _plain_value(v) for k, v in kwargs.items()):
        problem = "has values other than numbers, text and lists of them (or an interpolation)"
    elif not _binds(found, key, kwargs):
        problem = f"gives {sorted(kwargs)}, which {found.__name__} does not take"
    if problem is None:
        return functools.partial(found, **kwargs)
    warnings.warn(
        f"model.{key} of the run's config {problem}: a loaded run builds only torch.optim's own "
        f"classes with plain values, so this model has the default "
        f"{'Adam' if key == 'optimizer' else 'no schedule'}; give it your own with "
        f"model.configure_optimizers or train the run again with train.py",
        stacklevel=4,
    )
    return None


def _binds(cls, key: str, kwargs: dict) -> bool:
    """Whether `cls` takes `kwargs` beside what configure_optimizers passes it."""
    import inspect

    given = {"params": []} if key == "optimizer" else {"optimizer": None}
    try:
        inspect.signature(cls).bind(**given, **kwargs)
    except TypeError:
        return False
    return True


def _plain_value(value) -> bool:
    """A number, bool, None, text without an interpolation, or a list of those."""
    if isinstance(value, list):
        return all(_plain_value(v) for v in value)
    if isinstance(value, str):
        return "${" not in value
    return value is None or isinstance(value, (bool, int, float))


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


def plot_test_windows(
    model, datamodule, path: Path, n_windows: int = 4, name: str | None = None
) -> None:
    """History, truth and forecast of a few evenly spaced test windows, last channel, in the
    original units, on the data's time axis where it has timestamps; titled with the model (or
    `name`), the data and the test MSE."""
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
        title=plot_title(model, datamodule, name),
        times=window_times(dataset, picks, datamodule.frame.times),
    )


def export_meta(cfg: DictConfig, spec: DataSpec, model, ensemble: dict | None = None) -> dict:
    """meta.json's own fields: what a forecaster of new data needs (the reading options, the
    frequency and season), the scaler for the record, and the run's whole config; an ensemble's
    record (its members' settings and blends) in place of the one model's naive blend."""
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
        **({"naive_blend": naive_blend_of(model)} if ensemble is None else {"ensemble": ensemble}),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(),
    }


def naive_blend_of(model) -> dict:
    """The blend toward the naive forecast that a model's network applies (meta.json's)."""
    return {"weight": float(model.net.naive_weight), "lag": model.net.naive_lag}


# -- ensembles -------------------------------------------------------------------------------

# config.yaml's `ensemble` node: lists of member settings (null: the run's own), and how the
# members' forecasts are combined
ENSEMBLE_AXES = ("seeds", "lookbacks", "losses")


@dataclasses.dataclass(frozen=True)
class Member:
    """One member of an ensemble: what it trains with besides the run's config."""

    seed: int
    lookback: int
    loss: str


def ensemble_members(cfg: DictConfig) -> list[Member] | None:
    """The members `cfg.ensemble` asks for, one per combination of its lists (their product,
    in the order seeds, lookbacks, losses, the last varying fastest; a list left null is the
    run's own seed, data.lookback or model.loss); None when every list is null (one model, no
    ensemble). A setting that cannot work is a one-line ConfigError naming the key and the fix."""
    node = cfg.ensemble
    unknown = sorted(set(node) - {*ENSEMBLE_AXES, "combine"})
    if unknown:
        raise ConfigError(
            f"ensemble.{unknown[0]} is not an ensemble option: give ensemble.seeds, "
            f"ensemble.lookbacks, ensemble.losses or ensemble.combine"
        )
    from forecast.models.ensemble import COMBINES
    from forecast.models.forecaster import LOSSES

    combine = node.get("combine")
    if combine not in COMBINES:
        raise ConfigError(
            f"ensemble.combine={combine}: give ensemble.combine=median or ensemble.combine=mean"
        )
    if all(node.get(axis) is None for axis in ENSEMBLE_AXES):
        return None
    seeds = ensemble_list(node, "seeds", cfg.seed, int, "integer seeds", "[1,2,3]")
    lookbacks = ensemble_list(
        node, "lookbacks", cfg.data.lookback, int, "look-backs in steps", "[96,192]"
    )
    losses = ensemble_list(node, "losses", cfg.model.loss, str, "losses", "[mae,mse]")
    for value in seeds:
        if value < 0:
            raise ConfigError(f"ensemble.seeds={list(seeds)}: give seeds of 0 or more")
    segment = cfg.model.get("segment_len", 1)
    for value in lookbacks:
        if value < max(1, segment):
            raise ConfigError(
                f"ensemble.lookbacks={list(lookbacks)}: a look-back of {value} is shorter than "
                f"model.segment_len={segment}; give look-backs of at least {max(1, segment)} "
                f"steps, or lower model.segment_len"
            )
    for value in losses:
        if value not in LOSSES:
            raise ConfigError(
                f"ensemble.losses={list(losses)}: {value!r} is not a loss; choose from "
                f"{', '.join(LOSSES)}"
            )
    if "quantile" in losses and len(set(losses)) > 1:
        raise ConfigError(
            f"ensemble.losses={list(losses)}: quantile members forecast quantiles, the others "
            f"one value; ensemble members of one kind (all quantile, or none)"
        )
    if cfg.get("ckpt_path") is not None:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path}: an ensemble trains its members from the start; resume "
            f"one model without ensemble.*, or drop ckpt_path"
        )
    strategy, devices = str(cfg.trainer.get("strategy", "auto")), cfg.trainer.get("devices", 1)
    if strategy.startswith("ddp") or (isinstance(devices, int) and devices > 1):
        raise ConfigError(
            f"trainer.strategy={strategy} trainer.devices={devices}: an ensemble trains its "
            f"members one after another in this process, on one device; give trainer.devices=1 "
            f"(or train the members as runs of their own)"
        )
    return [Member(*values) for values in itertools.product(seeds, lookbacks, losses)]


def ensemble_list(node: DictConfig, name: str, default, kind: type, what: str, example: str):
    """`ensemble.<name>`: a list of distinct values of `kind`; `[default]` when null."""
    value = node.get(name)
    if value is None:
        return [default]
    fix = f"give a list of {what}, e.g. ensemble.{name}={example}, or null for the run's own"
    if not OmegaConf.is_list(value):
        raise ConfigError(f"ensemble.{name}={value}: {fix}")
    values = list(value)
    if not values:
        raise ConfigError(f"ensemble.{name}=[]: {fix}")
    for item in values:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise ConfigError(f"ensemble.{name}={values}: {item!r} is not one of the {what}; {fix}")
    if len(set(values)) < len(values):
        raise ConfigError(
            f"ensemble.{name}={values}: a value given twice would train the same member twice; "
            f"give each once"
        )
    return values


def member_config(cfg: DictConfig, member: Member, folder: Path) -> DictConfig:
    """The run config of one member: the ensemble's, with the member's seed, look-back and loss,
    written to `folder`, itself no ensemble. Members export model.pt2 (so that `forecast.load`
    forecasts with each) when the ensemble exports anything; the ensemble's bundle is the one
    that ships, with ONNX."""
    member_cfg = copy.deepcopy(cfg)
    formats = list(cfg.export_formats)
    with open_dict(member_cfg):
        member_cfg.output_dir = str(folder)
        member_cfg.seed = member.seed
        member_cfg.data.lookback = member.lookback
        member_cfg.model.loss = member.loss
        member_cfg.ensemble = {axis: None for axis in ENSEMBLE_AXES} | {
            "combine": cfg.ensemble.combine
        }
        member_cfg.export_formats = ["pt2"] if formats else []
    return member_cfg


def train_ensemble(
    cfg: DictConfig,
    members: list[Member],
    callbacks: list[pl.Callback] | None = None,
    *,
    data: pd.DataFrame | None = None,
    progress: bool | None = None,
) -> float:
    """Train each member as a run of its own in `<run>/members/<k>/`, then evaluate their
    combination (`forecast.models.ensemble.EnsembleNet`) on the validation and test windows of
    the longest look-back (the same targets as every member's: the splits end where they end
    whatever the look-back) and write the run folder as a single model's: metrics.json (with
    each member's scores under `members`), metrics_per_step.csv, forecast.png and one export
    that takes the longest look-back. Returns the ensemble's validation MSE.

    `callbacks` join the first member's trainer only (a sweep's pruner then follows one learning
    curve per trial, not K curves on one step count)."""
    from forecast.models import Forecaster
    from forecast.models.ensemble import EnsembleNet

    output_dir = start_run(cfg, ("export",))
    start = time.perf_counter()
    longest = max(member.lookback for member in members)
    runs: list[Trained] = []
    for k, member in enumerate(members):
        log.info(
            "ensemble member %d of %d: seed %d, look-back %d, loss %s",
            k + 1,
            len(members),
            member.seed,
            member.lookback,
            member.loss,
        )
        run = fit_run(
            member_config(cfg, member, output_dir / "members" / str(k)),
            callbacks if k == 0 else None,
            data=data,
            progress=progress,
        )
        runs.append(run)
    # the longest look-back's data: every member's windows end where its windows end
    datamodule = next(
        r.datamodule for r, m in zip(runs, members, strict=True) if m.lookback == longest
    )
    refuse_different_data(members, [r.datamodule.spec for r in runs], datamodule.spec)
    quantile = members[0].loss == "quantile"
    net = EnsembleNet([r.model.net for r in runs], cfg.ensemble.combine)
    model = Forecaster(
        datamodule.spec,
        net=net,
        loss="quantile" if quantile else "mse",  # not trained: only its quantiles matter
        quantiles=list(cfg.model.get("quantiles", (0.1, 0.5, 0.9))),
        season=cfg.model.get("season"),
        naive_blend=False,  # each member blends as its own validation chose
    )
    trainer = instantiate(
        cfg.trainer,
        # the members' progress bar, nothing that would checkpoint or stop
        callbacks=[c for c in build_callbacks(cfg, progress) if isinstance(c, ProgressBar)],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=str(output_dir),
        enable_progress_bar=sys.stdout.isatty() if progress is None else progress,
    )
    with no_nan_fill():
        val = first(trainer.validate(model, datamodule=datamodule, verbose=False))
        test = first(trainer.test(model, datamodule=datamodule, verbose=False))
    warn_if_unevaluated(val, test)

    rows = [member_row(k, m, r.metrics) for k, (m, r) in enumerate(zip(members, runs, strict=True))]
    metrics = {
        **{k: float(v) for k, v in sorted({**val, **test}.items())},
        "val_windows": len(datamodule.datasets["val"]),
        "test_windows": len(datamodule.datasets["test"]),
        "epochs": sum(r.metrics["epochs"] for r in runs),
        "fit_seconds": round(sum(r.metrics["fit_seconds"] for r in runs), 3),
        "wall_seconds": round(time.perf_counter() - start, 3),
        "ensemble_size": len(members),
        "ensemble_combine": cfg.ensemble.combine,
        **{
            f"member_{key}_mean": float(np.mean([row[key] for row in rows]))
            for key in ("val_mse", "test_mse")
            if all(key in row for row in rows)
        },
        "members": rows,
        "versions": versions(),
    }
    record = {
        "combine": cfg.ensemble.combine,
        "members": [
            {**{k: row[k] for k in ("run", "seed", "lookback", "loss")}, "naive_blend": blend}
            for row, blend in zip(rows, (naive_blend_of(r.model) for r in runs), strict=True)
        ],
    }
    name = f"{cfg.ensemble.combine} of {len(members)} {cfg.model.cell} ({cfg.model.impl})"
    write = trainer.is_global_zero
    finish_run(cfg, output_dir, metrics, model, datamodule, write=write, name=name, ensemble=record)
    return objective_of(metrics)


MEMBER_METRICS = ("val_mse", "val_mae", "test_mse", "test_mae", "test_skill", "naive_weight")


def member_row(k: int, member: Member, metrics: dict) -> dict:
    """What metrics.json's `members` says of member `k`: its settings, folder and scores."""
    return {
        "run": f"members/{k}",
        **dataclasses.asdict(member),
        **{key: metrics[key] for key in MEMBER_METRICS if key in metrics},
        "epochs": metrics["epochs"],
        "fit_seconds": metrics["fit_seconds"],
    }


def refuse_different_data(members: list[Member], specs: list[DataSpec], ours: DataSpec) -> None:
    """The members must have seen the same series, scaled alike, with the same covariates: the
    ensemble's export holds one scaler. Only data.short=skip can make them differ (it leaves out
    the series too short for a look-back)."""
    for member, spec in zip(members, specs, strict=True):
        same = (
            spec.channels == ours.channels
            and spec.series_ids == ours.series_ids
            and spec.covariates == ours.covariates
            and np.array_equal(spec.scaler_mean, ours.scaler_mean)
            and np.array_equal(spec.scaler_scale, ours.scaler_scale)
        )
        if not same:
            raise ConfigError(
                f"ensemble.lookbacks: the member of look-back {member.lookback} was trained on "
                f"other series than the one of look-back {ours.lookback} (data.short=skip leaves "
                f"out series too short for a look-back); give look-backs that every series is "
                f"long enough for"
            )
