"""train(cfg): build everything the config names, fit, test on the best checkpoint, write results.

The only module below the entry scripts that sees Hydra config objects, and the one place that
calls `hydra.utils.instantiate`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def train(cfg: DictConfig) -> float:
    """Fit and evaluate the configured model; return the best validation MSE (the objective)."""
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    model = instantiate(cfg.model, n_channels=datamodule.n_channels)
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values()]
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=instantiate(cfg.logger),
        default_root_dir=str(output_dir),
    )

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    fit_seconds = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    ckpt = best or None
    val = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
    test = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]

    metrics = {
        **{k: float(v) for k, v in {**val, **test}.items()},
        "val_windows": len(datamodule.datasets["val"]),
        "test_windows": len(datamodule.datasets["test"]),
        "epochs": trainer.current_epoch,
        "fit_seconds": round(fit_seconds, 3),
        "wall_seconds": round(time.perf_counter() - start, 3),
        "best_checkpoint": os.path.relpath(best, output_dir) if best else None,
    }
    write_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    objective = metrics["val_mse"]
    return objective if math.isfinite(objective) else float("inf")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so no half-written file is ever seen."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
