"""Model FLOPs utilisation (MFU) of the default model's training step, per backbone and precision.

    python benchmarks/mfu.py                        # lstm, lstmp, gru; float32 and bf16-mixed
    python benchmarks/mfu.py --precisions 32-true   # float32 only
    python benchmarks/mfu.py --quick                # smoke test: the lstm, float32, few steps

The model is `experiment=etth1_96` with `model=<backbone>` as shipped (ETTh1, look-back 96,
horizon 96, 7 channels, batch 256; LSTM and GRU hidden 128, LSTMP hidden 256 projected to 128;
`model.impl=torch`, torch's own modules). MFU = (multiply-adds of a step / its seconds) / the
machine's matrix-multiply peak, all measured in this run:

- Multiply-adds (MACs), counted by hand from the layers' shapes (`count_step`): every matrix
  product of the forward, and two of the same size in the backward (the input's gradient and the
  weight's), but one where the input needs no gradient (the recurrence's first step starts from
  a zero state: only its weight gradient). Elementwise work (gates, RevIN, the loss, Adam) is
  not counted: MFU counts the model's matrix arithmetic, the work the peak measures.
  Cross-checked by `torch.utils.flop_counter.FlopCounterMode` over the same model with our
  reference recurrence (`model.impl=custom`, backend `reference`: every product a public op),
  layer by layer (tests/test_mfu.py); it cannot see inside torch's fused oneDNN LSTM.
- The step: forward, loss, backward, gradient clipping (the trainer's gradient_clip_val) and
  Adam's step, on training batches already loaded, deterministic algorithms on as train.py runs
  (median of --steps after warm-up); bf16-mixed under `torch.autocast("cpu", torch.bfloat16)`,
  as Lightning's precision does. And train.py's whole step: the time between consecutive
  training batches in `forecast.pipeline.train` (data loading, Lightning's loop and logging).
- Peak: the best of --repeats `torch.matmul` of two n x n matrices, float32 and bfloat16, n
  doubled from 256 until one product takes 0.2 s (or n = 4096).

`--profile` adds where the float32 step of the default model spends its time (torch.profiler):
the matrix products against the rest, and the share in no operator at all (Python, dispatch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `forecast` from this checkout when run as a script

BACKBONES = ("lstm", "lstmp", "gru")
PRECISIONS = ("32-true", "bf16-mixed")
PEAK_DTYPES = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}
CLIP = 1.0  # conf/trainer/default.yaml's gradient_clip_val
# the operators that do the counted arithmetic (their self time is "matrix products")
MATRIX_OPS = (
    "aten::addmm",
    "aten::mm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::mkldnn_rnn_layer",
    "aten::mkldnn_rnn_layer_backward",
    "mkldnn::_linear_pointwise",
)


# ---- counting ------------------------------------------------------------------------------------


# every product `linear` counts, as (rows, inputs, outputs, input_grad, times), while recording
SHAPES: list | None = None


def linear(
    rows: int, inputs: int, outputs: int, input_grad: bool = True, times: int = 1
) -> tuple[int, int]:
    """(forward, backward) MACs of `times` products [rows, inputs] x [inputs, outputs] (one
    after another, as a recurrence's steps): the backward is the weight's gradient, and the
    input's where it needs one."""
    if SHAPES is not None:
        SHAPES.append((rows, inputs, outputs, input_grad, times))
    forward = times * rows * inputs * outputs
    return forward, forward * (2 if input_grad else 1)


def add(*counts: tuple[int, int]) -> tuple[int, int]:
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def count_step(net, batch: int) -> dict[str, tuple[int, int]]:
    """{layer: (forward MACs, backward MACs)} of one training step of a ForecastNet on `batch`
    windows: embed, encoder (the recurrence over the look-back's segments), decoder (the parallel
    decoder's step, or nothing for `direct`), head and highway."""
    units = batch * net.n_channels if net.channel_independent else batch  # sequences
    rnn = net.rnn
    hidden, proj = rnn.hidden_size, getattr(rnn, "proj_size", 0)
    out = proj or hidden  # the state the recurrence feeds back
    gates = rnn.weight_ih_l0.shape[0] // hidden  # 4 (LSTM) or 3 (GRU)
    directions = 2 if rnn.bidirectional else 1
    embed = net.embed[0]
    counts = {"embed": linear(units * net.n_in_segments, embed.in_features, embed.out_features)}
    encoder = []
    for layer in range(rnn.num_layers):
        inputs = embed.out_features if layer == 0 else out * directions
        for _ in range(directions):
            encoder.append(recurrence(units, net.n_in_segments, inputs, hidden, proj, gates))
    counts["encoder"] = add(*encoder)
    if net.decoder == "pmf":
        counts["decoder"] = decoder_step(net, units, hidden, proj, gates)
        rows, outputs = units * net.n_out_segments, net.head.out_features
    else:
        counts["decoder"] = (0, 0)
        rows, outputs = units, net.head.out_features
    counts["head"] = linear(rows, net.head.in_features, outputs)
    if net.highway is not None:  # [U, F, lookback] -> [U, F, horizon]
        counts["highway"] = linear(units * net.features, net.lookback, net.horizon)
    return counts


def recurrence(units: int, steps: int, inputs: int, hidden: int, proj: int, gates: int):
    """One layer and direction over `steps` steps of `units` sequences from a zero state."""
    out = proj or hidden
    projection = linear(units * steps, inputs, gates * hidden)  # all steps at once
    first = linear(units, out, gates * hidden, input_grad=False)  # the zero state's step
    rest = linear(units, out, gates * hidden, times=steps - 1)  # one step after another
    counts = [projection, first, rest]
    if proj:  # LSTMP: h = W_hr (o * tanh(c)), fed back: one step after another
        counts.append(linear(units, hidden, proj, times=steps))
    return add(*counts)


def decoder_step(net, units: int, hidden: int, proj: int, gates: int) -> tuple[int, int]:
    """The parallel decoder's one step per output segment from the encoder's final state."""
    m, embed_size = net.n_out_segments, net.position_embedding.shape[1]
    embed_size += net.channel_embedding.shape[1]
    out = proj or hidden
    projection = (linear(units * m, hidden, proj),) if proj else ()
    if net.rnn.num_layers == 1 and not net.rnn.bidirectional:  # broadcast_step
        queries = net.n_channels * m if net.channel_independent else m  # distinct inputs
        return add(
            linear(queries, embed_size, gates * hidden),
            linear(units, out, gates * hidden),  # each unit's state once
            *projection,
        )
    # the backbone on U * M one-step sequences from the repeated final states
    directions = 2 if net.rnn.bidirectional else 1
    layers = []
    for layer in range(net.rnn.num_layers):
        inputs = embed_size if layer == 0 else out * directions
        for _ in range(directions):
            layers.append(linear(units * m, inputs, gates * hidden))
            layers.append(linear(units * m, out, gates * hidden))
            layers.extend(projection)
    return add(*layers)


def shapes_of(net, batch: int) -> list[tuple]:
    """The products `count_step` counts, with their shapes."""
    global SHAPES
    SHAPES = []
    try:
        count_step(net, batch)
        return SHAPES
    finally:
        SHAPES = None


# ---- measuring -----------------------------------------------------------------------------------


def gemm_floor(shapes: list[tuple], dtype: torch.dtype, repeats: int) -> float:
    """Seconds the counted products take alone, each at its own shape (the best of `repeats`
    of each): forward and the input's gradient once per step, the weight's gradient in one
    product over all steps (as oneDNN's and cuDNN's layers do). What a step would take if all
    else were free: the most MFU these shapes allow on this machine."""

    total = 0.0
    for rows, inputs, outputs, input_grad, times in shapes:
        x, w = torch.randn(rows, inputs).to(dtype), torch.randn(inputs, outputs).to(dtype)
        grad = torch.randn(rows, outputs).to(dtype)
        per_step = fastest(x, w, repeats) + (fastest(grad, w.T, repeats) if input_grad else 0.0)
        all_x = torch.randn(inputs, rows * times).to(dtype)
        all_grad = torch.randn(rows * times, outputs).to(dtype)
        total += times * per_step + fastest(all_x, all_grad, repeats)
    return total


def fastest(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    """Seconds of the fastest of `repeats` products `a @ b`, after one to warm up."""
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(dtype: torch.dtype, repeats: int, longest: float = 0.2) -> tuple[float, int]:
    """MACs per second of the best of `repeats` n x n products, and n."""
    n = 256
    while True:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.matmul(a, b)  # warm-up
        start = time.perf_counter()
        torch.matmul(a, b)
        if time.perf_counter() - start >= longest or n >= 4096:
            break
        n *= 2
    return n**3 / fastest(a, b, repeats), n


def compose(backbone: str, overrides: list[str]):
    from forecast.config import compose_train_config

    return compose_train_config(["experiment=etth1_96", f"model={backbone}", *overrides])


def build(backbone: str):
    """The model (a Forecaster), its optimiser and a few training batches, as train.py builds
    them for experiment=etth1_96."""
    from forecast.pipeline import build, build_model

    cfg = compose(backbone, [])
    data = build(cfg.data)
    data.setup("fit")
    model = build_model(cfg.model, data.spec)
    optimiser = model.configure_optimizers()
    optimiser = optimiser["optimizer"] if isinstance(optimiser, dict) else optimiser
    loader = iter(data.train_dataloader())
    batches = [next(loader) for _ in range(4)]
    return model.train(), optimiser, batches, cfg.data.batch_size


def step(model, optimiser, batch, precision: str) -> None:
    """One training step as Lightning runs it (automatic optimisation, norm clipping)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        loss = model.loss(model(batch["x"]), batch)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimiser.step()


def warm_up(model, optimiser, batches, precision: str, steps: int) -> None:
    """First steps allocate and pick kernels: not what a step costs."""
    for i in range(steps):
        step(model, optimiser, batches[i % len(batches)], precision)


def time_steps(model, optimiser, batches, precision: str, warmup: int, steps: int) -> float:
    """Median seconds of a step, after `warmup` steps."""
    warm_up(model, optimiser, batches, precision, warmup)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(model, optimiser, batches[i % len(batches)], precision)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_model_step(backbone: str, precision: str, warmup: int, steps: int) -> dict:
    from forecast.pipeline import no_nan_fill

    torch.manual_seed(1)
    model, optimiser, batches, batch_size = build(backbone)
    counts = count_step(model.net, batch_size)
    torch.use_deterministic_algorithms(True)  # trainer.deterministic=true, as train.py
    with no_nan_fill():
        seconds = time_steps(model, optimiser, batches, precision, warmup, steps)
    floor = gemm_floor(shapes_of(model.net, batch_size), PEAK_DTYPES[precision], 20)
    return {"counts": counts, "batch": batch_size, "step_s": seconds, "gemm_floor_s": floor}


def measure_train_step(backbone: str, precision: str, batches: int, out: str) -> dict:
    """train.py's loop (forecast.pipeline.train): median seconds between consecutive training
    batches' ends, after the first few; without validation or test passes."""
    import pytorch_lightning as pl

    from forecast.pipeline import train

    ends: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            ends.append(time.perf_counter())

    cfg = compose(
        backbone,
        [
            f"trainer.precision={precision}",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={batches}",
            "trainer.limit_val_batches=0",
            "trainer.limit_test_batches=0",
            "callbacks.early_stopping=null",
            f"output_dir={out}",
        ],
    )
    train(cfg, callbacks=[Clock()], progress=False)
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)][2:]  # after warm-up
    return {"train_step_s": statistics.median(gaps)}


def profile_step(backbone: str, steps: int) -> dict:
    """Self time per step of each operator (ms), and the step's wall time, float32."""
    from torch.profiler import ProfilerActivity, profile

    from forecast.pipeline import no_nan_fill

    model, optimiser, batches, _ = build(backbone)
    torch.use_deterministic_algorithms(True)
    with no_nan_fill():
        warm_up(model, optimiser, batches, "32-true", 3)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for i in range(steps):
                step(model, optimiser, batches[i % len(batches)], "32-true")
            wall = (time.perf_counter() - start) / steps
    ops = {
        e.key: e.self_cpu_time_total / 1e3 / steps
        for e in prof.key_averages()
        if e.self_cpu_time_total > 0
    }
    return {"wall_ms": wall * 1e3, "ops_ms": ops}


# ---- driver --------------------------------------------------------------------------------------


def child(*args: str) -> dict:
    """This script with `args` in a fresh process (each case's threads and caches its own)."""
    import subprocess

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, __file__, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case")
    parser.add_argument("--repeats", type=int, default=10, help="timed products for the peak")
    parser.add_argument("--profile", action="store_true", help="and profile the default step")
    parser.add_argument(
        "--quick", action="store_true", help="the lstm, float32, few steps: a smoke test"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        work = {
            "peak": peak_worker,
            "model": measure_model_step,
            "train": measure_train_step,
            "profile": profile_step,
        }
        numbers = [int(r) if r.isdigit() else r for r in rest]
        print(json.dumps(work[kind](*numbers)))
        return
    from forecast.runtime import prepare_process

    prepare_process()  # the process settings train.py runs with (allocator, OpenMP waiting)
    if args.quick:
        args.steps, args.repeats = 3, 3
        args.backbones, args.precisions = ["lstm"], ["32-true"]
    warmup = 3
    peaks = {}
    for precision in args.precisions:
        peaks[precision] = child("--worker", "peak", precision, str(args.repeats))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mfu-bench-") as tmp:
        for backbone in args.backbones:
            for precision in args.precisions:
                model = child(
                    "--worker", "model", backbone, precision, str(warmup), str(args.steps)
                )
                batches = warmup + 2 + args.steps
                out = str(Path(tmp) / f"{backbone}-{precision}")
                whole = child("--worker", "train", backbone, precision, str(batches), out)
                rows.append({"backbone": backbone, "precision": precision, **model, **whole})
                print(f"# {backbone} {precision} done", file=sys.stderr, flush=True)
        profile = child("--worker", "profile", "lstm", str(args.steps)) if args.profile else None
    if args.json:
        args.json.write_text(json.dumps({"peaks": peaks, "rows": rows, "profile": profile}))
    report(peaks, rows, profile)


def emulated_precisions(peaks: dict) -> set[str]:
    """The precisions whose measured product peak is below float32's: the CPU has no native
    instructions for them (bfloat16 without AVX512-BF16 or AMX), so a step's rate against that
    peak is no utilisation of the hardware and is not printed."""
    base = peaks.get("32-true", {}).get("macs_per_s")
    if not base:
        return set()
    return {p for p, peak in peaks.items() if p != "32-true" and peak["macs_per_s"] < base}


def report(peaks: dict, rows: list[dict], profile: dict | None) -> None:
    print(
        f"# experiment=etth1_96 (batch {rows[0]['batch']}), {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    emulated = emulated_precisions(peaks)
    for precision, peak in peaks.items():
        print(
            f"# matmul peak {precision}: {peak['macs_per_s'] / 1e9:.1f} G multiply-adds/s "
            f"({peak['n']} x {peak['n']}, {PEAK_DTYPES[precision]})"
            + (": slower than float32, so emulated here (no MFU)" if precision in emulated else "")
        )
    print(
        "| backbone | precision | G multiply-adds per step | model step ms | G multiply-adds/s "
        "| MFU, model step | train.py step ms | MFU, train.py step | products alone ms "
        "| MFU ceiling of these shapes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        macs = sum(f + b for f, b in r["counts"].values())
        peak = peaks[r["precision"]]["macs_per_s"]
        rate = macs / r["step_s"]
        cells = [
            r["backbone"],
            r["precision"],
            f"{macs / 1e9:.2f}",
            f"{r['step_s'] * 1e3:.1f}",
            f"{rate / 1e9:.1f}",
            "-" if r["precision"] in emulated else f"{rate / peak:.0%}",
            f"{r['train_step_s'] * 1e3:.1f}",
            "-" if r["precision"] in emulated else f"{macs / r['train_step_s'] / peak:.0%}",
            f"{r['gemm_floor_s'] * 1e3:.1f}",
            "-" if r["precision"] in emulated else f"{macs / r['gemm_floor_s'] / peak:.0%}",
        ]
        print("| " + " | ".join(cells) + " |")
    print("\nMultiply-adds per step by layer (M; forward / backward)")
    seen = []
    for r in rows:
        if r["backbone"] in seen:
            continue
        seen.append(r["backbone"])
        parts = [f"{k} {f / 1e6:.0f} / {b / 1e6:.0f}" for k, (f, b) in r["counts"].items()]
        print(f"- {r['backbone']}: " + ", ".join(parts))
    if profile:
        report_profile(profile, next(r for r in rows if r["backbone"] == "lstm"), peaks)


def report_profile(profile: dict, row: dict, peaks: dict) -> None:
    ops, wall = profile["ops_ms"], profile["wall_ms"]
    matrix = sum(ms for op, ms in ops.items() if op in MATRIX_OPS)
    other = sum(ms for op, ms in ops.items() if op not in MATRIX_OPS)
    macs = sum(f + b for f, b in row["counts"].values())
    peak = peaks.get("32-true", {}).get("macs_per_s")
    print(f"\nWhere the lstm float32 step's {wall:.1f} ms go (torch.profiler, self time per step)")
    print("| part | ms | share | G multiply-adds/s |")
    print("| --- | --- | --- | --- |")
    rate = macs / (matrix / 1e3) / 1e9
    of_peak = f" ({rate * 1e9 / peak:.0%} of peak)" if peak else ""
    print(f"| matrix products [a] | {matrix:.1f} | {matrix / wall:.0%} | {rate:.1f}{of_peak} |")
    print(f"| every other operator | {other:.1f} | {other / wall:.0%} | |")
    print(
        f"| in no operator (Python, autograd's engine) | {wall - matrix - other:.1f} | "
        f"{(wall - matrix - other) / wall:.0%} | |"
    )
    print(
        f"\n[a] {', '.join(MATRIX_OPS)}: every counted multiply-add; oneDNN's LSTM layer "
        f"(mkldnn_rnn_layer) computes its gates inside, so their elementwise work is counted here"
    )
    print("\n| operator | ms per step | share |")
    print("| --- | --- | --- |")
    for op, ms in sorted(ops.items(), key=lambda kv: -kv[1])[:15]:
        print(f"| {op} | {ms:.2f} | {ms / wall:.0%} |")


def peak_worker(precision: str, repeats: int) -> dict:
    macs_per_s, n = matmul_peak(PEAK_DTYPES[precision], repeats)
    return {"macs_per_s": macs_per_s, "n": n}


if __name__ == "__main__":
    main()
