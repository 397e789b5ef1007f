"""Distribute: tf.distribute strategies, TF_CONFIG clusters, the local multi-process launcher and
accelerator settings (XLA, mixed precision, embeddings on the host)."""

from tfcompress.distribute.launch import (
    LaunchTimeoutError,
    WorkerError,
    launch_local,
)
from tfcompress.distribute.strategy import (
    JOBS,
    STRATEGY_NAMES,
    chief_only_path,
    get_strategy,
    is_chief,
    local_tf_config,
    parse_tf_config,
    resolve_strategy_name,
    run_server,
    split_cpu,
    to_local_model,
)

__all__ = [
    "JOBS",
    "STRATEGY_NAMES",
    "LaunchTimeoutError",
    "WorkerError",
    "chief_only_path",
    "get_strategy",
    "is_chief",
    "launch_local",
    "local_tf_config",
    "parse_tf_config",
    "resolve_strategy_name",
    "run_server",
    "split_cpu",
    "to_local_model",
]
