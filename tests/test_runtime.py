import os
import subprocess
import sys

import pytest
import torch

from forecast.cli import ConfigError
from forecast.runtime import MALLOC_SETTINGS, OPENMP_USER_KEYS, OPT_OUT, apply_threads

SHOW = (
    "from forecast.runtime import tune_malloc; tune_malloc(); "
    "import os; print(os.environ.get('MALLOC_TRIM_THRESHOLD_'))"
)


def run(env: dict) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != OPT_OUT}
    out = subprocess.run(
        [sys.executable, "-c", SHOW], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_process_restarts_with_the_allocator_settings():
    assert run({}) == MALLOC_SETTINGS["MALLOC_TRIM_THRESHOLD_"]


def test_a_users_own_setting_and_the_opt_out_are_respected():
    assert run({"MALLOC_TRIM_THRESHOLD_": "123"}) == "123"
    assert run({OPT_OUT: "1"}) == "None"


IMPORT_ALL = """
import importlib, pkgutil, random
import numpy as np, torch
import forecast
# third-party imports may draw (pytorch_lightning draws from `random`): only ours are checked
for name in ("pytorch_lightning", "hydra", "pandas", "sklearn", "matplotlib", "optuna", "onnx",
             "onnxruntime", "torchmetrics", "rich", "tensorboard"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
torch.manual_seed(7); np.random.seed(7); random.seed(7)
before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
names = [m.name for m in pkgutil.walk_packages(forecast.__path__, "forecast.")]
for name in names:
    importlib.import_module(name)
after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())
print(len(names), torch.equal(before[0], after[0]), (before[1] == after[1]).all(),
      before[2] == after[2])
"""


def test_importing_forecast_leaves_the_global_random_generators_alone():
    # pipeline.train seeds, then instantiates the model, which imports forecast.nn: an import
    # that draws from the global generator makes a process's first run differ from its later
    # ones (a sweep's best trial would not train again to its own result)
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    n_modules, *unchanged = out.stdout.split()
    assert int(n_modules) > 20
    assert unchanged == ["True", "True", "True"]


def test_openmp_threads_sleep_when_idle_unless_the_user_chose():
    show = (
        "from forecast.runtime import prepare_process; prepare_process(); import os; "
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in OPENMP_USER_KEYS}

    def policy(**env) -> str:
        out = subprocess.run(
            [sys.executable, "-c", show], env={**clean, **env}, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert policy() == "PASSIVE"
    assert policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert policy(GOMP_SPINCOUNT="300000") == "None"  # libgomp's own spin count, kept


@pytest.mark.parametrize("command", ["train", "predict", "sweep"])
def test_the_commands_import_nothing_heavy_before_prepare_process(command):
    """torch reads OpenMP's wait policy once, when it is imported, and prepare_process may
    restart the process: an entry module that imported torch (or Lightning, pandas) first
    would import it twice per run and, with the restart turned off, ignore the policy."""
    check = (
        f"import sys, forecast.commands.{command}; "
        "print(sorted({'torch', 'pandas', 'pytorch_lightning', 'sklearn'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_threads_are_torch_s_own_or_a_positive_count():
    before = torch.get_num_threads()
    try:
        assert apply_threads("auto") == before
        assert apply_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    for bad in (0, -1, "many", True, 1.5):
        with pytest.raises(ConfigError, match="give auto or a positive number of threads"):
            apply_threads(bad)
