"""OmegaConf resolvers that the configs in `conf/` use.

The entry scripts register them before Hydra composes; `forecast.pipeline` registers them on
import, for code that composes train configs in-process (sweeps, tests).
"""

from __future__ import annotations

from omegaconf import OmegaConf


def half(value) -> int:
    """`${half:${model.hidden_size}}`: conf/model/lstmp.yaml's projection, half the hidden size,
    so that `model=lstmp model.hidden_size=64`, or a sweep sampling hidden sizes, stays a valid
    LSTMP (torch requires proj_size < hidden_size)."""
    return max(1, int(value) // 2)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("half"):
        OmegaConf.register_new_resolver("half", half)
