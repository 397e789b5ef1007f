"""Acceleration options of a compression fit: XLA (:func:`set_jit_compile`), mixed precision
(:func:`mixed_precision`) and embedding tables on the host CPU (:func:`embeddings_on_cpu`).

Example:
    >>> from tfcompress.distribute.acceleration import embeddings_on_cpu, mixed_precision
    >>> with mixed_precision("mixed_bfloat16"):  # doctest: +SKIP
    ...     model = embeddings_on_cpu(models.dcn(task.schema))
    ...     models.compile_for_task(model, task.schema)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from tfcompress._compat import in_multi_worker_mode, is_compiled, is_graph_network, keras_layer_of
from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import LayerFilter, iter_layers, match_layers

_log = logging.getLogger("tfcompress")

__all__ = [
    "POLICIES",
    "HostEmbedding",
    "check_float32_outputs",
    "embeddings_on_cpu",
    "mixed_precision",
    "set_jit_compile",
]

#: Dtype policies :func:`mixed_precision` accepts.
POLICIES = ("mixed_float16", "mixed_bfloat16", "float32")


# --------------------------------------------------------------------------- XLA


def set_jit_compile(model: keras.Model, enabled: bool = True) -> bool:
    """Compile the train/test/predict steps of a compiled ``model`` with XLA (or stop).

    The compiled step functions are rebuilt on the next ``fit``. On platforms without XLA
    (Keras falls back to no XLA with a warning) it returns False.

    Args:
        model: a compiled tf_keras model (``model.compile`` done).
        enabled: True for XLA, False for plain graph execution.

    Returns:
        Whether XLA is now on.

    Raises:
        TypeError: ``model`` is not a tf_keras model; ``enabled`` is not a bool.
        ValueError: ``model`` is not compiled yet; its strategy has several replicas on CPUs
            (XLA has no CPU collectives: the first ``fit`` step would fail).

    Example:
        >>> model.compile("adam", "binary_crossentropy")  # doctest: +SKIP
        >>> set_jit_compile(model)  # doctest: +SKIP
        True
    """
    check_model(model, "model")
    if not isinstance(enabled, bool):
        raise TypeError(f"`enabled` must be True or False, received {enabled!r}.")
    if not is_compiled(model):
        raise ValueError(
            f"model '{model.name}' is not compiled; call model.compile(...) first (or pass "
            "jit_compile=True to compile)."
        )
    reason = _xla_unsupported(model.distribute_strategy) if enabled else None
    if reason:
        raise ValueError(f"model '{model.name}': jit_compile is not available here: {reason}")
    model.jit_compile = enabled
    _log.info("model '%s': jit_compile=%s", model.name, model.jit_compile)
    return bool(model.jit_compile)


def _xla_unsupported(strategy: tf.distribute.Strategy) -> str | None:
    """Why XLA cannot compile a training step under ``strategy`` on this host, or None.

    TensorFlow compiles the whole step, all-reduce included, for one device. On CPUs this fails
    for several replicas: ``MirroredStrategy`` over logical CPUs ("Trying to access resource ...
    located in device CPU:1 from device CPU:0") and ``MultiWorkerMirroredStrategy`` with more
    than one worker ("Collectives are not yet implemented for CPU devices when compiling with
    XLA"). One replica (any strategy) works.
    """
    extended = strategy.extended
    try:
        devices = list(extended.worker_devices)
    except (RuntimeError, AttributeError, NotImplementedError):  # the default strategy
        return None
    on_cpu = bool(devices) and all(
        (tf.DeviceSpec.from_string(d).device_type or "").upper() == "CPU" for d in devices
    )
    multi_worker = in_multi_worker_mode(strategy)
    if on_cpu and (strategy.num_replicas_in_sync > 1 or multi_worker):
        return (
            f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replicas on CPU "
            "devices: XLA compiles the whole step, all-reduce included, for one device and has "
            "no CPU collectives. Train these replicas without XLA, use one replica, or use "
            "GPUs/TPUs."
        )
    return None


# --------------------------------------------------------------------------- mixed precision


@contextlib.contextmanager
def mixed_precision(policy: str | None) -> Iterator[keras.mixed_precision.Policy]:
    """Set the Keras global dtype policy inside a ``with`` block; restore it on exit.

    Layers take the policy when they are created, so build (and compile) the model inside the
    block; it keeps the policy afterwards. ``"mixed_float16"`` models get a
    ``LossScaleOptimizer`` from ``compile``. Variables stay float32 under both mixed policies.

    Args:
        policy: ``"mixed_float16"`` (NVIDIA GPUs), ``"mixed_bfloat16"`` (TPUs, recent CPUs and
            GPUs), ``"float32"``, or None (leave the policy unchanged).

    Yields:
        The policy in effect inside the block.

    Raises:
        ValueError: an unknown policy.

    Example:
        >>> with mixed_precision("mixed_bfloat16"):  # doctest: +SKIP
        ...     model = models.compile_for_task(models.dcn(task.schema), task.schema)
        >>> model.get_layer("logits").compute_dtype  # doctest: +SKIP
        'bfloat16'
    """
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"`policy` must be one of {list(POLICIES)} or None, received {policy!r}.")
    previous = keras.mixed_precision.global_policy()
    if policy is None:
        yield previous
        return
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield keras.mixed_precision.global_policy()
    finally:
        keras.mixed_precision.set_global_policy(previous)


def check_float32_outputs(model: keras.Model) -> keras.Model:
    """Return ``model`` if every output is float32, else raise naming the output layer.

    Under a mixed policy the last layer must compute in float32 (a softmax or sigmoid in
    float16 loses precision, and exports expect float32 outputs).

    Raises:
        ValueError: an output is not float32; the message names the layer and the fix.

    Example:
        >>> with mixed_precision("mixed_float16"):  # doctest: +SKIP
        ...     check_float32_outputs(models.dcn(task.schema))
    """
    check_model(model, "model")
    outputs = tf.nest.flatten(model.outputs or [])
    for tensor in outputs:
        if tensor.dtype != tf.float32:
            producer = keras_layer_of(tensor)
            layer = producer.name if producer is not None else "?"
            raise ValueError(
                f"model '{model.name}': output of layer '{layer}' is {tensor.dtype.name}, not "
                "float32. End the model with a float32 layer, e.g. "
                "keras.layers.Activation('sigmoid', dtype='float32') (the reference models do)."
            )
    return model


# --------------------------------------------------------------------------- placement


@keras.saving.register_keras_serializable(package="tfcompress")
class HostEmbedding(keras.layers.Embedding):
    """An ``Embedding`` whose table and lookups live on ``host_device`` (default the CPU).

    The gradient of the lookup is an ``IndexedSlices`` applied on the host too (a sparse
    optimizer update of the rows used), so only the looked-up rows cross to the accelerator.
    Prunable by TFMOT (``get_prunable_weights``). Built by :func:`embeddings_on_cpu`.
    """

    def __init__(
        self, input_dim: int, output_dim: int, *, host_device: str = "/CPU:0", **kwargs: Any
    ) -> None:
        super().__init__(input_dim, output_dim, **kwargs)
        self.host_device = _check_host(host_device)

    def build(self, input_shape: Any = None) -> None:
        with tf.device(self.host_device):
            super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        with tf.device(self.host_device):
            return super().call(inputs)

    def get_prunable_weights(self) -> list[tf.Variable]:
        return [self.embeddings]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "host_device": self.host_device}


def _check_host(host: Any) -> str:
    if not isinstance(host, str) or not host:
        raise TypeError(f"`host` must be a device name like '/CPU:0', received {host!r}.")
    try:
        spec = tf.DeviceSpec.from_string(host)
    except ValueError as err:
        raise ValueError(f"`host` {host!r} is not a device name ({err}); use '/CPU:0'.") from None
    if (spec.device_type or "").upper() != "CPU":
        raise ValueError(
            f"`host` must name a CPU device (e.g. '/CPU:0' or '/job:worker/task:0/CPU:0'), "
            f"received {host!r}."
        )
    return spec.to_string()


def embeddings_on_cpu(
    model: keras.Model, *, host: str = "/CPU:0", skip: LayerFilter = None
) -> keras.Model:
    """A copy of ``model`` whose ``Embedding`` tables and lookups are pinned to ``host``.

    Every ``keras.layers.Embedding`` (nested models included; shared tables stay shared) becomes
    a :class:`HostEmbedding` with the same weights; other layers are cloned unchanged and run
    wherever TensorFlow places them (the GPU when there is one). Apply it before compiling (the
    copy is not compiled) and before wrapping layers for pruning or QAT.

    Under a ``MirroredStrategy`` each replica holds its own copy of every variable, so device
    pins do not apply; use ``ParameterServerStrategy`` to keep tables on host machines.

    Args:
        model: a functional or Sequential tf_keras model.
        host: the CPU device for the tables.
        skip: a layer filter (names, regexes, classes) of Embedding layers to leave alone.

    Returns:
        The new model (uncompiled), same inputs, outputs, names and weights.

    Raises:
        TypeError: not a tf_keras model; a subclassed model (it cannot be cloned).
        ValueError: a bad ``host``; no Embedding layer to move; called in a multi-replica
            strategy scope.

    Example:
        >>> placed = embeddings_on_cpu(models.dcn(task.schema))  # doctest: +SKIP
        >>> placed.get_layer("emb_item_id").embeddings.device  # doctest: +SKIP
        '/job:localhost/replica:0/task:0/device:CPU:0'
    """
    check_model(model, "model")
    host = _check_host(host)
    if tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1:
        raise ValueError(
            "embeddings_on_cpu() inside a multi-replica strategy scope: mirrored variables "
            "ignore device pins. Call it outside the scope (single replica), or shard the "
            "tables on host machines with get_strategy('parameter_server')."
        )
    pairs = [
        (p, layer) for p, layer in iter_layers(model) if isinstance(layer, keras.layers.Embedding)
    ]
    if not pairs:
        raise ValueError(
            f"model '{model.name}' has no keras.layers.Embedding layer to move to {host}."
        )
    skipped = match_layers(model, skip, argument="skip", candidates=pairs) if skip else set()
    moved = {id(layer) for p, layer in pairs if p not in skipped}
    if not moved:
        raise ValueError(f"`skip` {skip!r} leaves no Embedding layer to move to {host}.")
    placed = _clone(model, host, moved)
    _log.info(
        "embeddings_on_cpu: %d table(s) of model '%s' pinned to %s", len(moved), model.name, host
    )
    return placed


def _clone(model: keras.Model, host: str, moved: set[int]) -> keras.Model:
    if not (is_graph_network(model) or isinstance(model, keras.Sequential)):
        raise TypeError(
            f"model '{model.name}' is a subclassed model ({type(model).__name__}); "
            "embeddings_on_cpu() clones functional or Sequential models only. Build the "
            "tables as HostEmbedding layers in the subclass instead."
        )

    def clone_layer(layer: Any) -> Any:
        if id(layer) in moved:
            config = layer.get_config()
            config.pop("host_device", None)
            return HostEmbedding(host_device=host, **config)
        if isinstance(layer, keras.Model):
            return _clone(layer, host, moved)
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    for layer in model.layers:
        if layer.weights and not isinstance(layer, keras.Model):
            clone.get_layer(layer.name).set_weights(layer.get_weights())
    return clone
