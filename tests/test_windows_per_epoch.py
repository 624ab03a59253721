"""train.py with data.windows_per_epoch: a seeded subset of training windows each epoch, complete
validation and test, and a resumed run that ends where an uninterrupted one does."""

import math

import pytest
import torch

from tests import conftest

pytestmark = pytest.mark.slow

SMALL = [
    "model.hidden_size=16",
    "model.head_dropout=0.3",
    "callbacks.early_stopping=null",
    "export_formats=[]",  # no test here looks at the export
]
WINDOWS, BATCH = 40, 16  # of ETTh1's 8449 training windows


def run_train(run_dir, *overrides: str) -> dict:
    subset = [f"data.windows_per_epoch={WINDOWS}", f"data.batch_size={BATCH}"]
    return conftest.train_here(run_dir, *SMALL, *subset, *overrides)


def test_an_epoch_is_that_many_windows_and_a_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    whole = run_train(tmp_path / "whole", "trainer.max_epochs=3")
    run_train(tmp_path / "part", "trainer.max_epochs=1")
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    resumed = run_train(tmp_path / "resumed", "trainer.max_epochs=3", f"ckpt_path={last}")
    steps = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    assert steps["global_step"] == 3 * math.ceil(WINDOWS / BATCH)  # 3 epochs of 40 windows
    assert whole["val_windows"] == whole["test_windows"] == 2785  # complete, as without it
    assert resumed["epochs"] == whole["epochs"] == 3
    for key in ("val_mse", "test_mse", "test_mae"):
        assert resumed[key] == whole[key], key
