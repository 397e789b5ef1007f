"""Models nobody here wrote, at tfcompress' boundary (issue 17): a Model Garden
``BertClassifier`` distilled into a smaller one, and a TFRS two-tower retrieval model whose
towers are pruned / quantized and whose query tower is exported to TFLite."""

from __future__ import annotations

import numpy as np
import pytest

# installed by make/tox from requirements/third-party-models.txt: a missing one fails
import tensorflow_recommenders as tfrs
from ai_edge_litert.interpreter import Interpreter
from official.nlp.modeling import models as mg_models
from official.nlp.modeling import networks

import tfcompress  # noqa: F401  (tests/conftest.py imported it first: tf_keras for Model Garden)
from tfcompress._keras import keras, tf
from tfcompress.distillation import Distiller, detect_output_kind

SEQ = 16


def _classifier(hidden: int, layers: int, name: str) -> keras.Model:
    encoder = networks.BertEncoder(
        vocab_size=100,
        hidden_size=hidden,
        num_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_sequence_length=SEQ,
        inner_activation="gelu",
    )
    return mg_models.BertClassifier(encoder, num_classes=3, name=name)


def _bert_inputs(n: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "input_word_ids": rng.integers(0, 100, (n, SEQ)).astype(np.int32),
        "input_mask": np.ones((n, SEQ), np.int32),
        "input_type_ids": rng.integers(0, 2, (n, SEQ)).astype(np.int32),
    }


def test_distiller_takes_a_bert_classifier_head_as_logits(caplog):
    tf.random.set_seed(0)
    teacher = _classifier(64, 2, "teacher")
    student = _classifier(32, 1, "student")
    # ClassificationHead: a tanh pooler dense inside, a linear out_proj -> logits out
    assert detect_output_kind(teacher) == "logits"
    with caplog.at_level("INFO", logger="tfcompress"):
        distiller = Distiller(student, teacher, temperature=2.0)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Distiller:")]
    assert "student 'student' output logits" in line
    assert "teacher 'teacher' output logits" in line
    assert "activation linear via 'out_proj'" in line and "tanh" not in line
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,  # one step: tracing two BERTs would cost more than the step
    )
    x, y = _bert_inputs(8), np.arange(8) % 3
    before = [w.numpy().copy() for w in student.trainable_weights]
    history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loss = history.history["loss"][0]
    assert np.isfinite(loss) and loss > 0
    after = student.trainable_weights
    changed = sum(not np.array_equal(a, w.numpy()) for a, w in zip(before, after, strict=True))
    assert changed > 0  # the student learned; the teacher's weights are frozen


# ------------------------------------------------- TFRS two-tower: compress the towers


def _tower(name: str, vocab: int) -> keras.Model:
    ids = keras.Input((1,), dtype="int32", name=f"{name}_id")
    x = keras.layers.Flatten()(keras.layers.Embedding(vocab, 8, name=f"{name}_emb")(ids))
    x = keras.layers.Dense(16, activation="relu", name=f"{name}_hidden")(x)
    return keras.Model(ids, keras.layers.Dense(8, name=f"{name}_out")(x), name=f"{name}_tower")


class TwoTower(tfrs.Model):
    """The TFRS retrieval pattern: functional towers as attributes, compute_loss on a task."""

    def __init__(self, query: keras.Model, candidate: keras.Model) -> None:
        super().__init__()
        self.query_model = query
        self.candidate_model = candidate
        self.task = tfrs.tasks.Retrieval()  # in-batch softmax

    def compute_loss(self, features, training=False):
        return self.task(
            self.query_model(features["user_id"]), self.candidate_model(features["item_id"])
        )


def test_tfrs_two_tower_towers_are_pruned_quantized_and_exported(tmp_path):
    from tfcompress.export import export_tflite
    from tfcompress.pruning import PruningCallback, prune, strip
    from tfcompress.quantization import quantize

    tf.random.set_seed(0)
    query = prune(_tower("user", 50), 0.5, schedule="constant", steps=1)
    candidate = quantize(_tower("item", 40))
    assert {d.layer for d in query.compression_report.applied} == {
        "user_emb",
        "user_hidden",
        "user_out",
    }
    assert {d.layer for d in candidate.compression_report.applied} >= {"item_hidden", "item_out"}
    model = TwoTower(query, candidate)
    model.compile(optimizer=keras.optimizers.Adagrad(0.1), run_eagerly=True)  # one step
    rng = np.random.default_rng(0)
    features = {
        "user_id": rng.integers(0, 50, (16, 1)).astype("int32"),
        "item_id": rng.integers(0, 40, (16, 1)).astype("int32"),
    }
    history = model.fit(
        tf.data.Dataset.from_tensor_slices(features).batch(16),
        epochs=1,
        verbose=0,
        callbacks=[PruningCallback()],
    )
    assert np.isfinite(history.history["loss"][0])

    stripped = strip(query)
    for name in ("user_emb", "user_hidden", "user_out"):
        kernel = stripped.get_layer(name).weights[0].numpy()
        assert abs(float(np.mean(kernel == 0)) - 0.5) < 0.05, name
    ids = features["user_id"]
    np.testing.assert_allclose(stripped(ids).numpy(), query(ids).numpy(), atol=1e-6)
    result = export_tflite(stripped, tmp_path / "query.tflite", parity_data=ids)
    assert result.parity["max_abs_diff"] < 1e-5
    interpreter = Interpreter(str(result.path))  # LiteRT, as the runtime loads it
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], ids.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], ids)
    interpreter.invoke()
    np.testing.assert_allclose(
        interpreter.get_tensor(out["index"]), stripped(ids).numpy(), atol=1e-5
    )


def test_a_bert_classifier_file_that_cannot_rebuild_names_the_class(tmp_path):
    from tfcompress.recipe.model_files import load_model_file

    path = tmp_path / "bert.keras"
    _classifier(32, 1, "clf").save(path)
    # Model Garden's BertClassifier.from_config gets its encoder as a dict ("'dict' object has
    # no attribute 'inputs'"): named, with what to do, instead of the raw AttributeError
    with pytest.raises(ValueError) as info:
        load_model_file(path, ["official.nlp.modeling"])
    message = str(info.value)
    assert message.startswith(
        f"MODEL {str(path)!r}: tf_keras could not rebuild class BertClassifier (module "
        "official.nlp.modeling.models.bert_classifier) from the config the file holds "
        "(AttributeError: 'dict' object has no attribute 'inputs')."
    )
    assert "load_weights" in message
    assert isinstance(info.value.__cause__, AttributeError)
