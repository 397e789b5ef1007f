"""export/float_regions.py: no int8 round trip between float ops of a hybrid file."""

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS first)
from tfcompress._keras import keras, tf
from tfcompress.export.float_regions import merge_float_regions
from tfcompress.export.ptq import keep_ops_in_float

NORM_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "MUL", "SUB", "ADD")


def _ops(content):
    from ai_edge_litert.interpreter import Interpreter

    return [d["op_name"] for d in Interpreter(model_content=content)._get_ops_details()]


def _run(content, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=1)
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(d["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).astype(np.float64)


@pytest.fixture(scope="module")
def files():
    keras.utils.set_random_seed(2)
    x = keras.Input((8, 16), name="x")
    h = keras.layers.Dense(16, name="proj")(x)
    h = keras.layers.LayerNormalization(name="norm")(h)
    out = keras.layers.Dense(4, name="head")(keras.layers.Flatten()(h))
    model = keras.Model(x, out)
    data = np.random.default_rng(2).normal(size=(64, 8, 16)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([data[i : i + 1]] for i in range(64))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    int8 = converter.convert()
    hybrid, done = keep_ops_in_float(int8, NORM_OPS)
    assert done  # the LayerNormalization's ops run in float
    return model, data, hybrid


def test_round_trips_and_constant_dequantizes_are_removed(files):
    model, data, hybrid = files
    merged, counts = merge_float_regions(hybrid)
    assert counts["round_trips"] >= 4 and counts["constants"] >= 1
    before, after = _ops(hybrid), _ops(merged)
    removed = counts["round_trips"] + counts["constants"]
    assert after.count("DEQUANTIZE") == before.count("DEQUANTIZE") - removed
    assert after.count("QUANTIZE") < before.count("QUANTIZE")
    # the float region reads one DEQUANTIZE and ends in one QUANTIZE: one rounding left
    want = model(data).numpy()
    err_before = np.abs(_run(hybrid, data) - want).max()
    err_after = np.abs(_run(merged, data) - want).max()
    assert err_after <= err_before * 1.05 + 1e-6
    assert err_after < 0.1


def test_a_file_without_float_regions_is_unchanged():
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(2)(x))
    original = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    merged, counts = merge_float_regions(original)
    assert counts == {"round_trips": 0, "constants": 0} and merged == original


def test_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="flatbuffer"):
        merge_float_regions(None)


def _round_trips(content):
    """QUANTIZE outputs that only DEQUANTIZEs read."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    names = [flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for op in graph.operators]
    found = 0
    for k, op in enumerate(graph.operators):
        if names[k] != "QUANTIZE":
            continue
        readers = [j for j, o in enumerate(graph.operators) if op.outputs[0] in list(o.inputs)]
        found += bool(readers) and all(names[j] == "DEQUANTIZE" for j in readers)
    return found


def test_export_float_ops_auto_merges_the_chosen_regions(files, tmp_path):
    from tfcompress.export.tflite import export_tflite

    model, data, hybrid = files
    assert _round_trips(hybrid) > 0  # what keep_ops_in_float alone leaves
    result = export_tflite(
        model,
        tmp_path / "auto.tflite",
        "int8",
        representative_data=tf.data.Dataset.from_tensor_slices({"x": data}).batch(16),
        float_ops="auto",
        parity_data={"x": data},
        drift="ignore",
    )
    merged = result.options["float_regions_merged"]
    assert set(merged) == {"round_trips", "constants"}
    assert _round_trips(result.path.read_bytes()) == 0
    if "normalization" in result.options["float_ops_auto"]["groups"]:
        assert merged["round_trips"] > 0


def test_explicit_float_ops_are_merged_too(files, tmp_path):
    from tfcompress.export.tflite import export_tflite

    model, data, hybrid = files
    result = export_tflite(
        model,
        tmp_path / "explicit.tflite",
        "int8",
        representative_data=tf.data.Dataset.from_tensor_slices({"x": data}).batch(16),
        float_ops=list(NORM_OPS),
        parity_data={"x": data},
        drift="ignore",
    )
    merged = result.options["float_regions_merged"]
    assert merged["round_trips"] >= 4 and merged["constants"] >= 1
    content = result.path.read_bytes()
    assert _round_trips(hybrid) > 0 and _round_trips(content) == 0
    # closer to the Keras model than the unmerged file: one rounding step fewer
    want = model(data).numpy()
    err_merged = np.abs(_run(content, data) - want).max()
    assert err_merged <= np.abs(_run(hybrid, data) - want).max() * 1.05
