"""Training beside a busy process: train.py's fit time idle and beside one spinning process.

    python benchmarks/busy.py                  # the defaults, the spinning wait of before, 1 thread
    python benchmarks/busy.py --repeats 5 --epochs 2
    python benchmarks/busy.py --settings default threads=1 OMP_WAIT_POLICY=ACTIVE
    python benchmarks/busy.py --quick          # 2 batches, one repeat (smoke test)

Each setting trains train.py in a subprocess (ETTh1, the default LSTM, `--epochs` epochs,
validation included) alternately on the machine as it is ("idle") and beside one process this
script starts that spins on one core ("busy"), `--repeats` times each, interleaved, and prints
the median `fit_seconds` (metrics.json) of both, their ratio, and the busy time over the first
setting's idle time (what issue 24 asks of the defaults: at most about 2 on a 2-core machine).

A setting is words: `NAME=value` in capitals is an environment variable of the run, anything else
a train.py override; `default` is train.py as shipped. `GOMP_SPINCOUNT=300000` is the default
before issue 24: libgomp's own spinning wait (its documented default spin count), which
forecast.runtime leaves alone when it is set. The spinner exits when this script does, even on
kill -9 (it watches its parent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `forecast` from this checkout when run as a script
SPIN = (
    "import os, sys\n"
    "parent = int(sys.argv[1])\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(100_000):\n"
    "        pass\n"
)


# the defaults before issue 24: OpenMP threads that spin while they wait
BEFORE = "GOMP_SPINCOUNT=300000"


def split_setting(setting: str) -> tuple[dict[str, str], list[str]]:
    """(environment variables, train.py overrides) of a setting."""
    env, overrides = {}, []
    for word in setting.split():
        name, equals, value = word.partition("=")
        if equals and name.isupper():
            env[name] = value
        elif word != "default":
            overrides.append(word)
    return env, overrides


def train(setting: str, args, run_dir: Path) -> dict:
    """One train.py run of `setting`; its metrics.json."""
    env, overrides = split_setting(setting)
    limits = ["trainer.limit_train_batches=2", "+trainer.limit_val_batches=2"] if args.quick else []
    cmd = [
        sys.executable,
        "train.py",
        f"hydra.run.dir={run_dir}",
        f"trainer.max_epochs={args.epochs}",
        "+trainer.limit_test_batches=2",  # the test pass is not what is measured
        *limits,
        *overrides,
    ]
    result = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return json.loads((run_dir / "metrics.json").read_text())


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SPIN, str(os.getpid())])


def measure(settings: list[str], args, out: Path) -> dict[str, dict[str, list[dict]]]:
    """settings -> {"idle": [metrics, ...], "busy": [...]}, runs interleaved so that a change
    in the machine's own load falls on every setting alike."""
    runs = {s: {"idle": [], "busy": []} for s in settings}
    for repeat in range(args.repeats):
        for i, setting in enumerate(settings):
            for condition in ("idle", "busy"):
                spin = spinner() if condition == "busy" else None
                try:
                    run_dir = out / f"{i}-{condition}-{repeat}"
                    runs[setting][condition].append(train(setting, args, run_dir))
                finally:
                    if spin is not None:
                        spin.kill()
                        spin.wait()
    return runs


def median_fit(metrics: list[dict]) -> float:
    return statistics.median(m["fit_seconds"] for m in metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=None, metavar="SETTING")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 batches per epoch, one repeat")
    parser.add_argument("--out", type=Path, default=None, help="run directories (default: temp)")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    settings = args.settings or ["default", BEFORE, "threads=1"]
    out = args.out or Path(tempfile.mkdtemp(prefix="busy-bench-"))
    from forecast.nn import fast

    # our C++ kernels (impl=custom) are compiled on first use, once per machine: here, not in a
    # measured run
    fast.extension()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# train.py, ETTh1, default LSTM, {args.epochs} epoch(s)"
        f"{' of 2 batches' if args.quick else ''}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.2f} at the start; "
        f"median of {args.repeats}, idle and busy (one spinning process) side by side"
    )
    runs = measure(settings, args, out)
    reference = median_fit(runs[settings[0]]["idle"])
    print("| setting | idle fit s | busy fit s | busy / idle | busy / first idle | test MSE |")
    print("| --- | --- | --- | --- | --- | --- |")
    for setting in settings:
        idle, busy = (median_fit(runs[setting][c]) for c in ("idle", "busy"))
        mse = sorted({f"{m['test_mse']:.6f}" for c in ("idle", "busy") for m in runs[setting][c]})
        print(
            f"| {setting} | {idle:.2f} | {busy:.2f} | {busy / idle:.2f} | "
            f"{busy / reference:.2f} | {', '.join(mse)} |"
        )
    print(f"\nrun directories: {out}")


if __name__ == "__main__":
    main()
