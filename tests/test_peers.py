"""benchmarks/peers.py runs in its quick mode, so it cannot rot.

Run with the project's own environment, where the peers (the `bench` extra) are not installed:
they must show as "not installed" rows, not as errors.
"""

import importlib.util
import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.bench]

# --quick runs one of ours per code path: torch's modules, our cell loop, mixed precision
OURS = ["forecast lstm (torch)", "forecast lstmp (custom)", "forecast lstm (torch, bf16-mixed)"]
PEERS = {  # row -> the module it needs
    "neuralforecast LSTM": "neuralforecast",
    "darts BlockRNN LSTM": "darts",
    "darts BlockRNN LSTM bf16-mixed": "darts",
    "pytorch-forecasting RecurrentNetwork": "pytorch_forecasting",
}


def test_quick_comparison_has_a_row_per_method(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/peers.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,  # a safety net only: minutes, even on a busy machine
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        cells[0].split(" [")[0]: cells[1:]
        for line in result.stdout.splitlines()
        if line.startswith("| ") and "---" not in line and "test MSE" not in line
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert "forecast gru (torch)" not in rows  # the other variants of ours are left to full runs
    for method in [*OURS, "dlinear", "naive", "seasonal naive"]:
        mse, mae, *_, rss = rows[method]
        assert math.isfinite(float(mse)) and float(mse) > 0, (method, rows[method])
        assert float(mae) > 0 and float(rss.replace(",", "")) > 0
    for method in [*OURS, "dlinear"]:
        fit, training = (float(rows[method][i]) for i in (2, 3))
        assert 0 < training <= fit, (method, rows[method])  # validation is taken out
        reached = rows[method][5]  # training seconds to DLinear's best validation MSE
        assert reached.startswith("not in 1 ep.") or 0 < float(reached) <= training, reached
    # DLinear reaches its own best: in its one epoch here, so after all its training seconds
    assert float(rows["dlinear"][5]) == float(rows["dlinear"][3])
    assert "DLinear's best validation MSE: " in result.stdout
    for method, module in PEERS.items():
        assert method in rows
        if importlib.util.find_spec(module) is None:  # the project's environment
            assert rows[method][0] == "not installed"
    # the naive forecast of the protocol's test windows is a published number (LTSF-Linear, Repeat)
    assert float(rows["naive"][0]) == pytest.approx(1.295, abs=1e-3)
