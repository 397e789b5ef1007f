"""Pins every private TF/TFMOT/Keras hook of tfcompress._compat, and the import rules.

Each test fails when an upgrade of TensorFlow, tf_keras or TFMOT moves or changes what the hook
relies on; the test's name says which hook.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfcompress import _compat
from tfcompress._keras import keras, tf

PACKAGE = Path(__file__).resolve().parents[1] / "tfcompress"


def test_loss_function_wrapper_is_the_class_compile_wraps_functions_in():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss=keras.losses.mean_squared_error)
    model.compiled_loss.build(tf.zeros((1, 1)))
    wrapped = model.compiled_loss._losses[0]  # noqa: SLF001 - what compile built
    assert type(wrapped) is _compat.LossFunctionWrapper
    assert wrapped.fn is keras.losses.mean_squared_error
    # squeezes y_pred (batch, 1) to y_true's (batch,) as Keras does (no broadcast to (2, 2))
    loss = _compat.LossFunctionWrapper(keras.losses.mean_squared_error, reduction="none")
    assert float(loss(tf.constant([1.0, 0.0]), tf.constant([[1.0], [2.0]]))) == 2.0


def test_keras_print_msg_writes_through_keras_output(capsys):
    _compat.keras_print_msg("hello from tfcompress")
    assert "hello from tfcompress" in capsys.readouterr().out


def test_reclass_keeps_state_and_refuses_unrelated_class():
    layer = keras.layers.Dense(3)
    layer.build((None, 2))

    class Sub(keras.layers.Dense):
        pass

    kernel = layer.kernel
    _compat.reclass(layer, Sub)
    assert type(layer) is Sub and layer.kernel is kernel
    assert layer(tf.ones((1, 2))).shape == (1, 3)
    with pytest.raises(TypeError, match="`cls` must be a subclass of Sub"):
        _compat.reclass(layer, keras.layers.Conv1D)


def test_reclass_of_tfmot_wrapper_to_tfcompress_wrapper():
    from tfcompress.quantization import configs as qc

    qat = _tfmot_qat_model()
    wrappers = [lyr for lyr in qat.layers if type(lyr).__name__ == "QuantizeWrapperV2"]
    assert wrappers, "TFMOT no longer builds QuantizeWrapperV2"
    for layer in wrappers:
        assert issubclass(qc.QATWrapper, type(layer))
        before = [w.numpy() for w in layer.weights]
        _compat.reclass(layer, qc.QATWrapper)
        assert type(layer) is qc.QATWrapper
        assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, layer.weights, strict=True))
    assert qat(tf.ones((2, 4))).shape == (2, 1)


def _tfmot_qat_model() -> keras.Model:
    import tensorflow_model_optimization as tfmot

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    return tfmot.quantization.keras.quantize_model(model)


def test_set_variable_constraint_is_applied_by_keras_optimizer():
    variable = tf.Variable([1.0, -2.0, 3.0])
    _compat.set_variable_constraint(variable, lambda v: v * tf.constant([1.0, 0.0, 1.0]))
    assert variable.constraint is not None
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.apply_gradients([(tf.constant([1.0, 1.0, 1.0]), variable)])
    np.testing.assert_allclose(variable.numpy(), [0.9, 0.0, 2.9], rtol=1e-6)
    _compat.set_variable_constraint(variable, None)
    assert variable.constraint is None


def test_fresh_mirrored_collective_keys_moves_the_class_base():
    base = tf.distribute.MirroredStrategy._collective_key_base
    assert isinstance(base, int)
    _compat.fresh_mirrored_collective_keys()
    assert tf.distribute.MirroredStrategy._collective_key_base == base + 100_000
    tf.distribute.MirroredStrategy(["/cpu:0"])  # a strategy still builds from the moved base


def test_default_strategy_is_the_default_inside_another_scope():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        assert tf.distribute.get_strategy() is strategy
        default = _compat.default_strategy()
    assert default is not strategy
    assert default is tf.distribute.get_strategy()  # outside any scope: the default


def test_is_graph_network_tells_functional_from_subclassed():
    class Sub(keras.Model):
        def call(self, x):
            return x

    inputs = keras.Input((2,))
    functional = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    assert _compat.is_graph_network(functional)
    assert _compat.is_graph_network(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    assert not _compat.is_graph_network(Sub())


def test_inbound_nodes_and_keras_history_describe_the_graph():
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(1)
    outputs = dense(inputs)
    layer, node_index, tensor_index = _compat.keras_history(outputs)
    assert (layer, node_index, tensor_index) == (dense, 0, 0)
    nodes = _compat.inbound_nodes(dense)
    assert len(nodes) == 1 and nodes[0].layer is dense
    assert _compat.inbound_nodes(keras.layers.Dense(1)) == []


def test_flatten_layers_finds_wrapped_layers():
    inner = keras.layers.Dense(2)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.TimeDistributed(inner)])
    found = list(_compat.flatten_layers(model, include_self=False, recursive=True))
    assert inner in found and model not in found
    assert model in list(_compat.flatten_layers(model, include_self=True, recursive=False))
    assert inner not in list(_compat.flatten_layers(model, include_self=False, recursive=False))


def test_nodes_by_depth_orders_the_graph_from_the_outputs():
    inputs = keras.Input((2,))
    first, second = keras.layers.Dense(3), keras.layers.Dense(1)
    model = keras.Model(inputs, second(first(inputs)))
    by_depth = _compat.nodes_by_depth(model)
    assert sorted(by_depth) == [0, 1, 2]
    assert [node.layer for node in by_depth[0]] == [second]
    assert [node.layer for node in by_depth[1]] == [first]
    assert isinstance(by_depth[2][0].layer, keras.layers.InputLayer)


def test_attention_heads_of_tf_keras_multi_head_attention():
    layer = keras.layers.MultiHeadAttention(num_heads=3, key_dim=2)
    assert _compat.attention_heads(layer) == 3
    assert (
        _compat.attention_heads(keras.layers.MultiHeadAttention.from_config(layer.get_config()))
        == 3
    )


def test_interpreter_ops_lists_the_tflite_graph():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    from ai_edge_litert.interpreter import Interpreter  # what export.runtime loads

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    ops = _compat.interpreter_ops(interpreter)
    assert ops and all({"op_name", "index", "inputs", "outputs"} <= set(op) for op in ops)
    assert "FULLY_CONNECTED" in {op["op_name"] for op in ops}


def test_quantized_weights_hold_the_kernel_its_quantizer_and_ranges():
    qat = _tfmot_qat_model()
    wrapper = next(lyr for lyr in qat.layers if type(lyr).__name__ == "QuantizeWrapperV2")
    entries = _compat.quantized_weights(wrapper)
    assert len(entries) == 1
    weight, quantizer, variables = entries[0]
    assert isinstance(weight, tf.Variable) and weight.name.split("/")[-1].startswith("kernel")
    assert callable(quantizer) and isinstance(variables, dict) and variables
    assert quantizer(weight, False, weights=variables).shape == weight.shape


def _attention(built: bool = True) -> keras.layers.Layer:
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    if built:
        layer(tf.zeros((1, 5, 4)), tf.zeros((1, 6, 4)))
    return layer


def test_attention_projections_kernels_and_shapes():
    layer = _attention()
    projections = _compat.attention_projections(layer)
    assert set(projections) == {"query", "key", "value", "output"}
    assert all(isinstance(p, keras.layers.EinsumDense) and p.built for p in projections.values())
    kernels = {id(w) for w in layer.weights}
    for path in _compat.attention_kernel_attrs():
        owner, attr = path.split(".")
        assert id(getattr(getattr(layer, owner), attr)) in kernels
    query, value, key = _compat.attention_input_shapes(layer)
    assert (tuple(query), tuple(value), tuple(key)) == ((1, 5, 4), (1, 6, 4), (1, 6, 4))


def test_build_attention_from_signature_creates_the_projections_once():
    layer = _attention(built=False)
    assert _compat.attention_projections(layer)["query"] is None
    _compat.build_attention_from_signature(layer, (1, 5, 4), (1, 6, 4))
    query = _compat.attention_projections(layer)["query"]
    assert query is not None
    _compat.build_attention_from_signature(layer, (1, 5, 4), (1, 6, 4))  # no-op the 2nd time
    assert _compat.attention_projections(layer)["query"] is query
    assert layer(tf.zeros((1, 5, 4)), tf.zeros((1, 6, 4))).shape == (1, 5, 4)


def test_call_expects_mask_reads_the_call_signature():
    assert _compat.call_expects_mask(keras.layers.LSTM(2))
    assert not _compat.call_expects_mask(keras.layers.Flatten())


def test_set_own_trainable_weights_keeps_nested_weights_trained():
    wrapper = keras.layers.TimeDistributed(keras.layers.Dense(2))
    wrapper.build((None, 3, 4))
    own = tf.Variable(1.0)
    _compat.set_own_trainable_weights(wrapper, [own])
    assert wrapper.trainable_weights[0] is own and len(wrapper.trainable_weights) == 3


def test_autocasts_is_false_for_embedding_only():
    assert _compat.autocasts(keras.layers.Dense(1))
    assert not _compat.autocasts(keras.layers.Embedding(3, 2))


def test_is_compiled_and_keras_layer_of():
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(inputs))
    assert not _compat.is_compiled(model)
    model.compile(loss="mse")
    assert _compat.is_compiled(model)
    assert _compat.keras_layer_of(model.outputs[0]) is dense
    assert _compat.keras_layer_of(tf.zeros(1)) is None


def test_in_multi_worker_mode_of_single_worker_strategies():
    assert not _compat.in_multi_worker_mode(tf.distribute.get_strategy())
    assert not _compat.in_multi_worker_mode(tf.distribute.OneDeviceStrategy("/cpu:0"))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: one worker
    assert hasattr(strategy.extended, "_in_multi_worker_mode")
    assert not _compat.in_multi_worker_mode(strategy)


def test_set_layer_name_renames_a_built_layer():
    layer = keras.layers.Dense(1, name="before")
    _compat.set_layer_name(layer, "after")
    assert layer.name == "after" and layer.get_config()["name"] == "after"


def test_train_summary_writer_of_keras_tensorboard(tmp_path):
    callback = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    writer = _compat.train_summary_writer(callback)
    assert isinstance(writer, tf.summary.SummaryWriter)
    with writer.as_default():
        tf.summary.scalar("x", 1.0, step=0)
    assert list((tmp_path / "train").iterdir())


def test_quantize_registry_entry_says_whether_outputs_are_quantized():
    registry = _compat.default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    assert _compat.quantize_registry_entry(registry, keras.layers.ReLU()).quantize_output
    assert not _compat.quantize_registry_entry(registry, keras.layers.Reshape((1,))).quantize_output
    assert _compat.quantize_registry_entry(registry, keras.layers.Layer()) is None


def test_quantizer_variables_of_a_tfmot_wrapper():
    qat = _tfmot_qat_model()
    wrappers = [lyr for lyr in qat.layers if type(lyr).__name__ == "QuantizeWrapperV2"]
    ranges = [_compat.output_quantizer_vars(w) for w in wrappers]
    ranges += [v for w in wrappers for v in _compat.activation_quantizer_vars(w)]
    ranges = [r for r in ranges if r]
    assert ranges and all({"min_var", "max_var"} <= set(r) for r in ranges)
    assert _compat.output_quantizer_vars(keras.layers.Dense(1)) is None
    assert _compat.activation_quantizer_vars(keras.layers.Dense(1)) == []
    assert _compat.quantized_weights(keras.layers.Dense(1)) == []


def test_tfmot_prunable_weights_match_the_pruning_wrapper():
    import tensorflow_model_optimization as tfmot

    for layer, shape in (
        (keras.layers.Dense(2), (None, 3)),
        (keras.layers.LSTM(2), (None, 4, 3)),
        (keras.layers.MultiHeadAttention(num_heads=2, key_dim=2), None),
    ):
        if shape is None:
            layer(tf.zeros((1, 4, 3)), tf.zeros((1, 4, 3)))
        else:
            layer.build(shape)
        ours = _compat.tfmot_prunable_weights(layer)
        wrapped = tfmot.sparsity.keras.prune_low_magnitude(layer)
        assert ours and [id(w) for w in ours] == [
            id(w) for w in wrapped.layer.get_prunable_weights()
        ], type(layer).__name__


def test_pruning_internals_of_tfmot_pruning():
    pruned = keras.Sequential(
        [keras.Input((4,)), _compat.pruning_wrapper.PruneLowMagnitude(keras.layers.Dense(3))]
    )
    wrapper = pruned.layers[0]
    pruning = _compat.pruning_impl.Pruning(
        training_step_fn=lambda: 0,
        pruning_vars=wrapper.pruning_vars,
        pruning_schedule=wrapper.pruning_schedule,
        block_size=(1, 1),
        block_pooling_type="AVG",
    )
    pruning_vars, m_by_n, schedule = _compat.pruning_internals(pruning)
    assert pruning_vars == wrapper.pruning_vars and m_by_n is None
    assert schedule is wrapper.pruning_schedule


# ---------------------------------------------------------------- TFMOT 0.8.1 internals

#: what tfcompress uses of each private TFMOT module (_compat._TFMOT_INTERNALS)
_TFMOT_USES = {
    "pruning_utils": ("generate_m_by_n_mask", "m_by_n_sparsity_mask_prepare", "weights_rearrange"),
    "pruning_wrapper": ("PruneLowMagnitude",),
    "pruning_impl": ("Pruning",),
    "prune_registry": ("PruneRegistry",),
    "pruning_schedule": ("PruningSchedule",),
    "tfmot_keras_utils": ("smart_cond",),
    "quantize_wrapper": ("QuantizeWrapper", "QuantizeWrapperV2"),
    "quantize_layer": ("QuantizeLayer",),
    "quantize_aware_activation": ("QuantizeAwareActivation", "NoOpActivation"),
    "quantize_annotate": ("QuantizeAnnotate",),
    "quantize_utils": ("serialize_layer",),
    "default_8bit_quantize_scheme": ("Default8BitQuantizeScheme",),
    "default_8bit_quantize_layout_transform": ("Default8BitQuantizeLayoutTransform",),
    "default_8bit_transforms": (
        "InputLayerQuantize",
        "ConcatTransform",
        "ConcatTransform3Inputs",
        "ConcatTransform4Inputs",
        "ConcatTransform5Inputs",
        "ConcatTransform6Inputs",
        "DenseBatchNormQuantize",
        "DenseBatchNormReLUQuantize",
        "DenseBatchNormActivationQuantize",
        "LayerReLUQuantize",
        "LayerReluActivationQuantize",
    ),
    "default_8bit_quantize_registry": ("Default8BitQuantizeRegistry",),
    "model_transformer": ("ModelTransformer", "LayerNode"),
}


def test_every_tfmot_internal_is_pinned():
    assert set(_TFMOT_USES) == set(_compat._TFMOT_INTERNALS)  # noqa: SLF001


@pytest.mark.parametrize("name", sorted(_TFMOT_USES))
def test_tfmot_internal_module_still_has_what_tfcompress_uses(name):
    module = _compat.tfmot_internal(name)
    assert module.__name__ == _compat._TFMOT_INTERNALS[name]  # noqa: SLF001
    missing = [attr for attr in _TFMOT_USES[name] if not hasattr(module, attr)]
    assert not missing, f"TFMOT's {module.__name__} no longer has {missing}"
    assert getattr(_compat, name) is module  # the re-export


def test_tfmot_internal_refuses_an_unlisted_name():
    with pytest.raises(KeyError, match="`name` must be one of .*received 'sparsity'"):
        _compat.tfmot_internal("sparsity")
    with pytest.raises(AttributeError, match="has no attribute 'sparsity'"):
        _compat.sparsity  # noqa: B018


def test_tfmot_internals_are_what_the_public_api_builds():
    import tensorflow_model_optimization as tfmot

    qat = _tfmot_qat_model()
    assert {type(lyr) for lyr in qat.layers} >= {
        _compat.quantize_layer.QuantizeLayer,
        _compat.quantize_wrapper.QuantizeWrapperV2,
    }
    assert issubclass(
        _compat.quantize_wrapper.QuantizeWrapperV2, _compat.quantize_wrapper.QuantizeWrapper
    )
    annotated = tfmot.quantization.keras.quantize_annotate_layer(keras.layers.Dense(1))
    assert isinstance(annotated, _compat.quantize_annotate.QuantizeAnnotate)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(keras.layers.Dense(1))
    assert isinstance(pruned, _compat.pruning_wrapper.PruneLowMagnitude)
    assert isinstance(
        tfmot.sparsity.keras.ConstantSparsity(0.5, 0), _compat.pruning_schedule.PruningSchedule
    )
    assert isinstance(
        tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme(),
        _compat.default_8bit_quantize_scheme.Default8BitQuantizeScheme,
    )


def test_tfmot_helpers_behave_as_tfcompress_expects():
    utils = _compat.tfmot_keras_utils
    assert int(utils.smart_cond(tf.constant(True), lambda: 1, lambda: 2)) == 1
    assert int(utils.smart_cond(False, lambda: 1, lambda: 2)) == 2
    weights = tf.constant([[4.0, -3.0, 0.5, 1.0], [0.1, 0.2, -5.0, 6.0]])
    mask = _compat.pruning_utils.generate_m_by_n_mask(tf.reshape(weights, (-1, 4)), (2, 4))
    np.testing.assert_array_equal(tf.reshape(mask, (2, 4)).numpy(), [[1, 1, 0, 0], [0, 0, 1, 1]])


def test_importing_compat_does_not_import_tfmot():
    code = (
        "import sys, tfcompress._compat; "
        "assert not [m for m in sys.modules if m.startswith('tensorflow_model_optimization')]"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_tfmot_internals_are_imported_only_through_compat():
    offenders = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{path.relative_to(PACKAGE)}:{node.lineno} {m}"
                for m in modules
                if m.startswith("tensorflow_model_optimization.python")
            ]
    assert not offenders, "import TFMOT internals from tfcompress._compat: " + ", ".join(offenders)


# ---------------------------------------------------------------- where the hooks may live

_ACCESSORS = ("getattr", "setattr", "hasattr", "delattr")
#: public names that merely start with an underscore (``os._exit`` is documented API)
_PUBLIC = {"_exit"}


def _library_files():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "_compat.py"]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_private_names(source: str, attributes_only: bool = False) -> set[str]:
    """Private names a module defines: ``def _x``, ``class _X``, ``_x = ...``, ``obj._x = ...``.

    With ``attributes_only``, only the ``obj._x = ...`` ones.
    """
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.update([] if attributes_only else [node.name])
            continue
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign | ast.AugAssign)
            else []
        )
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Attribute):
                    names.add(sub.attr)
                elif isinstance(sub, ast.Name) and not attributes_only:
                    names.add(sub.id)
    return {name for name in names if _is_private(name)}


def private_uses(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of each private attribute ``source`` reads or writes on any object.

    Both ``obj._x`` and ``getattr/setattr/hasattr/delattr(obj, "_x")`` count.
    """
    uses = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            uses.append((node.lineno, node.attr))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ACCESSORS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            uses.append((node.lineno, node.args[1].value))
    return sorted(uses)


def upstream_private_uses(sources: dict[str, str], ours: set[str]) -> list[str]:
    """``file:line .name`` of each private attribute used that the package does not define."""
    return [
        f"{name}:{line} .{attr}"
        for name, source in sorted(sources.items())
        for line, attr in private_uses(source)
        if attr not in ours and attr not in _PUBLIC
    ]


def _upstream_instance_privates() -> set[str]:
    """Private attributes Keras itself keeps on layers and models (never tfcompress' own)."""
    inputs = keras.Input((4,))
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2)
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs[:, None], inputs[:, None])))
    model.compile(loss="mse")
    return {n for obj in (model, layer, *model.layers) for n in dir(obj) if _is_private(n)}


def test_scanner_finds_a_planted_upstream_private_attribute():
    planted = (
        "def _ours(self):\n"
        "    self._mine = 1\n"
        "    obj._marker = True\n"
        "    return self._mine, obj._marker, _ours, os._exit\n"
        "def f(layer, wrapper):\n"
        "    layer._call_spec.expects_mask_arg\n"
        "    return getattr(wrapper, '_weight_vars', []), hasattr(layer, '_autocast')\n"
    )
    ours = defined_private_names(planted)
    assert ours == {"_ours", "_mine", "_marker"}
    assert defined_private_names(planted, attributes_only=True) == {"_mine", "_marker"}
    assert upstream_private_uses({"planted.py": planted}, ours) == [
        "planted.py:6 ._call_spec",
        "planted.py:7 ._autocast",
        "planted.py:7 ._weight_vars",
    ]


def test_private_attributes_of_upstream_objects_are_used_only_in_compat():
    sources = {str(p.relative_to(PACKAGE)): p.read_text() for p in _library_files()}
    ours = set().union(*(defined_private_names(s) for s in sources.values()))
    # an attribute tfcompress assigns on an upstream object is still upstream's
    assigned = set().union(*(defined_private_names(s, True) for s in sources.values()))
    borrowed = assigned & _upstream_instance_privates()
    assert not borrowed, f"tfcompress assigns Keras' own private attributes {sorted(borrowed)}"
    offenders = upstream_private_uses(sources, ours)
    assert not offenders, (
        f"private attributes of TF/TFMOT/Keras objects used outside tfcompress/_compat.py: "
        f"{offenders}; add a named hook there (why, which version) with a test here, or use a "
        "public API"
    )


def test_no_private_module_or_name_of_another_subpackage():
    """Publish what another package needs in its __init__ (import-linter cannot say this)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        own = parts[1] if len(parts) > 2 else None
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [(node.module, [a.name for a in node.names])]
            elif isinstance(node, ast.Import):
                targets = [(a.name, []) for a in node.names]
            else:
                continue
            for module, names in targets:
                mod = module.split(".")
                if mod[0] != "tfcompress" or len(mod) < 2 or mod[1].startswith("_"):
                    continue  # outside the package, or its private core (shared by all)
                if mod[1] == own:
                    continue
                private = [p for p in mod[2:] if p.startswith("_")]
                private += [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    offenders.append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno} {module} {private}"
                    )
    assert not offenders, offenders


def test_explicit_legacy_keras_off_is_a_clear_error():
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", "import tfcompress._keras"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "TF_USE_LEGACY_KERAS=0" in proc.stderr
    assert "unset it or set TF_USE_LEGACY_KERAS=1" in proc.stderr


def test_nested_io_keeps_the_structure_a_functional_model_was_built_with():
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    model = keras.Model([a, b], {"sum": keras.layers.Dense(1)(a), "b": b})
    inputs, outputs = _compat.nested_io(model)
    assert inputs == [a, b] and sorted(outputs) == ["b", "sum"]


def test_layer_attributes_list_private_sublayers_of_a_custom_layer():
    layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2)
    layer(tf.zeros([1, 3, 4]), tf.zeros([1, 3, 4]))
    attributes = _compat.layer_attributes(layer)
    assert isinstance(attributes["_query_dense"], keras.layers.EinsumDense)
    assert attributes["_softmax"] is not None


@pytest.mark.parametrize("name", _compat.MASK_ADDER_MODULES)
def test_bounded_mask_adder_bounds_the_masked_softmax_adder(name):
    """tf_keras 2.21's Softmax and Model Garden 2.20's MaskedSoftmax take -1e9 from the private
    _large_compatible_negative; within the block it is the bounded value, restored after."""
    import importlib

    module = importlib.import_module(name)
    original = module._large_compatible_negative
    assert original(tf.float32) == -1e9
    layer = keras.layers.Softmax() if name.startswith("tf_keras") else module.MaskedSoftmax()
    scores, mask = tf.constant([[0.0, 0.0]]), tf.constant([[1.0, 0.0]])
    with _compat.bounded_mask_adder(-10.0) as patched:
        assert name in patched and module._large_compatible_negative(tf.float32) == -10.0
        bounded = layer(scores, mask).numpy()
    assert module._large_compatible_negative is original
    np.testing.assert_allclose(bounded[0, 1], np.exp(-10.0) / (1 + np.exp(-10.0)), rtol=1e-5)
    assert layer(scores, mask).numpy()[0, 1] == 0.0  # -1e9 again


def test_graph_flop_hooks_count_a_matmul_and_read_a_function_library():
    from tfcompress._compat import frozen_graph, function_def_to_graph_def, node_flops

    variable = tf.Variable(tf.ones((3, 5)))

    @tf.function(input_signature=[tf.TensorSpec((4, 3), tf.float32)])
    def forward(x):
        return tf.matmul(x, variable)

    concrete = forward.get_concrete_function()
    graph = frozen_graph(concrete)  # the variable became a constant
    assert not [op for op in graph.get_operations() if op.type == "VarHandleOp"]
    matmul = next(op for op in graph.get_operations() if op.type == "MatMul")
    assert node_flops(graph, matmul.node_def) == 2 * 4 * 3 * 5
    relu = tf.Graph()
    with relu.as_default():
        tf.nn.relu(tf.constant([1.0]), name="r")
    assert node_flops(relu, relu.get_operation_by_name("r").node_def) == 0  # no statistics
    fdef = concrete.function_def
    graph_def = function_def_to_graph_def(fdef)
    assert "MatMul" in {node.op for node in graph_def.node}
    assert len([n for n in graph_def.node if n.op == "Placeholder"]) == len(
        fdef.signature.input_arg
    )


def test_upstream_internal_modules_are_imported_only_in_compat():
    """``tensorflow.python``, ``tf_keras.src`` and TFMOT's ``python`` tree are upstream's private
    modules: only tfcompress/_compat.py imports them (by name, in an import statement or a
    string handed to importlib)."""
    internal = ("tensorflow.python", "tf_keras.src", "tensorflow_model_optimization.python")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_compat.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.append(node.value)
            for name in names:
                if name.startswith(internal):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
    assert not offenders, (
        f"upstream internal modules imported outside tfcompress/_compat.py: {offenders}; add a "
        "named hook there (why, which version) with a test in tests/test_compat.py"
    )
