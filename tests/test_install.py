"""`pip install` of the wheel, outside the checkout (issue 17): the wheel is built from the
package's sources, installed into a fresh virtual environment (torch first, as the Makefile
does, so that pip does not pull another build), and the commands and the Python API run from
an empty folder with only what the wheel ships: no extras, no checkout, no ../shared.

Slow (a few minutes: the build, the installs, three tiny trainings); the timeouts are safety nets.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

import forecast
from forecast.data.fetch import BUILTIN_DIR
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

# the installed torch build (the Makefile's TORCH), so the fresh environment gets the same one
TORCH = f"torch=={torch.__version__}"
EXTRAS = ("matplotlib", "rich", "onnx", "onnxruntime", "optuna", "psycopg2", "tensorboard")
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "data.horizon=24",
]
# without pip's byte-compiling of every module it installs (half of the installs' time, 55 of
# 98 s on a 2-core machine): each command compiles what it imports, as Python does by itself
PIP_INSTALL = ("--quiet", "--no-compile")
# a config of the user's own, added with --config-dir: the shipped LSTM, smaller
MY_MODEL = "defaults:\n  - lstm\n  - _self_\n\nhidden_size: 8\n"


def run(args, *, env, cwd, timeout=900, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


class Installed:
    """The fresh environment: its folder, bin/, the wheel, and a clean environment for commands."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "venv" / "bin"
        self.cache = root / "cache"  # XDG_CACHE_HOME: the user's cache folder, by platformdirs
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FORECAST_", "PYTHON", "VIRTUAL_ENV", "HYDRA_"))
        }
        self.env.update(
            PATH=os.pathsep.join([str(self.bin), self.env.get("PATH", "")]),
            XDG_CACHE_HOME=str(self.cache),
            # where torch compiles our C++ kernels (forecast/nn): kept out of the user's cache
            TORCH_EXTENSIONS_DIR=str(self.cache / "torch_extensions"),
        )
        self.wheel: Path | None = None

    def python(self, *args, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
        return run([self.bin / "python", *args], env=self.env, cwd=cwd or self.root, **kwargs)

    def site_packages(self) -> Path:
        out = self.python("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        return Path(out.stdout.strip())


def package_files(folder: Path) -> set[str]:
    """The files under `folder`, bytecode aside."""
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    assert ROOT not in root.parents  # outside the checkout
    env = Installed(root)
    # the sources a wheel is built from, copied, so the build leaves nothing in the checkout
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "forecast", source / "forecast", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = root / "dist"
    # sdist, then the wheel from the sdist: both must carry the configs and data
    run([sys.executable, "-m", "build", "--outdir", dist, source], env=env.env, cwd=root)
    (env.wheel,) = dist.glob("forecast-*.whl")
    run([sys.executable, "-m", "venv", root / "venv"], env=env.env, cwd=root)
    env.python("-m", "pip", "install", *PIP_INSTALL, TORCH)
    env.python("-m", "pip", "install", *PIP_INSTALL, env.wheel)
    return env


def test_the_wheel_carries_configs_help_data_and_kernel_sources(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for name in (
        "forecast/conf/config.yaml",
        "forecast/conf/predict.yaml",
        "forecast/conf/sweep.yaml",
        "forecast/conf/model/gru.yaml",
        "forecast/conf/hydra/help/train.yaml",
        "forecast/data/builtin/ETTh1.csv.gz",
        "forecast/data/builtin/README.md",  # the data set's source and licence
        "forecast/nn/fast/csrc/rnn.cpp",
    ):
        assert name in names, name
    shipped = {n for n in names if n.startswith("forecast/conf/") and n.endswith(".yaml")}
    in_checkout = {f"forecast/conf/{p}" for p in package_files(ROOT / "forecast" / "conf")}
    assert shipped == {n for n in in_checkout if n.endswith(".yaml")}
    assert not any(n.startswith(("tests/", "benchmarks/", "conf/", "data/")) for n in names)
    wheel_version = installed.wheel.name.split("-")[1]
    assert wheel_version == forecast.__version__  # one place: forecast.__version__


def test_no_extra_is_installed_by_default(installed):
    code = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    assert installed.python("-c", code, *EXTRAS).stdout.strip() == "[]"


@pytest.fixture(scope="module")
def etth1(installed) -> Path:
    """ETTh1 as a CSV file of the user's, outside the checkout."""
    path = installed.root / "input" / "etth1.csv"
    path.parent.mkdir()
    with gzip.open(BUILTIN_DIR / "ETTh1.csv.gz", "rb") as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    return path


def test_train_then_predict_from_an_empty_folder(installed, etth1):
    my_conf = installed.root / "my_conf" / "model"
    my_conf.mkdir(parents=True)
    (my_conf / "tiny.yaml").write_text(MY_MODEL)
    work = installed.root / "work"
    work.mkdir()
    package = installed.site_packages() / "forecast"
    before = package_files(package)

    trained = run(
        [
            "forecast-train",
            "--config-dir",
            my_conf.parent,
            "model=tiny",
            *TINY,
            "hydra.run.dir=run",
        ],
        env=installed.env,
        cwd=work,
    )
    lines = trained.stdout.strip().splitlines()
    assert lines[-2] == "run folder: run (metrics.json, checkpoints/, export/)"  # no plots extra
    assert lines[-1].startswith("next: forecast-predict model_dir=run input=")
    skipped = "forecast.png skipped: it needs matplotlib, which is not installed: "
    assert skipped + 'pip install "forecast[plots]"' in trained.stdout + trained.stderr
    run_dir = work / "run"
    config = (run_dir / "config.yaml").read_text()
    assert "hidden_size: 8" in config and "name: ETTh1.csv" in config  # the user's model, our data
    metrics = json.loads((run_dir / "metrics.json").read_text())
    meta = json.loads((run_dir / "export" / "meta.json").read_text())
    for record in (metrics["versions"], meta["versions"]):
        assert record["forecast"] == forecast.__version__
        assert record["torch"] == torch.__version__
        assert record["python"] == "{}.{}.{}".format(*sys.version_info[:3])
        assert set(record) == {"python", "torch", "pytorch_lightning", "forecast", "platform"}

    predicted = run(
        ["forecast-predict", "model_dir=run", f"input={etth1}", "output=out"],
        env=installed.env,
        cwd=work,
    )
    forecasts = pd.read_csv(work / "out" / "etth1.forecast.csv")
    assert len(forecasts) > 0 and forecasts.notna().all().all(), predicted.stdout[-2000:]
    # all of it in the working folder: the run, the forecasts, and predict's log
    assert sorted(p.name for p in work.iterdir()) == ["out", "outputs", "run"]
    assert [p.name for p in (work / "outputs").iterdir()] == ["predict"]
    # the built-in ETTh1 was read in place and the kernels built in the cache: the installed
    # package is as pip left it
    assert package_files(package) == before


def test_the_python_api_from_an_empty_folder(installed, etth1):
    work = installed.root / "api"
    work.mkdir()
    script = textwrap.dedent(
        f"""
        import json, sys
        import pandas as pd
        import forecast

        df = pd.read_csv({str(etth1)!r}, parse_dates=["date"]).iloc[:3000]
        run = forecast.fit(
            df, model="gru", lookback=48, horizon=12, max_epochs=1, output_dir="fitted",
            hidden_size=8, progress=False,
            overrides=["trainer.limit_train_batches=2", "trainer.limit_val_batches=2"],
        )
        future = run.predict(df)
        again = forecast.load("fitted").predict(df)
        pd.testing.assert_frame_equal(future, again)
        print(json.dumps({{"rows": len(future), "columns": list(future.columns),
                          "test_mse": run.metrics.get("test_mse")}}))
        """
    )
    out = installed.python("-c", script, cwd=work)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == 12 * 7 and result["test_mse"] is not None  # 12 steps, 7 series
    assert "y_hat" in result["columns"]
    assert sorted(p.name for p in work.iterdir()) == ["fitted"]


def test_sweep_says_which_extra_then_runs_once_it_is_installed(installed):
    work = installed.root / "sweep"
    work.mkdir()
    space = "+sweep.space={model.hidden_size: {type: int, low: 4, high: 8}}"
    args = ["forecast-sweep", "sweep.n_trials=1", "~sweep.space", space, *TINY, "hydra.run.dir=s"]
    refused = run(args, env=installed.env, cwd=work, check=False)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "forecast-sweep: this command needs optuna, which is not installed: "
        'pip install "forecast[sweep]"'
    ]
    installed.python("-m", "pip", "install", *PIP_INSTALL, f"{installed.wheel}[sweep]", cwd=work)
    swept = run(args, env=installed.env, cwd=work)
    assert "train the best again: forecast-train --config-dir s --config-name best" in swept.stdout
    assert (work / "s" / "best.yaml").is_file() and (work / "s" / "trials" / "0").is_dir()
