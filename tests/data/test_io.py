import numpy as np
import pandas as pd
import pytest

from forecast.data import DataError, read_long, read_rows, read_wide


def write(tmp_path, text: str, name: str = "input.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(path, reader=read_wide, **kwargs) -> str:
    """The DataError message of reading `path`; it always names the file."""
    with pytest.raises(DataError) as err:
        reader(path, **kwargs)
    message = str(err.value)
    assert str(path) in message
    return message


def test_reads_channels_in_file_order(tmp_path):
    frame = read_wide(write(tmp_path, "date,b,a\n2020-01-01,1,2\n2020-01-02,3,4\n"))
    assert frame.channels == ("b", "a")
    assert frame.values.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert frame.values.dtype.name == "float32" and frame.values.flags.c_contiguous
    assert frame.offsets.tolist() == [0, 2] and frame.n_series == 1


@pytest.mark.parametrize(
    ("text", "kwargs", "pattern"),
    [
        ("", {}, "file is empty"),
        ("date,y\n", {}, "no data rows"),
        ("time,y\n2020-01-01,1\n", {}, r"column 'date' not found; did you mean 'time'\?"),
        ("date,y\n2020-01-01,1\n2020-01-02,2\n", {"target": ["Y"]}, "did you mean 'y'"),
        ("date,y\n2020-01-01,1\nyesterday,2\n", {}, r"'date', data row 2 \(line 3.*'yesterday'"),
        ("date,y\n2020-01-02,1\n2020-01-01,2\n", {}, r"'date', data row 2 .*earlier.*data.sort"),
        (
            "date,y\n2020-01-01,1\n2020-01-01,2\n",
            {},
            r"'date', data row 2 .*duplicate of data row 1",
        ),
        ("date,y\n2020-01-01,1\n2020-01-02,\n", {}, r"'y', data row 2 .*missing.*data.fill"),
        ("date,y\n2020-01-01,1\n2020-01-02,abc\n", {}, r"'y', data row 2 .*value 'abc' is not a"),
        ("date,y\n2020-01-01,1\n2020-01-02,inf\n", {}, r"'y', data row 2 \(line 3.*infinite"),
        (
            "date,y\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n2020-01-05,4\n",
            {},
            r"'date', data row 4 \(line 5.*1 timestamp is missing.*data.fill",
        ),
        (
            "date,y\n2020-01-01 00:00,1\n2020-01-01 01:00,2\n2020-01-01 01:30,3\n"
            "2020-01-01 02:30,4\n",
            {},
            r"'date', data row 3 .*not a whole number of steps.*resample",
        ),
        ("date,y\n2020-01-01,1\n2020-01-02,2\n", {"freq": "MS"}, "not a date of the MS calendar"),
        ("date,y\n2020-01-01,1\n2020-01-02,2\n", {"freq": "fortnightly"}, "not a frequency pandas"),
    ],
)
def test_bad_wide_input_names_file_column_and_row(tmp_path, text, kwargs, pattern):
    message = refused(write(tmp_path, text), **kwargs)
    assert pd.Series([message]).str.contains(pattern).item(), message


def test_sort_is_asked_for_not_silent(tmp_path):
    path = write(tmp_path, "date,y\n2020-01-02,2\n2020-01-01,1\n2020-01-03,3\n")
    refused(path)
    assert read_wide(path, sort=True).values.ravel().tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("fill", "expected"),
    [("ffill", [1, 1, 1, 4]), ("interpolate", [1, 2, 3, 4]), ("zero", [1, 0, 0, 4])],
)
def test_gaps_and_missing_values_are_filled_with_a_warning(tmp_path, fill, expected):
    # 2020-01-02 is absent (a gap) and 2020-01-03 has no value
    path = write(tmp_path, "date,y\n2020-01-01,1\n2020-01-03,\n2020-01-04,4\n")
    with pytest.warns(UserWarning) as record:
        frame = read_wide(path, fill=fill)
    assert frame.values.ravel().tolist() == expected
    assert len(frame.times) == 4
    messages = " ".join(str(w.message) for w in record)
    assert "1 missing timestamps in 1 series were added" in messages
    assert "2 missing or infinite values were filled" in messages


def test_ffill_cannot_invent_a_first_value(tmp_path):
    path = write(tmp_path, "date,y\n2020-01-01,\n2020-01-02,2\n")
    with pytest.raises(DataError, match=r"data row 1 .*nothing before it"):
        read_wide(path, fill="ffill")


LONG = "unique_id,ds,y\nb,2020-01-01,10\na,2020-01-01,1\nb,2020-01-02,20\na,2020-01-02,2\n"


def test_long_rows_of_a_series_are_gathered_in_file_order(tmp_path):
    frame = read_long(write(tmp_path, LONG))
    assert frame.ids == ("b", "a")
    assert frame.offsets.tolist() == [0, 2, 4]
    assert frame.values.ravel().tolist() == [10, 20, 1, 2]


@pytest.mark.parametrize(
    ("text", "kwargs", "pattern"),
    [
        (LONG, {"id_col": "uid"}, r"column 'uid' not found; did you mean 'unique_id'"),
        (LONG, {"target": "value"}, r"column 'value' not found"),
        (
            "unique_id,ds,y\na,2020-01-01,1\nb,2020-01-02,1\nb,2020-01-01,2\n",
            {},
            r"'ds', data row 3 \(line 4 of the file\) \(series 'b'\).*earlier",
        ),
        (
            "unique_id,ds,y\na,2020-01-01,1\nb,2020-01-01,1\na,2020-01-01,2\n",
            {},
            r"'ds', data row 3 .*\(series 'a'\).*duplicate of data row 1",
        ),
        (
            "unique_id,ds,y\na,2020-01-01,1\na,2020-01-02,2\nb,2020-01-01,1\nb,2020-01-03,2\n",
            {},
            r"data row 4 .*\(series 'b'\): 1 timestamp is missing",
        ),
        (
            "unique_id,ds,y\na,2020-01-01,1\na,2020-01-02,2\nb,2020-01-01,1\nb,2020-01-02,x\n",
            {},
            r"'y', data row 4 .*value 'x' is not a number",
        ),
        (
            "unique_id,ds,y\na,2020-01-01,1\na,2020-01-02,2\nb,2020-01-01,1\nb,2020-01-02,\n",
            {},
            r"'y', data row 4 \(line 5 of the file\) \(series 'b'\): value nan is missing",
        ),
    ],
)
def test_bad_long_input_names_file_column_row_and_series(tmp_path, text, kwargs, pattern):
    message = refused(write(tmp_path, text), read_long, **kwargs)
    assert pd.Series([message]).str.contains(pattern).item(), message


def test_fill_never_leaks_from_one_series_into_the_next(tmp_path):
    text = "unique_id,ds,y\na,2020-01-01,5\na,2020-01-02,6\nb,2020-01-01,\nb,2020-01-02,2\n"
    with pytest.raises(DataError, match=r"series 'b'.*nothing before it"):
        read_long(write(tmp_path, text), fill="ffill")


def test_long_with_integer_time_and_covariates(tmp_path):
    text = "id,t,v,temp\na,0,1,10\na,1,2,11\na,2,3,12\n"
    frame = read_long(write(tmp_path, text), "id", "t", "v", covariates=["temp"])
    assert frame.times.tolist() == [0, 1, 2]
    assert frame.covariates.ravel().tolist() == [10, 11, 12]
    assert frame.covariate_names == ("temp",)


def test_parquet_reads_like_csv_and_counts_data_rows(tmp_path):
    df = pd.DataFrame(
        {
            "unique_id": ["a", "a", "b", "b"],
            "ds": pd.to_datetime(["2020-01-01", "2020-01-02"] * 2),
            "y": [1.0, 2.0, 3.0, np.nan],
        }
    )
    path = tmp_path / "input.parquet"
    df.to_parquet(path)
    message = refused(path, read_long)
    assert "'y', data row 4 (series 'b')" in message  # no file line: Parquet has none
    with pytest.warns(UserWarning, match="1 missing or infinite"):
        frame = read_long(path, fill="ffill")
    assert frame.values.ravel().tolist() == [1, 2, 3, 3]


RAGGED = '"V1","V2","V3","V4"\n"H1","1","2","3"\n"H2","4","5",\n'


def test_rows_layout_trims_padding_and_appends_the_test_part(tmp_path):
    train = write(tmp_path, RAGGED, "train.csv")
    test = write(tmp_path, '"V1","V2","V3"\n"H2","6","7"\n"H1","4","5"\n', "test.csv")
    frame = read_rows(train, test_path=test)
    assert frame.ids == ("H1", "H2")
    assert frame.lengths.tolist() == [5, 4] and frame.holdout == 2
    assert frame.values.ravel().tolist() == [1, 2, 3, 4, 5, 4, 5, 6, 7]
    assert frame.times.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('"V1","V2","V3","V4"\n"H1","1",,"3"\n', r"column 'V3', data row 1 .*series 'H1'"),
        ('"V1","V2","V3"\n"H1","1","2"\n"H1","3","4"\n', r"'V1', data row 2.*'H1' appears twice"),
        ('"V1","V2","V3"\n"H1","1","2"\n"H2",,\n', r"series 'H2' \(data row 2.*no values"),
    ],
)
def test_bad_rows_input_names_file_column_and_series(tmp_path, text, pattern):
    message = refused(write(tmp_path, text), read_rows)
    assert pd.Series([message]).str.contains(pattern).item(), message


def test_rows_test_part_must_hold_the_same_series(tmp_path):
    train = write(tmp_path, RAGGED, "train.csv")
    test = write(tmp_path, '"V1","V2"\n"H1","4"\n"H3","5"\n', "test.csv")
    message = refused(test, lambda p: read_rows(train, test_path=p))
    assert "missing ['H2'], unknown ['H3']" in message


def test_rows_static_columns_are_one_value_per_series_not_values(tmp_path):
    # the id itself may be a static covariate (a learned vector per series), beside a category
    # column placed among the values' columns
    text = '"V1","kind","V2","V3","V4"\n"H1","b","1","2","3"\n"H2","a","4","5",\n'
    train = write(tmp_path, text, "train.csv")
    test = write(tmp_path, '"V1","kind","V2"\n"H2","a","6"\n"H1","b","4"\n', "test.csv")
    frame = read_rows(train, test_path=test, static_covariates=["V1", "kind"])
    assert frame.values.ravel().tolist() == [1, 2, 3, 4, 4, 5, 6]
    assert frame.static_names == ("V1", "kind")
    assert frame.levels == {"V1": ("H1", "H2"), "kind": ("a", "b")}
    assert frame.static.tolist() == [[0, 1], [1, 0]]  # codes into the sorted levels
    # a model's levels: a series it was not trained on is named, not given another's vector
    statics, levels = ["V1", "kind"], {"V1": ("H1", "H3")}
    message = refused(train, read_rows, static_covariates=statics, levels=levels)
    assert "column 'V1', data row 2" in message
    assert "'H2' is not one of the levels the model was trained with" in message


def test_a_missing_or_absent_rows_static_covariate_is_named(tmp_path):
    text = '"V1","kind","V2","V3"\n"H1","b","1","2"\n"H2",,"4","5"\n'
    message = refused(write(tmp_path, text), read_rows, static_covariates=["kind"])
    assert "column 'kind', data row 2" in message
    assert "(series 'H2'): the static covariate is missing" in message
    message = refused(write(tmp_path, RAGGED), read_rows, static_covariates=["kind"])
    assert "kind" in message


def test_an_empty_series_id_is_refused_not_shifted(tmp_path):
    """pandas codes a missing id -1: read on, every later series would take its neighbour's id."""
    text = "unique_id,ds,y\na,2020-01-01,1\na,2020-01-02,2\n,2020-01-03,3\nb,2020-01-01,4\n"
    message = refused(write(tmp_path, text), read_long)
    assert "column 'unique_id', data row 3 (line 4 of the file): the series id is empty" in message


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "'|'")])
def test_a_file_with_another_separator_is_named_as_such(tmp_path, sep, name):
    text = f"date{sep}a{sep}b\n2020-01-01{sep}1{sep}2\n2020-01-02{sep}3{sep}4\n"
    message = refused(write(tmp_path, text))
    assert f"{name}-separated, this reader takes commas" in message
    assert f"sep={sep!r}" in message


def test_a_row_with_extra_fields_is_a_data_error(tmp_path):
    text = "date,a,b\n2020-01-01,1,2\n2020-01-02,1,2,3\n"
    message = refused(write(tmp_path, text))
    assert "Expected 3 columns, got 4" in message and "as many fields as the header" in message


def test_a_saved_pandas_index_is_not_made_a_series(tmp_path):
    path = tmp_path / "with_index.csv"
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=3, freq="D"), "a": [1, 2, 3]})
    frame.to_csv(path)  # index=True: an unnamed first column of row numbers
    message = refused(path)
    assert "column 1 has no name in the header (read as 'Unnamed: 0')" in message
    assert "to_csv(index=False)" in message
    # asked for by name it is read like any column, and the rest are untouched
    assert read_wide(path, target=["a", "Unnamed: 0"]).channels == ("a", "Unnamed: 0")
    assert read_wide(path, target=["a"]).values[:, 0].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("format", ["csv", "parquet"])
def test_zoned_timestamps_are_utc_instants_and_say_so(tmp_path, format):
    """Offsets that change with daylight saving (Europe/Berlin, 26 March 2023) are one regular
    hourly series of UTC instants; the frame records that its times are UTC."""
    local = pd.date_range("2023-03-26 00:00", periods=4, freq="h", tz="Europe/Berlin")
    table = pd.DataFrame({"date": local.astype(str), "y": [1.0, 2.0, 3.0, 4.0]})
    path = tmp_path / f"zoned.{format}"
    table.to_csv(path, index=False) if format == "csv" else table.to_parquet(path)
    assert table["date"].str[-6:].tolist() == ["+01:00", "+01:00", "+02:00", "+02:00"]
    frame = read_wide(path)
    assert frame.tz == "UTC"
    want = local.tz_convert("UTC").tz_localize(None).to_numpy()
    assert (frame.times == want).all()
    naive = tmp_path / "naive.csv"
    table.assign(date=local.tz_localize(None).astype(str)).iloc[:2].to_csv(naive, index=False)
    assert read_wide(naive).tz is None


def test_times_in_several_zones_are_instants_and_times_with_and_without_one_are_refused():
    """pandas reads a column's first zone and leaves other zones' times NaT: those were
    refused as unparseable. Times in two zones are UTC instants; a time without a zone beside
    ones with a zone is refused, naming both rows."""
    utc = pd.date_range("2024-01-01 00:00", periods=2, freq="h", tz="UTC")
    tokyo = pd.date_range("2024-01-01 11:00", periods=2, freq="h", tz="Asia/Tokyo")
    table = pd.DataFrame({"date": pd.Series([*utc, *tokyo], dtype=object), "y": [1.0] * 4})
    frame = read_wide(table)
    assert frame.tz == "UTC"
    assert (frame.times == pd.date_range("2024-01-01", periods=4, freq="h").to_numpy()).all()
    mixed = pd.DataFrame(
        {"date": ["2024-01-03 01:00:00+00:00", "2024-01-03 02:00:00"], "y": [1.0, 2.0]}
    )
    with pytest.raises(
        DataError,
        match=r"'date', row df.iloc\[1\]: '2024-01-03 02:00:00' has no zone or UTC offset, and "
        r"row df.iloc\[0\] \('2024-01-03 01:00:00\+00:00'\) has one; give every time",
    ):
        read_wide(mixed)


def monthly(tmp_path, dates, name="monthly.csv"):
    values = np.arange(1.0, len(dates) + 1)
    path = tmp_path / name
    pd.DataFrame({"date": dates, "y": values}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("freq", "periods"), [("MS", 30), ("ME", 30), ("QS", 12), ("YS", 6), ("B", 40)]
)
def test_calendar_frequencies_are_inferred_and_kept(tmp_path, freq, periods):
    """Months, quarters, years and business days step by calendar units, not one fixed span:
    inferred, kept as Frame.calendar, the timestamps unchanged; data.freq names one as well."""
    dates = pd.date_range("2019-01-01", periods=periods, freq=freq)
    path = monthly(tmp_path, dates.strftime("%Y-%m-%d"))
    frame = read_wide(path)
    to_offset = pd.tseries.frequencies.to_offset
    assert to_offset(frame.calendar) == to_offset(freq)  # the calendar the dates were made on
    assert (frame.times == dates.to_numpy()).all() and frame.values[:, 0].tolist()[-1] == periods
    assert read_wide(path, freq=freq).calendar is not None


def test_a_missing_month_is_named_and_can_be_filled(tmp_path):
    dates = pd.date_range("2019-01-01", periods=24, freq="MS").delete(5)  # no 2019-06-01
    path = monthly(tmp_path, dates.strftime("%Y-%m-%d"))
    message = refused(path)
    assert "1 timestamp is missing between 2019-05-01 00:00:00 and 2019-07-01" in message
    assert "(step 1 x MS)" in message
    with pytest.warns(UserWarning, match="1 missing timestamps"):
        frame = read_wide(path, fill="ffill")
    assert (frame.times == pd.date_range("2019-01-01", periods=24, freq="MS").to_numpy()).all()
    assert frame.values[5, 0] == frame.values[4, 0]  # the added month, filled forward


def test_a_date_off_the_calendar_is_refused(tmp_path):
    dates = pd.date_range("2019-01-01", periods=24, freq="MS").strftime("%Y-%m-%d").tolist()
    dates[10] = "2019-11-15"
    message = refused(monthly(tmp_path, dates), freq="MS")
    assert "data row 11 (line 12 of the file): timestamp 2019-11-15" in message
    assert "not a date of the MS calendar" in message


def test_long_series_on_a_calendar_each_keep_their_own_span(tmp_path):
    a = pd.date_range("2015-01-01", periods=20, freq="MS")
    b = pd.date_range("2018-06-01", periods=12, freq="MS")
    long = pd.DataFrame(
        {"unique_id": ["a"] * 20 + ["b"] * 12, "ds": a.append(b), "y": np.arange(32.0)}
    )
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    frame = read_long(path)
    assert frame.calendar == "MS" and frame.offsets.tolist() == [0, 20, 32]
    assert (frame.times == a.append(b).to_numpy()).all()
