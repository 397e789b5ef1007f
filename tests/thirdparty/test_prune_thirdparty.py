"""Pruning and shrinking of models nobody here wrote: Model Garden BERT and TFRS DCN (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

# installed by make/tox from requirements/third-party-models.txt: a missing one fails
import tensorflow_recommenders as tfrs
from official.nlp.modeling import models as mg_models
from official.nlp.modeling import networks

import tfcompress  # noqa: F401  (tests/conftest.py imported it first: tf_keras for Model Garden)
from tfcompress._keras import keras, tf
from tfcompress.pruning import prune, shrink, sparsity_report, strip

SEQ = 16
TABLES = ("word_embeddings", "position_embedding", "type_embeddings")


def _encoder() -> keras.Model:
    return networks.BertEncoder(
        vocab_size=100,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_sequence_length=SEQ,
        inner_activation="gelu",
        dict_outputs=True,
    )


def _bert_inputs(n: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "input_word_ids": rng.integers(0, 100, (n, SEQ)).astype(np.int32),
        "input_mask": np.ones((n, SEQ), np.int32),
        "input_type_ids": rng.integers(0, 2, (n, SEQ)).astype(np.int32),
    }


def _table_sparsity(model: keras.Model, name: str) -> float:
    (table,) = [w.numpy() for w in model.get_layer(name).weights]
    return float(np.mean(table == 0))


# ----------------------------------------------------------------- prune: embedding tables


@pytest.fixture(scope="module")
def pruned_encoder():
    tf.random.set_seed(0)
    encoder = _encoder()
    # the encoder's own graph, with its pooled output only (the tables are top-level layers)
    model = keras.Model(encoder.inputs, encoder.output["pooled_output"], name="bert_pooled")
    pruned = prune(model, 0.5)
    pruned.compile("adam", "mse")
    pruned.fit(_bert_inputs(8), np.zeros((8, 32), np.float32), batch_size=4, verbose=0)
    return pruned, strip(pruned)


def test_prune_bert_includes_embedding_tables(pruned_encoder):
    pruned, stripped = pruned_encoder
    report = pruned.compression_report
    for name in TABLES:
        decision = report[name]
        assert decision.applied, decision.reason
        assert decision.detail == "sparsity 0.50 on embeddings"
        assert "own `embeddings` table" in decision.reason
        assert _table_sparsity(stripped, name) == pytest.approx(0.5, abs=0.01)
    measured = sparsity_report(stripped)
    assert measured["word_embeddings"] == pytest.approx(0.5, abs=0.01)
    assert report["embeddings/layer_norm"].applied is False


# ----------------------------------------------------------------- shrink: heads and FFN units


def _blocks(model: keras.Model) -> list:
    found = []
    for layer in model.layers:
        if type(layer).__name__ == "TransformerEncoderBlock":
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += _blocks(layer)
    return found


def _zero_weak_half(model: keras.Model) -> None:
    """Zero head 1 and the upper half of the FFN units of every block (shrink drops those)."""
    for block in _blocks(model):
        for weight in block.weights:
            name = weight.name.split(":")[0]
            value = weight.numpy()
            if "/self_attention/" in name and "attention_output/bias" not in name:
                axis = 0 if "attention_output" in name or name.endswith("bias") else 1
                index = [slice(None)] * value.ndim
                index[axis] = slice(1, None)
                value[tuple(index)] = 0.0
            elif name.endswith(("intermediate/kernel", "intermediate/bias")):
                value[..., 32:] = 0.0
            elif name.endswith("/output/kernel"):
                value[32:] = 0.0
            weight.assign(value)


@pytest.fixture(scope="module")
def bert_classifier():
    tf.random.set_seed(0)
    classifier = mg_models.BertClassifier(_encoder(), num_classes=3, dropout_rate=0.0)
    classifier(_bert_inputs(2))
    _zero_weak_half(classifier)
    return classifier


def _check_halved(small: keras.Model, report_prefix: str = "") -> None:
    blocks = _blocks(small)
    assert len(blocks) == 2
    for block in blocks:
        config = block.get_config()
        assert (config["num_attention_heads"], config["inner_dim"], config["key_dim"]) == (
            1,
            32,
            16,
        )
        query = [w for w in block.weights if w.name.endswith("query/kernel:0")][0]
        assert tuple(query.shape) == (32, 1, 16)


def test_shrink_bert_classifier_halves_heads_and_inner_units(bert_classifier):
    small = shrink(bert_classifier, 0.5)
    _check_halved(small)
    assert small.count_params() < bert_classifier.count_params()
    x = _bert_inputs(8)
    # the removed heads and units were zero: the outputs are unchanged
    np.testing.assert_allclose(small(x), bert_classifier(x), atol=1e-5)
    report = small.compression_report
    rows = [d for d in report.decisions if d.class_name == "TransformerEncoderBlock"]
    assert [d.detail for d in rows] == ["heads 2 -> 1, inner_dim 64 -> 32"] * 2
    assert all(d.applied and "LayerNorms" in d.reason for d in rows)
    # keep all: the blocks skipped, the rebuilt classifier equals the original
    block_class = type(_blocks(bert_classifier)[0])
    same = shrink(bert_classifier, 0.5, skip=block_class)
    assert same.count_params() == bert_classifier.count_params()
    assert not [d for d in same.compression_report.decisions if d.applied]
    np.testing.assert_allclose(same(x), bert_classifier(x), atol=1e-6)
    small.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = small.fit(x, np.arange(8) % 3, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_shrink_functional_wrapper_around_bert_encoder():
    tf.random.set_seed(0)
    encoder = _encoder()
    inputs = {k: keras.Input((SEQ,), dtype=tf.int32, name=k) for k in _bert_inputs()}
    pooled = encoder(inputs)["pooled_output"]
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(pooled)
    wrapper = keras.Model(inputs, keras.layers.Dense(1, name="score")(hidden))
    _zero_weak_half(wrapper)
    small = shrink(wrapper, 0.5)
    _check_halved(small)
    assert small.get_layer("hidden").units == 8
    assert small.compression_report[encoder.name].applied
    x = _bert_inputs(4)
    assert small(x).shape == (4, 1)


# ----------------------------------------------------------------- shrink: TFRS DCN-v2


def _dcn() -> keras.Model:
    ids = [keras.Input((), dtype=tf.int32, name=f"f{i}") for i in range(2)]
    embedded = [keras.layers.Embedding(50, 8, name=f"emb{i}")(x) for i, x in enumerate(ids)]
    x0 = keras.layers.Concatenate(name="concat")(embedded)
    x1 = tfrs.layers.dcn.Cross(name="cross_full")(x0)
    x2 = tfrs.layers.dcn.Cross(projection_dim=8, name="cross_low")(x0, x1)
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(x2)
    return keras.Model(ids, keras.layers.Dense(1, name="score")(hidden), name="dcn_v2")


def _zero_weak_half_dcn(model: keras.Model) -> None:
    for name in ("emb0", "emb1"):
        table = model.get_layer(name).embeddings
        table.assign(tf.concat([table[:, :4], tf.zeros_like(table[:, 4:])], axis=1))
    u = model.get_layer("cross_low").weights[0]
    u.assign(tf.concat([u[:, :4], tf.zeros_like(u[:, 4:])], axis=1))
    hidden = model.get_layer("hidden")
    hidden.kernel.assign(tf.concat([hidden.kernel[:, :8], tf.zeros((16, 8))], axis=1))
    hidden.bias.assign(tf.concat([hidden.bias[:8], tf.zeros(8)], axis=0))


def test_shrink_through_tfrs_cross():
    tf.random.set_seed(0)
    model = _dcn()
    _zero_weak_half_dcn(model)
    small = shrink(model, 0.5)
    assert [small.get_layer(n).output_dim for n in ("emb0", "emb1")] == [4, 4]
    assert [tuple(w.shape) for w in small.get_layer("cross_full").weights] == [(8, 8), (8,)]
    low = small.get_layer("cross_low")
    assert low.get_config()["projection_dim"] == 4
    assert [tuple(w.shape) for w in low.weights] == [(8, 4), (4, 8), (8,)]
    assert small.get_layer("hidden").units == 8
    assert small.count_params() < model.count_params()
    report = small.compression_report
    assert report["cross_full"].detail == "channels 16 -> 8"
    assert report["cross_low"].detail == "channels 16 -> 8, projection_dim 8 -> 4"
    x = {"f0": np.arange(6, dtype=np.int32), "f1": np.arange(6, dtype=np.int32) * 7}
    # the removed dimensions, projections and units were zero: the outputs are unchanged
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)
    small.compile("adam", "mse")
    history = small.fit(x, np.ones((6, 1)), batch_size=6, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ----------------------------------------------------------------- errors name the layer


class _Scale(keras.layers.Layer):
    """A custom layer whose get_config forgets its constructor argument."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {"name": self.name}


def test_shrink_names_the_layer_whose_config_does_not_rebuild():
    x = keras.Input((4,))
    h = _Scale(2.0, name="scale")(keras.layers.Dense(8, name="h")(x))
    model = keras.Model(x, keras.layers.Dense(1, name="out")(h))
    with pytest.raises(ValueError, match=r"layers 'scale' \(_Scale\): TypeError"):
        shrink(model, 0.5)


def test_tfmot_wrapper_errors_name_the_layer():
    from tfcompress.pruning.schedule import FitSizedSchedule, PruneWrapper

    layer = _Scale(2.0, name="scale")  # no get_prunable_weights, not in TFMOT's registry
    with pytest.raises(ValueError, match=r"TFMOT could not wrap layer 'scale' \(_Scale\)"):
        PruneWrapper(layer, FitSizedSchedule(0.5))
