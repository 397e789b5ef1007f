"""A dynamic-range file's weight ops computed in float on their int8 weights
(ptq.dequantize_weights, export_tflite("dynamic", float_ops=[...] / "auto"))."""

import numpy as np
import pytest

from tfcompress._keras import keras
from tfcompress.export import export_tflite
from tfcompress.export.hybrid import DYNAMIC_GROUPS, choose_float_ops
from tfcompress.export.ptq import WEIGHT_OPS, dequantize_weights


def _ops(content: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [d["op_name"] for d in Interpreter(model_content=content)._get_ops_details()]


def _run(content: bytes, x: np.ndarray, xnnpack: bool = True) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=content, num_threads=1, experimental_op_resolver_type=resolver)
    runner = it.get_signature_runner()
    return np.asarray(next(iter(runner(x=x).values())), np.float64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    keras.utils.set_random_seed(3)
    x = keras.Input((32,), name="x")
    h = keras.layers.Dense(64, activation="relu", name="wide")(x)
    h = keras.layers.Dense(48, activation="tanh", name="mid")(h)
    model = keras.Model(x, keras.layers.Dense(1, name="head")(h))
    data = np.random.default_rng(3).normal(size=(256, 32)).astype("float32")
    d = tmp_path_factory.mktemp("dynamic")
    plain = export_tflite(model, d / "dynamic.tflite", "dynamic", parity_data=data)
    return model, data, plain.path.read_bytes(), d


def test_weights_stay_int8_and_the_ops_compute_in_float(files):
    model, data, dynamic, _ = files
    rewritten, done = dequantize_weights(dynamic, ["FULLY_CONNECTED"])
    # the converter quantizes the two layers of >= 1024 weights; the 48-weight head stays float
    assert done == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert _ops(rewritten).count("DEQUANTIZE") == _ops(dynamic).count("DEQUANTIZE") + 2
    # same int8 bytes: only two ops and two float tensors (no data) more
    assert len(dynamic) <= len(rewritten) <= len(dynamic) + 600
    want = model(data).numpy().astype(np.float64)
    for xnnpack in (True, False):  # XNNPACK unpacks the constant; the built-in kernel too
        err_dynamic = np.abs(_run(dynamic, data, xnnpack) - want).max()
        err_float = np.abs(_run(rewritten, data, xnnpack) - want).max()
        # only the weights' rounding is left: no activation is quantized
        assert err_float < err_dynamic
        assert err_float < 0.02


def test_nothing_to_rewrite_leaves_the_file_unchanged(files):
    _, _, dynamic, _ = files
    assert dequantize_weights(dynamic, []) == (dynamic, [])
    same, done = dequantize_weights(dynamic, ["CONV_2D"])
    assert done == [] and _ops(same) == _ops(dynamic)


def test_export_dynamic_float_ops_list_and_auto(files, tmp_path):
    model, data, dynamic, _ = files
    listed = export_tflite(
        model,
        tmp_path / "listed.tflite",
        "dynamic",
        float_ops=["fully_connected"],
        parity_data=data,
    )
    assert listed.options["float_ops_applied"] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert "float_regions_merged" not in listed.options  # the weight DEQUANTIZEs stay
    assert abs(listed.path.stat().st_size - len(dynamic)) <= 600
    plain_diff = np.abs(_run(dynamic, data) - model(data).numpy()).max()
    assert listed.parity["max_abs_diff"] < plain_diff

    auto = export_tflite(model, tmp_path / "auto.tflite", "dynamic", float_ops="auto")
    chosen = auto.options["float_ops_auto"]
    assert {"dynamic", "+weights"} <= set(chosen["latency_ms"])
    assert chosen["groups"] in ([], ["weights"])
    kept = 2 if chosen["groups"] else 0
    assert (
        _ops(auto.path.read_bytes()).count("DEQUANTIZE") == _ops(dynamic).count("DEQUANTIZE") + kept
    )


def test_choose_float_ops_on_a_dynamic_file(files):
    _, data, dynamic, _ = files
    choice = choose_float_ops(
        dynamic, {"x": data}, dynamic=True, batch_sizes=(1, 8), repeats=2, margin=0.0
    )
    assert set(choice.latency_ms) == {"dynamic", "+weights"}
    if choice.groups:
        assert choice.float_ops == DYNAMIC_GROUPS["weights"] == WEIGHT_OPS
        assert choice.flatbuffer == dequantize_weights(dynamic, WEIGHT_OPS)[0]
    forced = choose_float_ops(
        dynamic, {"x": data}, dynamic=True, batch_sizes=(1,), repeats=2, margin=100.0
    )
    assert forced.groups == () and forced.flatbuffer == dynamic


def test_bad_arguments(files, tmp_path):
    model, data, dynamic, _ = files
    with pytest.raises(ValueError, match=r"weight ops.*\['DIV'\].*'int8'"):
        export_tflite(model, tmp_path / "m.tflite", "dynamic", float_ops=["DIV"])
    with pytest.raises(ValueError, match="float_ops.*'float16'"):
        export_tflite(model, tmp_path / "m.tflite", "float16", float_ops=["FULLY_CONNECTED"])
    with pytest.raises(TypeError, match="dynamic"):
        choose_float_ops(dynamic, {"x": data}, dynamic="yes")
    with pytest.raises(ValueError, match=r"groups.*\['weights'\]"):
        choose_float_ops(dynamic, {"x": data}, dynamic=True, groups=["attention"])
