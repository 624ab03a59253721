"""Known public data sets: where to find them locally, and how to fetch them on first use.

Look-up order for a file name: each folder in `$FORECAST_DATA_DIR` (a `:`-separated search path,
read only), then the cache (`data/` in the user's cache folder, `forecast.cache.cache_dir`:
`$FORECAST_CACHE_DIR`, else e.g. `~/.cache/forecast`), then the copy shipped in the package
(`forecast/data/builtin/`: ETTh1, compressed, read in place), and last a download into the cache.
Nothing is ever written inside the installed package. Every file is checked against its sha256;
a download is written to a temporary file and renamed only once it checks out, so a failed or
corrupted transfer leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from forecast.atomic import atomic_path
from forecast.cache import cache_dir as user_cache_dir

# the data sets that ship with the package (forecast/data/builtin/README.md: source, licence)
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


@dataclass(frozen=True)
class KnownFile:
    url: str
    sha256: str


KNOWN_FILES: dict[str, KnownFile] = {
    "ETTh1.csv": KnownFile(
        "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv",
        "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    ),
    "M4-Hourly-train.csv": KnownFile(
        "https://raw.githubusercontent.com/Mcompetitions/M4-methods/master/Dataset/Train/Hourly-train.csv",
        "ea59b7783573c49077a835ab6465c7d66f1474783360f310988a9a737fbca62f",
    ),
    "M4-Hourly-test.csv": KnownFile(
        "https://raw.githubusercontent.com/Mcompetitions/M4-methods/master/Dataset/Test/Hourly-test.csv",
        "71a57fccb15e534d973626ada4fb87febf789e9317715b7cc6dd3b5f90db6f42",
    ),
}


class FetchError(RuntimeError):
    """A known data set could not be found locally nor downloaded intact."""


def cache_dir() -> Path:
    """Where fetched data sets are kept: `data/` in the user's cache folder."""
    return user_cache_dir("data")


def search_dirs() -> list[Path]:
    return [Path(p) for p in os.environ.get("FORECAST_DATA_DIR", "").split(os.pathsep) if p]


def sha256_of(path: Path, opener=open) -> str:
    """sha256 of the file's content (`opener=gzip.open`: of its decompressed content)."""
    digest = hashlib.sha256()
    with opener(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_path(name: str, *, url: str | None = None, timeout: float = 60.0) -> Path:
    """Return a local, checksum-verified path to the known data file `name`.

    `url` overrides the public address (tests point it at a loopback server).
    """
    if name not in KNOWN_FILES:
        raise FetchError(f"unknown data set {name!r}; known: {sorted(KNOWN_FILES)}")
    known = KNOWN_FILES[name]
    for folder in [*search_dirs(), cache_dir()]:
        candidate = folder / name
        if candidate.is_file():
            _check(candidate, known.sha256)
            return candidate
    shipped = BUILTIN_DIR / f"{name}.gz"
    if shipped.is_file():
        _check(shipped, known.sha256, opener=gzip.open)
        return shipped  # pandas reads the compressed file as it is
    target = cache_dir() / name
    return _download_verified(target, known.sha256, url or known.url, timeout)


def _check(path: Path, sha256: str, opener=open) -> None:
    actual = sha256_of(path, opener)
    if actual != sha256:
        raise FetchError(
            f"{path} does not match its known sha256 (expected {sha256}, got {actual}); "
            f"delete it and run again to fetch a fresh copy"
        )


def _download(url: str, dst, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, dst)
    except (urllib.error.URLError, OSError) as err:
        raise FetchError(f"could not download {url}: {err}") from err


def _download_verified(target: Path, sha256: str, source: str, timeout: float) -> Path:
    try:
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as dst:
                _download(source, dst, timeout)
            actual = sha256_of(tmp)
            if actual != sha256:
                raise FetchError(
                    f"the copy of {target.name} received does not match its known sha256 "
                    f"(expected {sha256}, got {actual}); it was discarded"
                )
    except FetchError as err:
        raise FetchError(
            f"{err}\nTo use {target.name} offline, download it from "
            f"{KNOWN_FILES[target.name].url} and put it at {target} "
            f"(or in a folder listed in FORECAST_DATA_DIR)."
        ) from err.__cause__
    return target
