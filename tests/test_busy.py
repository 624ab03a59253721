"""benchmarks/busy.py runs (quick mode), and its busy process never outlives it."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.bench
def test_quick_run_prints_idle_and_busy_times_per_setting(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/busy.py", "--quick", "--settings", "default", "threads=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,  # a safety net only
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in result.stdout.splitlines()
        if line.startswith("| ") and "---" not in line and "setting" not in line
    ]
    assert [row[0] for row in rows] == ["default", "threads=1"]
    for _, idle, busy, ratio, _, mse in rows:
        assert float(idle) > 0 and float(busy) > 0
        assert float(ratio) == pytest.approx(float(busy) / float(idle), rel=0.02)
        assert float(mse) > 0  # one value: idle or busy, a run gives the same result
    assert rows[0][4] == rows[0][3]  # the first setting is its own reference


def state(pid: int) -> str | None:
    """The process's state letter (Z: ended, not yet reaped), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_busy_process_ends_when_the_benchmark_is_killed():
    start = (
        "import sys, time; sys.path.insert(0, 'benchmarks'); import busy; "
        "print(busy.spinner().pid, flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", start], cwd=ROOT, stdout=subprocess.PIPE)
    spinner = int(parent.stdout.readline())
    assert state(spinner) in ("R", "S")
    parent.kill()  # kill -9: no cleanup code runs
    parent.wait()
    deadline = time.monotonic() + 60
    while state(spinner) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state(spinner) in (None, "Z")
