"""Run many command lines of the entry scripts, each in a child process forked from one
interpreter that has imported them: `python -m tests.entry_children < cases.json`.

A command line in its own new interpreter costs ~10 s here (torch and Lightning imported again);
a forked child starts with them imported and is otherwise the process a user's command runs:
its own `sys.argv`, environment, Hydra state, stdout and stderr, and exit status. What the fork
skips is `prepare_process`'s restart for the allocator settings (they are set before the
imports, so no child restarts); the tests that start `train.py` itself cover that.

stdin: a JSON list of argument lists, each starting with the script (`train.py`, `predict.py`,
`sweep.py`). stdout: a JSON list of {"status", "stdout", "stderr"}, one per case, in order.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from forecast.runtime import MALLOC_SETTINGS

ENTRIES = {"train.py": "train", "predict.py": "predict", "sweep.py": "sweep"}


def run_child(args: list[str], out_path: str, err_path: str) -> None:
    """In the forked child: the entry of `args[0]` with `args` as its command line; never
    returns."""
    status = 1
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child's own fds 1, 2
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        sys.argv = list(args)
        module = __import__(f"forecast.commands.{ENTRIES[args[0]]}", fromlist=["entry"])
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


def main() -> None:
    cases = json.load(sys.stdin)
    os.environ.update({k: v for k, v in MALLOC_SETTINGS.items() if k not in os.environ})
    for name in set(ENTRIES.values()):  # what every child would import first, imported once
        __import__(f"forecast.commands.{name}")
    from forecast.config import register_configs

    register_configs()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for k, args in enumerate(cases):
            out_path, err_path = (os.path.join(folder, f"{k}.{s}") for s in ("out", "err"))
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                run_child(args, out_path, err_path)
            _, wait_status = os.waitpid(pid, 0)
            with open(out_path) as out, open(err_path) as err:
                results.append(
                    {
                        "status": os.waitstatus_to_exitcode(wait_status),
                        "stdout": out.read(),
                        "stderr": err.read(),
                    }
                )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
