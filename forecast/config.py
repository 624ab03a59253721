"""Where the configs live (`forecast/conf`, shipped in the package: `CONF_MODULE`), and what
they need registered before Hydra composes them.

`register_resolvers()`: the OmegaConf resolvers (`${half:...}`). `register_configs()`: those,
and the `schema/model/base` and `schema/data/base` configs, made from the signatures of the classes
they build (`Forecaster` and `ForecastNet`, `SeriesDataModule`): every option and its default
is written once, in Python, so the YAML files and the classes cannot disagree. The entry
scripts register before Hydra composes; `forecast.pipeline` does on import, for code that
composes train configs in-process (the API, sweeps, tests): `compose_train_config`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf


def half(value) -> int:
    """`${half:${model.hidden_size}}`: forecast/conf/model/lstmp.yaml's projection, half the
    hidden size, so that `model=lstmp model.hidden_size=64`, or a sweep sampling hidden sizes,
    stays a valid LSTMP (torch requires proj_size < hidden_size)."""
    return max(1, int(value) // 2)


# the configs of the three commands: a package inside ours, so an installed copy has them too
CONF_MODULE = "forecast.conf"
CONF_DIR = Path(__file__).resolve().parent / "conf"


def register_resolvers() -> None:
    """`${half:...}`, and for the help texts `${forecast.prog:train}` and
    `${forecast.command:train}`: an app's name and command line as the user calls them
    (`forecast-train`, or `train.py` and `python train.py` in a checkout)."""
    from forecast.commands import command, prog

    for name, resolver in (("half", half), ("forecast.prog", prog), ("forecast.command", command)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def defaults_of(function: Callable, skip: tuple[str, ...] = ()) -> dict:
    """{name: default} of `function`'s keyword parameters, lists for tuples."""
    out = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name in ("self", *skip) or parameter.kind is parameter.VAR_KEYWORD:
            continue
        if parameter.default is parameter.empty:
            continue
        default = parameter.default
        out[name] = list(default) if isinstance(default, tuple) else default
    return out


def model_defaults() -> dict:
    """Every `model.*` option: the Forecaster's and its network's (ForecastNet), with defaults.
    The data-given sizes (channels, look-back, horizon) come from the DataSpec, not the config."""
    from forecast.models import Forecaster, ForecastNet

    return {
        **defaults_of(Forecaster.__init__, skip=("spec", "net")),
        **defaults_of(ForecastNet.__init__, skip=("n_quantiles", "point_index", "covariates")),
    }


def data_defaults() -> dict:
    """Every `data.*` option: the SeriesDataModule's (its reading ones are ReadOptions')."""
    from forecast.data import SeriesDataModule

    return defaults_of(SeriesDataModule.__init__)


# Options added after runs were first saved, and what a saved config or checkpoint from before
# each one lacks. `upgrade_config` brings a saved train config (a run's config.yaml, a sweep's
# best.yaml, an export's copy) and `upgrade_model_options` a checkpoint's hyper-parameters up to
# date before anything is built from them, so each option has one default (its class's, or
# config.yaml's) for new runs. (An export's meta.json has its own: `DataSpec.from_dict` and
# `forecast.predict.export_reading` read the fields older exports lack or named otherwise.)
# Model options take the value the older model was built with (category_embedding: 0, the
# one-hot it had; naive_blend: off, as before the blend existed); run options take today's
# default (tests/test_config.py holds them equal).
ADDED_MODEL_OPTIONS = {"category_embedding": 0, "naive_blend": False}
ADDED_RUN_OPTIONS = {
    "threads": "auto",
    "export_formats": ["pt2", "onnx"],
    "ensemble": {"seeds": None, "lookbacks": None, "losses": None, "combine": "median"},
}


def upgrade_model_options(options: dict) -> dict:
    """A checkpoint's (or a saved config's) model options with every option added since it was
    written set to what its model was built with."""
    return {**ADDED_MODEL_OPTIONS, **options}


def upgrade_config(cfg: DictConfig, imports: bool = True) -> DictConfig:
    """`cfg`, a train config saved by an older version, brought up to date in place (and
    returned): the run and model options added since get the values in `ADDED_RUN_OPTIONS` and
    `ADDED_MODEL_OPTIONS` (the latter only for our Forecaster, or a subclass, built from its
    options rather than a given `net`). A config composed today has them all, and is left as it
    is; `ensemble: null` is no ensemble, as the node left out is. With `imports` false (a
    config read from a run folder), the model's class is looked for only among the modules
    already imported: reading a file imports nothing it names."""
    from omegaconf import open_dict

    with open_dict(cfg):
        for key, value in ADDED_RUN_OPTIONS.items():
            if key not in cfg or (isinstance(value, dict) and cfg[key] is None):
                cfg[key] = value
        model = cfg.get("model")
        if (
            model is not None
            and "net" not in model
            and forecaster_class(model.get("_target_"), imports) is not None
        ):
            for key, value in ADDED_MODEL_OPTIONS.items():
                if key not in model:
                    model[key] = value
    return cfg


def forecaster_class(target, imports: bool = True):
    """The class a config's `_target_` names when it is our Forecaster or a subclass of it, else
    None (with `imports` false, looked for among the modules already imported: nothing is
    imported for it)."""
    from hydra.utils import get_class

    from forecast.models import Forecaster

    try:
        found = get_class(str(target)) if imports else imported_class(target)
    except Exception:  # not a class, or not importable: not ours
        return None
    return found if isinstance(found, type) and issubclass(found, Forecaster) else None


def imported_class(target):
    """The class or object a dotted name (`_target_`) names in a module already imported, or
    None: looked up, nothing imported (importing a module runs its code)."""
    import sys

    module, _, name = str(target).rpartition(".")
    # the module's own names only: getattr would run a module __getattr__ (some import on demand)
    return vars(sys.modules[module]).get(name) if module in sys.modules else None


def register_configs() -> None:
    """The resolvers, and the `base` configs that conf/model/*.yaml and conf/data/*.yaml extend."""
    register_resolvers()
    store = ConfigStore.instance()
    if "base.yaml" not in store.repo.get("schema", {}).get("model", {}):
        store.store(group="schema/model", name="base", node=model_defaults())
        store.store(group="schema/data", name="base", node=data_defaults())


def compose_train_config(overrides: Sequence[str]) -> DictConfig:
    """forecast-train's configuration with `overrides`, composed by Hydra from the same configs
    (and refused in one line where it names an object whose optional dependency is missing)."""
    from hydra import compose, initialize_config_module

    from forecast.extras import check_config

    register_configs()
    with initialize_config_module(CONF_MODULE, version_base="1.3", job_name="fit"):
        cfg = compose(config_name="config", overrides=list(overrides))
    check_config(cfg)
    return cfg
