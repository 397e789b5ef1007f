"""Every private TensorFlow / TFMOT / Keras attribute or patch tfcompress relies on, in one place.

Each hook is a small named function with the reason and the versions it was written against
(TensorFlow 2.21, tf_keras 2.21, TFMOT 0.8.1); tests/test_compat.py pins each one, so an upgrade
that moves or changes one fails there, naming the hook, rather than deep inside a feature.
Where a public API exists the package uses it instead, and no hook is listed here.

Example:
    >>> from tfcompress._compat import is_graph_network
    >>> from tfcompress._keras import keras
    >>> is_graph_network(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    True
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from tfcompress._keras import keras, tf

_CORE = "tensorflow_model_optimization.python.core."
_SPARSITY = _CORE + "sparsity.keras."
_QUANTIZATION = _CORE + "quantization.keras."
_DEFAULT_8BIT = _QUANTIZATION + "default_8bit."
_TFMOT_INTERNALS: dict[str, str] = {
    # TFMOT 0.8.1 `python.core` modules: not in TFMOT's public API
    # (tfmot.sparsity.keras / tfmot.quantization.keras). They are imported on first use (see
    # __getattr__ below), so importing this module does not import TFMOT.
    #
    # pruning/masks.py: the M-by-N mask helpers (generate_m_by_n_mask,
    # m_by_n_sparsity_mask_prepare, weights_rearrange) the public API keeps to itself.
    "pruning_utils": _SPARSITY + "pruning_utils",
    # pruning/masks.py, pruning/schedule.py: PruneLowMagnitude (the class behind
    # tfmot.sparsity.keras.prune_low_magnitude; its module holds the wrapper internals).
    "pruning_wrapper": _SPARSITY + "pruning_wrapper",
    # pruning/schedule.py: Pruning (the mask-update op) and PruneRegistry (which layers
    # TFMOT can prune), neither exported.
    "pruning_impl": _SPARSITY + "pruning_impl",
    "prune_registry": _SPARSITY + "prune_registry",
    # pruning/schedule.py: PruningSchedule and its module-level helpers (step
    # bookkeeping) tfcompress' schedules build on.
    "pruning_schedule": _SPARSITY + "pruning_schedule",
    # pruning/schedule.py: smart_cond (a tf.cond that folds constant predicates).
    "tfmot_keras_utils": _CORE + "keras.utils",
    # quantization/*, callbacks/tensorboard.py: the classes quantize_model builds
    # (QuantizeWrapper/QuantizeWrapperV2, QuantizeLayer, QuantizeAwareActivation,
    # NoOpActivation), which tfcompress recognises, subclasses and saves.
    "quantize_wrapper": _QUANTIZATION + "quantize_wrapper",
    "quantize_layer": _QUANTIZATION + "quantize_layer",
    "quantize_aware_activation": _QUANTIZATION + "quantize_aware_activation",
    # quantization/qat.py: QuantizeAnnotate, the wrapper quantize_annotate_layer returns.
    "quantize_annotate": _QUANTIZATION + "quantize_annotate",
    # quantization/configs.py: serialize_layer (TFMOT's layer serialization for configs).
    "quantize_utils": _QUANTIZATION + "utils",
    # quantization/configs.py, qat.py: the default 8-bit scheme's parts (scheme, layout
    # transform, graph transforms, registry) that tfcompress' scheme extends.
    "default_8bit_quantize_scheme": _DEFAULT_8BIT + "default_8bit_quantize_scheme",
    "default_8bit_quantize_layout_transform": _DEFAULT_8BIT
    + "default_8bit_quantize_layout_transform",
    "default_8bit_transforms": _DEFAULT_8BIT + "default_8bit_transforms",
    "default_8bit_quantize_registry": _DEFAULT_8BIT + "default_8bit_quantize_registry",
    # quantization/configs.py: ModelTransformer/LayerNode, the pattern rewriter the
    # transforms run in.
    "model_transformer": _QUANTIZATION + "graph_transformations.model_transformer",
}

__all__ = [
    "MASK_ADDER_MODULES",
    "LossFunctionWrapper",
    "activation_quantizer_vars",
    "attention_heads",
    "attention_input_shapes",
    "attention_kernel_attrs",
    "attention_projections",
    "autocasts",
    "bounded_mask_adder",
    "build_attention_from_signature",
    "call_expects_mask",
    "default_strategy",
    "flatten_layers",
    "fresh_mirrored_collective_keys",
    "in_multi_worker_mode",
    "inbound_nodes",
    "interpreter_ops",
    "is_compiled",
    "is_graph_network",
    "keras_history",
    "keras_layer_of",
    "keras_print_msg",
    "layer_attributes",
    "nested_io",
    "nodes_by_depth",
    "output_quantizer_vars",
    "quantize_registry_entry",
    "quantized_weights",
    "pruning_internals",
    "reclass",
    "set_layer_name",
    "set_own_trainable_weights",
    "set_variable_constraint",
    "tfmot_prunable_weights",
    "train_summary_writer",
    "tfmot_internal",
    *_TFMOT_INTERNALS,
]

# tf_keras 2.21: the class Model.compile wraps a loss *function* in
# (tf_keras/src/engine/compile_utils.py, LossesContainer._get_loss_object). It is exported, not
# documented, as keras.__internal__.losses.LossFunctionWrapper; the distillation losses wrap
# functions in the same class so that they squeeze/expand y_true/y_pred exactly as Keras does.
LossFunctionWrapper: type = keras.__internal__.losses.LossFunctionWrapper


def keras_print_msg(message: str) -> None:
    """Print ``message`` through Keras' own output channel (the one its progress bar uses).

    tf_keras 2.21 has no public ``print_msg``; ``tf_keras.src.utils.io_utils.print_msg`` writes
    to stdout, or to absl logging when ``keras.utils.disable_interactive_logging()`` is on, so
    recipe progress lines interleave with the progress bar the way Keras' own lines do.

    Args:
        message: one line of text.
    """
    from tf_keras.src.utils import io_utils  # private module; pinned by tests/test_compat.py

    io_utils.print_msg(message)


def reclass(obj: Any, cls: type) -> None:
    """Change ``obj``'s class in place to ``cls``, a subclass of its class that adds no state.

    The QAT model TFMOT 0.8 builds holds ``QuantizeWrapperV2`` / ``QuantizeLayer`` objects with
    weights already built; tfcompress' subclasses (``QATWrapper``, ``QuantizeLayer`` in
    quantization/configs.py) only change ``get_config``/``from_config`` and mask handling, so
    the objects are re-classed rather than rebuilt (rebuilding would re-create the weights and
    break TFMOT's bookkeeping of them).

    Args:
        obj: the object to re-class.
        cls: a subclass of ``type(obj)``.

    Raises:
        TypeError: ``cls`` is not a subclass of ``type(obj)``.
    """
    if not (isinstance(cls, type) and issubclass(cls, type(obj))):
        raise TypeError(
            f"`cls` must be a subclass of {type(obj).__name__} to re-class it in place, "
            f"received {cls!r}."
        )
    obj.__class__ = cls


def set_variable_constraint(variable: tf.Variable, constraint: Callable | None) -> None:
    """Give an existing ``tf.Variable`` a constraint that Keras optimizers apply after updates.

    TF 2.21: ``tf.Variable(constraint=...)`` is the public way, but only at creation; TFMOT
    creates the kernels a QAT wrapper trains, so tfcompress sets the private ``_constraint``
    that ``Variable.constraint`` returns (tf_keras optimizers apply ``var.constraint`` after
    each update, which keeps pruned weights at zero during QAT).

    Args:
        variable: the variable (a resource variable).
        constraint: a function of the variable's value, or None.
    """
    variable._constraint = constraint


def fresh_mirrored_collective_keys(step: int = 100_000) -> None:
    """Move ``MirroredStrategy``'s collective-key base so a new strategy gets keys of its own.

    TF 2.21 starts every ``MirroredStrategy``'s collective keys at the same class attribute
    ``_collective_key_base``, so a second strategy in one process (a notebook, a test session)
    reuses the first one's all-reduce keys and fails with "Shape mismatch in the collective
    instance". Call before creating each strategy.

    Args:
        step: how far to move the base (more than one strategy's keys).
    """
    tf.distribute.MirroredStrategy._collective_key_base += step


def default_strategy() -> tf.distribute.Strategy:
    """TensorFlow's default (no-op) strategy, even inside another strategy's scope.

    ``tf.distribute.get_strategy()`` returns the *current* strategy; TF 2.21's
    ``distribute_lib._get_default_strategy`` is the only way to the default one.
    """
    try:
        from tensorflow.python.distribute import distribute_lib

        return distribute_lib._get_default_strategy()
    except (ImportError, AttributeError):  # pragma: no cover - private API moved
        return tf.distribute.get_strategy()


def is_graph_network(model: keras.Model) -> bool:
    """Whether ``model`` is a functional (graph) model, Sequential models with an input included.

    tf_keras 2.21: ``Model._is_graph_network``; the public ``keras.Model`` class gives no way to
    tell a functional model from a subclassed one.
    """
    return bool(getattr(model, "_is_graph_network", False))


def inbound_nodes(layer: keras.layers.Layer) -> list:
    """The nodes where ``layer`` was called on Keras tensors (tf_keras 2.21 ``_inbound_nodes``)."""
    return list(layer._inbound_nodes)


def keras_history(tensor: Any) -> tuple[keras.layers.Layer, int, int]:
    """``(layer, node_index, tensor_index)`` of a functional Keras tensor (``_keras_history``)."""
    layer, node_index, tensor_index = tensor._keras_history
    return layer, node_index, tensor_index


def flatten_layers(
    layer: keras.layers.Layer, include_self: bool = True, recursive: bool = True
) -> Iterator[keras.layers.Layer]:
    """Every layer tracked by ``layer`` (wrapped, nested, in lists), as tf_keras 2.21 walks them.

    ``Layer._flatten_layers`` is the walk Keras itself uses for weights and ``summary``;
    ``model.layers`` only lists the top level and misses layers a wrapper holds.

    Args:
        layer: a layer or model.
        include_self: yield ``layer`` itself first.
        recursive: walk into nested layers.
    """
    return layer._flatten_layers(include_self=include_self, recursive=recursive)


def tfmot_internal(name: str) -> ModuleType:
    """One of TFMOT 0.8.1's private ``python.core`` modules tfcompress relies on, by short name.

    The modules (listed with the reason each is needed in ``_TFMOT_INTERNALS``) are also
    importable from here by that name (``from tfcompress._compat import quantize_wrapper``);
    both import TFMOT on first use, after ``tfcompress._keras`` made it use tf_keras (Keras 2).

    Args:
        name: a key of ``_TFMOT_INTERNALS``, e.g. ``"quantize_wrapper"``.

    Raises:
        KeyError: ``name`` is not one of the listed modules.
    """
    try:
        path = _TFMOT_INTERNALS[name]
    except KeyError:
        raise KeyError(
            f"`name` must be one of {sorted(_TFMOT_INTERNALS)} (TFMOT internals tfcompress "
            f"pins), received {name!r}; add a new one to _TFMOT_INTERNALS with its reason."
        ) from None
    module = importlib.import_module(path)
    globals()[name] = module
    return module


def __getattr__(name: str) -> ModuleType:
    """Import a TFMOT internal module on first access (``from tfcompress._compat import ...``)."""
    if name in _TFMOT_INTERNALS:
        return tfmot_internal(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def nodes_by_depth(model: keras.Model) -> dict[int, list]:
    """A functional model's nodes by depth (0: the outputs), tf_keras 2.21 ``_nodes_by_depth``.

    The graph walk of structured pruning visits nodes from the inputs (deepest) to the outputs;
    tf_keras keeps no public view of the graph's nodes.
    """
    return {depth: list(nodes) for depth, nodes in model._nodes_by_depth.items()}


def attention_heads(layer: keras.layers.Layer) -> int:
    """The number of heads of a ``MultiHeadAttention`` layer (tf_keras 2.21 ``_num_heads``).

    Keras 3 has a public ``num_heads``; tf_keras 2.21 keeps it private (it is in ``get_config``
    only), so the public attribute is used where it exists.
    """
    return int(getattr(layer, "num_heads", None) or layer._num_heads)


def interpreter_ops(interpreter: Any) -> list[dict]:
    """Every op of a LiteRT (or ``tf.lite``) interpreter's graph (``op_name``, ``inputs``, ...).

    ai_edge_litert / TF 2.21: ``Interpreter._get_ops_details`` is the only way to see which ops a
    delegate took (they appear as one ``DELEGATE`` op per partition).
    """
    return list(interpreter._get_ops_details())


def quantized_weights(wrapper: keras.layers.Layer) -> list[tuple[Any, Any, dict]]:
    """``(weight, quantizer, quantizer_variables)`` of each weight a TFMOT QAT wrapper quantizes.

    TFMOT 0.8.1 ``QuantizeWrapper._weight_vars``: the wrapper replaces each quantized weight
    attribute of the wrapped layer by a tensor, which untracks the variable; this list is the
    only place that still holds it with its quantizer and range variables. Empty for a layer
    that is not a QAT wrapper.
    """
    entries = getattr(wrapper, "_weight_vars", [])  # other layers quantize no weights
    return [(weight, quantizer, variables) for weight, quantizer, variables in entries]


# ---------------------------------------------------------------- Keras MultiHeadAttention

#: tf_keras 2.21 ``MultiHeadAttention``: the four projection sub-layers, by role
_ATTENTION_PROJECTIONS = {
    "query": "_query_dense",
    "key": "_key_dense",
    "value": "_value_dense",
    "output": "_output_dense",
}


def attention_projections(layer: keras.layers.Layer) -> dict[str, Any]:
    """The ``query``/``key``/``value``/``output`` projection layers of a ``MultiHeadAttention``.

    tf_keras 2.21 keeps them in ``_query_dense``, ``_key_dense``, ``_value_dense`` and
    ``_output_dense`` (``EinsumDense`` layers, None before the layer is built); there is no
    public view of them. Quantization wraps their kernels, structured pruning shrinks their heads.
    """
    return {role: getattr(layer, attr, None) for role, attr in _ATTENTION_PROJECTIONS.items()}


def attention_kernel_attrs() -> list[str]:
    """The dotted weight attributes of a ``MultiHeadAttention``'s four projection kernels.

    TFMOT's ``QuantizeConfig`` addresses weights by attribute path, so the quantized attention
    config lists ``_query_dense.kernel`` and the like (tf_keras 2.21 names, see
    :func:`attention_projections`).
    """
    return [f"{attr}.kernel" for attr in _ATTENTION_PROJECTIONS.values()]


def attention_input_shapes(layer: keras.layers.Layer) -> tuple[Any, Any, Any]:
    """``(query_shape, value_shape, key_shape)`` a built ``MultiHeadAttention`` was built for.

    tf_keras 2.21 records them in ``_query_shape``/``_value_shape``/``_key_shape`` (None before
    the first call) and puts them in ``get_config`` only for the layer's own ``from_config``.
    """
    return layer._query_shape, layer._value_shape, layer._key_shape


def build_attention_from_signature(
    layer: keras.layers.Layer, query_shape: Any, value_shape: Any
) -> None:
    """Create a ``MultiHeadAttention``'s projections for these shapes, unless already created.

    tf_keras 2.21 creates them on the first call (``_build_from_signature``, guarded by
    ``_built_from_signature``), not in ``build``; the QAT wrapper needs them before that call.
    """
    if not getattr(layer, "_built_from_signature", True):
        layer._build_from_signature(query_shape, value_shape)


# ---------------------------------------------------------------- Keras layers and models


def call_expects_mask(layer: keras.layers.Layer) -> bool:
    """Whether ``layer.call`` takes a ``mask`` argument (tf_keras 2.21 ``_call_spec``).

    Keras passes an incoming mask only to layers whose call accepts one; a wrapper that takes
    ``**kwargs`` must drop it the same way for the layer it wraps.
    """
    return bool(layer._call_spec.expects_mask_arg)


def set_own_trainable_weights(layer: keras.layers.Layer, weights: list) -> None:
    """Replace the weights ``layer`` tracks as its *own* trainable ones (``_trainable_weights``).

    tf_keras 2.21 has no public setter: ``trainable_weights`` adds the nested layers' weights to
    this list; the QAT wrapper keeps only its quantized weights here (see quantization/configs).
    """
    layer._trainable_weights = list(weights)


def autocasts(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` casts its inputs to its compute dtype (tf_keras 2.21 ``_autocast``).

    False for layers whose variables must keep the variable dtype under mixed precision
    (``Embedding``); the pruning wrapper then computes in that dtype too.
    """
    return bool(getattr(layer, "_autocast", True))


def is_compiled(model: keras.Model) -> bool:
    """Whether ``model.compile`` was called (tf_keras 2.21 ``Model._is_compiled``)."""
    return bool(getattr(model, "_is_compiled", False))


def keras_layer_of(tensor: Any) -> keras.layers.Layer | None:
    """The layer that produced a functional Keras tensor, or None for any other value.

    Like :func:`keras_history`, but for values that may not come from a Keras layer.
    """
    history = getattr(tensor, "_keras_history", None)
    return getattr(history, "layer", None)


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` spans several workers (TF 2.21 ``extended._in_multi_worker_mode``).

    ``MultiWorkerMirroredStrategy`` has no public flag for it (a one-worker cluster is not
    multi-worker); strategies without the method are single-worker.
    """
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


# ---------------------------------------------------------------- TFMOT 0.8.1 objects


def quantize_registry_entry(registry: Any, layer: keras.layers.Layer) -> Any:
    """TFMOT's default 8-bit registry entry for ``type(layer)`` (``quantize_output`` ...), or None.

    TFMOT 0.8.1 ``Default8BitQuantizeRegistry._layer_quantize_map``: the public ``supports`` /
    ``get_quantize_config`` do not say whether a weightless layer's output is quantized.
    """
    return registry._layer_quantize_map.get(type(layer))


def output_quantizer_vars(wrapper: keras.layers.Layer) -> dict | None:
    """The range variables of a TFMOT QAT wrapper's output quantizer, or None without one.

    TFMOT 0.8.1 ``QuantizeWrapper._output_quantizer_vars`` (``min_var``/``max_var``), set only
    when ``_output_quantizers`` is non-empty.
    """
    if not getattr(wrapper, "_output_quantizers", None):
        return None
    return getattr(wrapper, "_output_quantizer_vars", None) or None


def activation_quantizer_vars(wrapper: keras.layers.Layer) -> list[dict]:
    """The range variables of each activation a TFMOT QAT wrapper quantizes (post, then pre).

    TFMOT 0.8.1 ``QuantizeWrapper._quantize_activations``: ``QuantizeAwareActivation`` objects
    holding ``_post_activation_vars`` / ``_pre_activation_vars`` (either may be absent).
    """
    out = []
    for activation in getattr(wrapper, "_quantize_activations", []):
        for attr in ("_post_activation_vars", "_pre_activation_vars"):
            variables = getattr(activation, attr, None)
            if variables:
                out.append(variables)
    return out


def tfmot_prunable_weights(layer: keras.layers.Layer) -> list:
    """The weights TFMOT 0.8.1's ``PruneRegistry`` would prune in ``layer`` (a supported layer).

    ``PruneRegistry.get_prunable_weights`` is only public on the wrapper TFMOT builds; the
    registry's own ``_is_rnn_layer``/``_get_rnn_cells``/``_RNN_CELLS_WEIGHTS_MAP`` (RNN cells)
    and ``_weight_names`` (other layers) say the same for an unwrapped layer.
    """
    registry = tfmot_internal("prune_registry").PruneRegistry
    weights: list = []
    if registry._is_rnn_layer(layer):
        for cell in registry._get_rnn_cells(layer):
            names = registry._RNN_CELLS_WEIGHTS_MAP.get(cell.__class__)
            if names is not None:
                weights += [getattr(cell, name) for name in names]
            else:
                weights += list(cell.get_prunable_weights())
        return weights
    for name in registry._weight_names(layer):
        owner = layer
        *parents, attribute = name.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        weights.append(getattr(owner, attribute))
    return weights


def set_layer_name(layer: keras.layers.Layer, name: str) -> None:
    """Rename a layer after construction (tf_keras 2.21 ``Layer._name``; ``name`` is read-only).

    The pruning wrapper keeps TFMOT's ``prune_low_magnitude_<layer>`` name, which TFMOT sets
    only when no ``name`` is passed, and Keras' own unique-name counter would otherwise pick.
    """
    layer._name = name


def train_summary_writer(callback: keras.callbacks.TensorBoard) -> tf.summary.SummaryWriter:
    """The ``train`` run's summary writer of a Keras ``TensorBoard`` callback (``_train_writer``).

    tf_keras 2.21 creates it lazily and keeps it private; extra summaries written through it
    land in the same event file as Keras' own epoch logs.
    """
    return callback._train_writer


def pruning_internals(pruning: Any) -> tuple[list, tuple[int, int] | None, Any]:
    """``(pruning_vars, sparsity_m_by_n, pruning_schedule)`` of a TFMOT 0.8.1 ``Pruning`` object.

    ``pruning_impl.Pruning`` keeps the ``(weight, mask, threshold)`` triples, the M-by-N
    sparsity and the schedule it was built with in private attributes; tfcompress' subclass
    computes its masks from them.
    """
    return pruning._pruning_vars, pruning._sparsity_m_by_n, pruning._pruning_schedule


# ---------------------------------------------------------------- issue 17: third-party layers


def nested_io(model: keras.Model) -> tuple[Any, Any]:
    """``(inputs, outputs)`` of a functional model in the structure it was built with.

    tf_keras 2.21 ``Functional._nested_inputs``/``_nested_outputs``: ``model.inputs`` and
    ``model.outputs`` are flat lists, so a dict-output model (Model Garden ``BertEncoder``)
    re-wrapped as a plain functional model would lose its output keys.
    """
    return model._nested_inputs, model._nested_outputs


def layer_attributes(layer: keras.layers.Layer) -> dict[str, Any]:
    """Every instance attribute of ``layer``, private ones included (``vars(layer)``).

    A custom layer keeps its sublayers in attributes of its own choosing (Model Garden's
    ``TransformerEncoderBlock``: ``_attention_layer``, ``_intermediate_dense``...; TFRS
    ``Cross``: ``_dense``/``_dense_u``/``_dense_v``); quantization finds its ``Dense``/
    ``EinsumDense``/``Embedding``/``MultiHeadAttention`` sublayers and tables through them and
    addresses their weights by these attribute paths (TFMOT's ``QuantizeConfig`` sets them).
    """
    return dict(vars(layer))


#: the modules whose softmax adds ``(1 - mask) * _large_compatible_negative(dtype)`` (-1e9) to
#: masked scores: tf_keras' ``Softmax`` layer (inside every ``MultiHeadAttention``) and Model
#: Garden's ``MaskedSoftmax``
MASK_ADDER_MODULES = (
    "tf_keras.src.layers.activation.softmax",
    "official.nlp.modeling.layers.masked_softmax",
)


@contextlib.contextmanager
def bounded_mask_adder(value: float) -> Iterator[list[str]]:
    """Within the block, masked softmax layers add ``(1 - mask) * value`` to the scores of
    masked positions instead of ``-1e9``; yields the modules it patched.

    tf_keras 2.21 (``layers/activation/softmax.py``) and tf-models-official 2.20
    (``layers/masked_softmax.py``) take the large negative from the private module function
    ``_large_compatible_negative(dtype)`` (-1e9 below float16). Calibrated into a full-integer
    TFLite file, that adder gives the softmax input a scale of 1e9/255: every real score
    quantizes to one value and attention becomes uniform (a trained 4-layer BERT classifier:
    0.86 -> 0.40 accuracy). Export traces the model inside this block with a bounded value.
    Nothing is imported: a module that is not loaded is used by no model.
    """
    patched: list[tuple[Any, Any]] = []
    for name in MASK_ADDER_MODULES:
        module = sys.modules.get(name)
        original = getattr(module, "_large_compatible_negative", None)
        if original is None:
            continue

        def bounded(tensor_type: Any, original: Any = original) -> Any:
            return original(tensor_type) if tensor_type == tf.float16 else value

        module._large_compatible_negative = bounded
        patched.append((module, original))
    try:
        yield [module.__name__ for module, _ in patched]
    finally:
        for module, original in patched:
            module._large_compatible_negative = original


# TF 2.21 graph internals for FLOP counts (evaluation/flops.py, graph_flops.py): the registered
# per-op "flops" statistics (what tf.compat.v1.profiler's float_operation reads), the function
# library -> GraphDef conversion, and variable freezing. No public API gives them.
def node_flops(graph: Any, node_def: Any) -> int:
    """The registered "flops" statistic of ``node_def`` in ``graph`` (0 when none)."""
    from tensorflow.python.framework import ops as tf_ops

    return int(tf_ops.get_stats_for_node_def(graph, node_def, "flops").value or 0)


def function_def_to_graph_def(fdef: Any) -> Any:
    """The ``GraphDef`` of a ``FunctionDef`` (its argument nodes named after its inputs)."""
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph_def

    return function_def_to_graph_def(fdef)[0]


def frozen_graph(concrete: Any) -> tf.Graph:
    """``concrete``'s graph with its variables replaced by constants."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(concrete).graph
