"""The speed benchmark runs end to end (tiny sizes) and prints its rows."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rnn_speed.py"


def run(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("| ")]


def test_quick_benchmark_prints_a_row_per_cell():
    rows = run()
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["lstm", "lstmp", "gru"]
    for row in rows[1:]:
        figures = [float(cell) for cell in row.strip("|").split("|")[2:]]
        assert len(figures) == 10 and all(f > 0 for f in figures)


def test_quick_decoder_benchmark_prints_both_steps():
    rows = run("--decoder")
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["torch ops", "fast path"]
    assert float(rows[1].split("|")[3]) == 1.0  # the default is the unit
    assert all(float(row.split("|")[2]) > 0 for row in rows[1:])
