"""Resuming from a checkpoint: only weights and plain data are loaded (never code, local file or
URL), and a checkpoint made for another model or other data is refused before it loads."""

import functools
import http.server
import pickle
import re
import threading

import numpy as np
import pandas as pd
import pytest

from forecast.config import compose_train_config
from forecast.errors import ConfigError
from forecast.pipeline import train

pytestmark = pytest.mark.slow

TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "model.hidden_size=8",
    "model.segment_len=12",
    "data.lookback=24",
    "data.horizon=12",
    "data.batch_size=16",
    "callbacks.early_stopping=null",
]


def write_series(path, level=0.0, n=300):
    t = np.arange(n)
    y = level + np.sin(2 * np.pi * t / 24) + 0.1 * np.cos(t / 7)
    pd.DataFrame({"date": pd.date_range("2022-01-01", periods=n, freq="h"), "y": y}).to_csv(
        path, index=False
    )
    return path


def config(run_dir, data, *extra):
    return compose_train_config(
        ["data=csv", f"data.path={data}", f"output_dir={run_dir}", *TINY, *extra]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    data = write_series(folder / "a.csv")
    train(config(folder / "run", data))
    return folder, data, folder / "run" / "checkpoints" / "last.ckpt"


def test_a_checkpoint_that_would_run_code_is_refused(trained, tmp_path):
    folder, data, _ = trained
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(ConfigError, match="does not load as weights and plain data.*refused"):
        train(config(tmp_path / "run", data, f"ckpt_path={evil}"))
    assert not marker.exists()


@pytest.fixture
def serve(tmp_path):
    """An HTTP server on loopback serving `tmp_path`; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_is_fetched_and_loaded_as_weights_only(trained, tmp_path, serve):
    folder, data, last = trained
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(ConfigError, match="does not load as weights and plain data.*refused"):
        train(config(tmp_path / "evil_run", data, f"ckpt_path={serve}/evil.ckpt"))
    assert not marker.exists()
    (tmp_path / "good.ckpt").write_bytes(last.read_bytes())
    resume = ["trainer.max_epochs=2", f"ckpt_path={serve}/good.ckpt"]
    train(config(tmp_path / "resumed", data, *resume))
    assert (tmp_path / "resumed" / "metrics.json").is_file()
    with pytest.raises(ConfigError, match="could not fetch"):
        train(config(tmp_path / "missing", data, f"ckpt_path={serve}/missing.ckpt"))
    with pytest.raises(ConfigError, match="give a local file or an http"):
        train(config(tmp_path / "s3", data, "ckpt_path=s3://bucket/x.ckpt"))


def test_resuming_on_other_data_is_refused(trained, tmp_path):
    folder, _, last = trained
    other = write_series(tmp_path / "b.csv", level=100.0)  # same shape, another scale
    with pytest.raises(ConfigError, match="trained on other data"):
        train(config(tmp_path / "run", other, "trainer.max_epochs=2", f"ckpt_path={last}"))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_resuming_without_the_runs_options_names_them(trained, tmp_path):
    folder, data, last = trained
    with pytest.raises(ConfigError, match=r"model.hidden_size=8 \(this run: 16\)"):
        train(config(tmp_path / "run", data, "model.hidden_size=16", f"ckpt_path={last}"))
    with pytest.raises(ConfigError, match="data with horizon=12, this run's data has 6"):
        train(config(tmp_path / "run2", data, "data.horizon=6", f"ckpt_path={last}"))


def test_lightnings_load_from_checkpoint_rebuilds_the_model_as_weights_only(trained, tmp_path):
    """`Forecaster.load_from_checkpoint`, as a Lightning user calls it: the network is built
    from the data the checkpoint records; a checkpoint from before an option existed builds the
    model it was trained as; one that would run code is refused, whatever `weights_only` says."""
    import shutil

    import torch

    import forecast
    from forecast.models import Forecaster

    folder, _, last = trained
    run = forecast.load(folder / "run")
    loaded = Forecaster.load_from_checkpoint(last, map_location="cpu")
    reference = run.module("last")
    # the weights as saved (Run.module adds the naive blend validation chose after saving)
    for key, value in reference.state_dict().items():
        if not key.startswith("net.naive_"):
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert loaded.hparams["hidden_size"] == 8 and loaded.spec.lookback == 24

    state = torch.load(last, map_location="cpu", weights_only=True)
    for key in ("category_embedding", "naive_blend"):  # as written before these options
        del state["hyper_parameters"][key]
    torch.save(state, tmp_path / "old.ckpt")
    old = Forecaster.load_from_checkpoint(tmp_path / "old.ckpt")
    assert old.hparams["category_embedding"] == 0 and old.hparams["naive_blend"] is False

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(pickle.UnpicklingError):
        Forecaster.load_from_checkpoint(evil, weights_only=False)
    assert not marker.exists()
    # plain data naming a function for Lightning to build the model with (older Lightning
    # imports and calls it)
    for where, key, value in [
        ("hyper_parameters", "_instantiator", "builtins.exec"),
        ("hyper_parameters", "_class_path", "os.system"),
        ("hparams", "_instantiator", "builtins.exec"),  # an older key Lightning still reads
    ]:
        named = torch.load(last, map_location="cpu", weights_only=True)
        named.setdefault(where, {})[key] = value
        torch.save(named, tmp_path / "named.ckpt")
        with pytest.raises(ConfigError, match=f"names code to build its model with .*{key}"):
            Forecaster.load_from_checkpoint(tmp_path / "named.ckpt")

    # a run folder whose config.yaml is from before the options: Run.config brings it up to date
    copy = tmp_path / "older_run"
    shutil.copytree(folder / "run", copy)
    text = (copy / "config.yaml").read_text()
    kept = [line for line in text.splitlines() if "category_embedding:" not in line]
    assert len(kept) == len(text.splitlines()) - 1
    (copy / "config.yaml").write_text("\n".join(kept) + "\n")
    older = forecast.load(copy)
    assert older.config.model.category_embedding == 0
    for key, value in older.module("last").state_dict().items():
        torch.testing.assert_close(reference.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_a_run_folders_own_torch_optimizer_and_schedule_are_rebuilt(trained, tmp_path):
    """Run.module trains on with the run's optimizer and schedule when they are torch.optim's
    classes with plain values: not only the default Adam."""
    import shutil

    import torch
    from omegaconf import OmegaConf

    import forecast

    folder, _, _ = trained
    good = forecast.load(folder / "run").module("last")
    optimizer = good.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == 1e-3

    copy = tmp_path / "sgd"
    shutil.copytree(folder / "run", copy)
    cfg = OmegaConf.load(copy / "config.yaml")
    cfg.model.optimizer = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01}
    cfg.model.scheduler = {
        "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "_partial_": True,
        "factor": 0.25,
        "patience": 3,
    }
    OmegaConf.save(cfg, copy / "config.yaml")
    model = forecast.load(copy).module("last")
    built = model.configure_optimizers()
    optimizer = built["optimizer"]
    scheduler = built["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.01
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (scheduler.factor, scheduler.patience) == (0.25, 3)


def test_a_run_trained_with_a_subclass_loads_as_that_class_once_imported(trained, tmp_path):
    """Run.module builds the run's own subclass of the Forecaster when its module is imported
    (the user's code), and our Forecaster, with the same weights, when it is not: a run folder
    imports nothing it names."""
    import shutil

    import torch
    from omegaconf import OmegaConf

    import forecast
    from forecast.models import Forecaster

    class MyForecaster(Forecaster):
        pass

    folder, _, _ = trained
    good = forecast.load(folder / "run").module("last")
    copy = tmp_path / "mine"
    shutil.copytree(folder / "run", copy)
    cfg = OmegaConf.load(copy / "config.yaml")
    globals()["MyForecaster"] = MyForecaster  # as if defined at the top of this module
    try:
        for target, cls in [
            (f"{__name__}.MyForecaster", MyForecaster),
            ("not_imported_module.MyForecaster", Forecaster),
        ]:
            cfg.model._target_ = target
            OmegaConf.save(cfg, copy / "config.yaml")
            model = forecast.load(copy).module("last")
            assert type(model) is cls
            for name, value in good.state_dict().items():
                torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    finally:
        del globals()["MyForecaster"]


@pytest.mark.parametrize(
    "key, node, says",
    [
        ("optimizer", {"_target_": "builtins.open", "file": "{marker}"}, "names 'builtins.open'"),
        # a prefix that looks like torch.optim's but reaches another module's function
        (
            "optimizer",
            {"_target_": "torch.optim.adam.torch.save", "obj": 1, "f": "{marker}"},
            "names",
        ),
        ("scheduler", {"_target_": "shutil.rmtree", "path": "{folder}"}, "names 'shutil.rmtree'"),
        # a torch.optim class, but one of the other kind
        ("scheduler", {"_target_": "torch.optim.Adam", "lr": 0.1}, "scheduler classes"),
        # torch.optim's class with a nested object, or an interpolation that builds one
        (
            "optimizer",
            {
                "_target_": "torch.optim.Adam",
                "lr": {"_target_": "builtins.open", "file": "{marker}"},
            },
            "values other than",
        ),
        (
            "optimizer",
            {"_target_": "torch.optim.Adam", "lr": "${oc.create:{marker}}"},
            "interpolation",
        ),
        ("optimizer", {"_target_": "torch.optim.Adam", "_args_": ["{marker}"]}, "'_args_'"),
        # an attribute path out of torch.optim (to all of torch, and what it imports)
        ("optimizer", {"_target_": "torch.optim.swa_utils.torch.optim.Adam"}, "names"),
        # an option the class does not take: warned about now, not a TypeError when training
        ("optimizer", {"_target_": "torch.optim.Adam", "foo": 1}, "does not take"),
    ],
)
def test_a_run_folder_whose_config_names_other_code_runs_none_of_it(
    trained, tmp_path, key, node, says
):
    """Run.module builds the network from the checkpoint and of config.yaml only torch's
    optimizer and schedule classes with plain values: a config naming anything else (a copied or
    downloaded run folder) has it warned about and not called."""
    import json
    import shutil

    import torch
    from omegaconf import OmegaConf

    import forecast

    folder, _, _ = trained
    good = forecast.load(folder / "run").module("last")
    copy = tmp_path / "copied"
    shutil.copytree(folder / "run", copy)
    marker = tmp_path / "pwned"
    text = json.dumps(node).replace("{marker}", str(marker)).replace("{folder}", str(folder))
    cfg = OmegaConf.load(copy / "config.yaml")
    cfg.model[key] = json.loads(text)
    OmegaConf.save(cfg, copy / "config.yaml")
    with pytest.warns(UserWarning, match=f"model.{key} of the run's config .*{re.escape(says)}"):
        model = forecast.load(copy).module("last")
    assert not marker.exists() and folder.exists()
    assert getattr(model, f"{key}_factory") is None
    for name, value in good.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0, msg=name)
