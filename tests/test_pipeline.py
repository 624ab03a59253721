"""forecast.pipeline's own checks, without a training run."""

import math

import pytest
from omegaconf import OmegaConf

from forecast.errors import ConfigError
from forecast.pipeline import refuse_diverged, refuse_unused_inputs, warn_if_worse_than_naive


def test_a_diverged_model_is_refused_naming_the_learning_rate():
    cfg = OmegaConf.create({"model": {"optimizer": {"lr": 0.5}}})
    refuse_diverged({"val_mse": 0.3, "test_mse": 0.4}, cfg)  # finite: nothing to say
    refuse_diverged({}, cfg)  # no evaluation ran (limit_val_batches=0 ...)
    for key in ("val_mse", "test_mse"):
        metrics = {"val_mse": 0.3, "test_mse": 0.4, key: math.nan}
        with pytest.raises(ConfigError, match=rf"model.optimizer.lr=0.5: .*\({key}=nan\)"):
            refuse_diverged(metrics, cfg)
    with pytest.raises(ConfigError, match="test_mse=inf"):
        refuse_diverged({"test_mse": math.inf}, cfg)


@pytest.mark.parametrize("kind", ["past_covariates", "future_covariates", "calendar"])
def test_the_rows_layout_takes_static_covariates_only(kind):
    # its columns are time steps and it has no timestamps: nothing that changes over time
    data = {"layout": "rows", kind: ["x"]}
    with pytest.raises(ConfigError, match=rf"data.{kind}: data.layout=rows .* only static"):
        refuse_unused_inputs(OmegaConf.create({"data": data}))
    refuse_unused_inputs(
        OmegaConf.create({"data": {"layout": "rows", "static_covariates": ["V1"]}})
    )


def test_a_negative_validation_skill_is_said_with_the_naive_figures(caplog):
    metrics = {
        "val_skill": -0.125,
        "val_mse": 0.45,
        "val_mse_naive_last": 0.4,
        "val_mse_naive_seasonal": 0.5,
    }
    with caplog.at_level("WARNING", logger="forecast.pipeline"):
        warn_if_worse_than_naive(metrics)
    assert "validation skill -0.125" in caplog.text
    assert "val_mse 0.45; repeating the last value 0.4, the last season 0.5" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="forecast.pipeline"):
        warn_if_worse_than_naive({**metrics, "val_skill": 0.0})  # as good as naive: no word
        warn_if_worse_than_naive({"test_skill": -1.0})  # no validation: nothing to say
    assert caplog.text == ""
