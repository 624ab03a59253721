import os
import subprocess
import sys

from forecast.runtime import MALLOC_SETTINGS, OPT_OUT

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
