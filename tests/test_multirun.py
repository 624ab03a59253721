"""Hydra multirun grids: train.py -m runs every combination and writes a summary table."""

import csv
import json

import pytest

from tests.conftest import PT2_ONLY, run_script

pytestmark = pytest.mark.slow


def test_multirun_over_the_three_models_writes_one_summary_row_each(tmp_path):
    sweep_dir = tmp_path / "grid"
    result = run_script(
        "train.py",
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        "model=lstm,lstmp,gru",
        "model.num_layers=1",  # default sizes: lstmp's projection must fit its hidden size
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "data.batch_size=16",
        "data.eval_batch_size=16",
        PT2_ONLY,
    )
    with open(sweep_dir / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["model"], r["status"]) for r in rows] == [
        ("0", "lstm", "ok"),
        ("1", "lstmp", "ok"),
        ("2", "gru", "ok"),
    ]
    for row in rows:
        metrics = json.loads((sweep_dir / row["job"] / "metrics.json").read_text())
        assert float(row["test_mse"]) == pytest.approx(metrics["test_mse"], rel=1e-5)
        assert row["data.batch_size"] == "16"
        assert "model=" + row["model"] in row["overrides"]
    markdown = (sweep_dir / "summary.md").read_text().splitlines()
    # the markdown table shows the swept keys and the main metrics
    assert markdown[0].startswith("| job | status | model | val_mse |")
    assert len(markdown) == 2 + 3
    # the multirun ends by saying where the summary went, not with one summary per job
    last = result.stdout.splitlines()[-1]
    assert last.startswith("done: 3 runs; one row each in ") and f"{sweep_dir}/summary.md" in last
    assert "next: python predict.py" not in result.stdout
