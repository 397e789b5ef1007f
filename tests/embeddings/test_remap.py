"""BlockedIdRemap (prune_vocabulary(compact_map=True)): the same mapping in ~1 byte an id, the
same outputs in Keras, .keras and LiteRT, and the mapping file unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import export
from tfcompress._keras import keras, tf
from tfcompress.embeddings.remap import (
    BLOCK,
    BlockedIdRemap,
    blocked_map_bytes,
    encode_blocked,
)
from tfcompress.embeddings.vocabulary import (
    load_vocabulary,
    prune_vocabulary,
    save_vocabulary,
    vocabulary_mapping,
)

IDS = 3000


def _model():
    keras.utils.set_random_seed(0)
    item = keras.Input((1,), dtype="int32", name="item")
    hist = keras.Input((4,), dtype="int32", name="history")
    table = keras.layers.Embedding(IDS, 8, mask_zero=True, name="emb_item")
    x = keras.layers.Concatenate()(
        [
            keras.layers.Flatten()(table(item)),
            keras.layers.GlobalAveragePooling1D()(table(hist)),
        ]
    )
    model = keras.Model([item, hist], keras.layers.Dense(1, name="head")(x))
    rng = np.random.default_rng(0)
    table.set_weights([rng.normal(size=(IDS, 8)).astype("f4")])
    return model


def _counts(seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.zipf(1.4, size=IDS).astype(np.int64).clip(max=10**6)
    counts[rng.random(IDS) < 0.3] = 0
    return {"emb_item": counts}


def _batch(n=64, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "item": rng.integers(1, IDS, size=(n, 1)).astype("i4"),
        "history": np.where(rng.random((n, 4)) < 0.3, 0, rng.integers(1, IDS, size=(n, 4))).astype(
            "i4"
        ),
    }


@pytest.mark.parametrize("buckets", [1, 3])
def test_encode_round_trips_prune_vocabularys_mapping(buckets):
    mapping, kept = vocabulary_mapping(_counts()["emb_item"], min_count=2, oov_buckets=buckets)
    offsets, bases = encode_blocked(mapping, kept + 1, buckets)
    assert offsets.dtype == np.uint8 and bases.dtype == np.int32
    assert bases.shape == (-(-IDS // BLOCK),)
    layer = BlockedIdRemap(IDS, kept + 1, buckets)
    layer.set_mapping(mapping)
    np.testing.assert_array_equal(layer.mapping(), mapping)
    got = layer(tf.constant(np.arange(IDS)[None])).numpy()[0]
    np.testing.assert_array_equal(got, mapping)


def test_compact_map_same_outputs_quarter_of_the_map_bytes(tmp_path):
    model, counts = _model(), _counts()
    plain, plain_report = prune_vocabulary(model, counts, min_count=2)
    small, report = prune_vocabulary(model, counts, min_count=2, compact_map=True)
    stats, plain_stats = report.settings["tables"]["emb_item"], plain_report.settings["tables"]
    table_bytes = stats["rows_kept"] * 8 * 4 + stats["oov_rows"] * 8 * 4
    assert plain_stats["emb_item"]["bytes_after"] - table_bytes == 4 * IDS
    assert stats["bytes_after"] - table_bytes == blocked_map_bytes(IDS) == IDS + 4 * 12
    assert isinstance(small.get_layer("emb_item").layers[0], BlockedIdRemap)
    batch = _batch()
    np.testing.assert_array_equal(small.predict(batch, verbose=0), plain.predict(batch, verbose=0))
    # the mapping file and the .keras file see the same mapping
    save_vocabulary(small, tmp_path / "v.npz")
    np.testing.assert_array_equal(load_vocabulary(tmp_path / "v.npz")["emb_item"], stats["mapping"])
    small.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again.predict(batch, verbose=0), small.predict(batch, verbose=0))
    # LiteRT runs it with builtin ops, equal to the Keras model, and the file is smaller
    files = {}
    for name, m in (("plain", plain), ("compact", small)):
        files[name] = export.export_tflite(m, tmp_path / f"{name}.tflite", drift="ignore").path
    runner = Interpreter(str(files["compact"])).get_signature_runner()
    out = next(iter(runner(**batch).values()))
    np.testing.assert_allclose(out, small.predict(batch, verbose=0), atol=1e-6)
    size = {k: v.stat().st_size for k, v in files.items()}
    assert size["plain"] - size["compact"] > 0.7 * (4 * IDS - blocked_map_bytes(IDS))


def test_bad_input():
    with pytest.raises(ValueError, match="oov_row"):
        BlockedIdRemap(10, oov_row=0)
    layer = BlockedIdRemap(4, oov_row=3)
    with pytest.raises(ValueError, match="4 non-negative"):
        layer.set_mapping(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="layout"):  # a pruned id off its OOV row
        layer.set_mapping(np.array([0, 1, 3, 5]))
    with pytest.raises(ValueError, match="layout"):  # rows too far apart within a block
        encode_blocked(np.r_[0, 300, np.full(10, 400)], oov_row=400)
    with pytest.raises(TypeError, match="compact_map"):
        prune_vocabulary(_model(), _counts(), compact_map="yes")
