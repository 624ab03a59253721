"""What a model knows of its covariates: their columns by kind, levels and scaling.

Three kinds, named as Darts names them: past covariates (observed up to the forecast origin),
future covariates (known over the horizon too; calendar features generated from the timestamps
join them as `calendar:<feature>`) and static covariates (one value per series). Numeric columns
are standardised with the mean and scale of the training rows; categorical ones (text,
booleans) are codes into their levels, one-hot encoded or embedded by the network
(`forecast.models.covariates.CovariateEncoder`), so an exported model takes them as they are
read: numbers, and codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forecast.data.scaling import fit_affine

KINDS = ("past", "future", "static")
CALENDAR_PREFIX = "calendar:"


@dataclass(frozen=True)
class Columns:
    """One kind of covariates: column names, the levels of the categorical ones, and the
    standardisation (raw = scaled * scale + mean) of the numeric ones."""

    names: tuple[str, ...] = ()
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mean: tuple[float, ...] = ()  # per column (categorical ones: 0)
    scale: tuple[float, ...] = ()  # per column (categorical ones: 1)

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "levels": {k: list(v) for k, v in self.levels.items()},
            "mean": list(self.mean),
            "scale": list(self.scale),
        }

    @classmethod
    def from_dict(cls, values: dict) -> Columns:
        return cls(
            names=tuple(values.get("names", ())),
            levels={k: tuple(v) for k, v in values.get("levels", {}).items()},
            mean=tuple(values.get("mean", ())),
            scale=tuple(values.get("scale", ())),
        )


@dataclass(frozen=True)
class Covariates:
    past: Columns = Columns()
    future: Columns = Columns()
    static: Columns = Columns()

    def __bool__(self) -> bool:
        return any(getattr(self, kind).names for kind in KINDS)

    @property
    def calendar(self) -> tuple[str, ...]:
        """The calendar features among the future covariates (computed, not read)."""
        names = self.future.names
        return tuple(n[len(CALENDAR_PREFIX) :] for n in names if n.startswith(CALENDAR_PREFIX))

    @property
    def levels(self) -> dict[str, tuple[str, ...]]:
        """Every categorical column's levels (for reading new data the same way)."""
        return {k: v for kind in KINDS for k, v in getattr(self, kind).levels.items()}

    def to_dict(self) -> dict:
        return {kind: getattr(self, kind).to_dict() for kind in KINDS}

    @classmethod
    def from_dict(cls, values: dict | None) -> Covariates:
        values = values or {}
        return cls(**{kind: Columns.from_dict(values.get(kind, {})) for kind in KINDS})


def fit_columns(
    names: list[str],
    values: np.ndarray,
    train: list[np.ndarray],
    levels: dict,
    kind: str = "standard",
    fixed: tuple[str, ...] = (),
) -> Columns:
    """The Columns of `names`, whose training rows are the parts `train` (each [T_i, K]): numeric
    ones scaled by the data's scaler `kind` (scikit-learn's, as the target is) fitted on those
    rows; categorical ones (in `levels`) and the names in `fixed` (calendar features, already in
    [-0.5, 0.5]) left as they are."""
    mean, scale = fit_affine(kind, train) if names else (np.zeros(0), np.ones(0))
    keep = np.array([n in levels or n in fixed for n in names], dtype=bool)
    mean, scale = np.where(keep, 0.0, mean), np.where(keep, 1.0, scale)
    return Columns(
        tuple(names),
        {n: tuple(levels[n]) for n in names if n in levels},
        tuple(float(m) for m in mean),
        tuple(float(s) for s in scale),
    )
