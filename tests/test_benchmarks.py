"""The benchmark scripts run (in their quick modes), so they cannot rot."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_predict_speed_prints_both_engines_for_each_size():
    rows = [line.split() for line in run("predict_speed.py").splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [
        ("1", "pt2"),
        ("1", "onnx"),
        ("10", "pt2"),
        ("10", "onnx"),
    ]
    assert all(float(r[3].replace(",", "")) > 0 for r in rows)


def test_etth1_benchmark_prints_a_row_per_model(tmp_path):
    out = run("etth1.py", "--out", str(tmp_path))
    rows = [line for line in out.splitlines() if line.startswith("| ") and "| 96 |" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["lstm", "lstmp", "gru"]


def test_m4_benchmark_scores_naive2_as_published_and_a_model(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("FORECAST_DATA_DIR", str(shared_data))
    out = run("m4_hourly.py", "--models", "gru", "--out", str(tmp_path))
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:5]
        for line in out.splitlines()
        if line.startswith("| ") and "---" not in line and "method" not in line
    }
    assert [v.strip() for v in rows["Naive2 (ours)"]] == ["18.383", "2.395", "1.000"]
    assert float(rows["forecast gru"][0]) > 0
