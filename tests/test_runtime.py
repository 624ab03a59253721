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
