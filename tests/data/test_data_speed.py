import subprocess
import sys

from tests.conftest import ROOT


def test_data_speed_benchmark_runs_and_prints_its_table():
    result = subprocess.run(
        [sys.executable, "benchmarks/data_speed.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header, *rows = result.stdout.strip().splitlines()
    assert "win/s b=32" in header and "peak" in header
    assert [row.split()[0] for row in rows] == ["etth1", "long"]
    for row in rows:
        *_, per_s_32, per_s_256, imported, peak = row.replace(",", "").split()
        assert float(per_s_32) > 0 and float(per_s_256) > 0
        assert float(peak) >= float(imported) > 0
