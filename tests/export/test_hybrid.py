"""choose_float_ops: the latency-aware hybrid search over op groups of a full-int8 file."""

import numpy as np
import pytest

from tfcompress._keras import keras
from tfcompress.export import export_tflite
from tfcompress.export.hybrid import OP_GROUPS, choose_float_ops
from tfcompress.export.ptq import keep_ops_in_float
from tfcompress.export.runtime import load_variant


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 8), name="tokens")
    h = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    h = keras.layers.LayerNormalization(name="ln")(keras.layers.Add()([x, h]))
    out = keras.layers.Dense(1, name="head")(keras.layers.Flatten()(h))
    model = keras.Model(x, out)
    rng = np.random.default_rng(0)
    examples = {"tokens": rng.normal(size=(16, 6, 8)).astype("float32")}
    d = tmp_path_factory.mktemp("hybrid")
    export_tflite(model, d / "int8.tflite", "int8", representative_data=[examples["tokens"]])
    export_tflite(model, d / "float.tflite")
    return (d / "int8.tflite").read_bytes(), (d / "float.tflite").read_bytes(), examples, d


def test_every_present_group_is_timed_and_the_choice_is_the_rewrite_of_its_ops(files):
    int8, float_, examples, d = files
    choice = choose_float_ops(
        int8, examples, float_flatbuffer=float_, batch_sizes=(1, 4), repeats=2, margin=0.0
    )
    # the model quantizes attention and normalization ops, no GELU/TANH: those are skipped
    assert {"int8", "float", "+attention", "+normalization"} <= set(choice.latency_ms)
    assert set(choice.latency_ms["int8"]) == {1, 4}
    assert "GELU" in choice.skipped["activation"] or "LOGISTIC" in choice.skipped["activation"]
    assert choice.float_ops == tuple(
        dict.fromkeys(op for g in choice.groups for op in OP_GROUPS[g])
    )
    assert choice.flatbuffer == keep_ops_in_float(int8, choice.float_ops)[0]
    assert choice.speedup > 0 and choice.vs_float is not None and choice.vs_float > 0
    # whatever was chosen still computes the same function as the int8 file, within int8 noise
    (d / "chosen.tflite").write_bytes(choice.flatbuffer)
    a = load_variant(d / "int8.tflite")(examples)
    b = load_variant(d / "chosen.tflite")(examples)
    assert np.abs(a["head"] - b["head"]).max() < 0.1
    assert choice.to_dict()["groups"] == list(choice.groups)


def test_nothing_is_kept_when_no_group_can_clear_the_margin(files):
    int8, _, examples, _ = files
    choice = choose_float_ops(
        int8, examples, groups=["attention"], batch_sizes=(1,), repeats=2, margin=100.0
    )
    assert choice.float_ops == () and choice.groups == ()
    assert choice.flatbuffer == int8 and choice.vs_float is None


def test_bad_arguments_name_the_argument(files):
    int8, _, examples, _ = files
    with pytest.raises(TypeError, match="flatbuffer"):
        choose_float_ops("m.tflite", examples)
    with pytest.raises(TypeError, match="examples"):
        choose_float_ops(int8, [np.ones((1, 6, 8))])
    with pytest.raises(ValueError, match="groups"):
        choose_float_ops(int8, examples, groups=["softmax"])
    with pytest.raises(ValueError, match="batch_sizes"):
        choose_float_ops(int8, examples, batch_sizes=[0])
    with pytest.raises(ValueError, match="margin"):
        choose_float_ops(int8, examples, margin=-1.0)
    with pytest.raises(ValueError, match="batch dimension"):
        choose_float_ops(int8, {"tokens": np.ones((0, 6, 8))})


def test_export_tflite_float_ops_auto_measures_and_records_the_choice(files, tmp_path):
    _, _, examples, _ = files
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 8), name="tokens")
    h = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    out = keras.layers.Dense(1, name="head")(keras.layers.Flatten()(h))
    model = keras.Model(x, out)
    result = export_tflite(
        model,
        tmp_path / "auto.tflite",
        "int8",
        representative_data=[examples["tokens"][:8]],
        float_ops="auto",
        parity_data=examples["tokens"],
    )
    auto = result.options["float_ops_auto"]
    assert "+attention" in auto["latency_ms"] and set(auto["latency_ms"]["int8"]) == {"1", "256"}
    assert set(auto["float_ops"]) <= set(result.options["float_ops"])
    assert all(g in OP_GROUPS for g in auto["groups"])
    assert result.parity["max_abs_diff"] < 0.5  # int8 error of an untrained model, not garbage
    with pytest.raises(
        ValueError, match="full-integer.*'dynamic'; received quantization='float16'"
    ):
        export_tflite(model, tmp_path / "d.tflite", "float16", float_ops="auto")
