"""The configs in conf/ compose and resolve as documented."""

import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from forecast.config import CONF_DIR, register_resolvers
from forecast.nn import build_backbone
from forecast.sweep import override, suggest, train_yaml


def composed(*overrides: str, name: str = "config"):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(name, overrides=["output_dir=unused", *overrides])


def resolved(*overrides: str) -> dict:
    return OmegaConf.to_container(composed(*overrides).model, resolve=True)


@pytest.mark.parametrize("hidden,proj", [(256, 128), (64, 32), (33, 16), (2, 1)])
def test_lstmp_projects_to_half_the_hidden_size_unless_told(hidden, proj):
    model = resolved("model=lstmp", f"model.hidden_size={hidden}")
    assert (model["hidden_size"], model["proj_size"]) == (hidden, proj)
    # a valid LSTMP for torch's module too (proj_size < hidden_size)
    build_backbone("lstmp", "torch", input_size=3, hidden_size=hidden, proj_size=proj)


def test_an_explicit_projection_wins():
    model = resolved("model=lstmp", "model.hidden_size=64", "model.proj_size=8")
    assert model["proj_size"] == 8


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_other_models_have_no_projection(name):
    assert resolved(f"model={name}")["proj_size"] == 0


def test_the_highway_is_off_by_default_and_on_for_m4_hourly():
    # BENCHMARKS.md: off wins on ETTh1 at every horizon, on wins on M4 Hourly
    assert resolved()["highway"] is False
    assert resolved("experiment=etth1_720")["highway"] is False
    cfg = composed("experiment=m4_hourly")
    assert cfg.model.highway is True
    assert cfg.data.name == "M4-Hourly-train.csv"
    # eight days: validation's choice on M4 Hourly (BENCHMARKS.md), not the default 96
    assert cfg.data.lookback == 192 and composed().data.lookback == 96


def test_a_config_from_an_older_version_gets_todays_run_options_and_its_models_old_ones():
    """upgrade_config: a saved config without the options added since gets today's run
    defaults (what config.yaml sets) and the model options its model was built with."""
    from forecast.config import ADDED_MODEL_OPTIONS, ADDED_RUN_OPTIONS, upgrade_config
    from forecast.export import DEFAULT_FORMATS
    from forecast.pipeline import ensemble_members

    today = composed()
    assert list(DEFAULT_FORMATS) == ADDED_RUN_OPTIONS["export_formats"]
    for key, value in ADDED_RUN_OPTIONS.items():
        ours = today[key]
        assert (OmegaConf.to_container(ours) if OmegaConf.is_config(ours) else ours) == value, key
    older = OmegaConf.create(OmegaConf.to_container(today))
    for key in ADDED_RUN_OPTIONS:
        del older[key]
    for key in ADDED_MODEL_OPTIONS:
        del older.model[key]
    upgraded = upgrade_config(older)
    assert upgraded is older
    for key in ADDED_RUN_OPTIONS:
        assert upgraded[key] == today[key], key
    assert upgraded.model.category_embedding == 0 != today.model.category_embedding
    # `ensemble: null` is no ensemble, as the node left out is
    nulled = upgrade_config(OmegaConf.create({"ensemble": None, "seed": 1}))
    assert nulled.ensemble == today.ensemble and ensemble_members(nulled) is None
    # a subclass of the Forecaster is upgraded too; one built around a given net is not
    sub = OmegaConf.create({"model": {"_target_": "forecast.models.forecaster.Forecaster"}})
    assert upgrade_config(sub).model.category_embedding == 0
    given = OmegaConf.create({"model": {"_target_": "forecast.models.Forecaster", "net": {}}})
    assert "category_embedding" not in upgrade_config(given).model
    # another class's model options are its own: nothing is added to them
    other = OmegaConf.create({"model": {"_target_": "my.Model", "width": 3}})
    assert dict(upgrade_config(other).model) == {"_target_": "my.Model", "width": 3}


def test_a_config_read_from_a_run_folder_imports_nothing_it_names(tmp_path, monkeypatch):
    """upgrade_config(imports=False), as Run.config calls it: the model's class is looked for
    among the modules already imported; a module the file names is not imported (importing runs
    its code)."""
    import sys

    from forecast.config import upgrade_config

    marker = tmp_path / "imported"
    (tmp_path / "planted_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = OmegaConf.create({"model": {"_target_": "planted_module.Forecaster"}})
    assert "category_embedding" not in upgrade_config(cfg, imports=False).model
    assert not marker.exists() and "planted_module" not in sys.modules
    # nor does an imported module's own __getattr__ run (some import on demand)
    body = f"open({str(marker)!r}, 'w').close()\n    raise AttributeError(name)"
    (tmp_path / "lazy_module.py").write_text(f"def __getattr__(name):\n    {body}\n")
    import lazy_module  # noqa: F401

    try:
        lazy = OmegaConf.create({"model": {"_target_": "lazy_module.Forecaster"}})
        assert "category_embedding" not in upgrade_config(lazy, imports=False).model
        assert not marker.exists()
    finally:
        sys.modules.pop("lazy_module", None)
    ours = OmegaConf.create({"model": {"_target_": "forecast.models.forecaster.Forecaster"}})
    assert upgrade_config(ours, imports=False).model.category_embedding == 0


def test_every_value_of_the_default_sweep_space_is_a_valid_train_override():
    space = OmegaConf.to_container(composed(name="sweep").sweep.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        params = suggest(study.ask(), space)
        cfg = composed(*[override(key, value) for key, value in params.items()])
        for key, value in params.items():
            got = cfg.model.cell if key == "model" else OmegaConf.select(cfg, key)
            assert got == value, key


# Trainer arguments that forecast.pipeline.train passes itself, so they are not config keys
PASSED_BY_PIPELINE = {"logger", "callbacks", "default_root_dir", "enable_progress_bar"}
# the trainer keys conf/trainer/default.yaml sets to values of its own
OURS = {
    "accelerator": "auto",
    "devices": 1,
    "strategy": "auto",
    "precision": "32-true",
    "max_epochs": 10,
    "limit_train_batches": 1.0,
    "gradient_clip_val": 1.0,
    "deterministic": True,
    "log_every_n_steps": 1,  # per-epoch logging only: 1 keeps Lightning from warning
    "enable_model_summary": False,
}


@pytest.mark.parametrize("trainer", ["default", "gpu", "ddp"])
def test_every_trainer_argument_is_a_trainer_key_with_lightnings_default(trainer):
    import inspect

    import pytorch_lightning as pl

    parameters = inspect.signature(pl.Trainer).parameters
    config = OmegaConf.to_container(composed(f"trainer={trainer}").trainer)
    assert config.pop("_target_") == "pytorch_lightning.Trainer"
    assert set(config) == set(parameters) - PASSED_BY_PIPELINE
    if trainer == "default":
        for name, value in config.items():
            assert value == OURS.get(name, parameters[name].default), name


def test_trainer_arguments_are_set_without_a_plus():
    cfg = composed("trainer.limit_val_batches=0", "trainer.accumulate_grad_batches=4")
    assert (cfg.trainer.limit_val_batches, cfg.trainer.accumulate_grad_batches) == (0, 4)


@pytest.mark.parametrize("recipe", ["etth1_search", "m4_hourly_search"])
def test_each_study_recipe_sets_its_study_and_every_choice_is_a_valid_train_override(recipe):
    """experiment=<recipe> sets the study (its name, metric, space: look-back, loss, schedule on
    top of the default space); every choice of its space composes into the train config with it,
    and every schedule builds a scheduler."""
    from hydra.utils import instantiate

    cfg = composed(f"experiment={recipe}", name="sweep")
    assert cfg.sweep.study_name == recipe and cfg.sweep.metric.startswith("val_")
    space = OmegaConf.to_container(cfg.sweep.space)
    default = OmegaConf.to_container(composed(name="sweep").sweep.space)
    assert set(space) == set(default) | {"data.lookback", "model.loss", "schedule"}
    for key, spec in space.items():
        for value in spec.get("choices", []):
            train = composed(f"experiment={recipe}", override(key, value))
            if key == "schedule":
                got = train.model.scheduler
                assert (got is None) == (value == "none"), value
                if got is not None:
                    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)])
                    instantiate(got)(optimizer=optimizer)  # the interpolations resolve
            else:
                got = train.model.cell if key == "model" else OmegaConf.select(train, key)
                assert got == value, (key, value)
    assert max(space["data.lookback"]["choices"]) >= (720 if recipe == "etth1_search" else 504)
    # a trial's config (best.yaml) trains again with train.py, which refuses a recipe's sweep.*
    trial = composed(f"experiment={recipe}", "data.lookback=192")
    assert "sweep" in trial and "sweep" not in OmegaConf.create(train_yaml(trial))
