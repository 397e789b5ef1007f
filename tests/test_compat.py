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

#: private attributes of TF/TFMOT/Keras objects that library code still uses outside _compat
#: (each a known debt, listed so that a *new* one fails this test)
_KNOWN_OUTSIDE = {
    "_build_from_signature",
    "_call_spec",
    "_close_terminal",
    "_exit",
    "_get_rnn_cells",
    "_is_rnn_layer",
    "_key_shape",
    "_layer_quantize_map",
    "_query_dense",
    "_query_shape",
    "_stderr_fd",
    "_supports_masking",
    "_tfcompress_prunes",
    "_trainable_weights",
    "_value_shape",
    "_weight_names",
    # our own data.world private methods, called from data.simulated (same subpackage)
    "_click_logit",
    "_hours",
    "_items_in",
    "_popular_items",
    "_sessions",
    "_taste_or_popular",
}
_MOVED = {
    "_collective_key_base",
    "_constraint",
    "_is_graph_network",
    "_inbound_nodes",
    "_keras_history",
    "_flatten_layers",
    "_get_default_strategy",
    "_nodes_by_depth",
    "_num_heads",
    "_get_ops_details",
    "_weight_vars",
}


def _library_files():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "_compat.py"]


def test_moved_hooks_are_used_only_through_compat():
    offenders = []
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in _MOVED
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
    assert not offenders, "use tfcompress._compat for: " + ", ".join(offenders)


def test_no_new_private_attribute_of_other_objects():
    found = set()
    for path in _library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and not (isinstance(node.value, ast.Name) and node.value.id.startswith("_"))
            ):
                found.add(node.attr)
    new = found - _KNOWN_OUTSIDE - _MOVED
    assert not new, (
        f"private attributes {sorted(new)} used outside tfcompress/_compat.py: add a named hook "
        "there (why, which version) with a test here, or use a public API"
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
