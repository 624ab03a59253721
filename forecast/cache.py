"""The user's cache folder: data sets fetched on first use (`data/`) and compiled kernels
(`kernels/`), so that nothing is ever written inside the installed package or the checkout.

`$FORECAST_CACHE_DIR` when set, else the platform's cache folder for `forecast` (platformdirs):
`~/.cache/forecast` on Linux (`$XDG_CACHE_HOME/forecast` when that is set),
`~/Library/Caches/forecast` on macOS, `%LOCALAPPDATA%\\forecast\\Cache` on Windows.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "FORECAST_CACHE_DIR"


def cache_dir(*parts: str, create: bool = False) -> Path:
    """The cache folder, or `parts` below it (`cache_dir("kernels", name, create=True)`); with
    `create`, the folder is made (with its parents) if missing."""
    from platformdirs import user_cache_path

    root = Path(os.environ[ENV]) if os.environ.get(ENV) else user_cache_path("forecast", False)
    path = root.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
