"""Write files so that no reader ever sees half of one, and a killed writer leaves nothing behind.

The content goes to a temporary file `.<name>.<random>.part` beside the target, which is renamed
over the target once complete (a rename within one folder is atomic) and removed if anything fails
on the way. A writer killed outright (kill -9, power loss) cannot remove its temporary file, so
the writer holds an exclusive lock on it until the rename: the kernel drops a lock with its
process, and `remove_stale_parts` removes the temporary files nobody holds, never one still being
written by a live process (another run writing into the same folder).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; stale temporary files stay
    fcntl = None

PART_SUFFIX = ".part"
# what tempfile.mkstemp names them: `.<target name>.<8 random characters>.part`
PART_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.part")


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _locked_temporary(target)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would have made it
        os.replace(tmp, target)  # still locked: a cleaner cannot take it for stale meanwhile
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # releases the lock


def _locked_temporary(target: Path) -> tuple[int, Path]:
    """A new temporary file beside `target` and an open descriptor holding its lock.

    Between its creation and the lock, a cleaner may take the file for stale and remove it; the
    path would then name no file, or another one: try again with a new name.
    """
    while True:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=PART_SUFFIX, dir=target.parent
        )
        if fcntl is None:
            return fd, Path(name)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(name)):
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_parts(folder: str | Path) -> list[Path]:
    """Remove the temporary files in `folder` that writers killed before their rename left
    (their lock went with them); return them. Files being written are kept."""
    removed: list[Path] = []
    if fcntl is None or not Path(folder).is_dir():
        return removed
    for path in Path(folder).glob(f".*{PART_SUFFIX}"):
        if PART_NAME.fullmatch(path.name) and _remove_if_abandoned(path):
            removed.append(path)
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    """Remove `path` if no process holds its lock. The lock is taken first and the path checked
    to still name the locked file: a writer renames its file only while holding the lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # gone meanwhile (renamed into place), a link, or not ours to open
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
            return False
        os.unlink(path)
        return True
    except OSError:  # locked (its writer is alive), or renamed into place meanwhile
        return False
    finally:
        os.close(fd)


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)
