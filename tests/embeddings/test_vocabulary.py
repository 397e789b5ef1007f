"""prune_vocabulary: exact mappings, kept ids unchanged, pruned ids to OOV rows, shared tables
with masked pooling, the mapping file, LiteRT parity and int8/int4 tables after pruning."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import export
from tfcompress._keras import keras, tf
from tfcompress._layers import iter_layers
from tfcompress.embeddings.remap import BlockedIdRemap
from tfcompress.embeddings.vocabulary import (
    IdRemap,
    detach_vocabulary,
    load_vocabulary,
    prune_vocabulary,
    save_vocabulary,
    vocabulary_mapping,
)

ITEMS = 200


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    item = keras.Input((1,), dtype="int32", name="item")
    hist = keras.Input((4,), dtype="int32", name="history")
    user = keras.Input((1,), dtype="int32", name="user")
    items = keras.layers.Embedding(ITEMS, 8, mask_zero=True, name="emb_item")
    users = keras.layers.Embedding(5, 2, name="emb_user")
    x = keras.layers.Concatenate()(
        [
            keras.layers.Flatten()(items(item)),
            keras.layers.GlobalAveragePooling1D()(items(hist)),  # masked mean: padding 0
            keras.layers.Flatten()(users(user)),
        ]
    )
    out = keras.layers.Dense(1, activation="sigmoid", name="head")(x)
    model = keras.Model([item, hist, user], out)
    rng = np.random.default_rng(seed)
    items.set_weights([rng.normal(size=(ITEMS, 8)).astype("f4")])
    return model


def _counts():
    item = np.zeros(ITEMS, np.int64)
    item[0] = 50  # padding: always kept
    item[1:100] = np.arange(1, 100) % 7 + 3  # >= 3: kept with min_count=3
    item[100:150] = 1  # pruned, seen
    # 150..199: never seen, pruned
    return {"emb_item": item, "emb_user": np.array([0, 4, 4, 4, 4])}


def _batch(rng, n=32, low=1, high=ITEMS):
    return {
        "item": rng.integers(low, high, size=(n, 1)).astype("i4"),
        "history": np.where(
            rng.random((n, 4)) < 0.3, 0, rng.integers(low, high, size=(n, 4))
        ).astype("i4"),
        "user": rng.integers(0, 5, size=(n, 1)).astype("i4"),
    }


@pytest.fixture(scope="module")
def pruned():
    model = _model()
    small, report = prune_vocabulary(model, _counts(), min_count=3)
    return model, small, report


def test_mapping_is_exact_for_known_counts():
    counts = np.array([0, 5, 1, 0, 9, 2, 7])
    mapping, kept = vocabulary_mapping(counts, min_count=2)
    assert kept == 4 and mapping.tolist() == [0, 1, 5, 5, 2, 3, 4]
    mapping, kept = vocabulary_mapping(counts, min_count=2, oov_buckets=2)
    assert mapping.tolist() == [0, 1, 5, 6, 2, 3, 4]  # 2 % 2 -> row 5, 3 % 2 -> row 6
    mapping, kept = vocabulary_mapping(counts, min_count=1, max_ids=2)
    assert kept == 2 and mapping.tolist() == [0, 3, 3, 3, 1, 3, 2]  # ids 4 and 6 most frequent


def test_report_and_shared_table_with_masked_pooling(pruned):
    model, small, report = pruned
    stats = report.settings["tables"]["emb_item"]
    assert (stats["rows_before"], stats["rows_kept"], stats["oov_rows"]) == (200, 100, 1)
    assert stats["pruned_ids"] == 100
    assert stats["bytes_before"] == 200 * 8 * 4
    assert stats["bytes_after"] == 101 * 8 * 4 + 200 * 4
    counts = _counts()["emb_item"]
    assert stats["pruned_impression_share"] == pytest.approx(50 / counts[1:].sum())
    assert report["emb_user"].reason == "nothing to prune: every id is kept"
    assert [d.layer for d in report.applied] == ["emb_item"]
    # one nested table, read by both inputs; the user table is the original layer
    table = small.get_layer("emb_item")
    assert isinstance(table, keras.Sequential) and len(table.inbound_nodes) >= 2
    assert type(table.get_layer("emb_item_kept")) is keras.layers.Embedding
    assert table.get_layer("emb_item_kept").input_dim == 101
    users = small.get_layer("emb_user")  # a copy with the same weights, not shared
    assert users is not model.get_layer("emb_user")
    np.testing.assert_array_equal(
        users.get_weights()[0], model.get_layer("emb_user").get_weights()[0]
    )
    assert sum(isinstance(lyr, IdRemap) for lyr in table.layers) == 1


def test_kept_ids_are_unchanged_and_pruned_ids_read_the_oov_row(pruned):
    model, small, report = pruned
    rng = np.random.default_rng(1)
    kept = _batch(rng, low=1, high=100)  # kept ids and padding in the history
    np.testing.assert_allclose(small.predict(kept, verbose=0), model(kept).numpy(), atol=1e-6)
    original = model.get_layer("emb_item").get_weights()[0]
    counts = _counts()["emb_item"].astype(float)
    expected = (original[100:150] * counts[100:150, None]).sum(0) / counts[100:150].sum()
    lookup = small.get_layer("emb_item")
    rows = lookup(np.array([[120, 199, 0, 5]])).numpy()[0]
    np.testing.assert_allclose(rows[0], expected, atol=1e-5)
    np.testing.assert_allclose(rows[1], expected, atol=1e-5)  # unseen ids share the row too
    np.testing.assert_allclose(rows[2], original[0])  # padding keeps its own row
    np.testing.assert_allclose(rows[3], original[5])
    pooled = keras.layers.GlobalAveragePooling1D()(lookup(tf.constant([[0, 3]])))  # masked
    np.testing.assert_allclose(pooled.numpy()[0], original[3], atol=1e-6)


def test_mapping_file_round_trip_and_keras_file(pruned, tmp_path):
    _, small, report = pruned
    path = save_vocabulary(small, tmp_path / "sub" / "vocab.npz")
    loaded = load_vocabulary(path)
    assert list(loaded) == ["emb_item"]
    np.testing.assert_array_equal(
        loaded["emb_item"], report.settings["tables"]["emb_item"]["mapping"]
    )
    assert loaded["emb_item"].dtype == np.int32
    save_vocabulary(report, path)  # from the report, over the file
    assert sorted(p.name for p in path.parent.iterdir()) == ["vocab.npz"]  # no temp file left
    small.save(tmp_path / "small.keras")
    again = keras.models.load_model(tmp_path / "small.keras")
    batch = _batch(np.random.default_rng(2))
    np.testing.assert_allclose(again.predict(batch, verbose=0), small.predict(batch, verbose=0))


def _litert(path, batch):
    runner = Interpreter(str(path)).get_signature_runner()
    return runner(**batch)


@pytest.mark.parametrize("embeddings", ["float", "int8", "int4"])
def test_export_parity_through_litert_and_int8_int4_tables_compose(pruned, embeddings, tmp_path):
    model, small, _ = pruned
    batch = _batch(np.random.default_rng(3))
    result = export.export_tflite(
        small, tmp_path / "p.tflite", embeddings=embeddings, parity_data=batch, drift="error"
    )
    if embeddings == "float":
        assert result.options["embedding_tables"] == {}
    else:  # the smaller table (101 rows >= 64) is found inside the nested model and quantized
        assert list(result.options["embedding_tables"]) == ["emb_item/emb_item_kept"]
    outputs = _litert(result.path, batch)
    (tflite,) = outputs.values()
    keras_out = small.predict(batch, verbose=0)
    tol = {"float": 1e-5, "int8": 0.02, "int4": 0.05}[embeddings]
    np.testing.assert_allclose(tflite, keras_out, atol=tol)
    assert result.parity["max_abs_diff"] <= tol


def _op_count(path):
    return len(Interpreter(str(path))._get_ops_details())  # noqa: SLF001 - test-only count


@pytest.mark.parametrize("compact_map", [False, True])
def test_detached_model_reads_rows_and_drops_the_map_from_the_file(compact_map, tmp_path):
    model = _model()
    small, report = prune_vocabulary(model, _counts(), min_count=3, compact_map=compact_map)
    detached, maps = detach_vocabulary(small)
    # the shared item table is read by two inputs: both get its map; emb_user was not pruned
    assert sorted(maps) == ["history", "item"]
    expected = report.settings["tables"]["emb_item"]["mapping"]
    for name in maps:
        np.testing.assert_array_equal(maps[name], expected)
    inner = [layer for _, layer in iter_layers(detached)]
    assert not any(isinstance(layer, (IdRemap, BlockedIdRemap)) for layer in inner)
    assert detached.get_layer("emb_item").layers[0].input_dim == expected.max() + 1
    batch = _batch(np.random.default_rng(3))  # no fully padded history (its mean is NaN)
    rows = {k: maps[k][v] if k in maps else v for k, v in batch.items()}
    np.testing.assert_allclose(
        detached.predict(rows, verbose=0), small.predict(batch, verbose=0), atol=1e-6
    )
    # in LiteRT: the same outputs, the map's bytes and ops gone from the file
    with_map = export.export_tflite(small, tmp_path / "map.tflite", parity_data=batch)
    without = export.export_tflite(detached, tmp_path / "rows.tflite", parity_data=rows)
    (out,) = _litert(without.path, rows).values()
    np.testing.assert_allclose(out, small.predict(batch, verbose=0), atol=1e-5)
    map_bytes = 200 + 4 if compact_map else 4 * ITEMS
    assert with_map.bytes - without.bytes >= map_bytes
    assert _op_count(without.path) < _op_count(with_map.path)


def test_detach_vocabulary_bad_inputs():
    model = _model()
    with pytest.raises(ValueError, match="no table whose id map can move out.*no IdRemap"):
        detach_vocabulary(model)
    with pytest.raises(TypeError, match="model"):
        detach_vocabulary("m.keras")
    # a remapped table that reads a computed tensor keeps its map, and says why
    ids = keras.Input((2,), dtype="int32", name="ids")
    shifted = keras.layers.Lambda(lambda t: t + 1, name="shift")(ids)
    emb = keras.layers.Embedding(50, 4, name="emb")
    computed = keras.Model(ids, keras.layers.Flatten()(emb(shifted)))
    counts = {"emb": np.r_[0, np.full(10, 5), np.zeros(39)]}
    pruned_model, _ = prune_vocabulary(computed, counts, min_count=2)
    with pytest.raises(ValueError, match=r"'emb': it reads 'shift' \(Lambda\), not a model input"):
        detach_vocabulary(pruned_model)


def test_bad_inputs():
    model = _model()
    with pytest.raises(ValueError, match=r"`tables` names \['nope'\]"):
        prune_vocabulary(model, _counts(), tables="nope")
    with pytest.raises(ValueError, match="min_count"):
        prune_vocabulary(model, _counts(), min_count=0)
    with pytest.raises(ValueError, match="oov_buckets"):
        prune_vocabulary(model, _counts(), oov_buckets=0)
    with pytest.raises(ValueError, match="no entry for table 'emb_user'"):
        prune_vocabulary(model, {"emb_item": _counts()["emb_item"]})
    with pytest.raises(ValueError, match=r"counts\['emb_item'\].*200 ids.*\(199,\)"):
        prune_vocabulary(model, {**_counts(), "emb_item": np.ones(199)})
    with pytest.raises(TypeError, match="counts"):
        prune_vocabulary(model, [1, 2])
    with pytest.raises(TypeError, match="model"):
        prune_vocabulary("m.keras", _counts())
    with pytest.raises(ValueError, match="end in '.npz'"):
        save_vocabulary(model, "/tmp/v.json")
    with pytest.raises(ValueError, match="no pruned table"):
        save_vocabulary(model, "/tmp/tfc_unused_vocab.npz")
    with pytest.raises(FileNotFoundError):
        load_vocabulary("/tmp/tfc_no_such_vocab.npz")


def test_tables_left_alone_say_why():
    model = _model()
    small, report = prune_vocabulary(
        model, {"emb_item": _counts()["emb_item"]}, tables=["emb_item", "head"]
    )
    assert report["head"].reason == "not a keras.layers.Embedding"
    assert report["emb_user"].reason == "not in `tables`"
    assert report["emb_item"].applied
    same, report = prune_vocabulary(model, _counts(), tables="emb_user")
    assert same is model and not report.applied


def test_dcn_item_table_shared_with_the_masked_history_prunes_and_exports(tmp_path):
    from tfcompress import data, models
    from tfcompress.embeddings import count_ids, table_inputs

    task = data.load_task("ctr", n_samples=600, seed=0, batch_size=128)
    keras.utils.set_random_seed(0)
    model = models.build("dcn", task.schema, size="student")  # untrained: parity is the point
    counts = count_ids(model, task.train)
    feeds = table_inputs(model)["emb_item_id"]
    assert len(feeds) == 2 and any(f.startswith("hist_") for f in feeds)  # item + history
    small, report = prune_vocabulary(model, counts, min_count=2, tables="emb_item_id")
    assert [d.layer for d in report.applied] == ["emb_item_id"]
    stats = report.settings["tables"]["emb_item_id"]
    assert stats["bytes_after"] < stats["bytes_before"] and stats["pruned_ids"] > 0
    # kept ids (and the padding the MaskedMean pooling skips) give the original outputs
    kept_ids = np.flatnonzero((stats["mapping"] > 0) & (stats["mapping"] < stats["rows_kept"]))
    features = {k: v.numpy() for k, v in next(iter(task.train))[0].items()}
    for feed in feeds:
        ok = np.isin(features[feed], kept_ids) | (features[feed] == 0)
        features[feed] = np.where(
            ok, features[feed], 0 if feed.startswith("hist_") else kept_ids[0]
        )
    np.testing.assert_allclose(small(features).numpy(), model(features).numpy(), atol=1e-6)
    result = export.export_tflite(small, tmp_path / "dcn.tflite", parity_data=task.test)
    assert result.parity["max_abs_diff"] < 1e-5
