"""Layers tfcompress did not write: custom layers that hold ``Dense``/``EinsumDense``/
``Embedding``/``MultiHeadAttention`` sublayers (Model Garden ``TransformerEncoderBlock``, TFRS
``Cross``, your own) are quantized through their sublayers' kernels and tables; the one table of
known third-party classes (Model Garden, TFRS), looked up lazily by class path.

Neither Model Garden nor TFRS is imported here: a layer is recognised by
``type(layer).__module__`` and its class name (see :data:`THIRD_PARTY`).

Example:
    >>> kernel_paths(keras.layers.Dense(2))  # doctest: +SKIP
    ([], [], [])
"""

from __future__ import annotations

from typing import Any

from tfcompress._compat import attention_kernel_attrs, flatten_layers, layer_attributes
from tfcompress._keras import keras, tf
from tfcompress.quantization import configs as qc
from tfcompress.quantization.registry import _Plan

__all__ = ["THIRD_PARTY", "CompositeQuantizeWrapper", "plan_custom", "wrap_composite"]

#: Known third-party layer classes (``module.Class``) -> how they are quantized: ``"table"``
#: (one 2-D embedding table, quantized like ``Embedding``), ``"composite"`` (through its
#: sublayers; unknown custom layers get that too). The only place these classes are named.
THIRD_PARTY: dict[str, str] = {
    "official.nlp.modeling.layers.on_device_embedding.OnDeviceEmbedding": "table",
    "official.nlp.modeling.layers.position_embedding.PositionEmbedding": "table",
    "official.nlp.modeling.layers.transformer_encoder_block.TransformerEncoderBlock": "composite",
    "tensorflow_recommenders.layers.feature_interaction.dcn.Cross": "composite",
}

#: how deep :func:`kernel_paths` looks into custom sublayers of sublayers
_MAX_DEPTH = 3


def class_path(layer: Any) -> str:
    """``module.Class`` of ``layer`` (the key of :data:`THIRD_PARTY`)."""
    return f"{type(layer).__module__}.{type(layer).__name__}"


def kernel_paths(layer: Any) -> tuple[list[str], list[str], list[str]]:
    """``(kernel paths, table paths, float sublayers)`` of a custom layer's sublayers.

    Kernel paths are dotted attribute paths (``_intermediate_dense.kernel``,
    ``_attention_layer._query_dense.kernel``) of the ``Dense``/``EinsumDense`` kernels and
    ``MultiHeadAttention`` projections it holds, table paths those of its ``Embedding`` tables;
    float sublayers names the ``LayerNormalization`` sublayers (kept float).
    """
    kernels: list[str] = []
    tables: list[str] = []
    floats: list[str] = []
    seen: set[int] = {id(layer)}

    def walk(owner: Any, prefix: str, depth: int) -> None:
        for attr, value in layer_attributes(owner).items():
            if not isinstance(value, keras.layers.Layer) or id(value) in seen:
                continue
            seen.add(id(value))
            path = prefix + attr
            if isinstance(value, keras.layers.MultiHeadAttention):
                kernels.extend(f"{path}.{a}" for a in attention_kernel_attrs())
            elif isinstance(value, (keras.layers.Dense, keras.layers.EinsumDense)):
                kernels.append(f"{path}.kernel")
            elif isinstance(value, keras.layers.Embedding):
                tables.append(f"{path}.embeddings")
            elif isinstance(value, keras.layers.LayerNormalization):
                floats.append(path)
            elif not isinstance(value, keras.Model) and depth < _MAX_DEPTH:
                walk(value, path + ".", depth + 1)

    walk(layer, "", 1)
    return kernels, tables, floats


def _table_attr(layer: Any) -> str | None:
    """The attribute holding a one-table layer's 2-D table (``embeddings``...), or None."""
    tables = [w for w in layer.trainable_weights if w.shape.rank == 2]
    if len(tables) != 1:
        return None
    for attr, value in layer_attributes(layer).items():
        if value is tables[0]:
            return attr
    return None


def _plan_table(layer: Any, scheme: Any) -> _Plan | None:
    attr = _table_attr(layer)
    if attr is None:
        return None
    # one symmetric per-tensor range (a FakeQuant op, zero point 0), like our PositionEmbedding:
    # the converter turns a one-hot lookup (OnDeviceEmbedding's use_one_hot) into an
    # EMBEDDING_LOOKUP, which takes only an int8 table with zero point 0 and has no
    # quantized-output kernel (so no output quantizer: the next layer's range covers it)
    cfg = qc.LayerQuantizeConfig([attr], quantize_output=False, weight_bits=scheme.weight_bits)
    return _Plan(
        "composite", f"int8 table {attr!r} (per tensor, symmetric); ids not quantized", config=cfg
    )


def _plan_composite(layer: Any, scheme: Any) -> _Plan | None:
    kernels, tables, floats = kernel_paths(layer)
    if not kernels and not tables:
        return None
    cfg = qc.LayerQuantizeConfig(
        kernels + tables[1:],
        table_attr=tables[0] if tables else None,
        granularity="tensor",
        quantize_output=scheme.activations,
        weight_bits=scheme.weight_bits,
    )
    parts = [f"int8 sublayer kernels (per tensor): {', '.join(kernels + tables)}"]
    if floats:
        parts.append(
            f"float: {', '.join(floats)} (LayerNormalization: TFMOT has no config, its "
            "mean/variance need float precision)"
        )
    if any(k.endswith("." + attention_kernel_attrs()[0]) for k in kernels):
        parts.append("attention softmax float (TFLite runs it on its fixed [0, 1] range)")
    if scheme.activations:
        parts.append("int8 output")
    return _Plan("composite", "; ".join(parts), config=cfg)


def plan_custom(layer: Any, scheme: Any) -> _Plan | None:
    """The plan of a layer tfcompress has no handler for (None: keep the default report).

    A layer with no float weights runs as it is; a known one-table layer is quantized like
    ``Embedding``; any other custom layer through its sublayers' kernels and tables.
    """
    if not any(w.dtype.is_floating for w in layer.trainable_weights):
        return _Plan(
            "pass",
            reason=f"pass-through: no weights to quantize ({type(layer).__name__}); runs in "
            "float, its int8 ranges are calibrated at export",
        )
    if isinstance(layer, keras.layers.Wrapper):  # pruning wrappers and the like
        return _Plan(
            "float",
            reason=f"kept float: {type(layer).__name__} wraps {type(layer.layer).__name__} "
            "(a pruning or other wrapper); strip it first (tfcompress.pruning.strip) and "
            "quantize the plain model",
            strict_ok=False,
        )
    kind = THIRD_PARTY.get(class_path(layer))
    own_table = (
        kind is None
        and "embedding" in type(layer).__name__.lower()
        and not list(flatten_layers(layer, include_self=False, recursive=False))
    )
    if kind == "table" or own_table:
        plan = _plan_table(layer, scheme)
        if plan is not None:
            return plan
    return _plan_composite(layer, scheme)


def _zeros(shape: Any, dtype: Any = tf.float32) -> Any:
    """A batch of one of zeros for a (nested) input shape; unknown dims become 1."""
    if isinstance(shape, dict):
        return {k: _zeros(v, dtype) for k, v in shape.items()}
    if isinstance(shape, tf.TensorShape) or (
        isinstance(shape, (list, tuple)) and all(d is None or isinstance(d, int) for d in shape)
    ):
        dims = list(tf.TensorShape(shape))[1:]
        return tf.zeros([1, *(d or 1 for d in dims)], dtype)
    return [_zeros(s, dtype) for s in shape]


def _paths_resolve(layer: Any, paths: list[str]) -> bool:
    for path in paths:
        owner = layer
        for part in path.split("."):
            owner = getattr(owner, part, None)
            if owner is None:
                return False
    return True


class CompositeQuantizeWrapper(qc.QATWrapper):
    """A :class:`~tfcompress.quantization.configs.QATWrapper` for a layer quantized through its
    sublayers: builds them (one call on zeros) before TFMOT looks up their kernels."""

    def build(self, input_shape: Any) -> None:
        cfg = self.quantize_config
        paths = ([cfg.table_attr] if cfg.table_attr else []) + list(cfg.weight_attrs)
        if not self.layer.built or not _paths_resolve(self.layer, paths):
            with tf.init_scope():
                self.layer(_zeros(input_shape))  # sublayers such as MHA build on first call
        inner = self.layer
        try:
            inner.compute_output_shape(input_shape)
        except NotImplementedError:
            # TFMOT sizes the output quantizer by compute_output_shape, which many custom
            # layers lack; its per-tensor range does not depend on the shape
            inner.compute_output_shape = lambda shape: tf.TensorShape(None)
            try:
                super().build(input_shape)
            finally:
                del inner.compute_output_shape
            return
        super().build(input_shape)


def wrap_composite(layer: Any, config: Any) -> CompositeQuantizeWrapper:
    """Wrap a built copy of ``layer`` (same weights): the wrapper rewires its sublayers' kernels."""
    copy = type(layer).from_config(layer.get_config())
    inputs = tf.nest.map_structure(
        lambda t: tf.zeros([1, *(d or 1 for d in t.shape[1:])], t.dtype), layer.input
    )
    copy(inputs)
    copy.set_weights(layer.get_weights())
    return CompositeQuantizeWrapper(copy, config, name_prefix="")


def function_objects(layers: Any) -> dict[str, Any]:
    """Plain functions (lambda activations...) the layers hold, by ``__name__``.

    Model Garden's legacy ``BertEncoder`` passes ``lambda x: gelu(x, approximate=True)`` to
    its blocks; its config says ``'<lambda>'``, which Keras can only re-create from a custom
    object of that name. Functions of TensorFlow/Keras themselves are left out; a name held by
    two different functions is left out (ambiguous).
    """
    found: dict[str, Any] = {}
    clashes: set[str] = set()
    for layer in layers:
        for value in layer_attributes(layer).values():
            if not callable(value) or not hasattr(value, "__code__"):
                continue
            module = getattr(value, "__module__", "") or ""
            if module.startswith(("tf_keras", "keras", "tensorflow")):
                continue
            name = value.__name__
            if name in found and found[name] is not value:
                clashes.add(name)
            found[name] = value
    return with_lambda({k: v for k, v in found.items() if k not in clashes})


def with_lambda(objects: dict[str, Any]) -> dict[str, Any]:
    """``objects`` plus, when it holds a ``"<lambda>"`` function, the ``"__lambda__"`` entry
    Keras' serialization format looks up for a serialized lambda (that same function)."""
    if "<lambda>" in objects and "__lambda__" not in objects:
        return {**objects, "__lambda__": _SameFunction(objects["<lambda>"])}
    return objects


class _SameFunction:
    """Stands for a serialized lambda (``{"class_name": "__lambda__", ...}``): Keras' legacy
    deserializer calls ``from_config`` on it, which returns the function the layers held."""

    def __init__(self, function: Any) -> None:
        self.function = function

    def from_config(self, config: Any) -> Any:
        return self.function
