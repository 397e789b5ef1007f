"""Models nobody here wrote, at tfcompress' boundary (issue 17): a Model Garden
``BertClassifier`` distilled into a smaller one, and a TFRS two-tower retrieval model whose
towers are pruned / quantized and whose query tower is exported to TFLite."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before the third-party imports)
from tfcompress._keras import keras, tf
from tfcompress.distillation import Distiller, detect_output_kind

networks = pytest.importorskip("official.nlp.modeling.networks")
mg_models = pytest.importorskip("official.nlp.modeling.models")
tfrs = pytest.importorskip("tensorflow_recommenders")

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
