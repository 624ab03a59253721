"""Lightning callbacks of our own (everything else comes from Lightning)."""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch


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
