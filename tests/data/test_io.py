import pytest

from forecast.data import DataError, read_wide


def write(tmp_path, text: str):
    path = tmp_path / "input.csv"
    path.write_text(text)
    return path


def test_reads_channels_in_file_order(tmp_path):
    frame = read_wide(write(tmp_path, "date,b,a\n2020-01-01,1,2\n2020-01-02,3,4\n"))
    assert frame.channels == ("b", "a")
    assert frame.values.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert frame.values.dtype.name == "float32"


@pytest.mark.parametrize(
    ("text", "kwargs", "pattern"),
    [
        ("", {}, "file is empty"),
        ("date,y\n", {}, "no data rows"),
        ("time,y\n2020-01-01,1\n", {}, r"column 'date' not found; did you mean 'time'\?"),
        ("date,y\n2020-01-01,1\n2020-01-02,2\n", {"columns": ["Y"]}, "did you mean 'y'"),
        ("date,y\n2020-01-01,1\nyesterday,2\n", {}, r"column 'date', row 3 .*'yesterday'"),
        ("date,y\n2020-01-02,1\n2020-01-01,2\n", {}, r"row 3: .*not after .*sort"),
        ("date,y\n2020-01-01,1\n2020-01-01,2\n", {}, r"row 3: .*duplicate"),
        ("date,y\n2020-01-01,1\n2020-01-02,\n", {}, r"column 'y', row 3: .*missing"),
        ("date,y\n2020-01-01,1\n2020-01-02,abc\n", {}, r"column 'y', row 3: value 'abc'"),
        ("date,y\n2020-01-01,1\n2020-01-02,inf\n", {}, r"column 'y', row 3: .*infinite"),
    ],
)
def test_bad_input_names_file_column_and_row(tmp_path, text, kwargs, pattern):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as err:
        read_wide(path, **kwargs)
    assert str(path) in str(err.value)
