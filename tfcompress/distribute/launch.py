"""Run a function on a local ``tf.distribute`` cluster: :func:`launch_local` starts one subprocess
per task on loopback ports and returns what ``fn(strategy, ...)`` returned in each (contract:
docs/distribute.md).

Example:
    >>> def fit_worker(strategy, epochs):  # module level  # doctest: +SKIP
    ...     with strategy.scope():
    ...         model = build_and_compile()
    ...     history = model.fit(data, epochs=epochs)
    ...     return history.history["loss"][-1]
    >>> launch_local(fit_worker, workers=2, args=(3,))  # doctest: +SKIP
    [0.41, 0.41]
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from tfcompress.distribute._worker import WORKER_RUN_NAME

_log = logging.getLogger("tfcompress")

__all__ = ["LaunchTimeoutError", "WorkerError", "launch_local"]

_LAUNCH_STRATEGIES = ("auto", "multi_worker", "parameter_server", None)
_BOOT = f"import runpy, sys; runpy.run_path(sys.argv[1], run_name={WORKER_RUN_NAME!r})"
_TAIL_CHARS = 4000
_GONE_TIMEOUT = 10.0  # seconds to wait for killed process groups to be gone


class WorkerError(RuntimeError):
    """A task of a :func:`launch_local` cluster failed; the message holds its traceback/log.

    Attributes:
        task: ``"worker:1"`` etc., the task that failed first (None on a timeout).
        returncode: its exit status (negative: killed by that signal).
        log_tail: the end of its output.
    """

    def __init__(
        self,
        message: str,
        *,
        task: str | None = None,
        returncode: int | None = None,
        log_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.task = task
        self.returncode = returncode
        self.log_tail = log_tail


class LaunchTimeoutError(WorkerError, TimeoutError):
    """The cluster of :func:`launch_local` did not finish within ``timeout`` seconds."""


class _Task:
    def __init__(self, job: str, index: int, role: str, run_dir: str, log_dir: str) -> None:
        self.job, self.index, self.role = job, index, role
        self.name = f"{job}:{index}"
        stem = f"{job}-{index}"
        self.payload = os.path.join(run_dir, f"{stem}.payload")
        self.result = os.path.join(run_dir, f"{stem}.result")
        self.error = self.result + ".error"
        self.log = os.path.join(log_dir, f"{stem}.log")
        self.proc: subprocess.Popen | None = None
        self.started = 0.0


def _fn_reference(fn: Any) -> tuple[str, str, str | None]:
    if not callable(fn):
        raise TypeError(f"`fn` must be a function, received {type(fn).__name__}: {fn!r:.80}.")
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(
            f"`fn` must be a module-level function so worker processes can import it, received "
            f"{qualname or fn!r} (a lambda, nested function or bound object). Define it at the "
            "top level of a module (or of your script, under `if __name__ == '__main__':`)."
        )
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if not main_file:
            raise ValueError(
                f"`fn` {qualname!r} is defined in an interactive session; worker processes "
                "cannot import it. Put it in a module or a script file."
            )
        return module, qualname, os.path.abspath(main_file)
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        obj = None
    if obj is not fn:
        raise ValueError(
            f"`fn` {module}.{qualname} cannot be imported by that name (it was redefined or "
            "created dynamically); pass a function defined at the top level of a module."
        )
    return module, qualname, None


def _pickled(value: Any, argument: str) -> bytes:
    try:
        return pickle.dumps(value)
    except Exception as err:
        raise TypeError(
            f"`{argument}` must be picklable to reach the worker processes ({err}); pass plain "
            "values (numbers, strings, paths, dicts) and build models inside `fn`."
        ) from None


def _check_count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, received {value!r}.")
    return value


def _tail(path: str, chars: int = _TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _exit_status(task: _Task) -> int | None:
    """The task's exit status (negative: killed by that signal), None while it runs.

    The task is not reaped (``WNOWAIT``): its zombie keeps its pid, which is also its process
    group id, reserved until :func:`_kill` has signalled that group, so the signal can never
    reach an unrelated process that got the pid after it.
    """
    proc = task.proc
    if proc.returncode is not None:
        return proc.returncode
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # pragma: no cover - POSIX without waitid
        return proc.poll()
    try:
        info = waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped elsewhere (e.g. SIGCHLD ignored)
        return proc.poll()
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _kill(task: _Task) -> None:
    """SIGKILL the task's process group (the task and every process it started), then reap it.

    Runs whether or not the task has exited: processes a finished task started still belong to
    its group. A task already reaped is left alone (its group id may have been reused).
    """
    proc = task.proc
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the task's own session: it and its children
    with contextlib.suppress(ProcessLookupError):
        proc.kill()  # in case it left its group
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def _group_members(pgids: set[int]) -> list[int]:
    """Pids of live (not zombie) processes in the process groups ``pgids``."""
    members: list[int] = []
    if not os.path.exists("/proc/self/stat"):  # no procfs: ask the kernel per group
        for pgid in pgids:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            members.append(pgid)
        return members
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()  # after "pid (comm)"
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) in pgids and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def _wait_gone(tasks: list[_Task], timeout: float = _GONE_TIMEOUT) -> None:
    """Wait until every killed task's process group has no live process left."""
    pgids = {t.proc.pid for t in tasks if t.proc is not None}
    deadline = time.monotonic() + timeout
    while pgids:
        left = _group_members(pgids)
        if not left:
            return
        if time.monotonic() > deadline:
            _log.warning(
                "launch_local: processes %s of the killed tasks were sent SIGKILL but are still "
                "running after %g s (uninterruptible sleep?)",
                left,
                timeout,
            )
            return
        time.sleep(0.01)


def _check_launch_args(
    ps: int, strategy: Any, strategy_options: Any, timeout: Any, args: Any, kwargs: Any, env: Any
) -> tuple[str | None, dict[str, str]]:
    """Check :func:`launch_local`'s arguments; ``(resolved strategy, extra env)``."""
    if strategy not in _LAUNCH_STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {list(_LAUNCH_STRATEGIES)}, received {strategy!r}."
        )
    if strategy == "auto":
        strategy = "parameter_server" if ps else "multi_worker"
    if ps and strategy != "parameter_server":
        raise ValueError(
            f"`ps`={ps} starts a parameter-server cluster, which needs "
            f"strategy='parameter_server' (or 'auto'), received {strategy!r}."
        )
    if not ps and strategy == "parameter_server":
        raise ValueError("strategy='parameter_server' needs `ps` >= 1 parameter-server tasks.")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"`timeout` must be a number of seconds > 0, received {timeout!r}.")
    if not isinstance(args, tuple):
        raise TypeError(f"`args` must be a tuple, received {type(args).__name__}.")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"`kwargs` must be a dict or None, received {type(kwargs).__name__}.")
    if strategy_options is not None and not isinstance(strategy_options, Mapping):
        raise TypeError(
            f"`strategy_options` must be a dict or None, received "
            f"{type(strategy_options).__name__}."
        )
    if strategy is None and strategy_options:
        raise ValueError("`strategy_options` needs a strategy; drop it or set `strategy`.")
    extra_env = dict(env or {})
    for k, v in extra_env.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"`env` must map str to str, received {k!r}: {v!r}.")
    return strategy, extra_env


def launch_local(
    fn: Callable[..., Any],
    workers: int = 2,
    *,
    args: tuple = (),
    kwargs: Mapping[str, Any] | None = None,
    ps: int = 0,
    strategy: str | None = "auto",
    strategy_options: Mapping[str, Any] | None = None,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
    log_dir: str | os.PathLike | None = None,
    python: str | None = None,
) -> list[Any]:
    """Run ``fn(strategy, *args, **kwargs)`` on a cluster of local processes; collect results.

    Without ``ps``: ``workers`` processes form a ``MultiWorkerMirroredStrategy`` cluster and
    each runs ``fn``; the result is the list of their return values, by worker index. With
    ``ps``: a parameter-server cluster (``workers`` worker servers, ``ps`` parameter servers and
    a chief); only the chief runs ``fn`` (with ``ParameterServerStrategy``) and the result is
    ``[its return value]``.

    If any task fails, the others are killed and :class:`WorkerError` is raised with the failing
    task's traceback (or the end of its output).

    Process lifetime: each task runs in its own session (process group). Whenever ``launch_local``
    exits (it returns, raises :class:`WorkerError` or :class:`LaunchTimeoutError`, or is interrupted
    by ``KeyboardInterrupt`` or another exception) it SIGKILLs every task's whole process group,
    whether the task is still running or has already exited, reaps the tasks and waits (up to 10 s,
    then logs a warning) until no live process is left in those groups; a SIGINT (Ctrl-C) that
    arrives during that cleanup is held until it is done. So nothing ``fn`` started (subprocesses,
    servers) outlives the call, except processes that moved themselves to another process group or
    session (``setsid``, ``start_new_session=True``, daemons). If the calling process dies without
    running that cleanup (SIGKILL, a crash), each task notices within moments through a pipe it
    inherited from the caller (end of file once no caller holds the other end): a small watchdog
    process in each task's group removes the temporary run folder and SIGKILLs the group, so this
    also covers tasks that already returned. A process forked from the caller (``os.fork``, not
    ``subprocess``) while the call runs holds the pipe open, which delays this until it exits.

    Args:
        fn: a module-level function ``fn(strategy, *args, **kwargs) -> picklable``.
        workers: number of worker tasks (>= 1).
        args: positional arguments after the strategy (picklable).
        kwargs: keyword arguments (picklable).
        ps: number of parameter-server tasks (0: multi-worker mirrored).
        strategy: ``"auto"`` (``"parameter_server"`` when ``ps`` else ``"multi_worker"``),
            one of those names, or None to pass ``strategy=None`` (fn builds its own; the
            workers still get ``TF_CONFIG``).
        strategy_options: keyword arguments of :func:`tfcompress.distribute.get_strategy`
            (e.g. ``variable_partitioner``, ``communication``); picklable.
        timeout: seconds before the whole cluster is killed (:class:`LaunchTimeoutError`).
        env: extra environment variables for every task (e.g. ``CUDA_VISIBLE_DEVICES``).
        log_dir: keep each task's output in ``<log_dir>/<job>-<index>.log`` (default: a
            temporary directory, removed).
        python: the interpreter (default ``sys.executable``).

    Returns:
        The return values of ``fn``, one per process that ran it.

    Raises:
        WorkerError: a task failed (its traceback is in the message).
        LaunchTimeoutError: the cluster ran past ``timeout``.
        ValueError / TypeError: bad arguments (``fn`` not importable, unpicklable ``args``,
            ...).

    Example:
        >>> losses = launch_local(fit_worker, workers=2, args=(3,))  # doctest: +SKIP
        >>> chief_result, = launch_local(fit_ps, workers=2, ps=1)  # doctest: +SKIP
    """
    module, qualname, main_file = _fn_reference(fn)
    _check_count(workers, "workers", 1)
    _check_count(ps, "ps", 0)
    strategy, extra_env = _check_launch_args(
        ps, strategy, strategy_options, timeout, args, kwargs, env
    )
    fn_args = _pickled((tuple(args), dict(kwargs or {})), "args")
    options = _pickled(dict(strategy_options or {}), "strategy_options")

    from tfcompress.distribute.cluster import local_tf_config

    config = local_tf_config(workers, ps, chief=bool(ps), task=("worker", 0))
    run_dir = tempfile.mkdtemp(prefix="tfcompress-launch-")
    logs = str(log_dir) if log_dir is not None else run_dir
    os.makedirs(logs, exist_ok=True)
    if ps:
        tasks = [_Task("chief", 0, "run", run_dir, logs)]
        tasks += [_Task("worker", i, "serve", run_dir, logs) for i in range(workers)]
        tasks += [_Task("ps", i, "serve", run_dir, logs) for i in range(ps)]
    else:
        tasks = [_Task("worker", i, "run", run_dir, logs) for i in range(workers)]
    sys_path = [os.path.abspath(p or os.curdir) for p in sys.path]
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")  # task side
    # Each task's watchdog reads this pipe; end of file means no caller holds the write end.
    watch_r, watch_w = os.pipe()  # both non-inheritable; pass_fds hands watch_r to the tasks
    _log.info(
        "launching %s on loopback: %s", strategy or "no strategy", ", ".join(t.name for t in tasks)
    )
    try:
        for t in tasks:
            payload = {
                "role": t.role,
                "module": module,
                "qualname": qualname,
                "main_file": main_file,
                "args": fn_args,
                "strategy": strategy,
                "strategy_options": options,
                "sys_path": sys_path,
            }
            with open(t.payload, "wb") as f:
                pickle.dump(payload, f)
            task_env = dict(os.environ)
            task_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            task_env["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras is Keras 2 even if fn's module
            # imports TensorFlow or TFMOT before tfcompress
            task_env.update(extra_env)
            task_env["TF_CONFIG"] = json.dumps(
                {"cluster": config["cluster"], "task": {"type": t.job, "index": t.index}}
            )
            with open(t.log, "wb") as log:
                t.proc = subprocess.Popen(
                    [
                        python or sys.executable,
                        "-c",
                        _BOOT,
                        here,
                        t.payload,
                        t.result,
                        str(watch_r),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=task_env,
                    start_new_session=True,
                    pass_fds=(watch_r,),
                )
            t.started = time.monotonic()
        _wait(tasks, timeout, log_dir is not None)
        results = []
        for t in tasks:
            if t.role != "run":
                continue
            try:
                with open(t.result, "rb") as f:
                    results.append(pickle.load(f))
            except (OSError, pickle.UnpicklingError, AttributeError, ImportError) as err:
                raise WorkerError(
                    f"launch_local: task {t.name} exited with code 0 but its result could not "
                    f"be read ({err}); return a picklable value from `fn`.",
                    task=t.name,
                    returncode=0,
                    log_tail=_tail(t.log),
                ) from None
        return results
    finally:
        with _sigint_held():
            _shutdown(tasks, (watch_r, watch_w), run_dir)


@contextlib.contextmanager
def _sigint_held() -> Any:
    """Hold SIGINT (Ctrl-C) while the block runs, then hand it to the previous handler.

    So a second Ctrl-C cannot cut :func:`launch_local`'s cleanup short (tasks left running, the
    watchdog pipe and run folder left behind in a caller that goes on, e.g. a notebook); the
    ``KeyboardInterrupt`` comes once the cleanup is done. Only the main thread can set signal
    handlers; elsewhere, or when SIGINT is ignored or not handled by Python (an inherited
    ``SIG_IGN``: the caller was started in the background), the block runs as is.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    held: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(signal.SIGINT, held[-1])


def _shutdown(tasks: list[_Task], fds: tuple[int, ...], run_dir: str) -> None:
    """Kill and reap every task's group, close the watchdog pipe, remove the run folder.

    Every step runs even if an earlier one raises (the first exception is re-raised at the end):
    once the pipe is closed, any task still running kills its own group on end of file.
    """
    steps: list[Callable[[], Any]] = [functools.partial(_kill, t) for t in tasks]
    steps += [functools.partial(os.close, fd) for fd in fds]
    steps.append(functools.partial(_wait_gone, tasks))
    # payloads and results; logs too by default
    steps.append(functools.partial(shutil.rmtree, run_dir, ignore_errors=True))
    first: BaseException | None = None
    for step in steps:
        try:
            step()
        except BaseException as err:  # re-raised below, after the remaining steps
            first = first or err
    if first is not None:
        raise first


def _wait(tasks: list[_Task], timeout: float, keep_logs: bool) -> None:
    deadline = time.monotonic() + timeout
    runners = [t for t in tasks if t.role == "run"]
    while True:
        for t in tasks:
            rc = _exit_status(t)
            if rc is None or (rc == 0 and t.role == "run"):
                continue
            _kill_all_but(tasks, t)
            raise _failure(t, rc, tasks, keep_logs)
        if all(_exit_status(t) == 0 for t in runners):
            return
        if time.monotonic() > deadline:
            running = [t.name for t in tasks if _exit_status(t) is None]
            tails = "\n".join(
                f"--- {t.name} output (end) ---\n{_tail(t.log, 1500).strip()}" for t in runners
            )
            raise LaunchTimeoutError(
                f"launch_local: the cluster did not finish within {timeout:g} s; killed the "
                f"tasks still running ({', '.join(running)}). Raise `timeout` or check for a "
                f"task waiting on a peer.\n{tails}"
            )
        time.sleep(0.05)


def _kill_all_but(tasks: list[_Task], failed: _Task) -> None:
    for t in tasks:
        if t is not failed:
            _kill(t)


def _failure(t: _Task, rc: int, tasks: list[_Task], keep_logs: bool) -> WorkerError:
    seconds = time.monotonic() - t.started
    tail = _tail(t.log)
    error = _tail(t.error) if os.path.exists(t.error) else ""
    what = "a server task stopped" if t.role == "serve" and rc == 0 else _status(rc)
    others = [x.name for x in tasks if x is not t]
    lines = [
        f"launch_local: task {t.name} (pid {t.proc.pid}) {what} after {seconds:.1f} s; "
        f"stopped the other tasks ({', '.join(others) or 'none'})."
    ]
    if error:
        lines.append(f"Its traceback:\n{error.strip()}")
    else:
        lines.append(f"The end of its output:\n{tail.strip() or '(no output)'}")
    if keep_logs:
        lines.append(f"Full log: {t.log}")
    return WorkerError("\n".join(lines), task=t.name, returncode=rc, log_tail=error or tail)
