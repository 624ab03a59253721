"""Export a trained network as a self-contained bundle, and load it back without our code.

`export/` holds `model.pt2` (`torch.export`: load it with `torch.export.load(...).module()`),
`model.onnx` (the same exported program through torch's `torch.export`-based ONNX exporter;
when `onnx` and `onnxscript` are installed) and `meta.json`. Both models take raw values
[batch, lookback, channels] (float32, any batch) and return raw forecasts [batch, horizon,
channels] (or [..., quantiles]): the data scaler is inside. Loading needs torch or onnxruntime
only: no Lightning, no code of ours. `model.pt` (TorchScript, deprecated by torch) is written
only on request (`export_formats=[pt2, onnx, torchscript]`, or `torchscript=True`) and read
where an older export has one; `export_formats` chooses what train.py writes ([] for none).

`meta.json` is checked against a schema whenever it is loaded (`load_meta`): a bad field is
one `ExportError` line naming the file, the field and the fix, and the paths under "files"
must stay inside the export folder.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from forecast.atomic import atomic_path

FORMAT_VERSION = 2  # 2: model.pt2 and the torch.export-based ONNX; 1: TorchScript and ONNX
ENGINES = ("pt2", "onnx", "torchscript")
FILE_NAMES = {"pt2": "model.pt2", "onnx": "model.onnx", "torchscript": "model.pt"}
MAX_META_BYTES = 16 * 2**20
# what train.py writes unless told (`export_formats`): ONNX only where onnx is installed
DEFAULT_FORMATS = ("pt2", "onnx")
MAX_DEPTH = 32  # nesting of meta.json's values: its config is a few levels deep


class ExportError(ValueError):
    """An export that cannot be loaded as it is (a bad meta.json); the message is one line
    naming the file, what is wrong and what to do."""


def export_bundle(
    net,
    mean,
    scale,
    meta: dict,
    out_dir: str | Path,
    independent: bool = False,
    torchscript: bool = False,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> dict[str, Path]:
    """Write the `formats` (model.pt2; model.onnx, when onnx and onnxscript are installed;
    model.pt, TorchScript) and meta.json into `out_dir`, each atomically, meta.json last.
    `torchscript=True` adds TorchScript to the formats.

    `mean`, `scale` [C]: the data scaler (raw = scaled * scale + mean); `independent`: the net
    forecasts one channel at a time (see ScaledForecastNet).
    """
    formats = check_formats([*formats, *(["torchscript"] if torchscript else [])])
    from forecast.models.network import ScaledForecastNet

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mean = torch.as_tensor(mean, dtype=torch.float32)
    scale = torch.as_tensor(scale, dtype=torch.float32)
    module = ScaledForecastNet(exportable_copy(net), mean, scale, independent).float().eval()
    example = torch.randn(2, net.lookback, len(mean))
    covariates = covariate_inputs(net)  # name -> shape after the batch
    extra = {name: torch.zeros(2, *shape) for name, shape in covariates.items()}
    written = {}
    if "pt2" in formats or "onnx" in formats:
        program = _export_program(module, example, extra)
    if "pt2" in formats:
        written["pt2"] = _write_atomic(out_dir / FILE_NAMES["pt2"], lambda p: _save(program, p))
    if "onnx" in formats and _onnx_available():
        written["onnx"] = _write_atomic(
            out_dir / FILE_NAMES["onnx"], lambda p: _to_onnx(program, example, extra, p)
        )
    if "torchscript" in formats:
        if covariates:
            raise ValueError("TorchScript exports take no covariates: export model.pt2")
        written["torchscript"] = _write_atomic(
            out_dir / FILE_NAMES["torchscript"], lambda p: _to_torchscript(module, example, p)
        )
    meta = {
        "format_version": FORMAT_VERSION,
        "input": "x",
        "output": "y_hat",
        "input_shape": ["batch", net.lookback, len(mean)],
        # the covariates the model takes, as named inputs besides x (raw: numbers and codes)
        "covariate_inputs": {name: ["batch", *shape] for name, shape in covariates.items()},
        "files": {engine: path.name for engine, path in written.items()},
        **meta,
    }
    text = json.dumps(meta, indent=2, default=_jsonable) + "\n"
    written["meta"] = _write_atomic(out_dir / "meta.json", lambda p: Path(p).write_text(text))
    return written


def check_formats(formats: Sequence[str]) -> list[str]:
    """`formats` without repeats, each one of ENGINES (a ValueError names the one that is not)."""
    for name in formats:
        if name not in ENGINES:
            raise ValueError(
                f"export_formats: {name!r} is not an export format; "
                f"choose from {', '.join(ENGINES)}"
            )
    return list(dict.fromkeys(formats))


def covariate_inputs(net) -> dict[str, list[int]]:
    """The covariate inputs of `net` (a ForecastNet) by name, each with its shape after the
    batch dimension: past [lookback, Kp], future [lookback + horizon, Kf], static [Ks]."""
    lengths = {"past": [net.lookback], "future": [net.lookback + net.horizon], "static": []}
    inputs = {}
    for name, length in lengths.items():
        encoder = getattr(net, f"{name}_encoder", None)
        if encoder is not None:
            inputs[name] = [*length, encoder.n_columns]
    return inputs


def exportable_copy(net):
    """A CPU float32 copy of `net` (a ForecastNet, or an EnsembleNet of them) whose recurrent
    backbones every exporter accepts.

    ONNX's LSTM has no projection, so torch's `nn.LSTM` with `proj_size` does not export to it;
    our reference loop takes its weights unchanged (the state dicts are interchangeable) and
    exports as plain ops. Our own modules export their reference loop by themselves (the fast
    path stands aside while exporting).
    """
    from forecast.models.network import ForecastNet

    net = copy.deepcopy(net).cpu().float().eval()
    for module in list(net.modules()):  # a list: the loop replaces modules
        if isinstance(module, ForecastNet):
            _exportable_backbone(module)
    return net


def _exportable_backbone(net) -> None:
    """Give the ForecastNet `net` our LSTMP loop in place of torch's `nn.LSTM` with `proj_size`."""
    from forecast.nn import build_backbone

    rnn = net.rnn
    if isinstance(rnn, torch.nn.LSTM) and rnn.proj_size > 0:
        ours = build_backbone(
            "lstmp",
            "custom",
            input_size=rnn.input_size,
            hidden_size=rnn.hidden_size,
            num_layers=rnn.num_layers,
            proj_size=rnn.proj_size,
            dropout=rnn.dropout,
            bidirectional=rnn.bidirectional,
            batch_first=rnn.batch_first,
            bias=rnn.bias,
        )
        ours.load_state_dict(rnn.state_dict(), strict=True)
        net.rnn = ours.eval()


def _export_program(module, example, extra: dict) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch dimension; `extra`: the covariate inputs, by name."""
    batch = torch.export.Dim("batch")
    shapes = {"x": {0: batch}, **{name: {0: batch} for name in extra}}
    with warnings.catch_warnings():
        # torch's nn.LSTM / nn.GRU rebuild their `_flat_weights` list in every forward, which
        # the exporter reports as tensors assigned during export; they are the module's own
        # parameters, exported as such (tests/test_export.py checks the results; an ensemble's
        # members are self.net.members.<k>, tests/test_ensemble.py)
        warnings.filterwarnings(
            "ignore",
            r"The tensor attributes self\.net\.(members\.\d+\.)?rnn\._flat_weights",
            UserWarning,
        )
        return torch.export.export(module, (example,), extra, dynamic_shapes=shapes)


def _save(program, path: Path) -> None:
    buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2, or a buffer
    torch.export.save(program, buffer)
    path.write_bytes(buffer.getvalue())


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (torch's torch.export-based ONNX exporter needs it)
    except ImportError:
        return False
    return True


def _to_onnx(program, example, extra: dict, path: Path) -> None:
    with _quiet_onnx_exporter():
        onnx_program = torch.onnx.export(
            program,
            (example,),
            kwargs=extra,
            input_names=["x", *extra],
            output_names=["y_hat"],
            dynamo=True,
            verbose=False,
        )
    onnx_program.save(str(path))


@contextlib.contextmanager
def _quiet_onnx_exporter():
    """The exporter logs what it skips (torchvision's ops, constant folding of a Split) and
    torch's pytree warns about its own use of a deprecated check: none of it concerns the
    model, whose output tests/test_export.py compares with the in-memory one."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _to_torchscript(module, example, path: Path) -> None:
    with warnings.catch_warnings():  # asked for by name: the caller knows it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(module, example)
        traced.save(str(path))


def _write_atomic(path: Path, write) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def _jsonable(value):
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to meta.json")


# -- meta.json's schema ----------------------------------------------------------------------


def load_meta(model_dir: Path) -> dict:
    """meta.json of the export folder `model_dir`, checked against the schema (ExportError)."""
    path = model_dir / "meta.json"
    if path.stat().st_size > MAX_META_BYTES:
        raise ExportError(f"{path}: larger than {MAX_META_BYTES} bytes; re-export the model")
    try:
        meta = json.loads(path.read_bytes())
    except json.JSONDecodeError as error:
        raise ExportError(
            f"{path}: not valid JSON ({error.msg}, line {error.lineno} column {error.colno}); "
            "re-export the model"
        ) from None
    except (UnicodeDecodeError, RecursionError) as error:
        what = "nested too deeply" if isinstance(error, RecursionError) else "not UTF-8 text"
        raise ExportError(f"{path}: {what}; re-export the model") from None
    problem = _meta_problem(meta, model_dir)
    if problem is not None:
        raise ExportError(f"{path}: {problem}; re-export the model, or correct the field")
    return meta


def _meta_problem(meta, model_dir: Path) -> str | None:
    """The first way `meta` breaks the schema, in words, or None."""
    if not isinstance(meta, dict):
        return f"must hold a JSON object, not {_kind(meta)}"
    if _depth(meta) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    for key, check in _FIELDS.items():
        if key not in meta:
            if key in _OPTIONAL:
                continue
            return f'the field "{key}" is missing'
        problem = check(meta[key])
        if problem is not None:
            return f'"{key}" {problem}, got {_shown(meta[key])}'
    expected = ["batch", meta["lookback"], len(meta["channels"])]
    if meta["input_shape"] != expected:
        return f'"input_shape" must be {json.dumps(expected)} (lookback, channels), got ' + (
            _shown(meta["input_shape"])
        )
    for engine, name in meta["files"].items():
        problem = _path_problem(name, model_dir)
        if problem is not None:
            return f'"files.{engine}" {problem}, got {_shown(name)}'
    return None


def _positive_int(value) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return None if ok else "must be a positive integer"


def _text(value) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def _channels(value) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of column names"
    if not all(isinstance(v, str) and v for v in value):
        return "must be a list of non-empty strings"
    if len(set(value)) != len(value):
        return "must name each channel once"
    return None


def _quantiles(value) -> str | None:
    if not isinstance(value, list) or not all(
        isinstance(q, (int, float)) and not isinstance(q, bool) and 0 < q < 1 for q in value
    ):
        return "must be a list of numbers between 0 and 1"
    if value != sorted(set(value)):
        return "must be increasing"
    return None


def _files(value) -> str | None:
    if not isinstance(value, dict) or not value:
        return f"must map engines ({', '.join(ENGINES)}) to file names"
    unknown = sorted(set(value) - set(ENGINES))
    if unknown:
        return f"names an unknown engine {unknown[0]!r} (known: {', '.join(ENGINES)})"
    return None


def _frequency(value) -> str | None:
    ok = value is None or isinstance(value, str) or _positive_int(value) is None
    return None if ok else "must be a pandas frequency, a positive integer or null"


def _input_shape(value) -> str | None:
    ok = isinstance(value, list) and len(value) == 3 and value[0] == "batch"
    return None if ok else 'must be ["batch", lookback, channels]'


def _format_version(value) -> str | None:
    ok = value in (1, FORMAT_VERSION) and not isinstance(value, bool)
    return None if ok else f"must be 1 or {FORMAT_VERSION} (a newer export needs a newer forecast)"


def _object(value) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object"


def _config(value) -> str | None:
    if not isinstance(value, dict):
        return "must be a JSON object"
    if not isinstance(value.get("data", {}), dict):
        return "must hold its data options as a JSON object"
    return None


_FIELDS = {
    "format_version": _format_version,
    "input": _text,
    "output": _text,
    "lookback": _positive_int,
    "horizon": _positive_int,
    "channels": _channels,
    "input_shape": _input_shape,
    "files": _files,
    "quantiles": _quantiles,
    "frequency": _frequency,
    "scaler": _object,
    "config": _config,
    "reading": _object,  # ReadOptions checks its own values when predict.py reads with them
    "covariates": _object,
    "covariate_inputs": _object,
    "season": _positive_int,
    "naive_blend": _object,  # a record: the exported network applies it
    "ensemble": _object,  # a record of an ensemble's members: the exported network holds them
}
_OPTIONAL = {
    "quantiles",
    "frequency",
    "scaler",
    "config",
    "reading",
    "season",
    "naive_blend",
    "covariates",
    "covariate_inputs",
    "ensemble",
}


def _path_problem(name, model_dir: Path) -> str | None:
    """Why the file name `name` may not be read from `model_dir`, or None."""
    if not isinstance(name, str) or not name:
        return "must be a file name"
    relative = Path(name)
    if relative.is_absolute() or "\\" in name or ".." in relative.parts or ":" in name:
        return "must be a plain path inside the export folder"
    resolved = (model_dir / relative).resolve()
    if not resolved.is_relative_to(model_dir.resolve()):
        return "leads outside the export folder (a link)"
    return None


def _depth(value, limit: int = MAX_DEPTH + 1) -> int:
    if limit == 0 or not isinstance(value, (dict, list)):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(child, limit - 1) for child in children), default=0)


def _kind(value) -> str:
    kinds = {list: "a list", str: "a string", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _shown(value) -> str:
    """`value` as JSON, cut to one short line."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# -- loading ---------------------------------------------------------------------------------


class ExportedModel:
    """An exported forecaster: `predict(x [B, lookback, C] raw) -> raw forecasts`."""

    def __init__(self, model_dir: str | Path, engine: str = "pt2"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        model_dir = Path(model_dir)
        if (model_dir / "export" / "meta.json").is_file():
            model_dir = model_dir / "export"  # a run directory
        if not (model_dir / "meta.json").is_file():
            raise FileNotFoundError(
                f"{model_dir / 'meta.json'} not found: give a run directory or its export/"
            )
        self.meta = load_meta(model_dir)
        self.engine = engine
        if engine not in self.meta["files"]:
            held = ", ".join(self.meta["files"]) or "none"
            how = " (with onnx and onnxscript installed)" if engine == "onnx" else ""
            raise FileNotFoundError(
                f"{model_dir} holds no {engine} export (it holds: {held}); choose one of those "
                f"engines, or train again with export_formats=[{engine}]{how}"
            )
        path = model_dir / self.meta["files"][engine]
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (named by {model_dir / 'meta.json'})")
        self._run = _LOADERS[engine](path)

    @property
    def lookback(self) -> int:
        return self.meta["lookback"]

    @property
    def horizon(self) -> int:
        return self.meta["horizon"]

    @property
    def covariate_inputs(self) -> dict[str, list]:
        """The covariates the model takes besides x, by name, with their shapes."""
        return self.meta.get("covariate_inputs", {})

    def predict(self, x: np.ndarray, **covariates: np.ndarray) -> np.ndarray:
        """Raw forecasts of raw windows x [B, lookback, C], with the covariates the model takes
        (`covariate_inputs`: past, future, static; numbers, and codes of categorical levels)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = (self.lookback, len(self.meta["channels"]))
        if x.ndim != 3 or x.shape[1:] != expected:
            raise ValueError(
                f"the model takes [batch, {expected[0]}, {expected[1]}] (lookback, channels "
                f"{self.meta['channels']}), got {list(x.shape)}"
            )
        wanted = self.covariate_inputs
        if set(covariates) != set(wanted):
            raise ValueError(
                f"the model takes the covariates {sorted(wanted) or 'none'}, got "
                f"{sorted(covariates) or 'none'}"
            )
        inputs = {}
        for name, shape in wanted.items():
            value = np.ascontiguousarray(covariates[name], dtype=np.float32)
            if value.shape[1:] != tuple(shape[1:]) or len(value) != len(x):
                raise ValueError(
                    f"{name} must be [batch, {', '.join(map(str, shape[1:]))}] for x of batch "
                    f"{len(x)}, got {list(value.shape)}"
                )
            self._refuse_other_codes(name, value)
            inputs[name] = value
        return self._run(x, inputs)

    def _refuse_other_codes(self, kind: str, value: np.ndarray) -> None:
        """ValueError where a categorical column holds something other than a code of its
        levels (an integer position in them): the network would read it as no level at all."""
        columns = self.meta.get("covariates", {}).get(kind, {})
        levels = columns.get("levels", {})
        for j, column in enumerate(columns.get("names", [])):
            if column not in levels:
                continue
            codes, n = value[..., j], len(levels[column])
            bad = ~((codes >= 0) & (codes < n) & (codes == np.floor(codes)))
            if bad.any():
                at = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"{kind}{[*at, j]} ({column!r}) is {codes[at]}, not a code of its {n} "
                    f"levels: give the level's position (0 to {n - 1}) in meta.json's "
                    f"covariates.{kind}.levels[{column!r}]"
                )


def _load_pt2(path: Path):
    module = torch.export.load(str(path)).module()

    def run(x: np.ndarray, covariates: dict) -> np.ndarray:
        tensors = {k: torch.from_numpy(v) for k, v in covariates.items()}
        with torch.no_grad():
            return module(torch.from_numpy(x), **tensors).numpy()

    return run


def _load_onnx(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x, covariates: session.run(None, {"x": x, **covariates})[0]


def _load_torchscript(path: Path):
    with warnings.catch_warnings():  # an older export, asked for by name (engine=torchscript)
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray, covariates: dict) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


_LOADERS = {"pt2": _load_pt2, "onnx": _load_onnx, "torchscript": _load_torchscript}
