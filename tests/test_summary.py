"""What a run, a multirun and a sweep say when they end."""

import json

from forecast.summary import multirun_message, run_summary, study_message


def write_run(folder, metrics, exported=True):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if exported:
        (folder / "export").mkdir()
        (folder / "export" / "meta.json").write_text("{}")
    return folder


def test_a_run_ends_with_its_test_metrics_folder_and_the_predict_command(tmp_path):
    metrics = {"test_mse": 0.381234, "test_mae": 0.40123, "test_mase": 0.8712, "val_mse": 0.7}
    run = write_run(tmp_path / "run", {**metrics, "epochs": 7, "fit_seconds": 35.2})
    done, folder, next_step = run_summary(run).splitlines()
    assert (
        done
        == "done: test MSE 0.3812, MAE 0.4012, MASE 0.8712 (normalised scale); 7 epoch(s) in 35 s"
    )
    assert folder.startswith(f"run folder: {run} ")
    assert next_step == (
        f"next: python predict.py model_dir={run} input=<file, folder or glob> output=<folder>"
    )


def test_a_run_below_the_working_directory_is_named_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = write_run(tmp_path / "outputs" / "day" / "time", {"epochs": 1, "fit_seconds": 1.0})
    text = run_summary(run)
    assert "run folder: outputs/day/time " in text
    assert "model_dir=outputs/day/time " in text
    assert "no test metrics" in text  # trainer.limit_test_batches=0


def test_a_run_without_export_says_there_is_nothing_to_forecast_with(tmp_path):
    run = write_run(tmp_path / "run", {"test_mse": 1.0, "epochs": 1, "fit_seconds": 1}, False)
    assert "predict.py" not in run_summary(run)
    assert "no export/" in run_summary(run)


def test_a_multirun_says_where_its_summary_went(tmp_path):
    rows = [{"job": "0", "status": "ok"}, {"job": "1", "status": "no metrics.json"}]
    message = multirun_message(rows, tmp_path)
    assert message.startswith("done: 2 runs, 1 without metrics.json; ")
    assert f"{tmp_path}/summary.md" in message and f"{tmp_path}/summary.csv" in message
    assert "no run" in multirun_message([], tmp_path)


def test_a_sweep_says_where_its_trials_and_best_config_went(tmp_path):
    assert study_message(tmp_path).startswith("done: no trial completed yet; every trial in ")
    best = {"study": "s", "number": 3, "metric": "val_mse", "value": 0.41234}
    best["trials"] = {"COMPLETE": 4, "PRUNED": 1, "FAIL": 0, "RUNNING": 0}
    (tmp_path / "best.json").write_text(json.dumps(best))
    message = study_message(tmp_path)
    assert message.startswith("done: study s (4 complete, 1 pruned); best val_mse 0.4123 (trial 3)")
    assert f"{tmp_path}/trials.md" in message
    assert f"python train.py --config-dir {tmp_path} --config-name best" in message
