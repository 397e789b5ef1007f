"""``TF_CONFIG``: validate it, write one for a local cluster, and decide who writes artifacts
(:func:`is_chief`, :func:`chief_only_path`).

Example:
    >>> cfg = local_tf_config(workers=2, task=("worker", 1))
    >>> is_chief(tf_config=cfg)
    False
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tfcompress._compat import in_multi_worker_mode
from tfcompress._keras import tf

__all__ = ["JOBS", "chief_only_path", "is_chief", "local_tf_config", "parse_tf_config"]

#: Job names a ``TF_CONFIG`` cluster may have.
JOBS = ("chief", "worker", "ps", "evaluator")
_EXAMPLE = (
    '{"cluster": {"worker": ["127.0.0.1:20000", "127.0.0.1:20001"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


def _check_address(address: Any, where: str) -> str:
    if not isinstance(address, str) or address.count(":") < 1:
        raise ValueError(
            f"TF_CONFIG {where} = {address!r} is not a 'host:port' address; write e.g. "
            "'127.0.0.1:20000'."
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"TF_CONFIG {where} = {address!r} is not a 'host:port' address with a port in "
            "1..65535; write e.g. '127.0.0.1:20000'."
        )
    return address


def parse_tf_config(tf_config: Mapping[str, Any] | str | None = None) -> dict[str, Any] | None:
    """Validate a ``TF_CONFIG`` (argument, or the ``TF_CONFIG`` environment variable).

    Args:
        tf_config: a dict or its JSON string; None reads ``os.environ["TF_CONFIG"]``.

    Returns:
        ``{"cluster": {job: [addresses]}, "task": {"type", "index"} or None, "rpc_layer"}``, or
        None when there is no ``TF_CONFIG`` (or it is empty).

    Raises:
        ValueError: invalid JSON, no ``cluster``, an unknown job, a bad address, a task type not
            in the cluster, an index out of range; the message names the key.
        TypeError: ``tf_config`` is neither a dict nor a string.

    Example:
        >>> cfg = parse_tf_config({"cluster": {"worker": ["127.0.0.1:2000"]},
        ...                        "task": {"type": "worker", "index": 0}})
        >>> cfg["task"]
        {'type': 'worker', 'index': 0}
    """
    source = "`tf_config`"
    if tf_config is None:
        tf_config = os.environ.get("TF_CONFIG", "")
        source = "the TF_CONFIG environment variable"
    if isinstance(tf_config, str):
        if not tf_config.strip():
            return None
        try:
            tf_config = json.loads(tf_config)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{source} is not valid JSON ({err}); expected e.g. {_EXAMPLE}."
            ) from None
    if not isinstance(tf_config, Mapping):
        raise TypeError(
            f"{source} must be a dict or a JSON string, received {type(tf_config).__name__}: "
            f"{tf_config!r:.80}."
        )
    if not tf_config:
        return None
    if "cluster" not in tf_config:
        raise ValueError(
            f"TF_CONFIG has no 'cluster' key (keys: {sorted(tf_config)}); expected e.g. {_EXAMPLE}."
        )
    clean = _parse_cluster(tf_config["cluster"])
    task = _parse_task(tf_config.get("task"), clean)
    rpc = tf_config.get("rpc_layer", "grpc") or "grpc"
    return {"cluster": clean, "task": task, "rpc_layer": str(rpc)}


def _parse_cluster(cluster: Any) -> dict[str, list[str]]:
    """TF_CONFIG's ``cluster``, checked: job -> list of distinct ``host:port``."""
    if not isinstance(cluster, Mapping) or not cluster:
        raise ValueError(
            f"TF_CONFIG 'cluster' must be a non-empty dict of job name -> list of 'host:port', "
            f"received {cluster!r:.80}."
        )
    clean: dict[str, list[str]] = {}
    for job, addresses in cluster.items():
        if job not in JOBS:
            raise ValueError(
                f"TF_CONFIG cluster has an unknown job {job!r}; valid jobs are {list(JOBS)}."
            )
        if isinstance(addresses, str) or not isinstance(addresses, Sequence) or not addresses:
            raise ValueError(
                f"TF_CONFIG cluster[{job!r}] must be a non-empty list of 'host:port' addresses, "
                f"received {addresses!r:.80}."
            )
        clean[job] = [_check_address(a, f"cluster[{job!r}][{i}]") for i, a in enumerate(addresses)]
    if len(clean.get("chief", [])) > 1:
        raise ValueError(
            f"TF_CONFIG cluster['chief'] has {len(clean['chief'])} addresses; a cluster has at "
            "most one chief. Make the others workers."
        )
    seen: dict[str, str] = {}
    for job, addresses in clean.items():
        for i, a in enumerate(addresses):
            if a in seen:
                raise ValueError(
                    f"TF_CONFIG address {a!r} is used twice ({seen[a]} and {job}:{i}); every "
                    "task needs its own port."
                )
            seen[a] = f"{job}:{i}"
    return clean


def _parse_task(task: Any, clean: dict[str, list[str]]) -> dict[str, Any] | None:
    """TF_CONFIG's ``task``, checked against the cluster (None: no task)."""
    if task is None or task == {}:
        return None
    if not isinstance(task, Mapping) or "type" not in task or "index" not in task:
        raise ValueError(
            f"TF_CONFIG 'task' must be a dict with 'type' and 'index', received {task!r:.80}."
        )
    ttype, index = task["type"], task["index"]
    if ttype not in clean and ttype != "evaluator":
        raise ValueError(
            f"TF_CONFIG task type {ttype!r} is not a job of the cluster {sorted(clean)}; set "
            "'task': {'type': <one of them>, 'index': <i>}."
        )
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"TF_CONFIG task index must be an int, received {index!r}.")
    n = len(clean.get(ttype, [])) or 1
    if not 0 <= index < n:
        raise ValueError(
            f"TF_CONFIG task index {index} is out of range for job {ttype!r}, which has {n} "
            f"task(s) (valid indices 0..{n - 1})."
        )
    return {"type": str(ttype), "index": int(index)}


def _free_ports(n: int, host: str) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def local_tf_config(
    workers: int = 2,
    ps: int = 0,
    chief: bool = False,
    task: tuple[str, int] = ("worker", 0),
    ports: Sequence[int] | None = None,
    *,
    host: str = "127.0.0.1",
    set_env: bool = False,
) -> dict[str, Any]:
    """A ``TF_CONFIG`` for a cluster on this host, on free loopback ports.

    Args:
        workers: number of ``worker`` tasks (>= 1).
        ps: number of ``ps`` (parameter server) tasks.
        chief: add a ``chief`` task (the coordinator of a parameter-server cluster).
        task: ``(type, index)`` of the process this config is for.
        ports: one port per task, in the order chief, workers, ps; default: free ports.
        host: the address every task listens on.
        set_env: also write it to ``os.environ["TF_CONFIG"]``.

    Returns:
        ``{"cluster": {...}, "task": {"type": ..., "index": ...}}``.

    Raises:
        ValueError: bad counts, a task not in the cluster, wrong number of ports.

    Example:
        >>> cfg = local_tf_config(workers=2)
        >>> len(cfg["cluster"]["worker"]), cfg["task"]
        (2, {'type': 'worker', 'index': 0})
    """
    for value, name, minimum in ((workers, "workers", 1), (ps, "ps", 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"`{name}` must be an int >= {minimum}, received {value!r}.")
    if not isinstance(chief, bool):
        raise TypeError(f"`chief` must be True or False, received {chief!r}.")
    if not isinstance(host, str) or not host:
        raise ValueError(f"`host` must be a non-empty address, received {host!r}.")
    n = int(chief) + workers + ps
    if ports is None:
        ports = _free_ports(n, host)
    else:
        ports = list(ports)
        if len(ports) != n:
            raise ValueError(
                f"`ports` has {len(ports)} entries for {n} tasks (chief={chief}, workers="
                f"{workers}, ps={ps}); give one port per task, in the order chief, workers, ps."
            )
        for p in ports:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536:
                raise ValueError(f"`ports` must hold ints in 1..65535, received {p!r}.")
        if len(set(ports)) != n:
            raise ValueError(f"`ports` must be distinct, received {ports}.")
    addresses = [f"{host}:{p}" for p in ports]
    cluster: dict[str, list[str]] = {}
    if chief:
        cluster["chief"] = [addresses.pop(0)]
    cluster["worker"] = addresses[:workers]
    if ps:
        cluster["ps"] = addresses[workers:]
    if not (isinstance(task, tuple) and len(task) == 2):
        raise ValueError(f"`task` must be a (type, index) tuple, received {task!r}.")
    config = {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}
    try:
        parse_tf_config(config)
    except ValueError as err:
        raise ValueError(f"`task` {task!r} does not fit the cluster: {err}") from None
    if set_env:
        os.environ["TF_CONFIG"] = json.dumps(config)
    return config


# --------------------------------------------------------------------------- chief only


def _current_strategy(strategy: Any) -> Any:
    if strategy is None and tf.distribute.has_strategy():
        return tf.distribute.get_strategy()
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(
            f"`strategy` must be a tf.distribute.Strategy or None, received "
            f"{type(strategy).__name__}."
        )
    return strategy


def is_chief(
    strategy: tf.distribute.Strategy | None = None,
    *,
    tf_config: Mapping[str, Any] | str | None = None,
) -> bool:
    """Whether this process should write artifacts (the chief / coordinator / only process).

    With a multi-worker strategy (given, or the one in scope) it asks the strategy; otherwise it
    reads ``TF_CONFIG``: the ``chief`` task, or ``worker`` 0 when the cluster has no chief, or
    any process without ``TF_CONFIG``.

    Args:
        strategy: the strategy the fit runs under (default: the one in scope, if any).
        tf_config: a ``TF_CONFIG`` dict/JSON string; default the environment variable.

    Raises:
        TypeError: ``strategy`` is not a ``tf.distribute.Strategy``.
        ValueError: a malformed ``TF_CONFIG`` (see :func:`parse_tf_config`).

    Example:
        >>> is_chief(tf_config={"cluster": {"worker": ["h:1", "h:2"]},
        ...                     "task": {"type": "worker", "index": 1}})
        False
    """
    strategy = _current_strategy(strategy)
    if strategy is not None:
        extended = strategy.extended
        if isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
            return True
        in_multi = in_multi_worker_mode(strategy)
        if in_multi:
            return bool(extended.should_checkpoint)
        if tf_config is None:
            return True
    cfg = parse_tf_config(tf_config)
    if cfg is None or cfg["task"] is None:
        return True
    ttype, index = cfg["task"]["type"], cfg["task"]["index"]
    if ttype == "chief":
        return True
    return ttype == "worker" and index == 0 and "chief" not in cfg["cluster"]


@contextlib.contextmanager
def chief_only_path(
    path: str | os.PathLike,
    strategy: tf.distribute.Strategy | None = None,
    *,
    tf_config: Mapping[str, Any] | str | None = None,
) -> Iterator[str]:
    """The path to write ``path`` to: itself on the chief, a temporary path elsewhere.

    Every worker of a ``MultiWorkerMirroredStrategy`` must run the same saving code (saving may
    read variables with collective ops), but only the chief's file should remain. On other
    workers this yields a path in a new temporary directory that is removed on exit.

    Args:
        path: where the chief writes the artifact (its directory is created).
        strategy: as for :func:`is_chief`.
        tf_config: as for :func:`is_chief`.

    Yields:
        The path to write to.

    Raises:
        TypeError: ``path`` is empty or not a path.

    Example:
        >>> with chief_only_path("savedmodels/ctr.tflite", strategy) as p:  # doctest: +SKIP
        ...     tfcompress.export_tflite(model, p)
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"`path` must be a non-empty str or path, received {path!r}.")
    if is_chief(strategy, tf_config=tf_config):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        yield str(path)
        return
    tmp = tempfile.mkdtemp(prefix="tfcompress-nonchief-")
    try:
        yield os.path.join(tmp, Path(path).name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
