"""Compile csrc/rnn.cpp once per machine, never waiting without bound, never leaving half a build.

torch's JIT builder guards a build folder with a lock file that names no owner: a build killed
there leaves the file behind and every later build waits for it forever. So the build here goes
around it:

- a finished build is a folder `<root>/<name>/` holding `<name>.so`, loaded directly (no lock,
  no compiler, no message);
- otherwise one process builds, under an advisory `flock` on `<root>/<name>.lock`: the kernel
  drops that lock when its owner exits, however it exits, so a killed build never blocks the
  next one, and a waiter gives up after LOCK_TIMEOUT_S and runs torch ops instead;
- the build happens in a fresh temporary folder `<root>/<name>.tmp-<pid>` (torch's own lock in
  it is private to this build), renamed into place when complete; leftovers of killed builds are
  removed by the next builder.

`<root>` is `TORCH_EXTENSIONS_DIR` when set, else `kernels/` in the user's cache folder
(`forecast.cache.cache_dir`: `FORECAST_CACHE_DIR`, else e.g. ~/.cache/forecast).
`python -m forecast.nn.fast` builds ahead of use.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "rnn.cpp"
# generous against a loaded machine (a build takes ~30 s idle, ~60 s under load here)
LOCK_TIMEOUT_S = 600.0
# compiler flags per CPU capability torch itself detected; the capability is part of the
# extension's name, so machines sharing one cache folder never load each other's build
_ARCH_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
_log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """The kernels could not be built or loaded; the message says why in one line."""


def flags() -> list[str]:
    capability = torch.backends.cpu.get_cpu_capability()
    # -fno-trapping-math: lets GCC vectorise the selects and floor of exp/tanh
    return ["-O3", "-fno-trapping-math", "-fopenmp", *_ARCH_FLAGS.get(capability, [])]


def extension_name(source: Path = SOURCE) -> str:
    """Changes with the source, the flags and torch itself (a build is tied to the torch it was
    compiled against, and environments may share one cache folder)."""
    capability = torch.backends.cpu.get_cpu_capability().lower()
    stamp = " ".join([*flags(), torch.__version__, sys.executable]).encode()
    digest = hashlib.sha256(source.read_bytes() + stamp).hexdigest()[:10]
    return f"forecast_rnn_{capability}_{digest}"


def root() -> Path:
    from forecast.cache import cache_dir

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cache_dir("kernels"))


def load(source: Path = SOURCE, timeout: float | None = None):
    """The compiled module: loaded if built, else built (once, under the lock, waited for at
    most `timeout` s, LOCK_TIMEOUT_S by default). Raises BuildError with a one-line reason when
    it cannot be had."""
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    name = extension_name(source)
    folder = root() / name
    if (folder / f"{name}.so").is_file():
        return _import(name, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder.with_name(f"{name}.lock"), timeout):
        if (folder / f"{name}.so").is_file():  # another process built it while we waited
            return _import(name, folder)
        return _build(name, source, folder)


@contextlib.contextmanager
def _exclusive(lock_path: Path, timeout: float):
    """An advisory lock that dies with its owner (flock), waited for at most `timeout` s."""
    try:
        import fcntl
    except ImportError as error:  # not a POSIX system
        raise BuildError("no flock on this system to guard the build") from error
    with open(lock_path, "a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BuildError(
                        f"another process has been building them for over {timeout:.0f} s "
                        f"(lock {lock_path})"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(name: str, source: Path, folder: Path):
    """Compile into a fresh temporary folder, then rename it into place (atomic); returns the
    module, loaded from the temporary folder (the rename keeps the open library)."""
    from torch.utils import cpp_extension

    for stale in folder.parent.glob(f"{name}.tmp-*"):  # killed builds; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    if folder.exists():  # a folder without the library: a build of torch's own scheme
        shutil.rmtree(folder)
    tmp = folder.with_name(f"{name}.tmp-{os.getpid()}")
    tmp.mkdir()
    # torch runs `ninja` by name: make the one installed beside this Python findable
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    _log.info("compiling the C++ LSTM and GRU kernels (once per machine and torch version, ~30 s)")
    try:
        module = cpp_extension.load(
            name,
            [str(source)],
            extra_cflags=flags(),
            extra_ldflags=["-fopenmp"],
            build_directory=str(tmp),
            verbose=False,
        )
    except Exception as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(reason(error)) from error
    os.replace(tmp, folder)
    return module


def _import(name: str, folder: Path):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.so")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        raise BuildError(f"{folder / name}.so does not load: {error}") from error
    return module


def reason(error: Exception) -> str:
    """The line of a build failure that says what went wrong: the compiler's first error, else
    a missing tool, else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for mark in ("error:", "not found", "error"):
        found = [line for line in lines if mark in line.lower()]
        if found:
            return found[0]
    return lines[0] if lines else type(error).__name__


def warn_unavailable(error: BuildError) -> None:
    warnings.warn(
        f"forecast: the C++ LSTM and GRU kernels are unavailable ({error}); impl=custom runs the "
        "slower torch-op loops instead. Install a C++ compiler (g++) and ninja to get them, "
        "or set FORECAST_NN_BACKEND=reference to silence this.",
        stacklevel=4,
    )
