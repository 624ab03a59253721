"""Process settings the entry scripts apply before anything heavy is imported."""

from __future__ import annotations

import os
import sys

# glibc returns freed memory to the system after every large step and maps it back on the next,
# which made whole training epochs 40-65% slower here (see BENCHMARKS.md). These keep it; glibc
# reads them only when a process starts, hence the re-exec.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
OPT_OUT = "FORECAST_KEEP_MALLOC"


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
