"""Lightning callbacks of our own (everything else comes from Lightning)."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar

log = logging.getLogger(__name__)


class RNGStateCheckpoint(pl.Callback):
    """Keeps the random generators' states in checkpoints, so a resumed run draws the same
    shuffles and dropout masks as one that never stopped.

    Only tensors and plain Python values are stored, so checkpoints load with `weights_only`.
    """

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy": [
                kind,
                torch.from_numpy(keys.astype(np.int64)),
                pos,
                has_gauss,
                cached_gaussian,
            ],
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, pos, has_gauss, cached_gaussian = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
        random.setstate(state_dict["python"])


def progress_bar() -> ProgressBar:
    """The configured progress bar (conf/callbacks/default.yaml): Lightning's rich bar, or
    without the `rich` extra its plain (TQDM) bar, which says once what to install."""
    from forecast.extras import available

    if available("rich"):
        return RichProgressBar()
    return PlainProgressBar()


class PlainProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar in place of the rich one: one line says which extra gives that."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from forecast.extras import install_hint

        super().on_fit_start(trainer, pl_module)
        if trainer.is_global_zero:
            log.info(
                "rich is not installed, so the progress bar is plain: %s", install_hint("rich")
            )
