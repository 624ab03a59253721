"""The configs in conf/ compose and resolve as documented."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from forecast.config import register_resolvers
from forecast.nn import build_backbone
from tests.conftest import ROOT


def resolved(*overrides: str) -> dict:
    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=["output_dir=unused", *overrides])
    return OmegaConf.to_container(cfg.model, resolve=True)


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
