"""Configuration mistakes, as the entry scripts report them: one line naming the key and the fix,
exit status 2, no traceback.

Hydra reports an error of composing or running an app with a traceback (or a block of lines) and
exit status 1. `run` lets those errors reach it (HYDRA_FULL_ERROR) and turns the ones a user
makes on the command line into one line: an unknown key or group option, an unreadable override,
a value not set (`???`), a value of the wrong type (`check_overrides`), a value an object refuses
when Hydra builds it. Every other error keeps its traceback, and `HYDRA_FULL_ERROR=1` set by the
user shows the traceback of every error.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from forecast.errors import ConfigError

FULL_ERROR = "HYDRA_FULL_ERROR"
# the user's own HYDRA_FULL_ERROR, kept for the processes this one starts (DDP, trials)
USER_FULL_ERROR = "FORECAST_USER_HYDRA_FULL_ERROR"


def run(main: Callable[[], object], prog: str, config_name: str) -> None:
    """Call `main`, the `@hydra.main` function of the program `prog` (the name its messages start
    with) whose config is `forecast/conf/<config_name>.yaml`: a mistake Hydra meets while
    composing the config ends the process with its one line on stderr and exit status 2. Inside
    `main`, `reported` does the same for the mistakes met while running."""
    os.environ.setdefault(USER_FULL_ERROR, os.environ.get(FULL_ERROR, ""))
    os.environ[FULL_ERROR] = "1"  # Hydra then raises instead of printing and exiting with 1
    try:
        main()
    except Exception as err:
        if not wants_traceback():
            exit_if_config_error(err, prog, config_name)
        raise


@contextlib.contextmanager
def reported(prog: str, config_name: str):
    """Around the body of a `@hydra.main` function: a configuration mistake ends the process with
    its one line on stderr and exit status 2 (inside the job, so that Hydra adds no lines)."""
    try:
        yield
    except Exception as err:
        if not wants_traceback():
            exit_if_config_error(err, prog, config_name)
        raise


def wants_traceback() -> bool:
    """HYDRA_FULL_ERROR=1 from the user (`run` sets it in the environment only for Hydra)."""
    return os.environ.get(USER_FULL_ERROR) == "1"


def exit_if_config_error(err: Exception, prog: str, config_name: str) -> None:
    message = describe(err, config_name)
    if message is not None:
        print(f"{prog}: {one_line(message)}", file=sys.stderr)
        sys.exit(2)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe(err: Exception, config_name: str) -> str | None:
    """The one-line report of a configuration mistake; None for any other error."""
    if isinstance(err, ConfigError):
        return str(err)
    if isinstance(err, MissingConfigException):
        return missing_option(err)
    if isinstance(err, OverrideParseException):
        return (
            f"cannot read {err.override!r}: {err.message.splitlines()[0]}; write key=value, "
            f"and quote a list or a value with spaces for the shell: 'data.columns=[OT,HUFL]'"
        )
    if isinstance(err, ConfigCompositionException):
        return composition(err, config_name)
    if isinstance(err, InstantiationException):
        return instantiation(err)
    if isinstance(err, MissingMandatoryValue):
        return not_set([err.full_key])
    if isinstance(err, InterpolationResolutionError):
        return f"{err.full_key}: {err.msg}"
    return None


def not_set(keys: Iterable[str], example: str = "") -> str:
    """`keys` are `???` in the config."""
    keys = list(keys)
    names = " and ".join([", ".join(keys[:-1]), keys[-1]] if len(keys) > 1 else keys)
    fix = example or " ".join(f"{key}=<value>" for key in keys)
    return f"{names} {'are' if len(keys) > 1 else 'is'} not set: give {fix} (--help shows more)"


def missing_option(err: MissingConfigException) -> str:
    wanted = err.missing_cfg_file or ""
    if err.options is None:  # --config-name naming no file
        return f"no config named {wanted!r} (--config-name), in the config search path"
    group, _, option = wanted.rpartition("/")
    return f"{group}={option}: {group} has no option {option!r}; choose one of " + ", ".join(
        err.options
    )


def composition(err: ConfigCompositionException, config_name: str) -> str:
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and "not in struct" in str(cause):
        key = cause.full_key
        close = difflib.get_close_matches(key, config_keys(config_name), n=1)
        hint = f"did you mean {close[0]}? " if close else "check the spelling; "
        return (
            f"{key} is not a key of this config: {hint}--help lists the keys, and "
            f"+{key}=<value> adds a new one"
        )
    if "No match in the defaults list" in str(err):  # a config group this app does not have
        group = str(err).split("'")[1]
        return f"{group} is not a config group of this app: --help lists its keys"
    return str(err).strip()


def config_keys(config_name: str) -> list[str]:
    """Every key of the app's shipped config as composed without overrides (dotted); [] where it
    cannot be composed."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from forecast.config import CONF_MODULE

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(CONF_MODULE, version_base="1.3"):
            return list(flat_keys(compose(config_name)))
    except Exception:  # only a hint is lost
        return []


def flat_keys(node: DictConfig, prefix: str = "") -> Iterable[str]:
    for key in node:
        child = node._get_node(key)
        yield f"{prefix}{key}"
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            yield from flat_keys(child, f"{prefix}{key}.")


def instantiation(err: InstantiationException) -> str:
    lines = str(err).splitlines()
    where = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
    cause = err.__cause__
    if cause is None:  # e.g. a _target_ that does not import
        return f"{where or 'config'}: {lines[0]}"
    text = str(cause)
    if isinstance(cause, TypeError) and "unexpected keyword argument" in text:
        name = text.rsplit("'", 2)[-2]
        key = f"{where}.{name}" if where else name
        return f"{key} is not an option here: remove it"
    if isinstance(cause, ConfigError):
        return text
    return f"{where}: {text}" if where else text


# ---- value types -----------------------------------------------------------------------------


def check_overrides(cfg: DictConfig, overrides: Sequence[str], known: Mapping[str, Any] = ()):
    """Refuse a command-line value whose type its key cannot take: `data.lookback=abc`.

    A key's type is the annotation of the argument it becomes (the `_target_` of the node that
    holds it), else `known[key]`, else the type of its value in the config before the override
    (only int, float, bool and list are held to it).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    known = dict(known)
    defaults: list[DictConfig] = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if override.is_delete() or key.startswith("hydra") or "/" in key:
            continue
        node = OmegaConf.select(cfg, key, throw_on_missing=False)
        if isinstance(node, DictConfig) or override.is_sweep_override():
            continue  # a config group choice, or a sweep's list of values
        expected = known.get(key, annotation_of(cfg, key))
        if expected is None:
            if not defaults:
                defaults.append(composed_defaults(cfg, overrides))
            expected = type_of_default(OmegaConf.select(defaults[0], key, default=None))
        value = OmegaConf.to_container(node) if isinstance(node, ListConfig) else node
        if expected is not None and not matches(value, expected):
            raise ConfigError(f"{key}={override.value()}: {key} takes {describe_type(expected)}")


def annotation_of(cfg: DictConfig, key: str) -> Any:
    """The annotation of the argument `key` becomes, where its parent node has a `_target_`."""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or "_target_" not in parent:
        return None
    try:
        from hydra.utils import get_object

        target = get_object(parent._target_)
        function = target.__init__ if inspect.isclass(target) else target
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable annotations: no check
        return None
    return hints.get(name)


def composed_defaults(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The running app's config with only the group choices of `overrides` (the values before
    the command line changed them)."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    groups = [
        o
        for o in overrides
        if not o.startswith(("+", "~", "hydra"))
        and isinstance(OmegaConf.select(cfg, o.partition("=")[0]), DictConfig)
    ]
    try:
        return compose(HydraConfig.get().job.config_name, overrides=groups)
    except Exception:  # outside a running app: nothing to compare with
        return OmegaConf.create()


def type_of_default(value: Any) -> Any:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, ListConfig):
        return list
    return None


def matches(value: Any, expected: Any) -> bool:
    """Whether a config value can be an argument annotated `expected` (unknown types: yes)."""
    origin = typing.get_origin(expected)
    if expected is Any or isinstance(expected, typing.TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(expected))
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if expected is None or expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    container = origin or expected
    if container in (list, tuple, Sequence, typing.Sequence):
        return isinstance(value, list | tuple)
    if container in (dict, Mapping, typing.Mapping):
        return isinstance(value, dict)
    if inspect.isclass(expected):
        if issubclass(expected, os.PathLike):
            return isinstance(value, str)
        return isinstance(value, expected)  # no config value is a tensor or a logger
    return True  # a callable, an iterable, ...: not checked


def describe_type(expected: Any) -> str:
    """`expected` in words: "an integer or null", "one of 16-mixed, bf16-mixed, ..."."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "a list such as [a,b]", type(None): "null"})
    words, choices = [], []
    for arg in union_members(expected):
        if typing.get_origin(arg) is typing.Literal:
            choices += [str(v) for v in typing.get_args(arg) if str(v) not in choices]
        else:
            origin = typing.get_origin(arg) or arg
            word = names[list] if origin in (list, tuple, Sequence) else None
            words.append(word or names.get(arg, getattr(arg, "__name__", str(arg))))
    if choices:
        words.insert(0, "one of " + ", ".join(choices))
    return " or ".join(dict.fromkeys(words))


def union_members(expected: Any) -> list[Any]:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(expected) for m in union_members(arg)]
    return [expected]


def check_train_config(cfg: DictConfig, overrides: Sequence[str], known: Mapping[str, Any] = ()):
    """What train.py and sweep.py refuse before any work: values of the wrong type, windows of
    no length, a checkpoint that is not there, inputs our forecasters would ignore
    (`forecast.pipeline.refuse_unused_inputs`) and an ensemble that cannot be trained
    (`forecast.pipeline.ensemble_members`)."""
    from forecast.pipeline import ensemble_members, refuse_unused_inputs

    check_overrides(cfg, overrides, known)
    for key in ("lookback", "horizon"):
        value = cfg.data.get(key)
        if isinstance(value, int) and value < 1:
            raise ConfigError(f"data.{key}={value}: give a positive number of steps")
    check_checkpoint(cfg.ckpt_path)
    refuse_monitors_without_validation(cfg)
    check_export_formats(cfg.get("export_formats", ()), cfg.get("data"))
    refuse_unused_inputs(cfg)
    ensemble_members(cfg)


def refuse_monitors_without_validation(cfg: DictConfig) -> None:
    """trainer.limit_val_batches=0 computes no val_mse, which early stopping and the plateau
    schedule act on: refused with the fix, rather than Lightning's traceback after set-up."""
    if cfg.get("trainer", {}).get("limit_val_batches") != 0:
        return
    if cfg.get("callbacks", {}).get("early_stopping") is not None:
        raise ConfigError(
            "trainer.limit_val_batches=0 runs no validation, and callbacks.early_stopping stops "
            "on val_mse: add callbacks.early_stopping=null, or let validation run"
        )
    scheduler = cfg.get("model", {}).get("scheduler") or {}
    if str(scheduler.get("_target_", "")).endswith("ReduceLROnPlateau"):
        raise ConfigError(
            "trainer.limit_val_batches=0 runs no validation, and schedule=plateau lowers the "
            "learning rate on val_mse: give schedule=none or schedule=cosine, or let validation run"
        )


def refuse_study_recipe(cfg: DictConfig, experiment: str | None) -> None:
    """train.py refuses an experiment that is a study's recipe (it sets `sweep`): trained once,
    it would quietly train the defaults its study was meant to choose between."""
    if "sweep" in cfg:
        name = experiment or "<the experiment>"
        raise ConfigError(
            f"experiment={name} is a study's recipe (it sets sweep.*): run it with "
            f"`sweep.py experiment={name}`, then train the best trial with train.py "
            f"(best.yaml in its sweep folder)"
        )


COVARIATE_KEYS = ("past_covariates", "future_covariates", "static_covariates", "calendar")


def check_export_formats(formats, data: Mapping | None = None) -> None:
    """`export_formats` is a list of export formats (forecast.export.ENGINES), and without
    TorchScript where the data config `data` gives the model covariates (TorchScript exports
    take x alone): refused before training rather than when the run exports."""
    from forecast.export import check_formats

    if not OmegaConf.is_list(formats) and not isinstance(formats, (list, tuple)):
        raise ConfigError(
            f"export_formats={formats}: give a list, e.g. export_formats=[pt2,onnx] or []"
        )
    try:
        check_formats(list(formats))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    given = [key for key in COVARIATE_KEYS if data is not None and data.get(key)]
    if "torchscript" in formats and given:
        raise ConfigError(
            f"export_formats={list(formats)}: TorchScript exports take no covariates "
            f"(data.{given[0]} is set); drop torchscript: model.pt2 and model.onnx take the "
            f"covariates as named inputs"
        )


def check_checkpoint(path: str | None) -> None:
    """`ckpt_path` names a file (or a URL, or one of Lightning's names)."""
    from forecast.pipeline import LIGHTNING_CHECKPOINTS

    if path is None or str(path) in LIGHTNING_CHECKPOINTS or "://" in str(path):
        return
    if not Path(path).is_file():
        raise ConfigError(
            f"ckpt_path={path}: no such file; give a run's checkpoint, e.g. "
            f"ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt"
        )
