"""Hostile inputs, table-driven: each is refused with one line that names the file, the column and
the row (where there is one) and the fix; train.py exits 2 with it, predict.py reports it."""

import gzip
import json
import os
import re
import subprocess
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from forecast import predict as P
from forecast.config import CONF_DIR
from forecast.data.errors import DataError
from forecast.pipeline import train
from tests.conftest import run_entry, train_here

ROWS = 200  # hourly; lookback 24 + horizon 12 fit every part of a 70/10/20 split
SMALL = ["data=csv", "data.lookback=24", "data.horizon=12"]


def frame(rows: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=rows, freq="h").astype(str),
            "a": np.sin(np.arange(rows) / 5.0),
            "b": np.cos(np.arange(rows) / 7.0),
        }
    )


def csv_with(row: int, column: str, value) -> callable:
    def make(path):
        df = frame()
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        df.to_csv(path, index=False)

    return make


def raw(data: bytes) -> callable:
    return lambda path: path.write_bytes(data)


def text(content: str, encoding: str) -> callable:
    return lambda path: path.write_bytes(content.encode(encoding))


def duplicate_parquet(path):
    columns = [pa.array(range(ROWS)), pa.array([1.0] * ROWS), pa.array([2.0] * ROWS)]
    pq.write_table(pa.table(columns, names=["date", "a", "a"]), path)


def bool_parquet(path):
    df = frame()
    df["b"] = np.arange(ROWS) % 2 == 0
    df.to_parquet(path)


def bool_csv(path):
    frame().assign(b=np.arange(ROWS) % 3 == 0).to_csv(path, index=False)  # True / False


def xlsx_like(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")


def epoch_seconds(path):
    df = frame()
    df["date"] = 1609459200.25 + 3600 * np.arange(ROWS)  # 2021-01-01 00:00:00.25, hourly
    df.to_csv(path, index=False)


def many_columns(path):
    pd.DataFrame({"when": [1, 2], **{f"c{i}": [1.0, 2.0] for i in range(5001)}}).to_csv(
        path, index=False
    )


HEADER = "date,a,b\n"
# test rows of the 70/10/20 split are the last 40 of 200: row 190 is one
CASES = [
    # id, file name, how to make it, pattern the message must match (after the file name)
    ("float32-overflow-train", "x.csv", csv_with(10, "a", 1e39),
     r"column 'a', data row 11 \(line 12 of the file\): value 1e\+39 is too large.*scale the"),
    ("float32-overflow-test", "x.csv", csv_with(190, "b", "-3e38"),
     r"column 'b', data row 191 \(line 192 of the file\): value -3e\+38 is too large"),
    ("placeholder-1e30-test", "x.csv", csv_with(190, "a", 1e30),
     r"column 'a', time 2021-01-08 22:00:00: value 1e\+30 lies .* placeholder"),
    ("text-value", "x.csv", csv_with(5, "b", "n/a?"),
     r"column 'b', data row 6 \(line 7 of the file\): value 'n/a\?' is not a number"),
    ("duplicate-columns-csv", "x.csv", text("date,a,a\n2021-01-01 00:00,1,2\n", "utf-8"),
     r"columns 2 and 3 of the header are both named 'a'; give every column its own name"),
    ("duplicate-columns-parquet", "x.parquet", duplicate_parquet,
     r"columns 2 and 3 of the header are both named 'a'"),
    ("empty", "x.csv", raw(b""), r"the file is empty \(0 bytes\)"),
    ("blank-lines", "x.csv", raw(b"\n\n\n"), r"holds no table \(only blank lines\)"),
    ("header-only", "x.csv", raw(HEADER.encode()), r"has a header but no data rows"),
    ("utf-16", "x.csv", text(HEADER + "2021-01-01 00:00,1,2\n", "utf-16"),
     r"is UTF-16 text \(byte-order mark FF FE\), not CSV text; save it as UTF-8"),
    ("utf-16-no-bom", "x.csv", text(HEADER + "2021-01-01 00:00,1,2\n", "utf-16-le"),
     r"is UTF-16 text without a byte-order mark.*encoding='utf-16-le'"),
    ("latin-1", "x.csv", text("date,café\n2021-01-01 00:00,1\n", "latin-1"),
     r"is not UTF-8 text \(line 1 of the file holds byte 0xe9; a Latin-1"),
    ("binary", "x.csv", raw(bytes(range(256)) * 4), r"is a binary file \(it holds NUL bytes\)"),
    ("parquet-named-csv", "x.csv", lambda p: frame().to_parquet(p),
     r"is a Parquet file, not CSV text; name it .parquet, or set data.format=parquet"),
    ("gzip-named-csv", "x.csv", raw(gzip.compress(HEADER.encode())),
     r"is gzip-compressed, not CSV text; name it .csv.gz"),
    ("workbook-named-csv", "x.csv", xlsx_like, r"is a ZIP archive \(an Excel .xlsx workbook"),
    ("csv-named-parquet", "x.parquet", lambda p: frame().to_csv(p, index=False),
     r"is not a Parquet file .*set data.format=csv"),
    ("float-epoch-seconds", "x.csv", epoch_seconds,
     r"column 'date', data row 1 \(line 2 of the file\): value 1609459200.25 is not a timestamp"
     r".*pd.to_datetime\(df\['date'\], unit='s'\)"),
    ("bool-parquet", "x.parquet", bool_parquet,
     r"column 'b' holds true/false values, not numbers; write them as 1 and 0"),
    ("bool-csv", "x.csv", bool_csv, r"column 'b' holds true/false values"),
    ("5001-columns", "x.csv", many_columns,
     r"no time column named 'date' or 'ds'; set data.time_col=.* \(the columns are "
     r"\['when', 'c0', .* and 4,992 more\]\)$"),
]  # fmt: skip


def refusal(tmp_path, *overrides: str) -> str:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=[*SMALL, f"output_dir={tmp_path / 'run'}", *overrides])
    with pytest.raises(DataError) as refused:
        train(cfg)
    return str(refused.value)


def one_line_naming(message: str, path, pattern: str) -> None:
    assert "\n" not in message and len(message) < 500, message
    assert message.startswith(f"{path}: "), message
    assert re.search(pattern, message), message


@pytest.mark.parametrize(
    ("name", "make", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_hostile_training_file_is_refused_in_one_line(tmp_path, name, make, pattern):
    path = tmp_path / name
    make(path)
    one_line_naming(refusal(tmp_path, f"data.path={path}"), path, pattern)


def test_a_folder_as_data_path_is_refused(tmp_path):
    message = refusal(tmp_path, f"data.path={tmp_path}")
    one_line_naming(message, tmp_path, "is a folder, not a file; give the path of one data file")


def test_whole_float_times_are_integer_steps_like_an_integer_column(tmp_path):
    df = frame()
    df["date"] = np.arange(ROWS) * 3600.0 + 1.6e9  # epoch seconds written as floats
    df.to_csv(tmp_path / "x.csv", index=False)
    ints = frame().assign(date=np.arange(ROWS) * 3600 + 1_600_000_000)
    ints.to_csv(tmp_path / "ints.csv", index=False)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=[*SMALL, "output_dir=unused"])
    frames = []
    for name in ("x.csv", "ints.csv"):
        module = instantiate(cfg.data, path=str(tmp_path / name))
        module.setup("fit")
        frames.append(module.frame)
    assert frames[0].times.dtype == np.int64
    np.testing.assert_array_equal(frames[0].times, frames[1].times)
    np.testing.assert_array_equal(frames[0].values, frames[1].values)


# --- train.py: exit status 2 and the one line on stderr ---------------------------------------


def train_py(*overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # the timeout is a safety net: a FIFO read would wait for ever
    return run_entry("train.py", *SMALL, *overrides, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["folder", "fifo", "float32-overflow-test"])
def test_train_py_exits_2_with_the_line(tmp_path, case):
    path = tmp_path / "data.csv"
    if case == "folder":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)
    else:
        csv_with(190, "b", 1e39)(path)
    result = train_py(f"data.path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train.py: {path}: "), result.stderr[-3000:]
    assert not (tmp_path / "run" / "metrics.json").exists()


# --- predict: inputs found, and forecasts that are not finite ---------------------------------


def test_odd_entries_named_like_data_files_refuse_the_run(tmp_path):
    (tmp_path / "in").mkdir()
    frame().to_csv(tmp_path / "in" / "good.csv", index=False)
    (tmp_path / "in" / "archive.csv").mkdir()
    with pytest.raises(P.PredictError, match=r"archive.csv is a folder, not a data file"):
        P.find_inputs(tmp_path / "in")
    with pytest.raises(P.PredictError, match=r"archive.csv is a folder"):
        P.find_inputs(str(tmp_path / "in" / "*.csv"))
    (tmp_path / "in" / "archive.csv").rmdir()
    os.mkfifo(tmp_path / "in" / "pipe.csv")
    for spec in (tmp_path / "in", str(tmp_path / "in" / "*.csv"), tmp_path / "in" / "pipe.csv"):
        with pytest.raises(P.PredictError, match=r"pipe.csv is a FIFO \(named pipe\), not a data"):
            P.find_inputs(spec)


def test_dot_files_are_inputs_under_a_glob_as_in_a_folder(tmp_path):
    for name in ("a.csv", ".b.csv", "notes.txt"):
        (tmp_path / name).write_text(HEADER)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".c.csv").write_text(HEADER)
    names = lambda spec: [p.name for p in P.find_inputs(spec)]  # noqa: E731
    assert names(tmp_path) == [".b.csv", "a.csv"]
    assert names(str(tmp_path / "*.csv")) == [".b.csv", "a.csv"]
    assert names(str(tmp_path / "**" / "*.csv")) == [".b.csv", "a.csv", ".c.csv"]


def test_a_link_out_of_the_input_folder_is_followed_and_recorded(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    frame().to_csv(tmp_path / "elsewhere" / "real.csv", index=False)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "linked.csv").symlink_to(tmp_path / "elsewhere" / "real.csv")
    (found,) = P.find_inputs(tmp_path / "in")
    identity = P.input_identity(found)
    assert identity["path"] == str((tmp_path / "elsewhere" / "real.csv").resolve())
    assert identity["link"] == str(tmp_path / "in" / "linked.csv")
    frame().to_csv(tmp_path / "in" / "plain.csv", index=False)
    assert "link" not in P.input_identity(tmp_path / "in" / "plain.csv")


def forecast_table(values) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame(
        {"unique_id": ["s"] * n, "ds": range(n), "step": range(1, n + 1), "y_hat": values}
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_forecast_that_is_not_finite_is_never_written(tmp_path, bad):
    target = tmp_path / "x.forecast.csv"
    with pytest.raises(
        DataError, match=rf"series 's' at 2 \(y_hat, step 3\) is {bad}.*not written"
    ):
        P.write_table(forecast_table([1.0, 2.0, bad, 4.0]), target, "csv")
    assert os.listdir(tmp_path) == []
    P.write_table(forecast_table([1.0, 2.0]), target, "csv")
    assert pd.read_csv(target)["y_hat"].tolist() == [1.0, 2.0]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("model") / "run"
    tiny = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "model.hidden_size=8"]
    train_here(run_dir, *tiny, "data.horizon=24")  # train.py's training, in this process
    return run_dir


def etth1_like(rows: int = 200) -> pd.DataFrame:
    columns = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    values = np.sin(np.arange(rows)[:, None] / 5.0 + np.arange(7)) * 5 + 10
    df = pd.DataFrame(values, columns=columns)
    df.insert(0, "date", pd.date_range("2018-01-01", periods=rows, freq="h").astype(str))
    return df


@pytest.mark.slow
def test_predict_fails_a_file_whose_forecast_overflows_and_records_nothing(tiny_model, tmp_path):
    good, bad = etth1_like(), etth1_like()
    bad.loc[190, "OT"] = 1e30  # in the look-back: the model's float32 arithmetic overflows
    (tmp_path / "in").mkdir()
    good.to_csv(tmp_path / "in" / "good.csv", index=False)
    bad.to_csv(tmp_path / "in" / "bad.csv", index=False)
    forecaster = P.BatchForecaster(tiny_model, log=lambda message: None)
    summary = forecaster.run(tmp_path / "in", tmp_path / "out")
    assert summary.files == 1 and list(summary.failed) == [str(tmp_path / "in" / "bad.csv")]
    assert "not written" in summary.failed[str(tmp_path / "in" / "bad.csv")]
    assert sorted(os.listdir(tmp_path / "out")) == ["good.forecast.csv", "good.forecast.csv.json"]
    # a rerun tries the failed file again (no record says it is done) and fails it again
    summary = forecaster.run(tmp_path / "in", tmp_path / "out")
    assert (summary.skipped, len(summary.failed)) == (1, 1)
    # beyond float32: refused on reading, naming the cell
    bad.loc[190, "OT"] = 1e39
    bad.to_csv(tmp_path / "in" / "bad.csv", index=False)
    summary = forecaster.run(tmp_path / "in", tmp_path / "out")
    message = summary.failed[str(tmp_path / "in" / "bad.csv")]
    assert "column 'OT', data row 191 (line 192 of the file): value 1e+39 is too large" in message
    record = json.loads((tmp_path / "out" / "good.forecast.csv.json").read_text())
    assert record["input"]["path"] == str((tmp_path / "in" / "good.csv").resolve())
