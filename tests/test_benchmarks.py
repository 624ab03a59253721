"""The benchmark scripts run (in their quick modes), so they cannot rot."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.bench]


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


def table(out: str, first: str) -> list[list[str]]:
    """The rows of the markdown table whose heading starts with `first`."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


def test_scale_measures_each_size_and_how_it_grows(tmp_path):
    out = run("scale.py", "--json", str(tmp_path / "scale.json"))
    rows = table(out, "series")
    assert [row[0] for row in rows] == ["30", "90"]
    assert all(number(cell) > 0 for row in rows for cell in row)
    growth = {row[0]: row[1:] for row in table(out, "figure")}
    assert len(growth) == 8 and all(len(cells) == 1 for cells in growth.values())
    # each training epoch saw windows_per_epoch windows, validation and forecasts every series
    results = json.loads((tmp_path / "scale.json").read_text())
    for result in results["results"]:
        epochs = result["train"]["epochs"]
        assert [e["windows"] for e in epochs] == [results["settings"]["windows_per_epoch"]] * 2
        assert result["train"]["val_windows"] == result["series"]
        assert result["predict_py"]["series"] == result["api"]["series"] == result["series"]


def test_mfu_reports_the_counted_step_against_the_measured_peak():
    out = run("mfu.py", "--profile")
    assert "matmul peak 32-true" in out
    (row,) = table(out, "backbone")
    assert row[:3] == ["lstm", "32-true", "3.19"]  # G multiply-adds of the default step
    assert 0 < number(row[5]) and 0 < number(row[7])  # MFU of the model's and train.py's step
    parts = {row[0]: number(row[1]) for row in table(out, "part")}
    assert parts["matrix products [a]"] > 0 and parts["every other operator"] > 0
