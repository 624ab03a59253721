"""Plots of forecasts for a run's directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_forecasts(
    history: np.ndarray,
    truth: np.ndarray,
    forecast: np.ndarray,
    channel: str,
    path: str | Path,
) -> None:
    """One panel per window: history [N, L], truth and forecast [N, H] of one channel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, lookback = history.shape
    horizon = truth.shape[1]
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.2 * n), squeeze=False)
    past, future = np.arange(-lookback, 0), np.arange(horizon)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(past, history[i], color="0.4", label="history")
        ax.plot(future, truth[i], color="black", label="truth")
        ax.plot(future, forecast[i], color="tab:red", label="forecast")
        ax.axvline(0, color="0.8", linewidth=1)
        ax.set_ylabel(channel)
    axes[0, 0].legend(loc="upper left", ncol=3, fontsize="small")
    axes[-1, 0].set_xlabel("steps from the forecast origin")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
