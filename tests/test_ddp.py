"""Data-parallel training (trainer=ddp) on CPU with two processes (gloo): it trains, and its
metrics, gathered across processes, are the one-process metrics.

Tolerance: Lightning's DistributedSampler pads the validation and test sets so that every process
gets the same number of windows, repeating the first (world size - 1) windows at most. On ETTh1
(2785 windows, two processes) one window counts twice: the metrics then differ from one process by
about 1e-4 relative (tested at 1e-3). Where the windows split evenly, nothing is repeated and they
agree to float rounding (tested at 1e-6).
"""

import json
import math

import pytest

from tests import conftest

pytestmark = pytest.mark.slow

TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "model.hidden_size=8",
    "data.batch_size=16",
    "callbacks.early_stopping=null",
]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
METRICS = ("mse", "mae", "rmse", "smape", "mase")


def assert_same(first: dict, second: dict, splits: tuple[str, ...], rel: float) -> None:
    for split in splits:
        for name in METRICS:
            key = f"{split}_{name}"
            assert first[key] == pytest.approx(second[key], rel=rel), key


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    # validation on the first 256 windows either way (2 batches of 64 per process, or 4 batches
    # in one process): an even split, nothing repeated; test on all 2785 windows: one repeated
    val_256 = "data.eval_batch_size=64"
    ddp = [*TINY, *DDP, val_256, "trainer.limit_val_batches=2"]
    # a new interpreter: Lightning starts the second process by running this command again
    result = conftest.run_script("train.py", f"hydra.run.dir={tmp_path / 'ddp'}", *ddp, fresh=True)
    summaries = [line for line in result.stdout.splitlines() if line.startswith("done: test MSE")]
    assert len(summaries) == 1, result.stdout  # one summary, from rank 0
    trained = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert all(math.isfinite(trained[f"test_{name}"]) for name in METRICS)
    assert trained["test_windows"] == 2785
    last = tmp_path / "ddp" / "checkpoints" / "last.ckpt"
    assert last.is_file() and (tmp_path / "ddp" / "export" / "meta.json").is_file()

    # the same weights evaluated by one process, every window once
    one = conftest.train_here(  # in this process: its imports are most of a small run
        tmp_path / "one",
        *TINY,
        f"ckpt_path={last}",
        val_256,
        "trainer.limit_val_batches=4",
        "export_formats=[]",
    )
    assert_same(trained, one, ("val",), rel=1e-6)
    assert_same(trained, one, ("test",), rel=1e-3)
