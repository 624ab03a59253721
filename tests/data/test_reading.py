"""The one reading path: ReadOptions and read() for files and DataFrames alike."""

import numpy as np
import pandas as pd
import pytest

from forecast.data import DataError, ReadOptions, read
from forecast.data.reading import sniff_layout


def hourly(n=6, **columns) -> pd.DataFrame:
    return pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=n, freq="h"), **columns})


def test_a_dataframe_reads_as_its_csv_file_does(tmp_path):
    df = hourly(a=np.arange(6.0), b=np.arange(6.0) * 2)
    df.to_csv(tmp_path / "w.csv", index=False)
    from_file, from_frame = read(tmp_path / "w.csv"), read(df)
    np.testing.assert_array_equal(from_file.values, from_frame.values)
    np.testing.assert_array_equal(from_file.times, from_frame.times)
    assert from_file.channels == from_frame.channels == ("a", "b")
    assert from_frame.path == "DataFrame"
    assert list(df.columns) == ["ds", "a", "b"]  # the caller's frame is left alone


def test_a_time_index_serves_as_the_time_column():
    df = hourly(a=np.arange(6.0)).set_index("ds")
    frame = read(df)
    assert frame.channels == ("a",) and len(frame.times) == 6
    assert df.index.name == "ds" and list(df.columns) == ["a"]


def test_the_time_column_defaults_by_layout_and_a_missing_one_is_named():
    long = hourly(unique_id="s", y=np.arange(6.0))
    assert sniff_layout(long) == "long"
    assert read(long, ReadOptions(layout="long")).ids == ("s",)
    assert read(hourly(y=np.arange(6.0)).rename(columns={"ds": "date"})).channels == ("y",)
    stamped = hourly(y=np.arange(6.0)).rename(columns={"ds": "when"})
    with pytest.raises(
        DataError, match=r"no time column named 'date' or 'ds'; set data.time_col=when"
    ):
        read(stamped)
    assert read(stamped, ReadOptions(time_col="when")).channels == ("y",)


def test_bad_values_in_a_frame_are_named_by_position():
    df = hourly(y=["1", "2", "x", "4", "5", "6"])
    with pytest.raises(DataError, match=r"^DataFrame: column 'y', row df.iloc\[2\]: value 'x'"):
        read(df)
    with pytest.raises(DataError, match="DataFrame: the frame has no rows"):
        read(hourly(0, y=[]))


def test_options_are_checked_and_travel_as_plain_data():
    with pytest.raises(ValueError, match="data.layout must be one of"):
        ReadOptions(layout="tall")
    with pytest.raises(ValueError, match="data.fill must be one of"):
        ReadOptions(fill="mean")
    options = ReadOptions(layout="long", target=["y", "z"], freq="h")
    assert options.target == ("y", "z")
    assert options.to_dict()["target"] == ["y", "z"]
    assert ReadOptions.from_dict({**options.to_dict(), "lookback": 96}) == options
    assert options.replace(fill="ffill", freq=None) == ReadOptions(
        layout="long", target=("y", "z"), freq="h", fill="ffill"
    )
