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
    rows = table(out, "model")
    assert [row[0] for row in rows] == ["lstm", "lstmp", "gru"]
    heading = next(line for line in out.splitlines() if line.startswith("| model |"))
    columns = [cell.strip() for cell in heading.strip("|").split("|")]
    for row in rows:  # the skill columns are the run's (one seed here)
        metrics = json.loads((tmp_path / f"{row[0]}-h96-s1" / "metrics.json").read_text())
        for key in ("val_skill", "test_skill"):
            cell = row[columns.index(key.replace("_", " "))]
            assert float(cell) == pytest.approx(metrics[key], abs=0.0005)
        # the papers' windows (the first 2560 of 2785 origins) score differently from all of
        # them; that all of them give the run's own test MSE is checked by the script itself
        cell = row[next(i for i, c in enumerate(columns) if "papers' windows" in c)]
        papers = float(cell.split(" ± ")[0])
        assert 0 < papers < 10 and abs(papers - metrics["test_mse"]) > 1e-4


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
    # the run's skill and naive blend beside its scores
    gru = next(row for row in table(out, "method") if row[0] == "forecast gru")
    metrics = json.loads((tmp_path / "gru" / "metrics.json").read_text())
    assert float(gru[4]) == pytest.approx(metrics["val_skill"], abs=0.0005)
    assert float(gru[5]) == pytest.approx(metrics["test_skill"], abs=0.0005)
    assert gru[6].startswith(f"{metrics['naive_weight']:.3f} (")
    # --combine scores earlier runs without training: a run alone as above, and the median of
    # a run with itself is that run
    combined = subprocess.run(
        [sys.executable, "benchmarks/m4_hourly.py", "--combine", str(tmp_path), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert combined.returncode == 0, combined.stderr[-3000:]
    rows = table(combined.stdout, "model")
    assert [row[1] for row in rows] == [tmp_path.name, tmp_path.name, "median of 2", "mean of 2"]
    assert all(row[2:] == gru[1:4] for row in rows)


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
    # the counted products alone, at their shapes: faster than the step, a higher MFU
    assert 0 < number(row[8]) < number(row[3]) and number(row[9]) > number(row[5])
    parts = {row[0]: number(row[1]) for row in table(out, "part")}
    assert parts["matrix products [a]"] > 0 and parts["every other operator"] > 0


def test_rnn_trees_times_each_cell_of_this_tree_against_torch():
    rows = table(run("rnn_trees.py"), "tree")
    assert [(row[0], row[3]) for row in rows] == [("this", c) for c in ("lstm", "lstmp", "gru")]
    for row in rows:  # each ratio is its row's ours / torch's
        fwd_ours, fwd_torch, fwd_ratio, fb_ours, fb_torch, fb_ratio = map(number, row[4:])
        assert min(fwd_ours, fwd_torch, fb_ours, fb_torch) > 0
        # the times are printed to 0.01 ms, the ratios from the unrounded times
        assert fwd_ratio == pytest.approx(fwd_ours / fwd_torch, rel=0.05, abs=0.01)
        assert fb_ratio == pytest.approx(fb_ours / fb_torch, rel=0.05, abs=0.01)
