"""detach_vocabulary beyond top-level pruned tables: remapped tables inside functional and
Sequential towers, and mixed-dimension tables (their id -> rank map moves beside the model:
the model reads ranks). Parity through LiteRT of detached(map[ids]) with model(ids), the map's
bytes gone from the file, and the tables that keep their map naming why."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import export
from tfcompress._keras import keras, tf
from tfcompress._layers import iter_layers
from tfcompress.embeddings.detach import detach_vocabulary
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding
from tfcompress.embeddings.remap import BlockedIdRemap, block_rank_bytes
from tfcompress.embeddings.vocabulary import IdRemap, prune_vocabulary
from tfcompress.models.layers import MaskedMean

ITEMS, USERS, DIM = 400, 6, 8


def _tower(kind):
    if kind == "sequential":
        return keras.Sequential([keras.layers.Embedding(ITEMS, DIM, name="emb_item")], name="tower")
    ids = keras.Input((None,), dtype="int32", name="tower_ids")
    rows = keras.layers.Embedding(ITEMS, DIM, name="emb_item")(ids)
    out = keras.layers.Dense(4, name="proj")(keras.layers.GlobalAveragePooling1D()(rows))
    return keras.Model(ids, out, name="tower")


def _model(kind):
    """An item tower read by the item id and a 3-id history, and a top-level user table."""
    keras.utils.set_random_seed(0)
    item = keras.Input((1,), dtype="int32", name="item")
    hist = keras.Input((3,), dtype="int32", name="hist")
    user = keras.Input((1,), dtype="int32", name="user")
    flat = keras.layers.Flatten
    users = flat()(keras.layers.Embedding(USERS, 4, name="emb_user")(user))
    if kind == "mixed":  # a top-level table shared by the item and the history
        emb = keras.layers.Embedding(ITEMS, DIM, name="emb_item")
        pooled = keras.layers.GlobalAveragePooling1D()(emb(hist))
        x = [flat()(emb(item)), pooled, users]
    else:
        tower = _tower(kind)
        x = [flat()(tower(item)), flat()(tower(hist)), users]
    out = keras.layers.Dense(1, name="head")(keras.layers.Concatenate()(x))
    return keras.Model([item, hist, user], out)


def _counts():
    counts = np.random.default_rng(0).zipf(1.4, ITEMS).astype(float)
    counts[ITEMS // 2 :] = 0  # half the ids never seen: pruned at min_count=1
    return counts


def _batch(n=32):
    rng = np.random.default_rng(3)
    return {
        "item": rng.integers(0, ITEMS, (n, 1)).astype("i4"),
        "hist": rng.integers(0, ITEMS, (n, 3)).astype("i4"),
        "user": rng.integers(0, USERS, (n, 1)).astype("i4"),
    }


def _litert(path, x):
    return next(iter(export.load_variant(path)(x).values()))


def _check_detached(small, detached, maps, tmp_path):
    """LiteRT parity of detached(maps[ids]) with small(ids); returns the two files."""
    x = _batch()
    rows = {k: maps[k][v] if k in maps else v for k, v in x.items()}
    expected = small.predict(x, verbose=0)
    np.testing.assert_allclose(detached.predict(rows, verbose=0), expected, atol=1e-6)
    with_map = export.export_tflite(small, tmp_path / "map.tflite", parity_data=x)
    without = export.export_tflite(detached, tmp_path / "rows.tflite", parity_data=rows)
    np.testing.assert_allclose(_litert(without.path, rows), expected, atol=1e-5)
    return with_map, without


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_tables_in_towers_detach_and_litert_keeps_the_outputs(kind, tmp_path):
    model = _model(kind)
    counts = {"tower/emb_item": _counts()}
    small, report = prune_vocabulary(
        model, counts, min_count=1, compact_map=True, tables=["tower/emb_item"]
    )
    assert [d.layer for d in report.applied] == ["tower/emb_item"]
    mapping = report.settings["tables"]["tower/emb_item"]["mapping"]
    detached, maps = detach_vocabulary(small)
    assert sorted(maps) == ["hist", "item"]  # the tower reads both: both take its map
    for name in maps:
        np.testing.assert_array_equal(maps[name], mapping)
    inner = [layer for _, layer in iter_layers(detached)]
    assert not any(isinstance(layer, (IdRemap, BlockedIdRemap)) for layer in inner)
    with_map, without = _check_detached(small, detached, maps, tmp_path)
    assert with_map.bytes - without.bytes >= ITEMS  # the uint8 offsets (+ bases) are gone


def test_mixed_table_map_moves_out_and_the_model_reads_ranks(tmp_path):
    from tfcompress.embeddings.mixed_dim import mixed_dimension_embeddings

    model = _model("mixed")
    small, _ = mixed_dimension_embeddings(
        model, {"emb_item": _counts()}, tables=["emb_item"], dims=(8, 2, 1)
    )
    layer = small.get_layer("emb_item")
    assert isinstance(layer, MixedDimEmbedding) and layer.id_map == "blocked"
    detached, maps = detach_vocabulary(small)
    assert sorted(maps) == ["hist", "item"]
    np.testing.assert_array_equal(maps["item"], layer.rank_map())
    twin = detached.get_layer("emb_item")
    assert isinstance(twin, MixedDimEmbedding) and twin.id_map == "none" and not twin.map_bytes()
    with_map, without = _check_detached(small, detached, maps, tmp_path)
    # the map's bytes (uint8 codes + int32 bases) and its ops left the file
    assert with_map.bytes - without.bytes >= block_rank_bytes(ITEMS, 3)
    shapes = {tuple(d["shape"]) for d in Interpreter(str(without.path)).get_tensor_details()}
    assert (ITEMS,) not in shapes
    # .keras round trip of the rank-reading layer
    detached.save(tmp_path / "ranks.keras")
    loaded = keras.models.load_model(tmp_path / "ranks.keras", safe_mode=True)
    x = {k: maps[k][v] if k in maps else v for k, v in _batch().items()}
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), detached.predict(x, verbose=0))


def test_tables_that_keep_their_map_say_why():
    # the lookup's output is no model input: nothing to detach, the error names the table
    keys = np.arange(1000, 1000 + ITEMS - 1)
    tower = keras.Sequential(
        [
            keras.layers.IntegerLookup(vocabulary=keys, name="lookup"),
            keras.layers.Embedding(ITEMS, DIM, name="emb_item"),
        ],
        name="tower",
    )
    item = keras.Input((1,), dtype="int64", name="item")
    model = keras.Model(item, keras.layers.Flatten()(tower(item)))
    small, _ = prune_vocabulary(
        model, {"tower/emb_item": _counts()}, min_count=1, tables=["tower/emb_item"]
    )
    with pytest.raises(ValueError, match=r"'tower/emb_item': it reads 'lookup' \(IntegerLookup"):
        detach_vocabulary(small)
    # an input also read by another layer: mapping it would change that layer
    ids = keras.Input((2,), dtype="int32", name="ids")
    emb = keras.layers.Embedding(ITEMS, DIM, name="emb")
    side = keras.layers.Dense(1, name="raw_dense")(
        keras.layers.Lambda(lambda t: tf.cast(t, "float32"))(ids)
    )
    x = keras.layers.Concatenate()([keras.layers.Flatten()(emb(ids)), side])
    shared = keras.Model(ids, x)
    small, _ = prune_vocabulary(shared, {"emb": _counts()}, min_count=1)
    with pytest.raises(ValueError, match=r"'emb': input 'ids' is also read by 'lambda.*Lambda"):
        detach_vocabulary(small)
    # a masked mixed table whose id 0 is not rank 0: the mask would read ranks
    hist = keras.Input((3,), dtype="int32", name="hist")
    emb2 = keras.layers.Embedding(ITEMS, DIM, mask_zero=True)
    emb2.build((None,))
    counts = _counts()
    counts[0] = 0  # padding never counted: id 0 in the last block
    mixed = MixedDimEmbedding.from_embedding(emb2, counts, (0.1, 0.9), (8, 2), name="mixed")
    assert mixed.rank_map()[0] != 0
    out = keras.layers.GlobalAveragePooling1D()(mixed(hist))
    with pytest.raises(ValueError, match=r"'mixed': mask_zero and id 0 has rank \d+"):
        detach_vocabulary(keras.Model(hist, out))
    # a masked mean reading the ids as its mask: fine only if the map keeps padding at 0
    emb3 = keras.layers.Embedding(ITEMS, DIM)
    emb3.build((None,))
    plain = MixedDimEmbedding.from_embedding(emb3, counts, (0.1, 0.9), (8, 2), name="plain")
    pooled = MaskedMean(name="pool")([plain(hist), hist])
    with pytest.raises(ValueError, match=r"'plain': input 'hist' is also read by 'pool'"):
        detach_vocabulary(keras.Model(hist, pooled))
    with pytest.raises(TypeError, match="model"):
        detach_vocabulary("model.keras")
