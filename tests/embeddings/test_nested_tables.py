"""Tables nested in sub-models (TFRS-style towers): count_ids counts the ids each one sees,
prune_vocabulary prunes it inside a rebuilt tower (names like "tower/emb_item"), the pruned
model exports with LiteRT parity, and a nested table that cannot be handled says why."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import export
from tfcompress._keras import keras
from tfcompress._layers import iter_layers
from tfcompress.embeddings.frequency import count_ids
from tfcompress.embeddings.remap import BlockedIdRemap
from tfcompress.embeddings.vocabulary import (
    IdRemap,
    load_vocabulary,
    prune_vocabulary,
    save_vocabulary,
)

ITEMS = 160  # rows of the item table: the lookup's OOV index 0 + 159 keys
KEPT = 80  # rows 1..79 seen >= MIN_COUNT times in _train, and padding
KEYS = np.arange(1000, 1000 + ITEMS - 1)
MIN_COUNT = 3


def _outer(tower, item_dtype):
    item = keras.Input((2,), dtype=item_dtype, name="item")
    user = keras.Input((1,), dtype="int32", name="user")
    users = keras.layers.Flatten()(keras.layers.Embedding(6, 4, name="emb_user")(user))
    items = keras.layers.Flatten()(tower(item))
    x = keras.layers.Concatenate()([users, items])
    return keras.Model([item, user], keras.layers.Dense(1, name="head")(x))


def _lookup_tower():
    """TFRS's tower: Sequential([IntegerLookup, Embedding]), raw item keys in."""
    return keras.Sequential(
        [
            keras.layers.IntegerLookup(vocabulary=KEYS, name="lookup"),
            keras.layers.Embedding(ITEMS, 8, name="emb_item"),
        ],
        name="tower",
    )


def _plain_tower():
    return keras.Sequential([keras.layers.Embedding(ITEMS, 8, name="emb_item")], name="tower")


def _functional_tower():
    ids = keras.Input((2,), dtype="int32", name="tower_ids")
    rows = keras.layers.Embedding(ITEMS, 8, name="emb_item")(ids)
    out = keras.layers.Dense(4, name="proj")(keras.layers.Flatten()(rows))
    return keras.Model(ids, out, name="tower")


def _build(kind):
    keras.utils.set_random_seed(0)
    if kind == "lookup":
        return _outer(_lookup_tower(), "int64")
    return _outer(_plain_tower() if kind == "sequential" else _functional_tower(), "int32")


def _rows_seen(kind, items):
    """The ids the table sees: the lookup's index (1 + position, 0 for an unknown key)."""
    if kind != "lookup":
        return items
    return np.where(np.isin(items, KEYS), items - KEYS[0] + 1, 0)


def _batch(kind, rng, n=48, popular=None):
    rows = rng.integers(1, ITEMS, size=(n, 2)) if popular is None else popular[:n]
    if kind == "lookup":
        items = np.where(rows > 0, rows - 1 + KEYS[0], 5).astype("i8")  # row 0: an unknown key
    else:
        items = rows.astype("i4")
    return {"item": items, "user": rng.integers(0, 6, size=(n, 1)).astype("i4")}


def _train(kind):
    """Rows 1..79 seen 4 times, 80..119 once or twice (pruned at MIN_COUNT=3), 120.. never."""
    rng = np.random.default_rng(1)
    rows = np.concatenate([np.repeat(np.arange(1, KEPT), 4), np.arange(80, 120), np.arange(80, 90)])
    rng.shuffle(rows)
    rows = rows.reshape(-1, 2)  # 366 ids, 183 examples
    return [_batch(kind, rng, n=len(rows), popular=rows)]


@pytest.fixture(scope="module", params=["lookup", "sequential", "functional"])
def pruned(request):
    kind = request.param
    model = _build(kind)
    counts = count_ids(model, _train(kind))
    small, report = prune_vocabulary(model, counts, min_count=MIN_COUNT)
    return kind, model, counts, small, report


def test_count_ids_counts_the_ids_a_nested_table_sees(pruned):
    kind, model, counts, _, _ = pruned
    assert sorted(counts) == ["emb_user", "tower/emb_item"]
    data = _train(kind)[0]
    seen = _rows_seen(kind, data["item"]).ravel()
    np.testing.assert_array_equal(counts["tower/emb_item"], np.bincount(seen, minlength=ITEMS))
    assert counts["tower/emb_item"][1:KEPT].min() == 4 and counts["tower/emb_item"][120:].sum() == 0
    np.testing.assert_array_equal(counts["emb_user"], np.bincount(data["user"].ravel(), None, 6))


def test_prune_vocabulary_prunes_the_nested_table_and_keeps_the_outputs(pruned):
    kind, model, counts, small, report = pruned
    stats = report.settings["tables"]["tower/emb_item"]
    assert (stats["rows_before"], stats["rows_kept"], stats["oov_rows"]) == (ITEMS, KEPT, 1)
    assert stats["pruned_ids"] == ITEMS - KEPT
    assert report["tower/emb_item"].applied and [d.layer for d in report.applied] == [
        "tower/emb_item"
    ]
    # the tower is rebuilt around the remapped twin; its other layers keep their weights
    paths = {p: lyr for p, lyr in iter_layers(small)}
    assert isinstance(paths["tower/emb_item/emb_item_remap"], IdRemap)
    assert paths["tower/emb_item/emb_item_kept"].input_dim == KEPT + 1
    if kind == "functional":
        np.testing.assert_array_equal(
            paths["tower/proj"].get_weights()[0],
            model.get_layer("tower").get_layer("proj").get_weights()[0],
        )
    # every id: the original model whose pruned rows hold the OOV row (the weighted mean)
    table = model.get_layer("tower").get_layer("emb_item").get_weights()[0]
    weights = counts["tower/emb_item"].astype(float)
    oov = (table[KEPT:] * weights[KEPT:, None]).sum(0) / weights[KEPT:].sum()
    expected = table.copy()
    expected[KEPT:] = oov
    reference = _build(kind)
    reference.set_weights(model.get_weights())
    reference.get_layer("tower").get_layer("emb_item").set_weights([expected])
    batch = _batch(kind, np.random.default_rng(2))  # kept, pruned and unknown ids
    np.testing.assert_allclose(small(batch).numpy(), reference(batch).numpy(), atol=1e-6)
    kept = _batch(
        kind, np.random.default_rng(3), popular=np.random.default_rng(3).integers(1, KEPT, (48, 2))
    )
    np.testing.assert_allclose(small(kept).numpy(), model(kept).numpy(), atol=1e-6)
    assert not np.allclose(small(batch).numpy(), model(batch).numpy(), atol=1e-4)


def test_save_vocabulary_round_trip_names_the_nested_table(pruned, tmp_path):
    _, _, _, small, report = pruned
    mapping = report.settings["tables"]["tower/emb_item"]["mapping"]
    for source in (small, report):
        loaded = load_vocabulary(save_vocabulary(source, tmp_path / "vocab.npz"))
        assert list(loaded) == ["tower/emb_item"]
        np.testing.assert_array_equal(loaded["tower/emb_item"], mapping)


def test_pruned_nested_table_exports_with_litert_parity(pruned, tmp_path):
    kind, _, _, small, _ = pruned
    batch = _batch(kind, np.random.default_rng(4))
    if kind == "lookup":  # a hash table: no TFLite builtin op, and the export says so
        with pytest.raises(export.ConversionError, match=r"layer 'lookup' \(IntegerLookup\)"):
            export.export_tflite(small, tmp_path / "lookup.tflite")
        return
    result = export.export_tflite(
        small, tmp_path / "nested.tflite", embeddings="int8", parity_data=batch, drift="error"
    )
    # quantize_embeddings finds the smaller table inside the rebuilt tower
    assert "tower/emb_item/emb_item_kept" in result.options["embedding_tables"]
    (out,) = Interpreter(str(result.path)).get_signature_runner()(**batch).values()
    np.testing.assert_allclose(out, small(batch).numpy(), atol=0.02)


class _Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.emb = keras.layers.Embedding(ITEMS, 4, name="emb_hidden")

    def call(self, ids):
        return self.emb(ids)


def test_nested_tables_that_cannot_be_handled_are_reported_with_a_reason(caplog):
    ids = keras.Input((2,), dtype="int32", name="item")
    shared = keras.layers.Embedding(ITEMS, 4, name="emb_shared")
    left = keras.Sequential([shared], name="left")
    right = keras.Sequential([shared], name="right")
    hidden = _Subclassed(name="hidden")
    tower = keras.Sequential([keras.layers.Embedding(ITEMS, 4, name="emb_item")], name="tower")
    parts = [keras.layers.Flatten()(m(ids)) for m in (left, right, hidden, tower)]
    model = keras.Model(ids, keras.layers.Dense(1)(keras.layers.Concatenate()(parts)))
    data = [{"item": np.random.default_rng(0).integers(1, 20, (16, 2)).astype("i4")}]
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        counts = count_ids(model, data)
    assert sorted(counts) == ["tower/emb_item"]  # the others are logged, not counted
    assert "'hidden/emb_hidden' (Embedding) not counted: inside subclassed model" in caplog.text
    np.testing.assert_array_equal(
        counts["tower/emb_item"], np.bincount(data[0]["item"].ravel(), minlength=ITEMS)
    )
    small, report = prune_vocabulary(model, counts)
    assert [d.layer for d in report.applied] == ["tower/emb_item"]
    assert "shared by several sub-models (left/emb_shared, right/emb_shared)" in (
        report["left/emb_shared"].reason
    )
    assert report["hidden/emb_hidden"].reason.startswith("inside subclassed model 'hidden'")
    x = {"item": data[0]["item"][:4]}  # seen ids: unchanged outputs
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), atol=1e-6)


def test_nested_table_bad_inputs():
    model = _build("functional")
    counts = {"emb_user": np.ones(6)}
    with pytest.raises(ValueError, match=r"`tables` names \['tower/nope'\].*'tower/emb_item'"):
        prune_vocabulary(model, counts, tables="tower/nope")
    with pytest.raises(ValueError, match="no entry for table 'tower/emb_item'"):
        prune_vocabulary(model, counts, tables="tower/emb_item")
    same, report = prune_vocabulary(model, counts)  # counts from elsewhere: said, not raised
    assert same is model and report["tower/emb_item"].reason.startswith("no `counts` entry")
    with pytest.raises(
        ValueError, match=r"'tower/emb_item' \(Embedding in a sub-model\) reads id 999"
    ):
        count_ids(model, [{"item": np.array([[999, 1]]), "user": np.array([[0]])}])


def test_a_tower_called_twice_with_a_tower_inside_counts_both_calls_and_prunes_compactly(
    tmp_path,
):
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.layers.Embedding(ITEMS, 4, name="emb_deep")], name="inner")
    ids = keras.Input((None,), dtype="int32", name="tower_ids")
    pool = keras.layers.GlobalAveragePooling1D
    own = pool()(keras.layers.Embedding(ITEMS, 4, name="emb_item")(ids))
    tower = keras.Model(ids, keras.layers.Add()([own, pool()(inner(ids))]), name="tower")
    item = keras.Input((1,), dtype="int32", name="item")
    hist = keras.Input((3,), dtype="int32", name="history")
    both = keras.layers.Concatenate()([tower(item), tower(hist)])
    model = keras.Model([item, hist], keras.layers.Dense(1)(both))
    rng = np.random.default_rng(0)
    data = {"item": rng.integers(1, 40, (64, 1)), "history": rng.integers(1, 60, (64, 3))}
    counts = count_ids(model, [data])
    seen = np.bincount(np.r_[data["item"].ravel(), data["history"].ravel()], minlength=ITEMS)
    assert sorted(counts) == ["tower/emb_item", "tower/inner/emb_deep"]
    for path in counts:  # both calls of the tower, through both levels
        np.testing.assert_array_equal(counts[path], seen)
    small, report = prune_vocabulary(model, counts, min_count=2, compact_map=True)
    assert [d.layer for d in report.applied] == ["tower/emb_item", "tower/inner/emb_deep"]
    paths = dict(iter_layers(small))
    assert isinstance(paths["tower/inner/emb_deep/emb_deep_remap"], BlockedIdRemap)
    kept = np.flatnonzero(seen >= 2)
    x = {"item": rng.choice(kept, (8, 1)), "history": rng.choice(kept, (8, 3))}
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), atol=1e-6)
    assert sorted(load_vocabulary(save_vocabulary(small, tmp_path / "v.npz"))) == [
        "tower/emb_item",
        "tower/inner/emb_deep",
    ]
