"""Process settings the entry scripts apply first, before anything heavy is imported."""

from __future__ import annotations

import os
import sys

# glibc returns freed memory to the system after every large step and maps it back on the next,
# which made whole training epochs 40-65% slower here (see BENCHMARKS.md). These keep it; glibc
# reads them only when a process starts, hence the re-exec.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
OPT_OUT = "FORECAST_KEEP_MALLOC"
# OpenMP's threads (torch's intra-op pool, which our C++ kernels share) spin at every barrier and
# after every parallel region, waiting for work. A thread that spins uses its core like any busy
# process, so beside one the scheduler shares the core between them in time slices, and each of
# the thousands of small operations of a training step can wait a slice for the thread it needs:
# on 2 cores beside one busy process, training took several times as long (issue 24; BENCHMARKS.md,
# benchmarks/busy.py). Passive threads sleep when they have nothing to do, and a thread that slept
# runs ahead of a busy process when it is woken. Fewer threads (threads=1) were slower than two
# passive ones on the loaded machine. libgomp reads this once, when torch loads it.
OPENMP_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE"}
OPENMP_USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
AUTO = "auto"


def prepare_process() -> None:
    """What every entry script does first: `calm_openmp()`, `tune_malloc()` (which may restart
    the process), then `forecast.quiet.quiet_known_notices()`."""
    from forecast.quiet import quiet_known_notices

    calm_openmp()
    tune_malloc()
    quiet_known_notices()


def calm_openmp() -> None:
    """OpenMP threads that sleep when they have no work, unless the user chose a wait policy
    (OMP_WAIT_POLICY or GOMP_SPINCOUNT set). Has no effect once torch is imported."""
    if not any(name in os.environ for name in OPENMP_USER_KEYS):
        os.environ.update(OPENMP_SETTINGS)


def tune_malloc() -> None:
    """Restart this process once with MALLOC_SETTINGS in its environment (Linux/glibc only).

    Settings the user chose are kept; `FORECAST_KEEP_MALLOC=1` leaves the allocator alone.
    """
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT):
        return
    missing = {name: value for name, value in MALLOC_SETTINGS.items() if name not in os.environ}
    if not missing:
        return
    os.environ.update(missing)
    os.execv(sys.executable, sys.orig_argv)


def parse_threads(setting: int | str) -> int | None:
    """The `threads` setting: None for auto, else a positive count; ConfigError otherwise."""
    from forecast.cli import ConfigError

    if setting == AUTO:
        return None
    if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        return setting
    raise ConfigError(f"threads={setting}: give auto or a positive number of threads (threads=1)")


def apply_threads(setting: int | str) -> int:
    """Set torch's CPU threads from the `threads` setting and return the count: auto keeps
    torch's own (a thread per physical core, or OMP_NUM_THREADS); with passive OpenMP threads
    (`calm_openmp`) that count holds up beside busy processes (BENCHMARKS.md)."""
    import torch

    count = parse_threads(setting)
    if count is not None and count != torch.get_num_threads():
        torch.set_num_threads(count)
    return torch.get_num_threads()
