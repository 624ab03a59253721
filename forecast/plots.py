"""Plots of forecasts for a run's directory (matplotlib: the `plots` extra)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from forecast.extras import available, missing_message, require

log = logging.getLogger(__name__)


def forecast_figure(
    history: np.ndarray,
    truth: np.ndarray,
    forecast: np.ndarray,
    channel: str,
    title: str = "",
    times: tuple[np.ndarray, np.ndarray] | None = None,
):
    """One panel per window: history [N, L], truth and forecast [N, H] of one channel; `times`
    (history's [N, L] and the horizon's [N, H], datetime64) put them on a time axis, else the x
    axis counts steps from the forecast origin."""
    require("matplotlib", "plots", "forecast_figure")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, lookback = history.shape
    horizon = truth.shape[1]
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.2 * n + 0.4), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        if times is None:
            past, future = np.arange(-lookback, 0), np.arange(horizon)
        else:
            past, future = times[0][i], times[1][i]
        ax.plot(past, history[i], color="0.4", label="history")
        ax.plot(future, truth[i], color="black", label="truth")
        ax.plot(future, forecast[i], color="tab:red", label="forecast")
        ax.axvline(future[0], color="0.8", linewidth=1)
        ax.set_ylabel(channel)
    axes[0, 0].legend(loc="upper left", ncol=3, fontsize="small")
    axes[-1, 0].set_xlabel("time" if times is not None else "steps from the forecast origin")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_forecasts(
    history: np.ndarray,
    truth: np.ndarray,
    forecast: np.ndarray,
    channel: str,
    path: str | Path,
    title: str = "",
    times: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """`forecast_figure`, saved as an image at `path`. Without matplotlib (the `plots` extra), a
    training run still completes: one line says what to install, and no image is written."""
    if not available("matplotlib"):
        log.warning("%s skipped: %s", Path(path).name, missing_message("matplotlib", "plots", "it"))
        return
    import matplotlib.pyplot as plt

    fig = forecast_figure(history, truth, forecast, channel, title, times)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_title(model, datamodule, name: str | None = None) -> str:
    """The model (or `name`), the data and the test score: "lstm (torch) on ETTh1.csv, test MSE
    0.391"."""
    hparams = model.hparams
    from forecast.data.io import source_name

    source = datamodule.path if datamodule.path is not None else datamodule.name
    data = Path(source_name(source)).name
    mse = model.test_results.get("test_mse")
    score = f", test MSE {float(mse):.4g}" if mse is not None else ""
    name = name or f"{hparams.get('cell', 'model')} ({hparams.get('impl', '?')})"
    return f"{name} on {data}{score}"


def window_times(dataset, picks: list[int], times: np.ndarray):
    """The times of windows `picks`: (history [N, L], horizon [N, H]), or None where the data's
    time column holds no timestamps (integer steps)."""
    if not np.issubdtype(times.dtype, np.datetime64):
        return None
    _, _, first = dataset._locate(np.asarray(picks))  # the window's first row in `times`
    lookback, horizon = dataset.lookback, dataset.horizon
    rows = first[:, None] + np.arange(lookback + horizon)  # [N, L + H]
    return times[rows[:, :lookback]], times[rows[:, lookback:]]
