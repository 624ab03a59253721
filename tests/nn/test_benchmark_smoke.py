"""The speed benchmark runs end to end (tiny sizes) and prints a row per cell."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "rnn_speed.py"


def test_quick_benchmark_prints_a_row_per_cell():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["lstm", "lstmp", "gru"]
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")[2:]]
        # the TorchScript columns say "same" for the GRU, which has no C++ loop
        scripted = [cells.pop(8), cells.pop(3)]
        assert (scripted == ["same", "same"]) == row.startswith("| gru "), row
        figures = [float(cell) for cell in cells + [c for c in scripted if c != "same"]]
        assert len(figures) in (9, 11) and all(f > 0 for f in figures)
