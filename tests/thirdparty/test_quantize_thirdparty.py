"""quantize() on models nobody here wrote (issue 17): Model Garden BERT (legacy lambda and gelu
encoders, BertClassifier), TFRS DCN-v2 Cross, custom layers holding Dense/EinsumDense sublayers,
and TFMOT errors re-raised with the layer's name."""

from __future__ import annotations

import numpy as np
import pytest

# installed by make/tox from requirements/third-party-models.txt: a missing one fails
import tensorflow_recommenders as tfrs
from official.nlp.modeling import models as bert_models
from official.nlp.modeling import networks
from tflite_tensors import constant_matrices

import tfcompress  # noqa: F401  (tests/conftest.py imported it first: tf_keras for Model Garden)
from tfcompress import export
from tfcompress._compat import quantized_weights
from tfcompress._keras import keras, tf
from tfcompress.quantization import load_quantized, quantize, register_layer
from tfcompress.quantization import qat as qat_module
from tfcompress.quantization import registry as qreg

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_sequence_length=16,
)
#: per block: query/key/value/output of the attention, then the FFN's two kernels
BLOCK_KERNELS = 6


def _bert_inputs(n=16, seed=0):
    ids = np.random.default_rng(seed).integers(1, 100, (n, 16)).astype("int32")
    return {"input_word_ids": ids, "input_mask": np.ones_like(ids), "input_type_ids": 0 * ids}


def _wrappers(model):
    """{layer name: number of weights its QAT wrapper fake-quantizes}, nested models included."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.update(_wrappers(layer))
        elif quantized_weights(layer):
            out[layer.name] = len(quantized_weights(layer))
    return out


@pytest.fixture(scope="module")
def legacy_classifier():
    """BertClassifier over the legacy encoder (default activation: a lambda) and its QAT copy."""
    keras.utils.set_random_seed(0)
    model = bert_models.BertClassifier(network=networks.BertEncoder(**TINY), num_classes=3)
    return model, quantize(model)


@pytest.fixture(scope="module")
def gelu_encoder():
    keras.utils.set_random_seed(1)
    model = networks.BertEncoder(inner_activation="gelu", **TINY)
    return model, quantize(model)


def _check_bert_report(report, prefix=""):
    for i in range(TINY["num_layers"]):
        block = report[f"{prefix}transformer/layer_{i}"]
        assert block.applied, block
        for kernel in ("_query_dense", "_key_dense", "_value_dense", "_output_dense"):
            assert f"_attention_layer.{kernel}.kernel" in block.detail
        assert "_intermediate_dense.kernel" in block.detail
        assert "LayerNormalization" in block.detail and "softmax float" in block.detail
    for table in ("word_embeddings", "position_embedding", "type_embeddings"):
        assert report[prefix + table].applied and "int8 table" in report[prefix + table].detail
    mask = next(d for d in report.decisions if d.class_name == "SelfAttentionMask")
    assert not mask.applied and "no weights" in mask.reason and "unknown" not in mask.reason
    assert not report[prefix + "embeddings/layer_norm"].applied


def test_legacy_bert_classifier_quantizes_blocks_and_tables(legacy_classifier):
    model, qat = legacy_classifier
    report = qat.compression_report
    _check_bert_report(report, prefix="bert_encoder/")
    assert report["sentence_prediction"].applied  # ClassificationHead: through its Dense
    wrapped = _wrappers(qat)
    for i in range(TINY["num_layers"]):
        assert wrapped[f"transformer/layer_{i}"] == BLOCK_KERNELS  # all, not 0 as before
    for table in ("word_embeddings", "position_embedding", "type_embeddings"):
        assert wrapped[table] == 1
    x = _bert_inputs(4)
    logits = qat(x, training=False).numpy()
    assert logits.shape == (4, 3)
    np.testing.assert_allclose(logits, model(x, training=False).numpy(), atol=0.5)


def test_gelu_bert_encoder_quantizes_without_a_raw_key_error(gelu_encoder):
    model, qat = gelu_encoder
    _check_bert_report(qat.compression_report)
    wrapped = _wrappers(qat)
    assert [wrapped[f"transformer/layer_{i}"] for i in range(2)] == [BLOCK_KERNELS] * 2
    assert sum(d.applied for d in qat.compression_report.decisions) == 8  # was 3


@pytest.mark.slow
def test_bert_classifier_qat_trains_saves_loads_and_exports_int8(tmp_path):
    keras.utils.set_random_seed(2)
    model = bert_models.BertClassifier(
        network=networks.BertEncoder(inner_activation="gelu", **TINY), num_classes=3
    )
    qat = quantize(model)
    x, y = _bert_inputs(32), np.arange(32) % 3
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in qat.trainable_weights]
    assert np.isfinite(qat.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"]).all()
    assert any(
        not np.array_equal(a, w.numpy()) for a, w in zip(before, qat.trainable_weights, strict=True)
    )
    qat.save(tmp_path / "qat.keras")
    # Model Garden does not register ClassificationHead: the error names it (and this fix)
    head = {"ClassificationHead": type(model.get_layer("sentence_prediction"))}
    again = load_quantized(tmp_path / "qat.keras", compile=False, custom_objects=head)
    np.testing.assert_allclose(again(x).numpy(), qat(x).numpy(), atol=1e-5)
    result = export.export_tflite(
        qat,
        tmp_path / "bert.tflite",
        "int8",
        representative_data=x,
        num_calibration_steps=16,
        parity_data=x,
    )
    assert result.parity["drift_flag"] is None, result.parity
    assert result.parity["max_abs_diff"] < 0.1
    matrices, _ = constant_matrices(result.path)
    assert set(matrices.values()) == {"int8"}, matrices


def _dcn(projection_dim):
    x = keras.Input((12,), name="x")
    x0 = keras.layers.Dense(12, name="proj")(x)
    c = tfrs.layers.dcn.Cross(projection_dim=projection_dim, name="cross_1")(x0, x0)
    c = tfrs.layers.dcn.Cross(projection_dim=projection_dim, name="cross_2")(x0, c)
    h = keras.layers.Dense(8, activation="relu", name="hidden")(c)
    return keras.Model(x, keras.layers.Dense(1, activation="sigmoid", name="out")(h))


@pytest.mark.parametrize(
    ("projection_dim", "kernels"), [(None, ["_dense"]), (4, ["_dense_u", "_dense_v"])]
)
def test_tfrs_cross_is_quantized_and_exports_int8(projection_dim, kernels, tmp_path):
    keras.utils.set_random_seed(3)
    qat = quantize(_dcn(projection_dim))
    for name in ("cross_1", "cross_2"):
        decision = qat.compression_report[name]
        assert decision.applied, decision
        assert all(f"{k}.kernel" in decision.detail for k in kernels)
        assert _wrappers(qat)[name] == len(kernels)
    data = np.random.default_rng(0).normal(size=(64, 12)).astype("float32")
    result = export.export_tflite(
        qat,
        tmp_path / "dcn.tflite",
        "int8",
        representative_data=data,
        num_calibration_steps=16,
        parity_data=data,
    )
    assert result.parity["drift_flag"] is None and result.parity["max_abs_diff"] < 0.05


class Block(keras.layers.Layer):
    """A user layer, not registered, holding Dense/EinsumDense/LayerNormalization sublayers."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.up = keras.layers.Dense(units, activation="relu")
        self.mix = keras.layers.EinsumDense("bi,ij->bj", output_shape=units)
        self.norm = keras.layers.LayerNormalization()

    def call(self, x):
        return self.norm(self.mix(self.up(x)))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _block_model():
    x = keras.Input((6,), name="x")
    return keras.Model(x, keras.layers.Dense(1, name="out")(Block(name="block")(x)))


@pytest.fixture
def restore_handlers():
    saved = dict(qreg._HANDLERS)
    yield
    qreg._HANDLERS.clear()
    qreg._HANDLERS.update(saved)


def test_custom_layer_is_quantized_through_its_sublayers(restore_handlers):
    with keras.utils.custom_object_scope({"Block": Block}):
        qat = quantize(_block_model())
        block = qat.compression_report["block"]
        assert block.applied
        assert "up.kernel" in block.detail and "mix.kernel" in block.detail
        assert "float: norm" in block.detail
        assert _wrappers(qat)["block"] == 2
        register_layer(Block, lambda layer, scheme: None)  # the user's rule wins
        again = quantize(_block_model())
    assert not again.compression_report["block"].applied
    assert "returned None" in again.compression_report["block"].reason


class Codec:
    """Not a Keras object: a layer holding one has no config Keras can re-create it from."""


class Unrebuildable(keras.layers.Layer):
    def __init__(self, codec, **kwargs):
        super().__init__(**kwargs)
        self.codec = codec
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)


def test_rebuild_failure_names_the_layer_and_chains_the_cause():
    x = keras.Input((4,))
    model = keras.Model(x, Unrebuildable(Codec(), name="odd")(keras.layers.Dense(4)(x)))
    with (
        keras.utils.custom_object_scope({"Unrebuildable": Unrebuildable}),
        pytest.raises(ValueError, match=r"(?s)layer 'odd' \(.*Unrebuildable\).*get_config") as info,
    ):
        quantize(model)
    assert info.value.__cause__ is not None


def test_a_raw_tfmot_key_error_becomes_a_value_error(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("name")

    monkeypatch.setattr(qat_module._qk, "quantize_apply", broken)
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2, name="d")(x), name="tiny")
    with pytest.raises(ValueError, match=r"model 'tiny'.*KeyError.*skip") as info:
        quantize(model)
    assert isinstance(info.value.__cause__, KeyError)


def test_weightless_custom_layer_is_reported_as_no_weights():
    class Double(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(1, name="d")(Double(name="double")(x)))
    with keras.utils.custom_object_scope({"Double": Double}):
        qat = quantize(model)
    reason = qat.compression_report["double"].reason
    assert "no weights" in reason and "unknown" not in reason
    assert tf.reduce_all(tf.math.is_finite(qat(tf.ones([2, 4]))))


def test_legacy_bert_qat_loads_with_its_lambda_and_says_so_without(legacy_classifier, tmp_path):
    model, qat = legacy_classifier
    qat.save(tmp_path / "legacy.keras")
    head = {"ClassificationHead": type(model.get_layer("sentence_prediction"))}
    with pytest.raises(ValueError, match=r"lambda activation.*custom_objects=\{'<lambda>': fn\}"):
        load_quantized(tmp_path / "legacy.keras", compile=False, custom_objects=head)
    approx_gelu = lambda x: keras.activations.gelu(x, approximate=True)  # noqa: E731
    again = load_quantized(
        tmp_path / "legacy.keras", compile=False, custom_objects={**head, "<lambda>": approx_gelu}
    )
    x = _bert_inputs(4)
    np.testing.assert_allclose(again(x).numpy(), qat(x).numpy(), atol=1e-5)


class Twice(keras.layers.Wrapper):
    """A user wrapper (like TFMOT's pruning wrapper): not quantized through what it wraps."""

    def call(self, x):
        return 2.0 * self.layer(x)


def test_a_wrapper_layer_is_not_quantized_through_the_layer_it_wraps():
    x = keras.Input((4,))
    twice = Twice(keras.layers.Dense(3, name="inner"), name="twice")
    model = keras.Model(x, keras.layers.Dense(1, name="d")(twice(x)))
    with keras.utils.custom_object_scope({"Twice": Twice}):
        qat = quantize(model)
    decision = qat.compression_report["twice"]
    assert not decision.applied and "strip it first" in decision.reason
    assert qat.compression_report["d"].applied
