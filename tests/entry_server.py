"""Run the entry scripts' command lines, each in a child process forked from one interpreter that
has imported them: `python -m tests.entry_server FOLDER`, driven by `tests.conftest.start_entry`
and `run_entry` (FOLDER: where the children's stdout and stderr are written, the caller's).

A command line in its own new interpreter costs 8-14 s before any work (torch, Lightning and
torchmetrics imported again: `python -X importtime -c "import pytorch_lightning"`); a forked
child starts with them imported and is otherwise the process a user's command runs: its own
`sys.argv`, working folder, environment, stdout and stderr, and exit status, and it ends as an
interpreter does (atexit handlers, threads joined, the traceback or SystemExit's message). This
server starts as the commands do (`prepare_process`: OpenMP's passive threads and the allocator
settings, which glibc reads only when a process starts), so its children run with them.

What a child does not do is start an interpreter: what is printed or set up while the modules
are imported happened once, here (its stderr goes to the caller's log, not to a child's). The
tests of that start one themselves: tests/test_first_run.py (a quiet first run),
test_cli.py's mistake refused by a new interpreter, test_runtime.py, test_extras.py,
test_ddp.py, test_gpu.py and test_install.py.

This process never computes with torch (it imports only), so no OpenMP thread pool exists when
it forks, and a child starts the one it needs.

Protocol, one JSON object per line on stdin, each answered by one on stdout with the request's
"id" (the first line, {"ready": true}, says the imports are done):
- {"id", "start": {"args": [script, ...], "cwd": folder, "env": {...}, "new_session": bool}}: a
  child runs the command line (in a session of its own with new_session); answer {"id", "pid"},
  once the child's session exists;
- {"id", "poll": pid}: answer {"id", "ended": bool};
- {"id", "wait": pid}: when the child has ended, {"id", "status", "stdout", "stderr"} (`status`
  as subprocess gives it: the exit code, or minus the signal).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

from forecast.runtime import MALLOC_SETTINGS, prepare_process

# the checkout's scripts and the console scripts (pyproject.toml) they are shells of
ENTRIES = {f"{name}.py": name for name in ("train", "predict", "sweep")} | {
    f"forecast-{name}": name for name in ("train", "predict", "sweep")
}
# what a run imports after its entry: imported once here, so that no child imports them again
# (the ONNX exporter's operator library is most of a first export's time)
WARM = ("forecast.pipeline", "forecast.predict", "forecast.api", "forecast.sweep")


def become_child(request: dict, out_path: str, err_path: str) -> None:
    """In the forked child: take the request's command line, working folder, environment and
    output files, then run its entry. Never returns: the entry's SystemExit (or exception)
    ends the interpreter as it would end `python train.py ...`."""
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
    # this process runs with the allocator settings (the server started with them): in the
    # environment too, so that `prepare_process` does not restart it for them
    os.environ.update({k: v for k, v in MALLOC_SETTINGS.items() if k not in os.environ})
    sys.argv = list(request["args"])
    entry = ENTRIES[os.path.basename(sys.argv[0])]
    __import__(f"forecast.commands.{entry}", fromlist=["entry"]).entry()
    sys.exit(0)


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
    prepare_process()  # as the commands start (may restart this process: the pipes stay)
    folder = sys.argv[1]
    warm()
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever else prints here goes to stderr, not into the replies
    ended: dict[int, int] = {}  # pid -> wait status, of the children polled to their end

    def reply(request: dict, **answer) -> None:
        print(json.dumps({"id": request.get("id"), **answer}), file=replies, flush=True)

    def paths(pid: int) -> list[str]:
        return [os.path.join(folder, f"{pid}.{name}") for name in ("out", "err")]

    reply({}, ready=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "start" in request:
            sys.stdout.flush()
            sys.stderr.flush()
            ready, started = os.pipe()
            pid = os.fork()
            if pid == 0:
                replies.close()  # the answers are the server's alone
                os.close(ready)
                if request["start"].get("new_session"):
                    os.setsid()
                os.close(started)  # its session exists: a kill of its group finds it
                become_child(request["start"], *paths(os.getpid()))
            os.close(started)
            os.read(ready, 1)  # the end of the file, once the child closed its end
            os.close(ready)
            reply(request, pid=pid)
        elif "poll" in request:
            pid = request["poll"]
            if pid not in ended:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    ended[pid] = status
            reply(request, ended=pid in ended)
        else:
            pid = request["wait"]
            status = ended.pop(pid) if pid in ended else os.waitpid(pid, 0)[1]
            output = {}
            for name, path in zip(("stdout", "stderr"), paths(pid), strict=True):
                with open(path, errors="replace") as file:
                    output[name] = file.read()
                os.remove(path)
            reply(request, status=os.waitstatus_to_exitcode(status), **output)


if __name__ == "__main__":
    main()
