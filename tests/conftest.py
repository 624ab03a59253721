import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The reference data sets (../shared/data beside the checkout, or $FORECAST_DATA_DIR)."""
    listed = os.environ.get("FORECAST_DATA_DIR", "").split(os.pathsep)
    for candidate in [*listed, ROOT.parent / "shared" / "data"]:
        if candidate and (Path(candidate) / "M4-Hourly-train.csv").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def shared_data() -> Path:
    found = shared_data_dir()
    if found is None:
        message = "the reference data sets (../shared/data) are not beside this checkout"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + "; set FORECAST_DATA_DIR to their folder to run this test")
    return found
