"""export/simplify.py: BROADCAST_TO and negligible int8 ADDs removed, exactly, through LiteRT."""

from pathlib import Path

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before the test libraries)
from tfcompress._keras import keras, tf
from tfcompress.export.simplify import simplify_flatbuffer
from tfcompress.export.tflite import export_tflite

SEQ, WIDTH = 8, 16


class _PositionAndMask(keras.layers.Layer):
    """A position table broadcast to the batch (Model Garden's PositionEmbedding) and a
    ``[B, 1, T] -> [B, T, T]`` mask broadcast before an element-wise chain (SelfAttentionMask,
    MaskedSoftmax)."""

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(1, SEQ, WIDTH), initializer="normal")

    def call(self, inputs):
        x, mask = inputs
        x = x + tf.broadcast_to(self.table, tf.shape(x))
        m = tf.broadcast_to(mask[:, None, :], (tf.shape(mask)[0], SEQ, SEQ))
        adder = (1.0 - tf.expand_dims(m, 1)) * -30.0
        scores = tf.einsum("bqd,bkd->bqk", x, x)[:, None] + adder
        return tf.nn.softmax(scores, -1)[:, 0] @ x


def _model():
    x = keras.Input((SEQ, WIDTH), name="x")
    mask = keras.Input((SEQ,), name="mask")
    out = _PositionAndMask()([x, mask])
    out = keras.layers.Dense(4, name="head")(keras.layers.Flatten()(out))
    keras.utils.set_random_seed(0)
    return keras.Model({"x": x, "mask": mask}, out, name="broadcasts")


def _data(n=64):
    rng = np.random.default_rng(0)
    mask = (rng.random((n, SEQ)) < 0.8).astype("float32")
    mask[:, 0] = 1.0
    return {"x": rng.normal(size=(n, SEQ, WIDTH)).astype("float32"), "mask": mask}


def _ops(path_or_bytes):
    from ai_edge_litert.interpreter import Interpreter

    content = path_or_bytes
    if not isinstance(content, bytes):
        content = Path(content).read_bytes()
    it = Interpreter(model_content=content)
    return [d["op_name"] for d in it._get_ops_details()]


def _run(content, feats):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=1)
    n = len(next(iter(feats.values())))
    for d in it.get_input_details():
        it.resize_tensor_input(d["index"], [n, *d["shape"][1:]])
    it.allocate_tensors()
    for d in it.get_input_details():
        key = d["name"].replace("serving_default_", "").split(":")[0]
        it.set_tensor(d["index"], feats[key].astype(d["dtype"]))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, feats = _model(), _data()
    out = tmp_path_factory.mktemp("simplify")
    float_file = export_tflite(model, out / "float.tflite", None, parity_data=feats)
    int8_file = export_tflite(
        model,
        out / "int8.tflite",
        "int8",
        representative_data=tf.data.Dataset.from_tensor_slices(feats).batch(16),
        parity_data=feats,
        drift="ignore",
    )
    return model, feats, float_file, int8_file


def test_export_removes_every_broadcast_with_exact_parity(exported):
    model, feats, float_file, int8_file = exported
    for result in (float_file, int8_file):
        assert result.options["simplified"]["broadcast_to"] == 2
        ops = _ops(str(result.path))
        assert "BROADCAST_TO" not in ops
        assert "SHAPE" not in ops  # the shape computations went with them
    assert float_file.parity["max_abs_diff"] < 1e-5
    # parity against the unsimplified conversion of the same model: bit for bit, batch 1, 64
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    original = converter.convert()
    assert _ops(original).count("BROADCAST_TO") == 2
    simplified, counts = simplify_flatbuffer(original)
    assert counts["broadcast_to"] == 2 and _ops(simplified).count("BROADCAST_TO") == 0
    for n in (1, 64):
        batch = {k: v[:n] for k, v in feats.items()}
        np.testing.assert_array_equal(_run(original, batch), _run(simplified, batch))


def test_negligible_int8_add_is_removed_and_exact():
    """An int8 ADD of a constant far below one output step (the attention key bias) goes."""
    x = keras.Input((SEQ,), name="x")
    h = keras.layers.Dense(SEQ, use_bias=False, name="proj")(x)
    bias = tf.constant(np.full((2, SEQ // 2), 1e-7, "float32"))  # EinsumDense's: after a reshape
    h = keras.layers.Lambda(lambda t: tf.reshape(t, (-1, 2, SEQ // 2)) + bias)(h)
    out = keras.layers.Dense(2, name="head")(tf.transpose(h, (0, 2, 1)))
    keras.utils.set_random_seed(1)
    model = keras.Model(x, out)
    feats = {"x": np.random.default_rng(1).normal(size=(32, SEQ)).astype("float32")}
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([feats["x"][i : i + 1]] for i in range(32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    original = converter.convert()
    simplified, counts = simplify_flatbuffer(original)
    assert counts["negligible_add"] == 1
    assert _ops(simplified).count("ADD") == _ops(original).count("ADD") - 1
    key = next(iter(feats))
    run = {key: feats["x"]}
    np.testing.assert_allclose(_run(original, run), _run(simplified, run), atol=1e-6)


def test_a_broadcast_a_consumer_needs_is_kept():
    """A BROADCAST_TO read by a RESHAPE (its shape matters) stays; nothing else changes."""
    x = keras.Input((4,), name="x")
    b = keras.layers.Lambda(
        lambda t: tf.reshape(tf.broadcast_to(t[:, None, :], (tf.shape(t)[0], 3, 4)), (-1, 12))
    )(x)
    model = keras.Model(x, keras.layers.Dense(2)(b))
    original = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert "BROADCAST_TO" in _ops(original)
    simplified, counts = simplify_flatbuffer(original)
    assert counts == {"broadcast_to": 0, "negligible_add": 0, "dead_ops": 0}
    assert simplified == original


def test_bad_input_names_the_argument():
    with pytest.raises(TypeError, match="flatbuffer"):
        simplify_flatbuffer("model.tflite")
