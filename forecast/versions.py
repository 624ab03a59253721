"""What a run ran with: recorded in every run's metrics.json and export/meta.json, so a result
can be traced to the Python, torch, Lightning and forecast versions and the platform behind it."""

from __future__ import annotations

import platform


def versions() -> dict[str, str]:
    """{"python", "torch", "pytorch_lightning", "forecast", "platform"}: their versions, and the
    platform as `platform.platform()` gives it (system, release, machine, libc)."""
    import pytorch_lightning
    import torch

    import forecast

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pytorch_lightning.__version__,
        "forecast": forecast.__version__,
        "platform": platform.platform(),
    }
