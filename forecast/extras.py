"""The optional dependencies (pyproject.toml's extras), and the one line a user gets where one is
missing: what needs it and the command that installs it.

Nothing a default run needs is optional. Each extra serves one feature: `plots` (forecast.png),
`rich` (the rich progress bars; Lightning's plain bar otherwise), `onnx` (ONNX exports and
`engine=onnx`), `sweep` (forecast-sweep: Optuna, and psycopg2 for a PostgreSQL study),
`tensorboard` (`logger=tensorboard`), `bench` (benchmarks/peers.py's peer libraries).
"""

from __future__ import annotations

import importlib.util

from omegaconf import DictConfig, OmegaConf

from forecast.errors import ConfigError

# config targets that import an optional module when built: target -> (module, extra)
TARGET_NEEDS = {
    "pytorch_lightning.loggers.TensorBoardLogger": ("tensorboard", "tensorboard"),
    "pytorch_lightning.loggers.tensorboard.TensorBoardLogger": ("tensorboard", "tensorboard"),
}
# SQLAlchemy URL schemes of a sweep's storage -> the driver module they import
STORAGE_DRIVERS = {"postgresql": "psycopg2", "postgresql+psycopg2": "psycopg2"}


class MissingExtra(ConfigError, ImportError):
    """An optional dependency that a chosen feature needs is not installed (one line)."""


def available(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None
        return False


def install_hint(extra: str) -> str:
    return f'pip install "forecast[{extra}]"'


def missing_message(module: str, extra: str, needed_by: str) -> str:
    return f"{needed_by} needs {module}, which is not installed: {install_hint(extra)}"


def require(module: str, extra: str, needed_by: str) -> None:
    """Raise MissingExtra, naming `needed_by` and the extra to install, unless `module` imports."""
    if not available(module):
        raise MissingExtra(missing_message(module, extra, needed_by))


def check_config(cfg: DictConfig) -> None:
    """Refuse, before any work, a train config that names an object whose optional dependency is
    missing (`logger=tensorboard` without tensorboard)."""
    for key, target in walk_targets(cfg):
        if target in TARGET_NEEDS:
            module, extra = TARGET_NEEDS[target]
            require(module, extra, f"{key}: {target.rsplit('.', 1)[-1]}")


def walk_targets(node, prefix: str = ""):
    """(key, `_target_`) of every node of `node` that has one, `key` the node's dotted path."""
    if not isinstance(node, DictConfig):
        return
    target = OmegaConf.select(node, "_target_", throw_on_missing=False)
    if isinstance(target, str):
        yield prefix.rstrip(".") or "config", target
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            yield from walk_targets(child, f"{prefix}{key}.")


def check_storage(url: str | None, needed_by: str = "sweep.storage") -> None:
    """A sweep's storage URL whose database driver is an extra (PostgreSQL: psycopg2)."""
    scheme = str(url or "").partition("://")[0]
    if scheme in STORAGE_DRIVERS:
        require(STORAGE_DRIVERS[scheme], "sweep", f"{needed_by}={scheme}://...")
