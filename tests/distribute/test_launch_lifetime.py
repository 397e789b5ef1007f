"""Lifetime of :func:`tfcompress.distribute.launch.launch_local` workers (issue 14): none outlives
the caller.

Every test uses real processes: worker functions (module level, so the workers import this
module by name; it imports nothing heavy) start a grandchild ``sleep 300`` in the worker's
process group and write the pids; the test then checks that every one of them is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.multiprocess

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(TESTS_DIR))


# --------------------------------------------------------------------------- worker function


def _grandchild_then(strategy, pid_dir: str, modes: tuple[str, ...]) -> int:
    """Start ``sleep 300``, record pids, then do ``modes[task index]``: return/sleep/raise."""
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    child = subprocess.Popen(["sleep", "300"])  # same process group as this worker
    for name, pid in (("worker", os.getpid()), ("grandchild", child.pid)):
        tmp = os.path.join(pid_dir, f".{name}-{index}.tmp")
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, os.path.join(pid_dir, f"{name}-{index}"))
    mode = modes[index]
    if mode == "sleep":
        time.sleep(300)
    elif mode == "raise":
        # fail once every worker has started (written its pids): under a loaded suite a fixed
        # 0.3 s was not always enough, and a worker killed before it started leaves no pids
        deadline = time.monotonic() + 60
        names = [f"grandchild-{i}" for i in range(len(modes))]
        while time.monotonic() < deadline:
            if all(os.path.exists(os.path.join(pid_dir, n)) for n in names):
                break
            time.sleep(0.05)
        time.sleep(0.3)  # the workers that return have returned
        raise ValueError(f"worker {index} fails on purpose")
    return child.pid


# --------------------------------------------------------------------------- helpers


def _state(pid: int) -> str | None:
    """The /proc state letter of ``pid``, None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (``Z``, about to be reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in (None, "Z", "X")


def _wait_for_pids(pid_dir: Path, names: list[str], timeout: float = 60.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((pid_dir / n).exists() for n in names):
            return {n: int((pid_dir / n).read_text()) for n in names}
        time.sleep(0.05)
    raise AssertionError(
        f"pid files {names} not all written in {timeout} s: "
        f"{sorted(p.name for p in pid_dir.iterdir())}"
    )


def _read_pids(pid_dir: Path) -> dict[str, int]:
    return {p.name: int(p.read_text()) for p in pid_dir.iterdir() if not p.name.startswith(".")}


def _survivors(pids: dict[str, int], within: float) -> dict[str, int]:
    """The pids still alive after waiting up to ``within`` seconds for them to go."""
    deadline = time.monotonic() + within
    while True:
        alive = {n: p for n, p in pids.items() if _alive(p)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _signal_state(proc: subprocess.Popen) -> str:
    """A hung caller's /proc signal masks (SigBlk/SigIgn/SigCgt, hex) and, via faulthandler on
    SIGUSR1, its Python stack written to its log."""
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            state = "".join(x for x in f if x.startswith(("State", "Sig")))
    except OSError:
        return "(gone)"
    proc.send_signal(signal.SIGUSR1)
    time.sleep(1)
    return state


@contextlib.contextmanager
def _cleanup(pid_dir: Path):
    """Kill whatever a failing run leaves behind: only the recorded pids, still ours."""
    try:
        yield
    finally:
        for pid in _read_pids(pid_dir).values():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
                if b"sleep" in cmd or b"__tfcompress_worker__" in cmd:
                    os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- tests


def test_normal_return_kills_what_the_workers_started(tmp_path):
    from tfcompress.distribute.launch import launch_local

    with _cleanup(tmp_path):
        results = launch_local(
            _grandchild_then,
            2,
            args=(str(tmp_path), ("return", "return")),
            strategy=None,
            timeout=60,
        )
        pids = _read_pids(tmp_path)
        assert sorted(pids) == ["grandchild-0", "grandchild-1", "worker-0", "worker-1"]
        assert results == [pids["grandchild-0"], pids["grandchild-1"]]
        # Gone when launch_local returns, not merely signalled: no grace period here.
        assert _survivors(pids, within=0) == {}


def test_failing_worker_kills_every_group_including_finished_workers(tmp_path):
    from tfcompress.distribute.launch import WorkerError, launch_local

    with _cleanup(tmp_path):
        with pytest.raises(WorkerError, match="worker 1 fails on purpose") as err:
            launch_local(
                _grandchild_then,
                3,
                args=(str(tmp_path), ("return", "raise", "sleep")),
                strategy=None,
                timeout=60,
            )
        assert err.value.task == "worker:1" and err.value.returncode == 1
        pids = _read_pids(tmp_path)
        assert len(pids) == 6
        assert _survivors(pids, within=0) == {}


def test_timeout_kills_every_group_including_finished_workers(tmp_path):
    from tfcompress.distribute.launch import LaunchTimeoutError, launch_local

    with _cleanup(tmp_path):
        with pytest.raises(LaunchTimeoutError, match="did not finish within 3 s"):
            launch_local(
                _grandchild_then,
                2,
                args=(str(tmp_path), ("return", "sleep")),
                strategy=None,
                timeout=3,
            )
        pids = _read_pids(tmp_path)
        assert len(pids) == 4
        assert _survivors(pids, within=0) == {}


def test_ctrl_c_during_cleanup_waits_for_it_to_finish(tmp_path, monkeypatch):
    """A second Ctrl-C (SIGINT) that lands in launch_local's cleanup is held until the cleanup is
    done: every group is killed, the watchdog pipe closed and the run folder removed, and only
    then does KeyboardInterrupt reach the caller (before, it cut the cleanup short: in a caller
    that goes on, e.g. a notebook, the tasks' children ran on and the pipe's fds leaked)."""
    from tfcompress.distribute import launch

    real_kill, calls = launch._kill, []

    def kill_after_ctrl_c(task):
        if not calls:
            signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C again, in the cleanup
        calls.append(task.name)
        real_kill(task)

    monkeypatch.setattr(launch, "_kill", kill_after_ctrl_c)
    pid_dir, tmp = tmp_path / "pids", tmp_path / "tmp"
    pid_dir.mkdir()
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # where the run folder goes
    # a pytest started in the background inherits SIGINT ignored: handle it as a terminal would
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    fds = set(os.listdir("/proc/self/fd"))
    try:
        with _cleanup(pid_dir):
            with pytest.raises(KeyboardInterrupt):
                launch.launch_local(
                    _grandchild_then,
                    2,
                    args=(str(pid_dir), ("return", "return")),
                    strategy=None,
                    timeout=60,
                )
            assert calls == ["worker:0", "worker:1"]  # the cleanup ran to its end
            pids = _read_pids(pid_dir)
            assert sorted(pids) == ["grandchild-0", "grandchild-1", "worker-0", "worker-1"]
            assert _survivors(pids, within=0) == {}
            assert list(tmp.iterdir()) == []  # no run folder left behind
            assert set(os.listdir("/proc/self/fd")) <= fds  # the watchdog pipe is closed
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow  # the caller process imports TensorFlow (tfcompress.distribute.cluster): ~6 s
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_workers_and_their_children_die_with_the_caller(tmp_path, sig):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = tmp_path / "caller.py"
    script.write_text(
        "import faulthandler, signal, sys\n"
        # Ctrl-C of a user at a terminal: SIGINT raises KeyboardInterrupt. A pytest started in
        # the background by a non-interactive shell (`make test &`, no job control) inherits
        # SIGINT *ignored*, and so does every process it starts (Python keeps an inherited
        # SIG_IGN): that caller rightly ignored the signal and ran on in launch_local, the
        # "hang" this case once showed only in some full-suite runs
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "faulthandler.register(signal.SIGUSR1, all_threads=True)  # its stack, on a timeout\n"
        f"sys.path[:0] = [{TESTS_DIR!r}, {REPO_ROOT!r}]\n"
        "from tfcompress.distribute.launch import launch_local\n"
        "from test_launch_lifetime import _grandchild_then\n"
        f"launch_local(_grandchild_then, 2, args=({str(pid_dir)!r}, ('return', 'sleep')),\n"
        "             strategy=None, timeout=300)\n"
    )
    tmp = tmp_path / "tmp"  # where launch_local makes its run folder (payloads, logs)
    tmp.mkdir()
    # the caller's output goes to a file, not a pipe: the workers inherit it, so waiting for a
    # pipe's end of file would wait on them (and their watchdogs), not on the caller
    log = tmp_path / "caller.log"
    with open(log, "wb") as out:
        caller = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
    try:
        with _cleanup(pid_dir):
            names = ["worker-0", "worker-1", "grandchild-0", "grandchild-1"]
            try:
                pids = _wait_for_pids(pid_dir, names)
            except AssertionError:
                caller.kill()
                caller.wait(timeout=30)
                raise AssertionError(log.read_text(errors="replace")) from None
            time.sleep(0.3)  # worker 0 has returned; worker 1 sleeps
            caller.send_signal(sig)
            # a caller that cleans up takes well under a second (each case, alone, passes in
            # ~3-5 s, TensorFlow's import included)
            wait_s = 10
            try:
                caller.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"the caller outlived {sig!r} by {wait_s} s:\n{_signal_state(caller)}\n"
                    + log.read_text(errors="replace")
                ) from None
            assert caller.returncode != 0
            assert _survivors(pids, within=10) == {}
            deadline = time.monotonic() + 10
            while any(tmp.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert list(tmp.iterdir()) == []  # no run folder left behind
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
