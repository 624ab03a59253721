"""Run the entry scripts' command lines, each in a child process forked from one interpreter that
has imported them: `python -m tests.entry_server`, driven by `tests.conftest.run_entry`.

A command line in its own new interpreter costs 8-14 s before any work (torch, Lightning and
torchmetrics imported again: `python -X importtime -c "import pytorch_lightning"`); a forked
child starts with them imported and is otherwise the process a user's command runs: its own
`sys.argv`, working folder, environment, Hydra state, stdout and stderr, and exit status. What
the fork skips is the interpreter's start and `prepare_process`'s restart for the allocator
settings (they are set here before the imports, so no child restarts): the tests that start
`train.py`, `predict.py` and `sweep.py` themselves (tests/test_first_run.py, test_faults.py,
test_cli.py's new interpreter, test_install.py) cover those.

This process never computes with torch (it imports only), so no OpenMP thread pool exists when
it forks, and a child starts the one it needs.

Protocol, one JSON object per line on stdin, each answered by one on stdout:
- {"start": {"args": [script, ...], "cwd": folder, "env": {...}, "new_session": bool}}: a child
  runs the command line (in a session of its own with new_session); answer {"pid": ...};
- {"poll": pid}: answer {"ended": bool};
- {"wait": pid}: when the child has ended, {"status", "stdout", "stderr"} (`status` as
  subprocess gives it: the exit code, or minus the signal).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile

from forecast.runtime import MALLOC_SETTINGS

# the checkout's scripts and the console scripts (pyproject.toml) they are shells of
ENTRIES = {f"{name}.py": name for name in ("train", "predict", "sweep")} | {
    f"forecast-{name}": name for name in ("train", "predict", "sweep")
}
# what a run imports after its entry: imported once here, so that no child imports them again
# (the ONNX exporter's operator library is most of a first export's time)
WARM = ("forecast.pipeline", "forecast.predict", "forecast.api", "forecast.sweep")


def run_child(request: dict, out_path: str, err_path: str) -> None:
    """In the forked child: the entry of the request's script with its command line, working
    folder and environment; never returns."""
    status = 1
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # not the server's requests
        os.close(null)
        sys.stdin = open(0)  # noqa: SIM115 - the child's own fds 0, 1, 2
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update({k: v for k, v in MALLOC_SETTINGS.items() if k not in os.environ})
        sys.argv = list(request["args"])
        entry = ENTRIES[os.path.basename(sys.argv[0])]
        module = __import__(f"forecast.commands.{entry}", fromlist=["entry"])
        module.entry()
        status = 0
    except SystemExit as exit_:
        code = exit_.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:  # what the interpreter would do with it: a traceback, status 1
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def warm() -> None:
    """Import what every child would import first."""
    for name in set(ENTRIES.values()):
        __import__(f"forecast.commands.{name}")
    from forecast.config import register_configs

    register_configs()
    for name in WARM:
        __import__(name)
    from forecast.export import _onnx_available

    if _onnx_available():
        import onnxscript.function_libs.torch_lib.ops  # noqa: F401
    if importlib.util.find_spec("matplotlib"):
        import matplotlib

        matplotlib.use("Agg")  # as forecast.plots chooses it
        import matplotlib.pyplot  # noqa: F401


def main() -> None:
    os.environ.update({k: v for k, v in MALLOC_SETTINGS.items() if k not in os.environ})
    warm()
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever else prints here goes to stderr, not into the replies
    ended: dict[int, int] = {}  # pid -> wait status, of the children polled to their end

    def reply(message: dict) -> None:
        print(json.dumps(message), file=replies, flush=True)

    with tempfile.TemporaryDirectory() as folder:
        paths = lambda pid: [os.path.join(folder, f"{pid}.{s}") for s in ("out", "err")]  # noqa: E731
        for line in sys.stdin:
            request = json.loads(line)
            if "start" in request:
                sys.stdout.flush()
                sys.stderr.flush()
                ready, started = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(replies.fileno())  # the answers are the server's alone
                    os.close(ready)
                    if request["start"].get("new_session"):
                        os.setsid()
                    os.close(started)  # its session exists: a kill of its group finds it
                    run_child(request["start"], *paths(os.getpid()))
                os.close(started)
                os.read(ready, 1)  # the end of the file, once the child closed its end
                os.close(ready)
                reply({"pid": pid})
            elif "poll" in request:
                pid = request["poll"]
                if pid not in ended:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        ended[pid] = status
                reply({"ended": pid in ended})
            else:
                pid = request["wait"]
                status = ended.pop(pid) if pid in ended else os.waitpid(pid, 0)[1]
                output = {}
                for name, path in zip(("stdout", "stderr"), paths(pid), strict=True):
                    with open(path, errors="replace") as file:
                        output[name] = file.read()
                    os.remove(path)
                reply({"status": os.waitstatus_to_exitcode(status), **output})


if __name__ == "__main__":
    main()
