import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: each worker, and every entry script it
    # starts, computes on one thread, so that the workers share the cores instead of fighting
    # for them (threads=auto follows OMP_NUM_THREADS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def shared_data_dir() -> Path | None:
    """The reference data sets (../shared/data beside the checkout, or $FORECAST_DATA_DIR)."""
    listed = os.environ.get("FORECAST_DATA_DIR", "").split(os.pathsep)
    for candidate in [*listed, ROOT.parent / "shared" / "data"]:
        if candidate and (Path(candidate) / "M4-Hourly-train.csv").is_file():
            return Path(candidate)
    return None


# looked up once, when the tests are collected: a test that changes FORECAST_DATA_DIR (the fetch
# tests drop it to exercise the download) must not hide the reference data from the others
SHARED_DATA = shared_data_dir()


def require_shared_data() -> Path:
    """The reference data folder (with the M4 files); without it a test fails in CI and skips
    elsewhere, saying why. Tests that need only ETTh1 take `etth1_csv`, which ships."""
    found = SHARED_DATA
    if found is None:
        message = "the reference data sets (../shared/data) are not beside this checkout"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + "; set FORECAST_DATA_DIR to their folder to run this test")
    return found


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture(scope="session")
def etth1_csv(tmp_path_factory) -> Path:
    """ETTh1 as a plain CSV file, from the copy that ships with the package."""
    from forecast.data.fetch import BUILTIN_DIR

    path = tmp_path_factory.mktemp("etth1") / "ETTh1.csv"
    with gzip.open(BUILTIN_DIR / "ETTh1.csv.gz", "rb") as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    return path


def run_script(*args: str, keep_data_dir: bool = False, timeout: float = 600):
    """Run one of the entry scripts (train.py, predict.py, sweep.py) from the project root.

    Without `keep_data_dir`, FORECAST_DATA_DIR is dropped so the run uses the shipped ETTh1.
    Fails the test, showing the end of stderr, when the script fails.
    """
    env = dict(os.environ)
    if not keep_data_dir:
        env.pop("FORECAST_DATA_DIR", None)
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def run_train(run_dir: Path, *overrides: str) -> dict:
    """train.py into `run_dir`; returns its metrics.json."""
    run_script("train.py", f"hydra.run.dir={run_dir}", *overrides)
    return json.loads((run_dir / "metrics.json").read_text())


def train_here(run_dir: Path, *overrides: str) -> dict:
    """What `run_train` does, in this process: train.py's config composed from the same files
    with `overrides`, trained by `forecast.pipeline.train` into `run_dir`; returns metrics.json.

    For tests of what a run computes and writes: they skip a new interpreter's imports (torch
    and Lightning, most of a small run's 15-20 s). What only the command adds (its one-line
    errors, Hydra's run folder, the summary it prints) is tested through `run_train`. As there,
    the run reads the shipped ETTh1, not $FORECAST_DATA_DIR's; torch's deterministic mode, which
    a run turns on for its process, is restored afterwards.
    """
    import torch

    from forecast.config import compose_train_config
    from forecast.pipeline import train

    cfg = compose_train_config([*overrides, f"output_dir={run_dir}"])
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    data_dir = os.environ.pop("FORECAST_DATA_DIR", None)
    try:
        train(cfg, progress=False)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        if data_dir is not None:
            os.environ["FORECAST_DATA_DIR"] = data_dir
    return json.loads((Path(run_dir) / "metrics.json").read_text())
