"""The Python API: fit a forecaster on a DataFrame or a file, forecast DataFrames, load any run.

    import forecast
    run = forecast.fit(df, model="gru", horizon=24, max_epochs=5)  # df: long or wide
    run.metrics["test_mse"]
    future = run.predict(df)                      # unique_id, ds, step, y_hat
    cv = run.cross_validation(df, n_windows=3)    # unique_id, ds, cutoff, y, y_hat
    again = forecast.load(run.path)               # any run: train.py's, a sweep trial's, ...

`fit` composes the same Hydra configs as `train.py` (its `overrides` are train.py's command-line
strings), so one seed and one config give the same metrics from both. A `Run` forecasts through
its export (`export/`), exactly as `predict.py` does, without Lightning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from forecast.cli import ConfigError, check_export_formats
from forecast.config import compose_train_config, upgrade_config
from forecast.data.reading import sniff_layout

# fit(**options): the common keys a caller may name directly, and the config key each sets
OPTIONS = {
    "max_epochs": "trainer.max_epochs",
    "seed": "seed",
    "freq": "data.freq",
    "output_dir": "output_dir",
    "layout": "data.layout",
    "time_col": "data.time_col",
    "id_col": "data.id_col",
    "target": "data.target",
    "fill": "data.fill",
    "past_covariates": "data.past_covariates",
    "future_covariates": "data.future_covariates",
    "static_covariates": "data.static_covariates",
    "categorical": "data.categorical",
    "calendar": "data.calendar",
    "batch_size": "data.batch_size",
    "hidden_size": "model.hidden_size",
    "loss": "model.loss",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "precision": "trainer.precision",
}
# what Lightning and we log at INFO during a fit (devices, seeds, checkpoints restored)
QUIET_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning", "forecast")


def fit(
    data: pd.DataFrame | str | Path,
    *,
    model: str = "lstm",
    lookback: int = 96,
    horizon: int = 96,
    overrides: Sequence[str] = (),
    progress: bool = True,
    verbose: bool = False,
    **options,
) -> Run:
    """Train, evaluate and export a forecaster; return its `Run`.

    `data`: a DataFrame, long (`unique_id, ds, y`: many series) or wide (a time column, or a
    DatetimeIndex, and one column per series), or the path of such a CSV or Parquet file; it is
    split by time 70/10/20 into train, validation and test. `model`: lstm, lstmp or gru.
    `overrides`: train.py's command-line strings (`"model.hidden_size=64"`,
    `"trainer.max_epochs=5"`), applied last. `options` name common keys directly: max_epochs,
    seed, freq, output_dir, layout, time_col, id_col, target, fill, batch_size, hidden_size,
    loss, accelerator, devices, precision, past_covariates, future_covariates, static_covariates,
    categorical, calendar. `progress`: a progress bar (notebooks too);
    `verbose`: Lightning's own messages. The run's folder is `output_dir` (default
    `outputs/<date>/<time>`, as train.py's).
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"fit() got unknown options {unknown}; it takes {sorted(OPTIONS)}, and any train.py "
            f"key through overrides=['key=value', ...]"
        )
    frame = data if isinstance(data, pd.DataFrame) else None
    given = [_override_key(o) for o in overrides]
    chosen = [f"model={model}", "data=csv", f"data.lookback={lookback}", f"data.horizon={horizon}"]
    chosen.append("data.path=null" if frame is not None else f"data.path={quote(Path(data))}")
    if "layout" not in options and "data.layout" not in given:
        chosen.append(f"data.layout={sniff_layout(data)}")
    if "output_dir" not in options and "output_dir" not in given:
        options["output_dir"] = new_run_dir(Path("outputs"))
    chosen += [f"{OPTIONS[k]}={quote(v)}" for k, v in options.items()]
    cfg = compose_train_config([*chosen, *overrides])
    check_export_formats(cfg.get("export_formats", ()), cfg.get("data"))
    if "pt2" not in cfg.export_formats:
        raise ConfigError(
            f"export_formats={list(cfg.export_formats)}: fit() returns a Run, which forecasts "
            f"through the pt2 export; keep pt2 (export_formats=[pt2] or [pt2,onnx])"
        )

    from forecast.pipeline import train  # Lightning is imported for training only

    with quiet(not verbose):
        train(cfg, data=frame, progress=progress)
    return Run(cfg.output_dir)


def load(path: str | Path) -> Run:
    """The run in folder `path` (or its `export/`): one of train.py, a sweep's trial, `fit`."""
    return Run(path)


class Run:
    """A trained run's folder: its metrics, config and export, and forecasts from the export.

    Forecasting needs only the export (TorchScript/ONNX bundle and meta.json), not Lightning.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.name == "export" and (path / "meta.json").is_file():
            path = path.parent
        if not (path / "export" / "meta.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a run folder: it has no export/meta.json (a run of train.py, "
                f"forecast.fit or a sweep trial writes one)"
            )
        from forecast.export import load_meta

        self.path = path
        self.meta = load_meta(path / "export")  # checked: a field out of shape is ExportError
        self._forecasters: dict[tuple, object] = {}

    @property
    def metrics(self) -> dict:
        """metrics.json: test and validation metrics, epochs, timings ({} if the run has none)."""
        metrics = self.path / "metrics.json"
        return json.loads(metrics.read_text()) if metrics.is_file() else {}

    @property
    def config(self) -> DictConfig:
        """The run's resolved configuration (config.yaml; the export's copy if it has none), with
        the options added since an older version wrote it (`forecast.config.upgrade_config`)."""
        config = self.path / "config.yaml"
        if config.is_file():
            return upgrade_config(OmegaConf.load(config), imports=False)
        return upgrade_config(OmegaConf.create(self.meta.get("config", {})), imports=False)

    @property
    def lookback(self) -> int:
        return int(self.meta["lookback"])

    @property
    def horizon(self) -> int:
        return int(self.meta["horizon"])

    def predict(
        self,
        data: pd.DataFrame | str | Path,
        *,
        future: pd.DataFrame | str | Path | None = None,
        backtest: bool = False,
        n_windows: int = 1,
        engine: str | None = None,
        **reading,
    ) -> pd.DataFrame:
        """Forecast every series of `data` `horizon` steps past its last row: rows `unique_id,
        ds, step, y_hat` (and `y_hat_q10`, ... for a quantile model), what predict.py writes.

        A model with future covariates reads them for the horizon from rows after each
        series' last target (the target left empty), in `data` or in `future` (a frame or file
        of the time column, the future covariates and, for many series, the id and static
        columns; rows of series `data` does not hold are not read).

        `data` has the layout and columns the model was trained on. `backtest=True` returns
        predict.py's backtest instead: forecasts from the last `n_windows` horizons beside the
        truth (`unique_id, origin, ds, step, y, y_hat, error`). `reading` overrides the export's
        reading options (fill, freq, sort, short, ...) as predict.py's `data.<key>` do.
        """
        forecaster = self._forecaster(engine, reading, backtest=backtest, n_windows=n_windows)
        if backtest:
            return forecaster.backtest_table(data, future=future)
        return forecaster.forecast(data, future=future)

    def cross_validation(
        self,
        data: pd.DataFrame | str | Path,
        n_windows: int = 3,
        step: int | None = None,
        *,
        engine: str | None = None,
        **reading,
    ) -> pd.DataFrame:
        """Rolling-origin forecasts, NeuralForecast's convention: rows `unique_id, ds, cutoff,
        y, y_hat` (and quantile columns). `n_windows` forecasts per series, their origins `step`
        rows apart (default: the horizon), the last ending at the series' last row; `cutoff` is
        the last time each forecast saw."""
        return self._forecaster(engine, reading).cross_validation(data, n_windows, step)

    def module(self, checkpoint: str = "best"):
        """The trained LightningModule (a `Forecaster`) from the run's `best` or `last`
        checkpoint, with the export's blend toward the naive forecast: for `Trainer.predict`,
        testing on other data, or training on. Loaded as weights and plain data: the network is
        built from the checkpoint's options and data (`Forecaster.load_from_checkpoint`), and of
        the run's config only the optimizer and schedule, when they are torch's own classes
        (nothing a run folder names is called). Needs Lightning (forecasting from the export
        does not)."""
        from forecast.config import forecaster_class
        from forecast.models import Forecaster
        from forecast.pipeline import saved_training_factories

        if "members" in self.metrics:
            raise ValueError(
                f"{self.path} is an ensemble: it has no checkpoint of its own; load a member's, "
                f"e.g. forecast.load('{self.path / 'members' / '0'}').module()"
            )
        names = {"best": self.metrics.get("best_checkpoint"), "last": "checkpoints/last.ckpt"}
        if checkpoint not in names:
            raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
        path = inside(self.path, names[checkpoint] or names["last"])
        saved = self.config.model  # config.yaml read once
        # the run's own subclass of the Forecaster when the user has imported it (none is
        # imported for a run folder), else the Forecaster: its weights and options are the same
        cls = forecaster_class(saved.get("_target_"), imports=False) or Forecaster
        model = cls.load_from_checkpoint(path, map_location="cpu")
        model.optimizer_factory, model.scheduler_factory = saved_training_factories(saved)
        blend = self.meta.get("naive_blend")  # chosen after the checkpoints were written
        if blend:
            model.net.set_naive_blend(blend["weight"], blend["lag"])
        return model.eval()

    def save(self, path: str | Path) -> Run:
        """Copy the whole run to the new folder `path` (written beside it, then renamed into
        place, so an interrupted save leaves no half folder); returns the copy's Run."""
        target = Path(path)
        if target.exists():
            raise FileExistsError(f"{target} exists; save a run into a new folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            shutil.copytree(self.path, staging, dirs_exist_ok=True)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Run(target)

    def _forecaster(self, engine: str | None, reading: dict, **options):
        from forecast.predict import BatchForecaster

        key = (engine, tuple(sorted(reading.items())), tuple(sorted(options.items())))
        if key not in self._forecasters:
            kwargs = {} if engine is None else {"engine": engine}
            self._forecasters[key] = BatchForecaster(
                self.path, data_options=reading, log=lambda message: None, **kwargs, **options
            )
        return self._forecasters[key]

    def __repr__(self) -> str:
        shown = {k: self.metrics[k] for k in ("test_mse", "test_mae") if k in self.metrics}
        return f"Run({str(self.path)!r}, {shown})"


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, refused (ValueError) unless it stays inside `folder` (a name read from
    a file must not reach elsewhere)."""
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ValueError(f"{folder}: {name!r} leads outside the run folder; refused")
    return path


def new_run_dir(root: Path) -> Path:
    """`root/<date>/<time>` as train.py names runs, with a suffix if that folder exists."""
    stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        candidate, n = root / f"{stamp}-{n}", n + 1
    return candidate.resolve()


def quote(value) -> str:
    """`value` as a Hydra override value: paths and text quoted, lists as lists."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(quote(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _override_key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")


@contextlib.contextmanager
def quiet(enabled: bool) -> Iterator[None]:
    """Library notices a user cannot act on (forecast.quiet) off for the duration, and with
    `enabled` Lightning's and our INFO messages too (warnings still show)."""
    from forecast.quiet import WARNINGS

    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS] if enabled else []
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message, category in WARNINGS:
                warnings.filterwarnings("ignore", message, category)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
