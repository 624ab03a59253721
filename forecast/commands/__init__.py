"""The three Hydra apps: `forecast-train`, `forecast-predict` and `forecast-sweep` once installed,
`python train.py` (`predict.py`, `sweep.py`) in a checkout. Each module holds its app (`main`) and
`entry`, the console script; the scripts at the repository root are shells that call `entry`.

Their configs ship inside the package (`forecast/conf`, found as `pkg://forecast.conf`), so an
installed copy runs from any folder; `--config-dir <folder>` adds a user's own configs.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONFIG_PATH = "pkg://forecast.conf"


def prog(app: str | None = None) -> str:
    """The program's name as the user called it (`forecast-train`, or `train.py` in a checkout;
    its one-line errors start with it); with `app`, that app's name called the same way."""
    called = Path(sys.argv[0]).name
    if app is None:
        return called
    return f"{app}.py" if called.endswith(".py") else f"forecast-{app}"


def command(app: str) -> str:
    """The command line that runs app `app` (train, predict, sweep), called the way this program
    was: `forecast-predict`, or the checkout's `python predict.py`."""
    name = prog(app)
    return f"python {name}" if name.endswith(".py") else name
