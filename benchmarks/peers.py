"""ETTh1 LB96/H96: our recurrent models beside DLinear, naive baselines and the peer libraries.

    python benchmarks/peers.py                  # every method, 10 epochs each
    python benchmarks/peers.py --epochs 3       # a smaller shared budget
    python benchmarks/peers.py --epochs 3 --minutes 2   # and at most 2 minutes of training each
    python benchmarks/peers.py --quick          # smoke test: 2 batches, one of ours per code path
    python benchmarks/peers.py --methods gru/torch dlinear naive

Every method runs in its own subprocess (`--worker METHOD`), so its peak RSS is its own, and
writes its result as JSON. All are trained on the same training windows (rows [0, 8640), z-scored
with their statistics) for the same number of epochs (and, with --minutes, at most that much
training time: Lightning's max_time, validation included), and scored here, with one definition of
MSE and MAE, on the protocol's 2785 test windows (normalised values, all 7 channels). Peers come
from the `bench` extra (pip install -e '.[bench]'); one that does not import gets a row saying so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `forecast` from this checkout when run as a script

LOOKBACK, HORIZON, SEASON = 96, 96, 24
BORDERS = [8640, 11520, 14400]
BATCH_SIZE = 256  # conf/experiment/etth1_96.yaml's, used by every trained method
HIDDEN = 128  # every peer's LSTM: one layer of our LSTM's size (conf/model/lstm.yaml)
QUICK_BATCHES = 2
BUDGET = {"minutes": None}  # --minutes: training wall-time cap of every method, or None


def max_time() -> str | None:
    """Lightning's max_time ("DD:HH:MM:SS") for the --minutes cap."""
    if BUDGET["minutes"] is None:
        return None
    minutes, seconds = divmod(round(BUDGET["minutes"] * 60), 60)
    return f"00:00:{minutes:02d}:{seconds:02d}"


# training batches per epoch in --quick mode
# "<method> bf16-mixed": the same run under Lightning's bf16-mixed precision (autocast), for our
# default model and for Darts (its trainer takes the same setting); every other row is float32
BF16 = " bf16-mixed"
OURS = [f"{cell}/{impl}" for cell in ("lstm", "lstmp", "gru") for impl in ("torch", "custom")]
OURS += ["lstm/torch" + BF16]
# --quick (a smoke test, so that this script cannot rot): one of ours per code path, torch's fused
# modules, our cell loop with its C++ kernels, mixed precision; tested on QUICK_BATCHES batches
QUICK_OURS = ["lstm/torch", "lstmp/custom", "lstm/torch" + BF16]
PEERS = {  # method -> module it needs
    "neuralforecast LSTM": "neuralforecast",
    "darts BlockRNN LSTM": "darts",
    "darts BlockRNN LSTM" + BF16: "darts",
    "pytorch-forecasting RecurrentNetwork": "pytorch_forecasting",
}
METHODS = [*OURS, "dlinear", "naive", "seasonal naive", *PEERS]
NOTES = {
    "neuralforecast LSTM": "a",
    "darts BlockRNN LSTM": "b",
    "darts BlockRNN LSTM" + BF16: "b",
    "pytorch-forecasting RecurrentNetwork": "c",
}
PEER_SETUP = (
    "Peers: one LSTM layer of 128 units (our LSTM's size), Adam 1e-3, batches of 256 windows, "
    "their own default loss and scaling otherwise; final weights after the budget. Ours: "
    "conf/model/<cell>.yaml as shipped, the best validation epoch's weights. DLinear: MSE, "
    "the best validation epoch. fit s: the whole fit (validation passes, sanity check and "
    "checkpoints included); training s: inside training epochs with the validation passes taken "
    "out, measured the same way for every method; training windows/s divides by the latter. "
    "Rows marked bf16-mixed: Lightning's precision='bf16-mixed' (bfloat16 autocast, float32 "
    "weights), everything else the same; all other rows train in float32."
)
TIME_TO_ACCURACY = (
    "Training s to DLinear's val MSE: the training seconds (as in 'of which training s') until "
    "the first epoch whose weights forecast the protocol's 2785 validation windows (targets in "
    "rows [8640, 11520), all 7 channels) with an MSE at or below DLinear's best, each epoch's "
    "weights scored alike after the fit; 'not in N ep.': never within the budget, with the best "
    "validation MSE reached."
)
FOOTNOTES = {
    "a": "univariate only: one global model over the 7 channels as 7 series, windows counted "
    "here as 7-channel windows (channel windows / 7); its per-window robust scaler and MAE "
    "loss (defaults), direct MLP decoder; validates on the val rows once per epoch-equivalent",
    "b": "multivariate (7 channels in, 7 out), as ours; MSE loss (default); no validation pass",
    "c": "univariate only: one global model over the 7 channels as 7 series (group = channel), "
    "windows counted as for [a]; default target normaliser and loss; autoregressive LSTM "
    "decoder; no validation pass",
}


# ---- data: the same windows for every method ---------------------------------------------------


def datamodule():
    from forecast.data import SeriesDataModule

    data = SeriesDataModule(
        name="ETTh1.csv", borders=BORDERS, lookback=LOOKBACK, horizon=HORIZON, batch_size=BATCH_SIZE
    )
    data.setup("fit")
    return data


def windows(data, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of a split: x [N, lookback, C], y [N, horizon, C] (scaled)."""
    dataset = data.datasets[split]
    batch = dataset.__getitems__(list(range(len(dataset))))
    return batch["x"], batch["y"]


def scaled_rows(data):
    """The scaled series, rows [0, 14400) as a DataFrame: date index, one column per channel."""
    import pandas as pd

    frame = data.frame
    index = pd.DatetimeIndex(frame.times[: BORDERS[-1]])
    return pd.DataFrame(frame.values[: BORDERS[-1]], index=index, columns=list(data.channels))


def score(y_hat: torch.Tensor, y: torch.Tensor) -> dict:
    from forecast.metrics import mae, mse

    if y_hat.shape != y.shape:
        raise ValueError(f"forecasts {tuple(y_hat.shape)} do not match targets {tuple(y.shape)}")
    y_hat = y_hat.to(torch.float64)
    y = y.to(torch.float64)
    return {"mse": float(mse(y_hat, y)), "mae": float(mae(y_hat, y)), "test_windows": len(y)}


def predict_timed(forecaster, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Forecasts of `forecaster` (a [B, L, C] -> [B, H, C] callable) in batches, and seconds."""
    with torch.inference_mode():
        forecaster(x[:BATCH_SIZE])  # warm-up: first-call allocations are not throughput
    start = time.perf_counter()
    with torch.inference_mode():
        y_hat = torch.cat([forecaster(x[i : i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE)])
    return y_hat, time.perf_counter() - start


# ---- workers: one method each, in its own process ----------------------------------------------


def run_ours(method: str, epochs: int, quick: bool, out: Path) -> dict:
    """forecast.pipeline.train with experiment=etth1_96, as train.py runs it."""
    import pandas as pd
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from forecast.config import CONF_DIR
    from forecast.pipeline import train

    name, _, precision = method.partition(" ")
    cell, impl = name.split("/")
    overrides = [
        "experiment=etth1_96",
        f"model={cell}",
        f"model.impl={impl}",
        "seed=1",
        f"output_dir={out / method.replace('/', '-').replace(' ', '-')}",
        f"trainer.max_epochs={epochs}",
    ]
    if precision:
        overrides.append(f"trainer.precision={precision}")
    if quick:
        limits = ("limit_train_batches", "limit_val_batches", "limit_test_batches")
        overrides += [f"++trainer.{limit}={QUICK_BATCHES}" for limit in limits]
    if max_time():
        overrides.append(f"++trainer.max_time='{max_time()}'")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)

    class Watch(pl.Callback):
        seen, model, data = 0, None, None

        def on_fit_start(self, trainer, pl_module):
            Watch.model, Watch.data = pl_module, trainer.datamodule

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            Watch.seen += len(batch["x"])

    start = time.perf_counter()
    train(cfg, callbacks=[Watch(), lightning_timer(pl.Callback)])
    seconds = time.perf_counter() - start
    metrics = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    model = Watch.model.eval()  # trainer.test left the best checkpoint's weights in it
    x, y = windows(Watch.data, "test")
    if quick:  # the windows trainer.test saw: its first batches, in order
        x, y = (t[: QUICK_BATCHES * cfg.data.eval_batch_size] for t in (x, y))
    y_hat, infer_seconds = predict_timed(lambda b: model(b)[..., model.median], x)
    result = score(y_hat, y)
    if not math.isclose(result["mse"], metrics["test_mse"], rel_tol=1e-3):
        raise RuntimeError(f"test MSE {result['mse']} differs from train.py's {metrics}")
    x_val, y_val = windows(Watch.data, "val")
    with torch.inference_mode():
        curve = learning_curve(model, lambda: model(x_val)[..., model.median], y_val)
    logged = pd.read_csv(Path(cfg.output_dir) / "logs" / "metrics.csv")
    # each training epoch's validation (rows of epoch `epochs` are the evaluations after the fit)
    logged = logged.dropna(subset=["val_mse"]).groupby("epoch")["val_mse"].first()
    logged = list(logged[logged.index < len(curve)])
    if not quick and not all(
        math.isclose(mse, val, rel_tol=1e-3) for (_, mse), val in zip(curve, logged, strict=True)
    ):  # the shared scoring is the run's own validation MSE, epoch by epoch
        raise RuntimeError(f"validation curve {curve} differs from the run's {list(logged)}")
    return {
        **result,
        "val_curve": curve,
        "train_seconds": metrics["fit_seconds"],
        "train_only_seconds": TIMES["train"],
        "train_windows": Watch.seen,
        "infer_seconds": infer_seconds,
        "run_seconds": seconds,
    }


class DLinear(torch.nn.Module):
    """Zeng et al. 2023: trend (moving average, 25) and remainder, each mapped by one Linear."""

    def __init__(self, lookback: int, horizon: int, kernel: int = 25):
        super().__init__()
        self.kernel = kernel
        self.trend = torch.nn.Linear(lookback, horizon)
        self.seasonal = torch.nn.Linear(lookback, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, C] -> [B, H, C]
        pad = (self.kernel - 1) // 2  # replicate the ends, as the paper's code does
        padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], 1)
        trend = padded.unfold(1, self.kernel, 1).mean(-1)  # [B, L, C]
        seasonal = x - trend
        y = self.trend(trend.transpose(1, 2)) + self.seasonal(seasonal.transpose(1, 2))
        return y.transpose(1, 2)


def run_dlinear(epochs: int, quick: bool) -> dict:
    """Adam 1e-3 on MSE, batches of 256, the epoch with the best validation MSE kept."""
    torch.manual_seed(1)
    data = datamodule()
    x, y = windows(data, "train")
    x_val, y_val = windows(data, "val")
    model = DLinear(LOOKBACK, HORIZON)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_state, seen, train_only, curve = math.inf, None, 0, 0.0, []
    start = time.perf_counter()
    limit = math.inf if BUDGET["minutes"] is None else BUDGET["minutes"] * 60
    for _ in range(epochs):
        if time.perf_counter() - start > limit:
            break
        epoch_start = time.perf_counter()
        order = torch.randperm(len(x))
        if quick:
            order = order[: QUICK_BATCHES * BATCH_SIZE]
        for i in range(0, len(order), BATCH_SIZE):
            pick = order[i : i + BATCH_SIZE]
            loss = torch.nn.functional.mse_loss(model(x[pick]), y[pick])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            seen += len(pick)
        train_only += time.perf_counter() - epoch_start
        with torch.inference_mode():
            val = score(model(x_val), y_val)["mse"]
        curve.append([train_only, val])
        if val < best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    train_seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    x_test, y_test = windows(data, "test")
    y_hat, infer_seconds = predict_timed(model, x_test)
    return {
        **score(y_hat, y_test),
        "train_seconds": train_seconds,
        "train_only_seconds": train_only,
        "train_windows": seen,
        "infer_seconds": infer_seconds,
        "val_curve": curve,
    }


def run_naive(seasonal: bool) -> dict:
    x, y = windows(datamodule(), "test")
    if seasonal:  # the last day, repeated
        forecaster = lambda b: b[:, -SEASON:].repeat(1, math.ceil(HORIZON / SEASON), 1)[:, :HORIZON]  # noqa: E731
    else:  # the last value, repeated
        forecaster = lambda b: b[:, -1:].expand(-1, HORIZON, -1)  # noqa: E731
    y_hat, infer_seconds = predict_timed(forecaster, x)
    return {**score(y_hat, y), "infer_seconds": infer_seconds}


# filled by the callback lightning_timer makes; "train": seconds inside training epochs with the
# validation passes taken out, the same measure for every Lightning-based method
TIMES = {"fit": 0.0, "train": 0.0, "predict": 0.0, "batches": 0}
# (training seconds so far, weights) at the end of each training epoch, in order
SNAPSHOTS: list[tuple[float, dict]] = []


def learning_curve(module, forecast_val, y_val: torch.Tensor) -> list[list[float]]:
    """[training seconds, validation MSE] after each epoch: each of SNAPSHOTS loaded into
    `module` and scored by `forecast_val()` (the forecasts of the shared validation windows,
    whose targets are `y_val`); `module` is left with the last epoch's weights."""
    curve = []
    for seconds, weights in SNAPSHOTS:
        module.load_state_dict(weights)
        module.eval()
        curve.append([seconds, score(forecast_val(), y_val)["mse"]])
    return curve


def seconds_to(curve: list[list[float]] | None, threshold: float | None) -> str:
    """Training seconds until the validation MSE first reached `threshold` ("-": no curve)."""
    if not curve or threshold is None:
        return "-"
    for seconds, mse in curve:
        if mse <= threshold:
            return f"{seconds:.3g}"
    return f"not in {len(curve)} ep. (best {min(m for _, m in curve):.4f})"


def lightning_timer(base, snapshot_every: int = 1):
    """A callback for `base` (the library's own Lightning Callback class) that adds fit, training
    and predict seconds and training batches to TIMES, and keeps the weights in SNAPSHOTS after
    every `snapshot_every` training epochs (NeuralForecast's "epoch" is one batch); class-level,
    as libraries deep-copy models and their callbacks."""

    class Timer(base):
        started = {}

        def on_fit_start(self, trainer, pl_module):
            Timer.started["fit"] = time.perf_counter()

        def on_fit_end(self, trainer, pl_module):
            TIMES["fit"] += time.perf_counter() - Timer.started["fit"]

        def on_train_epoch_start(self, trainer, pl_module):
            Timer.started["train"] = time.perf_counter()

        def on_validation_start(self, trainer, pl_module):  # pause: validation is not training
            if "train" in Timer.started:
                TIMES["train"] += time.perf_counter() - Timer.started.pop("train")

        def on_validation_end(self, trainer, pl_module):
            if trainer.state.fn == "fit" and not trainer.sanity_checking:
                Timer.started["train"] = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if "train" in Timer.started:
                TIMES["train"] += time.perf_counter() - Timer.started.pop("train")
            # the weights after this epoch, and the training seconds that made them (taken
            # outside the timed span): scored on the validation windows after the fit
            Timer.epochs = getattr(Timer, "epochs", 0) + 1
            if Timer.epochs % snapshot_every == 0:
                weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
                SNAPSHOTS.append((TIMES["train"], weights))

        def on_predict_start(self, trainer, pl_module):
            Timer.started["predict"] = time.perf_counter()

        def on_predict_end(self, trainer, pl_module):
            TIMES["predict"] += time.perf_counter() - Timer.started["predict"]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            TIMES["batches"] += 1

    return Timer()


def peer_steps(epochs: int, quick: bool, units: int) -> int:
    """Optimiser steps of BATCH_SIZE windows that make `epochs` epochs over `units` windows."""
    return epochs * (QUICK_BATCHES if quick else math.ceil(units / BATCH_SIZE))


def run_neuralforecast(epochs: int, quick: bool) -> dict:
    """NeuralForecast's LSTM, one global model over the 7 channels as 7 univariate series.

    cross_validation with 2785 windows of step 1 forecasts exactly the protocol's test windows
    (cut-offs at rows 11519 ... 14303); with val_size = 2880 its training windows come from rows
    [0, 8640) only (it drops the last val_size + test_size rows from training).
    """
    import pytorch_lightning as pl
    from neuralforecast import NeuralForecast
    from neuralforecast.models import LSTM

    data = datamodule()
    x_test, y_test = windows(data, "test")
    rows = scaled_rows(data)
    long = rows.reset_index(names="ds").melt("ds", var_name="unique_id", value_name="y")
    n_train = len(data.datasets["train"]) * rows.shape[1]  # channel windows
    steps = peer_steps(epochs, quick, n_train)
    # its training "epoch" is one batch of the 7 series: keep the weights once per epoch of ours
    timer = lightning_timer(pl.Callback, snapshot_every=max(steps // max(epochs, 1), 1))
    model = LSTM(
        h=HORIZON,
        input_size=LOOKBACK,
        encoder_n_layers=1,
        encoder_hidden_size=HIDDEN,
        max_steps=steps,
        batch_size=rows.shape[1],
        windows_batch_size=BATCH_SIZE,
        inference_windows_batch_size=BATCH_SIZE,
        val_check_steps=max(steps // max(epochs, 1), 1),
        learning_rate=1e-3,
        random_seed=1,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        max_time=max_time(),
    )
    nf = NeuralForecast(models=[model], freq="h")
    n_test = len(x_test)
    start = time.perf_counter()
    cv = nf.cross_validation(
        long, n_windows=n_test, step_size=1, val_size=BORDERS[1] - BORDERS[0], refit=False
    )
    total = time.perf_counter() - start
    cv = cv.sort_values(["unique_id", "cutoff", "ds"])
    channels = list(rows.columns)
    y_hat = torch.tensor(
        cv.pivot_table(index=["cutoff", "ds"], columns="unique_id", values="LSTM")[channels]
        .to_numpy()
        .reshape(n_test, HORIZON, len(channels))
    )

    _, y_val = windows(data, "val")
    val_rows = long[long["ds"] < rows.index[BORDERS[1]]]

    def forecast_val():  # the fitted model on the validation windows (targets in the val rows)
        val = nf.cross_validation(val_rows, n_windows=len(y_val), step_size=1, use_fitted=True)
        val = val.sort_values(["unique_id", "cutoff", "ds"])
        table = val.pivot_table(index=["cutoff", "ds"], columns="unique_id", values="LSTM")
        shape = (len(y_val), HORIZON, len(channels))
        return torch.tensor(table[channels].to_numpy().reshape(shape)).float()

    curve = learning_curve(nf.models[0], forecast_val, y_val)
    return {
        **score(y_hat.float(), y_test),
        "val_curve": curve,
        "train_seconds": TIMES["fit"],
        "train_only_seconds": TIMES["train"],
        "train_windows": TIMES["batches"] * BATCH_SIZE / len(channels),
        "infer_seconds": total - TIMES["fit"],
        "predict_seconds": TIMES["predict"],  # of which the forward passes
    }


def run_darts(epochs: int, quick: bool, precision: str | None = None) -> dict:
    """Darts' BlockRNNModel (LSTM), multivariate: one 7-component series in, 7 out; `precision`
    for its Lightning trainer (default: float32, from the float32 series).

    Trained on rows [0, 8640) (its 8449 windows); historical_forecasts from row 11520 with
    stride 1 and no retraining forecasts exactly the protocol's test windows.
    """
    import pytorch_lightning as pl
    from darts import TimeSeries
    from darts.models import BlockRNNModel

    data = datamodule()
    x_test, y_test = windows(data, "test")
    rows = scaled_rows(data).astype("float32")
    series = TimeSeries.from_dataframe(rows)
    train = series[: BORDERS[0]]
    timer = lightning_timer(pl.Callback)
    model = BlockRNNModel(
        input_chunk_length=LOOKBACK,
        output_chunk_length=HORIZON,
        model="LSTM",
        hidden_dim=HIDDEN,
        n_rnn_layers=1,
        n_epochs=epochs,
        batch_size=BATCH_SIZE,
        optimizer_kwargs={"lr": 1e-3},
        random_state=1,
        pl_trainer_kwargs={
            "callbacks": [timer],
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "accelerator": "cpu",
            "max_time": max_time(),
            **({"limit_train_batches": QUICK_BATCHES} if quick else {}),
            **({"precision": precision} if precision else {}),
        },
    )
    model.fit(train, verbose=False)

    def forecasts_from(rows, start: int) -> torch.Tensor:
        """Every window of `rows` whose targets start at `start` or later, forecast."""
        forecasts = model.historical_forecasts(
            rows,
            start=start,
            start_format="position",
            forecast_horizon=HORIZON,
            stride=1,
            retrain=False,
            last_points_only=False,
            overlap_end=False,
            verbose=False,
        )
        return torch.tensor([f.values() for f in forecasts])

    start = time.perf_counter()
    y_hat = forecasts_from(series, BORDERS[1])
    infer_seconds = time.perf_counter() - start
    # the validation windows: targets in rows [8640, 11520)
    _, y_val = windows(data, "val")
    curve = learning_curve(
        model.model, lambda: forecasts_from(series[: BORDERS[1]], BORDERS[0]), y_val
    )
    return {
        **score(y_hat, y_test),
        "val_curve": curve,
        "train_seconds": TIMES["fit"],
        "train_only_seconds": TIMES["train"],
        "train_windows": TIMES["batches"] * BATCH_SIZE,  # last batch may be short: an upper bound
        "infer_seconds": infer_seconds,
    }


def run_pytorch_forecasting(epochs: int, quick: bool) -> dict:
    """PyTorch Forecasting's RecurrentNetwork (LSTM), one global model over the 7 channels as 7
    univariate series (its target is one column per group).

    Its TimeSeriesDataSet takes exactly look-back 96 and horizon 96 (no shorter windows): 8449
    training windows per channel from rows [0, 8640) and, from rows [11424, 14400), the 2785
    test windows per channel.
    """
    import lightning.pytorch as lp
    import pandas as pd
    from pytorch_forecasting import RecurrentNetwork, TimeSeriesDataSet

    data = datamodule()
    x_test, y_test = windows(data, "test")
    rows = scaled_rows(data)
    channels = list(rows.columns)
    long = rows.reset_index(drop=True).rename_axis("time_idx").reset_index()
    long = long.melt("time_idx", var_name="channel", value_name="value")
    long["channel"] = pd.Categorical(long["channel"], categories=channels)
    train = TimeSeriesDataSet(
        long[long.time_idx < BORDERS[0]],
        time_idx="time_idx",
        target="value",
        group_ids=["channel"],
        max_encoder_length=LOOKBACK,
        max_prediction_length=HORIZON,
        time_varying_unknown_reals=["value"],
    )
    test = TimeSeriesDataSet.from_dataset(
        train, long[long.time_idx >= BORDERS[1] - LOOKBACK], stop_randomization=True
    )
    lp.seed_everything(1)
    model = RecurrentNetwork.from_dataset(
        train, cell_type="LSTM", hidden_size=HIDDEN, rnn_layers=1, learning_rate=1e-3
    )
    timer = lightning_timer(lp.Callback)
    trainer = lp.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=QUICK_BATCHES if quick else 1.0,
        max_time=max_time(),
    )
    trainer.fit(model, train_dataloaders=train.to_dataloader(train=True, batch_size=BATCH_SIZE))
    loader = test.to_dataloader(train=False, batch_size=BATCH_SIZE)
    start = time.perf_counter()
    out = model.predict(loader, return_index=True, trainer_kwargs={"logger": False})
    infer_seconds = time.perf_counter() - start

    def ordered(out, n: int) -> torch.Tensor:  # [n windows, horizon, channels]
        index = out.index.assign(row=range(len(out.index)))
        index["channel"] = index["channel"].astype(str).map(channels.index)
        order = index.sort_values(["channel", "time_idx"])["row"].to_numpy()
        return out.output[order].reshape(len(channels), n, HORIZON).permute(1, 2, 0).float()

    y_hat = ordered(out, len(x_test))
    val = TimeSeriesDataSet.from_dataset(
        train,
        long[(long.time_idx >= BORDERS[0] - LOOKBACK) & (long.time_idx < BORDERS[1])],
        stop_randomization=True,
    )
    val_loader = val.to_dataloader(train=False, batch_size=BATCH_SIZE)
    _, y_val = windows(data, "val")

    def forecast_val() -> torch.Tensor:  # fresh trainer_kwargs: predict adds its callback to them
        out = model.predict(val_loader, return_index=True, trainer_kwargs={"logger": False})
        return ordered(out, len(y_val))

    curve = learning_curve(model, forecast_val, y_val)
    return {
        **score(y_hat, y_test),
        "val_curve": curve,
        "train_seconds": TIMES["fit"],
        "train_only_seconds": TIMES["train"],
        "train_windows": TIMES["batches"] * BATCH_SIZE / len(channels),
        "infer_seconds": infer_seconds,
    }


def run_worker(method: str, epochs: int, quick: bool, out: Path) -> dict:
    if method in OURS:
        return run_ours(method, epochs, quick, out)
    if method == "dlinear":
        return run_dlinear(epochs, quick)
    if method in ("naive", "seasonal naive"):
        return run_naive(seasonal=method == "seasonal naive")
    if method == "neuralforecast LSTM":
        return run_neuralforecast(epochs, quick)
    if method.startswith("darts BlockRNN LSTM"):
        return run_darts(epochs, quick, BF16.strip() if method.endswith(BF16) else None)
    if method == "pytorch-forecasting RecurrentNetwork":
        return run_pytorch_forecasting(epochs, quick)
    raise NotImplementedError(f"no worker for {method!r}")


# ---- driver ------------------------------------------------------------------------------------


def measure(method: str, args, out: Path) -> dict:
    """Run one method's worker in a subprocess; its result, plus its own peak RSS in MB."""
    module = PEERS.get(method)
    if module is not None and importlib.util.find_spec(module) is None:
        return {"status": "not installed"}
    result_path = out / f"{method.replace('/', '-').replace(' ', '_')}.json"
    cmd = [sys.executable, __file__, "--worker", method, "--epochs", str(args.epochs)]
    cmd += ["--out", str(out), "--result", str(result_path)] + (["--quick"] if args.quick else [])
    cmd += ["--minutes", str(args.minutes)] if args.minutes else []
    log_path = result_path.with_suffix(".log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log_path.read_text()[-1500:]
        print(f"{method} failed (log {log_path}):\n{tail}", file=sys.stderr)
        return {"status": "failed"}
    result = json.loads(result_path.read_text())
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return result


def row(method: str, r: dict, threshold: float | None = None) -> str:
    if method in OURS:
        cell, _, rest = method.partition("/")
        name = f"forecast {cell} ({rest.replace(' ', ', ')})"
    else:
        name = method
    if method in NOTES:
        name += f" [{NOTES[method]}]"
    if "mse" not in r:
        return f"| {name} | {r['status']} | | | | | | | |"
    train, train_only = r.get("train_seconds"), r.get("train_only_seconds")
    cells = [
        f"{r['mse']:.4f}",
        f"{r['mae']:.4f}",
        "-" if train is None else f"{train:.3g}",
        "-" if train_only is None else f"{train_only:.3g}",
        "-" if not train_only else f"{r['train_windows'] / train_only:,.0f}",
        seconds_to(r.get("val_curve"), threshold),
        f"{r['test_windows'] / r['infer_seconds']:,.0f}",
        f"{r['peak_rss_mb']:,.0f}",
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs, every method")
    parser.add_argument(
        "--minutes", type=float, default=None, help="and at most this much training, every method"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"1 epoch of {QUICK_BATCHES} batches, fewer of ours"
    )
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS, metavar="M")
    parser.add_argument("--out", type=Path, default=None, help="run directories (default: temp)")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.epochs = 1
    if args.methods is None:
        skipped = [m for m in OURS if m not in QUICK_OURS] if args.quick else []
        args.methods = [m for m in METHODS if m not in skipped]
    BUDGET["minutes"] = args.minutes
    if args.worker:
        result = run_worker(args.worker, args.epochs, args.quick, args.out)
        args.result.write_text(json.dumps(result))
        return

    from forecast.nn import fast
    from forecast.runtime import prepare_process

    prepare_process()  # every worker inherits the process settings train.py runs with
    # our C++ kernels are compiled on first use, once per machine: do that here, so that no
    # worker's fit time or peak RSS (which counts the compiler, a child) includes it
    fast.extension()
    out = args.out or Path(tempfile.mkdtemp(prefix="peers-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    budget = f"{args.epochs} epoch(s)" + (
        f" of {QUICK_BATCHES} batches" if args.quick else " over the 8449 training windows"
    )
    if args.minutes:
        budget += f", at most {args.minutes:g} min of training (validation included)"
    print(
        f"# ETTh1 LB{LOOKBACK}/H{HORIZON}, all 7 channels; budget {budget}, batch {BATCH_SIZE}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    results = {}
    for method in args.methods:
        print(f"running {method} ...", file=sys.stderr, flush=True)
        results[method] = measure(method, args, out)
    threshold = min((m for _, m in results.get("dlinear", {}).get("val_curve", [])), default=None)
    print(
        "| method | test MSE | test MAE | fit s | of which training s | training windows/s "
        "| training s to DLinear's val MSE | inference windows/s | peak RSS MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for method, result in results.items():
        print(row(method, result, threshold))
    notes = sorted({NOTES[m] for m in args.methods if m in NOTES})
    if threshold is not None:
        print(f"\nDLinear's best validation MSE: {threshold:.4f}. {TIME_TO_ACCURACY}")
    print(f"\n{PEER_SETUP}")
    for note in notes:
        print(f"[{note}] {FOOTNOTES[note]}")
    print(f"\nrun directories and logs: {out}")


if __name__ == "__main__":
    main()
