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
        ("1", "torchscript"),
        ("1", "onnx"),
        ("10", "torchscript"),
        ("10", "onnx"),
    ]
    assert all(float(r[3].replace(",", "")) > 0 for r in rows)


def test_etth1_benchmark_prints_a_row_per_model(tmp_path):
    out = run("etth1.py", "--out", str(tmp_path))
    rows = [line for line in out.splitlines() if line.startswith("| ") and "| 96 |" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["lstm", "lstmp", "gru"]
