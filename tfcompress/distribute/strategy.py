"""Strategies for distributed compression fits: :func:`get_strategy` (mirrored, multi-worker,
parameter server, TPU), :func:`split_cpu`, :func:`run_server`, :func:`to_local_model`.

Example:
    >>> from tfcompress.distribute import get_strategy
    >>> strategy = get_strategy("auto")  # doctest: +SKIP
    >>> with strategy.scope():  # doctest: +SKIP
    ...     model = build_and_compile()
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from tfcompress._compat import default_strategy, fresh_mirrored_collective_keys
from tfcompress._keras import check_model, keras, tf
from tfcompress.distribute.cluster import (
    JOBS,
    chief_only_path,
    is_chief,
    local_tf_config,
    parse_tf_config,
)

_log = logging.getLogger("tfcompress")

__all__ = [
    "JOBS",
    "STRATEGY_NAMES",
    "chief_only_path",
    "get_strategy",
    "is_chief",
    "local_tf_config",
    "parse_tf_config",
    "resolve_strategy_name",
    "run_server",
    "split_cpu",
    "to_local_model",
]

#: Names :func:`get_strategy` accepts.
STRATEGY_NAMES = ("auto", "default", "mirrored", "multi_worker", "parameter_server", "tpu")
_COMMUNICATION = ("auto", "ring", "nccl")


# --------------------------------------------------------------------------- devices


def split_cpu(n: int) -> list[str]:
    """Split the first physical CPU into ``n`` logical devices; return their names.

    Lets ``MirroredStrategy`` run ``n`` replicas without GPUs (for tests and local runs). It must
    run before TensorFlow initialises its devices (before the first op). Afterwards it returns
    the existing logical CPUs if there are already ``n`` of them, else raises.

    Args:
        n: the number of logical CPU devices.

    Returns:
        The logical CPU device names.

    Raises:
        ValueError: ``n`` is not an int >= 1.
        RuntimeError: TensorFlow is already initialised with another number of logical CPUs.

    Example:
        >>> split_cpu(2)  # doctest: +SKIP
        ['/device:CPU:0', '/device:CPU:1']
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be an int >= 1, received {n!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        existing = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(existing) == n:
            _log.info("TensorFlow already runs with %d logical CPUs: %s", n, existing)
            return existing
        raise RuntimeError(
            f"split_cpu({n}): TensorFlow is already initialised with {len(existing)} logical "
            f"CPU(s) {existing}, and devices cannot change afterwards. Call "
            "tfcompress.distribute.split_cpu() at the top of the program, before any "
            "TensorFlow op runs."
        ) from None
    names = [d.name for d in tf.config.list_logical_devices("CPU")]
    _log.info("split the CPU into %d logical devices: %s", n, names)
    return names


def _canonical_device(name: str) -> str:
    spec = tf.DeviceSpec.from_string(name)
    return f"{(spec.device_type or '').upper()}:{spec.device_index or 0}"


def _mirrored_devices(devices: Sequence[str] | None) -> list[str]:
    available = [
        d.name for d in tf.config.list_logical_devices() if d.device_type in ("CPU", "GPU")
    ]
    if devices is None:
        gpus = [d for d in available if _canonical_device(d).startswith("GPU")]
        return gpus or [d for d in available if _canonical_device(d).startswith("CPU")]
    if isinstance(devices, str) or not isinstance(devices, Sequence) or not devices:
        raise ValueError(
            f"`devices` must be a non-empty list of device names, received {devices!r}; e.g. "
            f"{available[:2]}."
        )
    index = {_canonical_device(d): d for d in available}
    out = []
    for d in devices:
        try:
            key = _canonical_device(d) if isinstance(d, str) else None
        except ValueError:
            key = None
        if key not in index:
            raise ValueError(
                f"`devices`: {d!r} is not a logical device of this process; available: "
                f"{available}. Use split_cpu(n) before TensorFlow starts for more CPU devices."
            )
        out.append(index[key])
    if len(set(out)) != len(out):
        raise ValueError(f"`devices` lists a device twice: {list(devices)}.")
    return out


# --------------------------------------------------------------------------- strategies


def resolve_strategy_name(
    name: str = "auto", *, tf_config: Mapping[str, Any] | str | None = None
) -> str:
    """The strategy :func:`get_strategy` builds for ``name`` (resolves ``"auto"``).

    ``"auto"``: a ``TF_CONFIG`` with ``ps`` tasks -> ``"parameter_server"`` (this process must be
    the chief/coordinator); a ``TF_CONFIG`` with workers -> ``"multi_worker"``; a TPU ->
    ``"tpu"``; more than one GPU -> ``"mirrored"``; else ``"default"``.

    Raises:
        ValueError: unknown name, malformed ``TF_CONFIG``, or ``"auto"`` in a ``worker``/``ps``
            task of a parameter-server cluster (those run :func:`run_server`).

    Example:
        >>> resolve_strategy_name("auto", tf_config={"cluster": {"worker": ["h:1", "h:2"]},
        ...                                          "task": {"type": "worker", "index": 1}})
        'multi_worker'
    """
    if not isinstance(name, str) or name not in STRATEGY_NAMES:
        raise ValueError(f"Unknown strategy name {name!r}; valid names are {list(STRATEGY_NAMES)}.")
    if name != "auto":
        return name
    cfg = parse_tf_config(tf_config)
    if cfg is not None:
        if "ps" in cfg["cluster"]:
            task = cfg["task"]
            if task is not None and task["type"] in ("worker", "ps"):
                raise ValueError(
                    f"This process is task {task['type']}:{task['index']} of a parameter-server "
                    "cluster; it serves variables/steps and runs no strategy. Call "
                    "tfcompress.distribute.run_server() in it; only the chief builds the strategy."
                )
            return "parameter_server"
        return "multi_worker"
    if tf.config.list_physical_devices("TPU"):
        return "tpu"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def _default_strategy() -> tf.distribute.Strategy:
    return default_strategy()


def _communication(value: str) -> Any:
    if value not in _COMMUNICATION:
        raise ValueError(
            f"`communication` must be one of {list(_COMMUNICATION)}, received {value!r}."
        )
    impl = tf.distribute.experimental.CommunicationImplementation
    return tf.distribute.experimental.CommunicationOptions(
        implementation={"auto": impl.AUTO, "ring": impl.RING, "nccl": impl.NCCL}[value]
    )


def _resolver(cfg: dict[str, Any], task_type: str | None = None) -> Any:
    task = cfg["task"] or {}
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cfg["cluster"]),
        task_type=task_type or task.get("type"),
        task_id=task.get("index", 0),
        rpc_layer=cfg["rpc_layer"],
    )


def get_strategy(
    name: str = "auto",
    *,
    devices: Sequence[str] | None = None,
    tf_config: Mapping[str, Any] | str | None = None,
    variable_partitioner: Any = "default",
    communication: str = "auto",
    tpu: str | None = None,
) -> tf.distribute.Strategy:
    """Build a ``tf.distribute`` strategy from its name and ``TF_CONFIG``.

    Args:
        name: ``"auto"`` (see :func:`resolve_strategy_name`), ``"default"`` (no distribution),
            ``"mirrored"`` (the devices of this process), ``"multi_worker"``
            (``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster),
            ``"parameter_server"`` (``ParameterServerStrategy``; this process is the
            coordinator) or ``"tpu"``.
        devices: ``"mirrored"`` only: device names (default all GPUs, else all logical CPUs).
        tf_config: a ``TF_CONFIG`` dict/JSON string; default the environment variable.
        variable_partitioner: ``"parameter_server"`` only: ``"default"`` shards variables of
            >= 256 KiB over up to one shard per ``ps`` task
            (``MinSizePartitioner``), None shards nothing, or a
            ``tf.distribute.experimental.partitioners`` object.
        communication: ``"multi_worker"`` only: ``"auto"``, ``"ring"`` or ``"nccl"``.
        tpu: ``"tpu"`` only: the TPU name or address (``"local"`` on a TPU VM).

    Returns:
        The strategy. ``"multi_worker"`` must be built before TensorFlow runs any op.

    Raises:
        ValueError: unknown name, malformed ``TF_CONFIG``, an option that does not apply to
            ``name``, a strategy that is not available here (no TPU, a parameter-server cluster
            without ``ps``, ...).

    Example:
        >>> strategy = get_strategy("mirrored")  # doctest: +SKIP
        >>> strategy.num_replicas_in_sync  # doctest: +SKIP
        2
    """
    resolved = resolve_strategy_name(name, tf_config=tf_config)
    if devices is not None and resolved != "mirrored":
        raise ValueError(
            f"`devices` applies to the 'mirrored' strategy only, not {resolved!r}; drop it or "
            "use name='mirrored'."
        )
    if communication != "auto" and resolved != "multi_worker":
        raise ValueError(
            f"`communication` applies to 'multi_worker' only, not {resolved!r}; drop it."
        )
    if resolved == "default":
        strategy = _default_strategy()
    elif resolved == "mirrored":
        devs = _mirrored_devices(devices)
        if len(devs) == 1:
            _log.info("MirroredStrategy over one device (%s): no data parallelism.", devs[0])
        # TF starts every MirroredStrategy's collective keys at the same base, so a second
        # strategy in one process (a notebook, a test session) reuses the first one's all-reduce
        # keys and fails with "Shape mismatch in the collective instance". Fresh keys each time.
        fresh_mirrored_collective_keys()
        strategy = tf.distribute.MirroredStrategy(devs)
    elif resolved == "multi_worker":
        options = _communication(communication)
        cfg = parse_tf_config(tf_config)
        if cfg is None:
            _log.warning(
                "'multi_worker' without TF_CONFIG: MultiWorkerMirroredStrategy runs this process "
                "as a single worker. Set TF_CONFIG (see local_tf_config) for a cluster."
            )
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        else:
            if "ps" in cfg["cluster"]:
                raise ValueError(
                    "TF_CONFIG describes a parameter-server cluster (it has 'ps' tasks); use "
                    "name='parameter_server' (in the chief) or 'auto'."
                )
            if cfg["task"] is None:
                raise ValueError(
                    "TF_CONFIG has no 'task'; each worker needs "
                    "'task': {'type': 'worker', 'index': <i>}."
                )
            strategy = tf.distribute.MultiWorkerMirroredStrategy(
                cluster_resolver=_resolver(cfg), communication_options=options
            )
    elif resolved == "parameter_server":
        strategy = _parameter_server(tf_config, variable_partitioner)
    else:
        strategy = _tpu(tpu)
    _log.info(
        "strategy %s: %d replica(s) in sync", type(strategy).__name__, strategy.num_replicas_in_sync
    )
    return strategy


def _parameter_server(tf_config: Any, variable_partitioner: Any) -> tf.distribute.Strategy:
    cfg = parse_tf_config(tf_config)
    if cfg is None or "ps" not in cfg["cluster"] or "worker" not in cfg["cluster"]:
        jobs = sorted(cfg["cluster"]) if cfg else "no TF_CONFIG"
        raise ValueError(
            f"'parameter_server' needs a TF_CONFIG cluster with 'worker' and 'ps' jobs, "
            f"received {jobs}. Write one with local_tf_config(workers=2, ps=1, chief=True, "
            "task=('chief', 0)) or start a whole local cluster with "
            "tfcompress.distribute.launch.launch_local(fn, workers=2, ps=1)."
        )
    task = cfg["task"]
    if task is not None and task["type"] != "chief":
        raise ValueError(
            f"'parameter_server' is built by the coordinator (task type 'chief'), but this "
            f"process is task {task['type']}:{task['index']}; run "
            "tfcompress.distribute.run_server() in worker and ps tasks."
        )
    if isinstance(variable_partitioner, str):
        if variable_partitioner != "default":
            raise ValueError(
                "`variable_partitioner` must be 'default', None or a "
                f"tf.distribute.experimental.partitioners object, received "
                f"{variable_partitioner!r}."
            )
        variable_partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=256 << 10, max_shards=len(cfg["cluster"]["ps"])
        )
    elif variable_partitioner is not None and not callable(variable_partitioner):
        raise TypeError(
            "`variable_partitioner` must be callable (a tf.distribute.experimental.partitioners "
            f"object), received {type(variable_partitioner).__name__}."
        )
    return tf.distribute.experimental.ParameterServerStrategy(
        _resolver(cfg, task_type="chief"), variable_partitioner=variable_partitioner
    )


def _tpu(tpu: str | None) -> tf.distribute.Strategy:
    if tpu is None and not tf.config.list_physical_devices("TPU"):
        raise ValueError(
            "The 'tpu' strategy is not available: no TPU is attached to this process. Pass "
            "tpu='local' on a TPU VM or tpu=<name or grpc:// address> of a TPU, or use 'auto'."
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        raise ValueError(f"The 'tpu' strategy is not available: TPU {tpu!r}: {err}") from err
    return tf.distribute.TPUStrategy(resolver)


def run_server(tf_config: Mapping[str, Any] | str | None = None) -> None:
    """Run this ``worker``/``ps`` task of a parameter-server cluster; blocks forever.

    The coordinator (``chief``) dispatches steps to the workers and keeps variables on the
    ``ps`` tasks; these processes only serve. :func:`tfcompress.distribute.launch.launch_local`
    runs it in
    the server tasks it starts.

    Args:
        tf_config: a ``TF_CONFIG`` dict/JSON string; default the environment variable.

    Raises:
        ValueError: no ``TF_CONFIG``/task, or the task is not a ``worker`` or ``ps``.

    Example:
        >>> if os.environ.get("TF_CONFIG") and not is_chief():  # doctest: +SKIP
        ...     run_server()
    """
    cfg = parse_tf_config(tf_config)
    if cfg is None or cfg["task"] is None or cfg["task"]["type"] not in ("worker", "ps"):
        task = None if cfg is None else cfg["task"]
        raise ValueError(
            f"run_server() runs 'worker' or 'ps' tasks; TF_CONFIG task is {task!r}. Set TF_CONFIG "
            "with 'task': {'type': 'ps', 'index': 0} (or 'worker')."
        )
    server = tf.distribute.Server(
        tf.train.ClusterSpec(cfg["cluster"]),
        job_name=cfg["task"]["type"],
        task_index=cfg["task"]["index"],
        protocol=cfg["rpc_layer"],
        start=True,
    )
    _log.info("serving %s:%d at %s", cfg["task"]["type"], cfg["task"]["index"], server.target)
    server.join()


# --------------------------------------------------------------------------- sharded models


def to_local_model(
    model: keras.Model, *, custom_objects: Mapping[str, Any] | None = None
) -> keras.Model:
    """A plain copy of ``model`` (trained under any strategy, sharded variables included).

    ``ParameterServerStrategy`` splits big variables into shards on the ``ps`` tasks; the copy
    has one ordinary variable per weight, on this process, so it saves, prunes and exports like
    any model. The weights are copied through a checkpoint, which re-assembles the shards.
    Call it outside ``strategy.scope()``.

    Args:
        model: a functional or Sequential tf_keras model (built under any strategy).
        custom_objects: classes ``clone_model`` needs that are not registered serializable
            (e.g. ``tfmot.sparsity.keras.prune_scope()`` contents for a pruning-wrapped model).

    Returns:
        The plain model (uncompiled) with the same weights.

    Raises:
        ValueError: called inside a strategy scope.

    Example:
        >>> plain = to_local_model(ps_model)  # doctest: +SKIP
        >>> tfcompress.export_tflite(plain, "savedmodels/ctr.tflite")  # doctest: +SKIP
    """
    check_model(model, "model")
    if tf.distribute.has_strategy():
        raise ValueError(
            "to_local_model() must run outside `strategy.scope()` (inside it, the copy's "
            "variables would be distributed again); call it after the `with` block."
        )
    clone = keras.models.clone_model(model) if custom_objects is None else None
    if clone is None:
        with keras.utils.custom_object_scope(dict(custom_objects)):
            clone = keras.models.clone_model(model)
    with tempfile.TemporaryDirectory(prefix="tfcompress-unshard-") as tmp:
        path = tf.train.Checkpoint(model=model).write(os.path.join(tmp, "ckpt"))
        status = tf.train.Checkpoint(model=clone).read(path)
        status.assert_existing_objects_matched()
    return clone
