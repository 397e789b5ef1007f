"""The task side of :func:`tfcompress.distribute.launch.launch_local`: each task process runs this
file by path (``runpy``, run name ``__tfcompress_worker__``), so it imports only the standard
library at module level (a task that runs ``fn`` without a strategy never loads TensorFlow).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import runpy
import shutil
import signal
import sys
import traceback
from typing import Any

WORKER_RUN_NAME = "__tfcompress_worker__"


def _resolve(module: str, qualname: str, main_file: str | None) -> Any:
    if module == "__main__":
        obj: Any = runpy.run_path(main_file, run_name="__tfcompress_main__")
        first, *rest = qualname.split(".")
        obj = obj[first]
    else:
        obj = importlib.import_module(module)
        rest = qualname.split(".")
    for part in rest:
        obj = getattr(obj, part)
    return obj


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _watch_caller(fd: int, run_dir: str) -> None:
    """Fork a watchdog that SIGKILLs this task's process group once the caller is gone.

    The watchdog is a child process in the task's group; it blocks reading the pipe ``fd``,
    which the caller never writes, so the read returns end of file only when no process holds
    the write end any more: the caller exited or died. It then removes the caller's ``run_dir``
    (payloads, results and default logs, which nobody will read) and SIGKILLs the group: the
    task (if it still runs), every process the task started, and itself. Being a process of its
    own, it outlives a task that already returned and fires even while the task's main thread
    holds the GIL. It only kills a group the task leads (:func:`launch_local` starts each task
    in its own session), never the caller's; elsewhere it does nothing.
    """
    pgid = os.getpgid(0)
    if pgid != os.getpid():
        os.close(fd)
        return
    if os.fork() == 0:  # the watchdog: system calls only, never returns
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            while os.read(fd, 512):
                pass
            shutil.rmtree(run_dir, ignore_errors=True)
            os.killpg(pgid, signal.SIGKILL)
        finally:
            os._exit(0)
    os.close(fd)  # the task itself keeps no end of the pipe


def _worker_main(argv: list[str]) -> int:
    """Entry point of a task process started by :func:`launch_local`."""
    payload_path, result_path, watch_fd = argv
    _watch_caller(int(watch_fd), os.path.dirname(os.path.abspath(payload_path)))
    with open(payload_path, "rb") as f:
        payload = pickle.load(f)
    for p in reversed(payload["sys_path"]):
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        if payload["role"] == "serve":
            from tfcompress.distribute.strategy import run_server

            run_server()
            return 0
        strategy = None
        if payload["strategy"] is not None:
            from tfcompress.distribute.strategy import get_strategy

            options = pickle.loads(payload["strategy_options"])
            strategy = get_strategy(payload["strategy"], **options)
        fn = _resolve(payload["module"], payload["qualname"], payload["main_file"])
        args, kwargs = pickle.loads(payload["args"])
        value = fn(strategy, *args, **kwargs)
        _atomic_write(result_path, pickle.dumps(value))
        return 0
    except BaseException:
        text = traceback.format_exc()
        sys.stderr.write(text)
        with contextlib.suppress(OSError):
            _atomic_write(result_path + ".error", text.encode("utf-8", "replace"))
        return 1


if __name__ == WORKER_RUN_NAME:
    _code = _worker_main(sys.argv[2:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_code)  # skip interpreter teardown: gRPC/collective threads may block it
