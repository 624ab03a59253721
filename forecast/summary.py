"""What a run says when it ends, and tables of many runs (a Hydra multirun, an Optuna study) as
CSV and markdown.

Light on purpose: Hydra instantiates `MultirunSummary` at the start of every `train.py` run, so
this module imports neither Lightning nor Optuna.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# the metrics a summary shows first, when a run has them; the rest follow in name order
LEADING_METRICS = (
    "val_mse",
    "val_mae",
    "val_skill",
    "test_mse",
    "test_mae",
    "test_skill",
    "fit_seconds",
)
# the end of train.py: these test metrics of metrics.json, under these names
RUN_METRICS = {
    "test_mse": "MSE",
    "test_mae": "MAE",
    "test_mase": "MASE",
    "test_skill": "skill against naive",
}


def shown_path(path: Path) -> str:
    """`path` relative to the working directory where it lies below it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_summary(run_dir: Path, predict: str = "python predict.py") -> str:
    """The lines train.py ends with: the main test metrics of `run_dir`'s metrics.json, the run
    folder, and the command that forecasts with the run (`predict`: how to call predict)."""
    metrics_file = Path(run_dir) / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    shown = [f"{name} {metrics[key]:.4g}" for key, name in RUN_METRICS.items() if key in metrics]
    if shown:
        scores = f"test {', '.join(shown)} (normalised scale)"
    else:
        scores = "no test metrics (no test batches were run)"
    epochs = f"; {metrics['epochs']} epoch(s) in {metrics['fit_seconds']:.0f} s" if metrics else ""
    ensemble = "ensemble_size" in metrics
    if ensemble:  # the epochs and seconds are the members' together
        mean = metrics.get("member_test_mse_mean")
        members = f" (their test MSE {mean:.4g} on average)" if mean is not None else ""
        epochs = (
            f"; {metrics['ensemble_combine']} of {metrics['ensemble_size']} members{members}"
            f"{epochs}"
        )
    folder = shown_path(run_dir)
    exported = (Path(run_dir) / "export" / "meta.json").is_file()
    plotted = (Path(run_dir) / "forecast.png").is_file()  # not without the `plots` extra
    written = [
        "metrics.json",
        *(["forecast.png"] if plotted else []),
        "members/" if ensemble else "checkpoints/",
        *(["export/"] if exported else []),
    ]
    lines = [f"done: {scores}{epochs}", f"run folder: {folder} ({', '.join(written)})"]
    if exported:
        lines.append(
            f"next: {predict} model_dir={folder} input=<file, folder or glob> output=<folder>"
        )
    else:
        lines.append(
            "next: this run has no export/ to forecast with (export_formats=[], or see the "
            "warnings above)"
        )
    return "\n".join(lines)


def columns_of(rows: Sequence[dict[str, Any]], leading: Sequence[str]) -> list[str]:
    """`leading` columns first (those some row has), then every other key in first-seen order."""
    seen = dict.fromkeys(key for row in rows for key in row)
    return [c for c in leading if c in seen] + [c for c in seen if c not in leading]


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_cell(row.get(c)) for c in columns])
    return out.getvalue()


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(escape(format_cell(row.get(c))) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict[str, Any]], leading: Sequence[str], stem: Path) -> None:
    """`<stem>.csv` (every column) and `<stem>.md` (the `leading` columns only), atomically."""
    from forecast.atomic import write_text as write_atomic

    columns = columns_of(rows, leading)
    write_atomic(stem.with_suffix(".csv"), to_csv(rows, columns))
    write_atomic(stem.with_suffix(".md"), to_markdown(rows, [c for c in columns if c in leading]))


def multirun_rows(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per job directory of a Hydra multirun: job, status, the value of each override
    key, metrics; and the override keys whose values differ between jobs (the swept ones).

    A job is a directory holding `.hydra/overrides.yaml`; its metrics are its `metrics.json`
    (absent when the job failed before writing it).
    """
    rows = []
    for overrides_file in sweep_dir.glob("**/.hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        overrides = yaml.safe_load(overrides_file.read_text()) or []
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append(
            {
                "job": job_dir.relative_to(sweep_dir).as_posix(),
                "status": "ok" if metrics else "no metrics.json",
                **dict(text.lstrip("+~").partition("=")[::2] for text in overrides),
                **{k: v for k, v in metrics.items() if isinstance(v, int | float)},
                "overrides": " ".join(overrides),
            }
        )
    rows.sort(key=lambda row: natural_key(row["job"]))
    override_keys = dict.fromkeys(
        text.lstrip("+~").partition("=")[0] for row in rows for text in row["overrides"].split()
    )
    swept = [k for k in override_keys if len({row.get(k) for row in rows}) > 1]
    return rows, swept


def natural_key(text: str) -> list:
    """Sort `2` before `10`."""
    return [int(part) if part.isdigit() else part for part in text.replace("/", " / ").split()]


class MultirunSummary(Callback):
    """Hydra callback: at the end of `train.py -m ...`, write `summary.csv` and `summary.md`
    (one row per job: its overrides and its metrics) in the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows, swept = multirun_rows(sweep_dir)
        if rows:
            write_tables(rows, ("job", "status", *swept, *LEADING_METRICS), sweep_dir / "summary")
        print(multirun_message(rows, sweep_dir))


def multirun_message(rows: Sequence[dict[str, Any]], sweep_dir: Path) -> str:
    """Where the summary of a multirun went, after its runs."""
    folder = shown_path(sweep_dir)
    if not rows:
        return f"done: no run of this multirun wrote its folder under {folder}"
    failed = sum(row["status"] != "ok" for row in rows)
    count = f"{len(rows)} runs" + (f", {failed} without metrics.json" if failed else "")
    return (
        f"done: {count}; one row each in {folder}/summary.md (main metrics) and "
        f"{folder}/summary.csv (every override and metric), each run in {folder}/<job>/"
    )


def study_message(sweep_dir: Path, train: str = "python train.py") -> str:
    """Where a sweep's summary went, after its trials (from the best.json it wrote); `train`:
    how to call train."""
    folder = shown_path(sweep_dir)
    trials = f"every trial in {folder}/trials.md (and trials.csv)"
    best_file = Path(sweep_dir) / "best.json"
    if not best_file.is_file():
        return f"done: no trial completed yet; {trials}"
    best = json.loads(best_file.read_text())
    counts = ", ".join(f"{n} {state.lower()}" for state, n in best["trials"].items() if n)
    return (
        f"done: study {best['study']} ({counts}); best {best['metric']} {best['value']:.4g} "
        f"(trial {best['number']}); {trials}; train the best again: {train} "
        f"--config-dir {folder} --config-name best"
    )
