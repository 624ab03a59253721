import atexit
import gzip
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.entry_server import ENTRIES

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: each worker, and every entry script it
    # starts, computes on one thread, so that the workers share the cores instead of fighting
    # for them (threads=auto follows OMP_NUM_THREADS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def shared_data_dir() -> Path | None:
    """The reference data sets (../shared/data beside the checkout, or $FORECAST_DATA_DIR)."""
    listed = os.environ.get("FORECAST_DATA_DIR", "").split(os.pathsep)
    for candidate in [*listed, ROOT.parent / "shared" / "data"]:
        if candidate and (Path(candidate) / "M4-Hourly-train.csv").is_file():
            return Path(candidate)
    return None


# looked up once, when the tests are collected: a test that changes FORECAST_DATA_DIR (the fetch
# tests drop it to exercise the download) must not hide the reference data from the others
SHARED_DATA = shared_data_dir()


def require_shared_data() -> Path:
    """The reference data folder (with the M4 files); without it a test fails in CI and skips
    elsewhere, saying why. Tests that need only ETTh1 take `etth1_csv`, which ships."""
    found = SHARED_DATA
    if found is None:
        message = "the reference data sets (../shared/data) are not beside this checkout"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + "; set FORECAST_DATA_DIR to their folder to run this test")
    return found


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture(scope="session")
def etth1_csv(tmp_path_factory) -> Path:
    """ETTh1 as a plain CSV file, from the copy that ships with the package."""
    from forecast.data.fetch import BUILTIN_DIR

    path = tmp_path_factory.mktemp("etth1") / "ETTh1.csv"
    with gzip.open(BUILTIN_DIR / "ETTh1.csv.gz", "rb") as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    return path


# for runs whose ONNX file no test reads (forecast.fit's Run and ExportedModel's default engine
# forecast through model.pt2): torch's ONNX exporter takes 5-7 s of a small run, most of it.
# tests/test_export.py, test_covariates.py's export test, test_train_e2e.py's each-model test and
# test_faults.py (the default command) export ONNX as a default run does
PT2_ONLY = "export_formats=[pt2]"


class EntryServer:
    """tests/entry_server.py, started once per test process: runs entry-script command lines
    in children forked from an interpreter that has imported them (see there). Every wait is
    bounded: a request unanswered in its time kills the server, and the next `start_entry`
    starts another."""

    def __init__(self):
        self.folder = tempfile.TemporaryDirectory(prefix="entry-server-")  # children's output
        self.log = tempfile.TemporaryFile("w+")  # the server's own stderr, shown if it dies
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.entry_server", self.folder.name],
            cwd=ROOT,
            env=SERVER_ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.lock = threading.Lock()
        self.asked = 0
        self.receive(None, timeout=600)  # imported (15-40 s here; 600: a safety net)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.replies.put(line)
        self.replies.put(None)  # the server ended

    def send(self, request: dict) -> int:
        """Send `request` (hold `lock` until its answer is read); its id."""
        self.asked += 1
        self.process.stdin.write(json.dumps({"id": self.asked, **request}) + "\n")
        self.process.stdin.flush()
        return self.asked

    def receive(self, id_: int | None, timeout: float, kill_server: bool = True) -> dict:
        """The answer to request `id_`: queue.Empty after `timeout` seconds, and then, with
        `kill_server`, the server killed (an answer that comes later would be another's)."""
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            if kill_server:
                self.kill()
            raise
        if line is None:
            self.log.seek(0)
            raise RuntimeError(f"tests/entry_server.py ended: {self.log.read()[-3000:]}")
        answer = json.loads(line)
        assert answer["id"] == id_, (answer, id_)  # one answer per request, in order
        return answer

    def ask(self, request: dict, timeout: float) -> dict:
        """Send `request` and return its answer (`receive`)."""
        with self.lock:
            return self.receive(self.send(request), timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=60)

    def close(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self.log.close()
        self.folder.cleanup()


class EntryProcess:
    """A command line the entry server runs: like a `subprocess.Popen` of it with its output
    captured (`poll`, `wait`, and `kill` of it or of its session)."""

    def __init__(self, server: EntryServer, args, cwd, env: dict, new_session: bool):
        self.server, self.args, self.new_session = server, args, new_session
        start = {"args": [str(a) for a in args], "cwd": str(cwd), "env": env}
        self.pid = server.ask({"start": {**start, "new_session": new_session}}, 60)["pid"]
        self.result: subprocess.CompletedProcess | None = None

    def poll(self) -> int | None:
        if self.result is None and self.server.ask({"poll": self.pid}, 60)["ended"]:
            self.wait()
        return None if self.result is None else self.result.returncode

    def kill(self) -> None:
        """SIGKILL to the process, or to its whole session's group where it has one (nothing
        once it has been waited for)."""
        if self.result is None:
            (os.killpg if self.new_session else os.kill)(self.pid, signal.SIGKILL)

    def wait(self, timeout: float = 600) -> subprocess.CompletedProcess:
        """Its end; after `timeout` seconds (a safety net) it is killed and TimeoutExpired
        raised, with what it had written."""
        if self.result is None:
            with self.server.lock:
                id_ = self.server.send({"wait": self.pid})
                try:
                    answer, timed_out = self.server.receive(id_, timeout, False), False
                except queue.Empty:
                    self.kill()
                    answer, timed_out = self.server.receive(id_, 60), True
            self.result = subprocess.CompletedProcess(
                self.args, answer["status"], answer["stdout"], answer["stderr"]
            )
            if timed_out:
                raise subprocess.TimeoutExpired(
                    self.args, timeout, output=self.result.stdout, stderr=self.result.stderr
                )
        return self.result


# the environment the entry servers start with: this one as the tests were collected, before
# any test changed it (what the children import reads it once)
SERVER_ENV = dict(os.environ)
_entry_server: EntryServer | None = None


def entry_server() -> EntryServer:
    """This test process's entry server, started (and its imports done) if it was not."""
    global _entry_server
    if _entry_server is None or _entry_server.process.poll() is not None:
        _entry_server = EntryServer()
        atexit.register(_entry_server.close)
    return _entry_server


def start_entry(
    *args: str, cwd: Path = ROOT, env: dict | None = None, new_session: bool = False
) -> EntryProcess:
    """Start the command line `python args...` (args[0]: train.py, predict.py or sweep.py, or
    their console scripts) in a child of this test process's entry server
    (tests/entry_server.py): the process the command would run, but for the interpreter's
    start, which it skips. `env`: the child's whole environment (by default this one's)."""
    env = dict(os.environ) if env is None else env
    return EntryProcess(entry_server(), args, cwd, env, new_session)


def run_entry(
    *args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`start_entry` to its end: what `subprocess.run(..., capture_output=True, text=True)`
    gives. The timeout is a safety net: the command is killed after it."""
    return start_entry(*args, cwd=cwd, env=env).wait(timeout)


def run_script(
    *args: str, keep_data_dir: bool = False, timeout: float = 600, fresh: bool = False
) -> subprocess.CompletedProcess:
    """Run a script of the checkout from the project root: one of the entry scripts (train.py,
    predict.py, sweep.py) by the entry server (`run_entry`), unless `fresh`; any other, or
    with `fresh`, in a new interpreter.

    Without `keep_data_dir`, FORECAST_DATA_DIR is dropped so the run uses the shipped ETTh1.
    Fails the test, showing the end of stderr, when the script fails.
    """
    env = dict(os.environ)
    if not keep_data_dir:
        env.pop("FORECAST_DATA_DIR", None)
    if fresh or Path(args[0]).name not in ENTRIES:
        command = [sys.executable, *args]
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    else:
        result = run_entry(*args, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def run_train(run_dir: Path, *overrides: str, fresh: bool = False) -> dict:
    """train.py into `run_dir` (`run_script`); returns its metrics.json."""
    run_script("train.py", f"hydra.run.dir={run_dir}", *overrides, fresh=fresh)
    return json.loads((run_dir / "metrics.json").read_text())


def train_here(run_dir: Path, *overrides: str) -> dict:
    """What `run_train` does, in this process: train.py's config composed from the same files
    with `overrides`, trained by `forecast.pipeline.train` into `run_dir`; returns metrics.json.

    For tests of what a run computes and writes: they skip a new interpreter's imports (torch
    and Lightning, most of a small run's 15-20 s). What only the command adds (its one-line
    errors, Hydra's run folder, the summary it prints) is tested through `run_train`. As there,
    the run reads the shipped ETTh1, not $FORECAST_DATA_DIR's; torch's deterministic mode, which
    a run turns on for its process, is restored afterwards.
    """
    import torch

    from forecast.config import compose_train_config
    from forecast.pipeline import train

    cfg = compose_train_config([*overrides, f"output_dir={run_dir}"])
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    data_dir = os.environ.pop("FORECAST_DATA_DIR", None)
    try:
        train(cfg, progress=False)
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        if data_dir is not None:
            os.environ["FORECAST_DATA_DIR"] = data_dir
    return json.loads((Path(run_dir) / "metrics.json").read_text())
