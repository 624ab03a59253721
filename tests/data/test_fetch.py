import functools
import gzip
import hashlib
import http.server
import sys
import threading
from pathlib import Path

import pytest

import forecast
from forecast.data import fetch
from forecast.data.fetch import KNOWN_FILES, FetchError, dataset_path, sha256_of

NAME = "M4-Hourly-test.csv"


@pytest.fixture
def serve():
    """Serve a folder on a loopback HTTP server; yields a function folder -> base URL."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder (FORECAST_CACHE_DIR), and no search path, for this test only: the
    file must come from the cache or a download; returns the cache's data folder. (The reference
    data, `shared_data`, was located before this runs.)"""
    monkeypatch.setenv("FORECAST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FORECAST_DATA_DIR", raising=False)
    return tmp_path / "cache" / "data"


def test_download_is_verified_and_cached(serve, cache, shared_data):
    base = serve(shared_data)
    path = dataset_path(NAME, url=f"{base}/{NAME}")
    assert path == cache / NAME
    assert sha256_of(path) == KNOWN_FILES[NAME].sha256
    assert path.read_bytes() == (shared_data / NAME).read_bytes()
    # a second use reads the cache: an unreachable address is never asked
    assert dataset_path(NAME, url="http://127.0.0.1:9/unreachable") == path
    assert sorted(p.name for p in cache.iterdir()) == [NAME]


def test_corrupted_download_is_refused_and_not_kept(serve, cache, shared_data, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    content = bytearray((shared_data / NAME).read_bytes())
    content[100] ^= 0xFF  # one flipped byte
    (bad / NAME).write_bytes(bytes(content))
    with pytest.raises(FetchError, match="does not match its known sha256") as err:
        dataset_path(NAME, url=f"{serve(bad)}/{NAME}")
    assert str(cache / NAME) in str(err.value)  # says where to put a good copy
    assert list(cache.iterdir()) == []  # neither the file nor a temporary part is left


def test_offline_error_says_where_to_put_the_file(cache):
    with pytest.raises(FetchError) as err:
        dataset_path(NAME, url="http://127.0.0.1:9/nothing-listens-here", timeout=5)
    message = str(err.value)
    assert "could not download" in message
    assert f"put it at {cache / NAME}" in message
    assert "FORECAST_DATA_DIR" in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_search_path_is_read_in_place_and_checked(shared_data, cache, monkeypatch, tmp_path):
    monkeypatch.setenv("FORECAST_DATA_DIR", str(shared_data))
    assert dataset_path(NAME) == shared_data / NAME
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / NAME).write_text("H1,1\n")
    monkeypatch.setenv("FORECAST_DATA_DIR", str(tampered))
    with pytest.raises(FetchError, match="delete it and run again"):
        dataset_path(NAME)


def test_without_forecast_cache_dir_downloads_go_to_the_users_cache_folder(
    serve, shared_data, tmp_path, monkeypatch
):
    monkeypatch.delenv("FORECAST_CACHE_DIR", raising=False)
    monkeypatch.delenv("FORECAST_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # platformdirs' Linux rule
    if sys.platform.startswith("linux"):
        assert fetch.cache_dir() == tmp_path / "xdg" / "forecast" / "data"
    path = dataset_path(NAME, url=f"{serve(shared_data)}/{NAME}")
    assert path == fetch.cache_dir() / NAME
    package = Path(forecast.__file__).parent
    assert package not in path.parents and not any(package.rglob(NAME))


def test_shipped_etth1_is_the_unchanged_original(monkeypatch, tmp_path):
    monkeypatch.delenv("FORECAST_DATA_DIR", raising=False)
    monkeypatch.setenv("FORECAST_CACHE_DIR", str(tmp_path / "empty"))
    path = dataset_path("ETTh1.csv")
    assert path == fetch.BUILTIN_DIR / "ETTh1.csv.gz"  # read in place, nothing written
    assert not (tmp_path / "empty").exists()
    with gzip.open(path, "rb") as f:  # the sha256 of the original file at its public address
        assert hashlib.sha256(f.read()).hexdigest() == KNOWN_FILES["ETTh1.csv"].sha256


def test_unknown_name_is_refused(cache):
    with pytest.raises(FetchError, match="unknown data set"):
        dataset_path("nope.csv")


def test_known_checksums_match_the_reference_copies(shared_data):
    for name, known in KNOWN_FILES.items():
        digest = hashlib.sha256((shared_data / name).read_bytes()).hexdigest()
        assert digest == known.sha256, name
