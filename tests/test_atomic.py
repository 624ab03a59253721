import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from forecast.atomic import atomic_path, remove_stale_parts, write_text
from tests.conftest import ROOT


def test_the_target_appears_whole_with_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text(target, "done\n")
    assert target.read_text() == "done\n"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(target.parent) == ["out.txt"]


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


WRITER = """
import os, signal, sys
from forecast.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    print(tmp, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()  # hold the file until told to finish
"""


def start_writer(target, mode: str) -> tuple[subprocess.Popen, Path]:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), mode],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return writer, Path(writer.stdout.readline().strip())


def test_a_killed_writers_temporary_file_is_removed_a_live_writers_kept(tmp_path):
    killed, stale = start_writer(tmp_path / "a.csv", "kill")
    assert killed.wait(timeout=60) == -signal.SIGKILL
    live, part = start_writer(tmp_path / "b.csv", "hold")
    (tmp_path / ".notes.part").write_text("not ours")  # not a name atomic_path makes
    try:
        assert stale.is_file() and part.is_file()
        assert remove_stale_parts(tmp_path) == [stale]
        assert sorted(os.listdir(tmp_path)) == sorted([".notes.part", part.name])
        live.communicate("go\n", timeout=60)
    finally:
        live.kill()
    assert live.returncode == 0
    assert (tmp_path / "b.csv").read_text() == "half"
    assert remove_stale_parts(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == [".notes.part", "b.csv"]
