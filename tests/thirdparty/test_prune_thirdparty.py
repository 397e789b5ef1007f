"""Pruning and shrinking of models nobody here wrote: Model Garden BERT and TFRS DCN (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before the third-party imports)
from tfcompress._keras import keras, tf
from tfcompress.pruning import prune, sparsity_report, strip

networks = pytest.importorskip("official.nlp.modeling.networks")
mg_models = pytest.importorskip("official.nlp.modeling.models")
tfrs = pytest.importorskip("tensorflow_recommenders")

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
