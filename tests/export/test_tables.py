"""Tests of tfcompress.export.tables (``export_tflite(embeddings=...)`` storing the row tables
of ``QREmbedding``, ``HashedEmbedding`` and ``MixedDimEmbedding``), its registry, and the stored
twins of tfcompress.export.table_layers. Every parity is against a numpy reference built from
the original layer's float weights with the quantization module's row math, through LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tfcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF builds tf.keras)
from tfcompress import export
from tfcompress._keras import keras, tf
from tfcompress.embeddings.compositional import HashedEmbedding, QREmbedding, hash_ids
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding
from tfcompress.export.table_layers import (
    StoredHashedEmbedding,
    StoredMixedDimEmbedding,
    StoredQREmbedding,
)
from tfcompress.export.tables import (
    TableStorage,
    register_table_storage,
    registered_tables,
    store_tables,
    with_stored_tables,
)
from tfcompress.quantization.embedding import dequantize_rows, quantize_rows
from tfcompress.quantization.embedding_int4 import dequantize_rows_int4, quantize_rows_int4
from tfcompress.quantization.table_storage import (
    empty_table,
    fill_table,
    resolve_storage,
    storage_bytes,
    stored_table,
)

V, D, SEQ = 5000, 16, 4
STORAGES = ["int8_row", "int8", "int4", "int4_compact"]


def _dequantized(values: np.ndarray, storage: str) -> np.ndarray:
    """The float table ``storage`` serves for ``values``, from the quantization row math."""
    if storage == "float":
        return values
    if storage.startswith("int8"):
        return dequantize_rows(*quantize_rows(values, storage.removeprefix("int8_"))).numpy()
    scale_dtype = "codebook" if storage == "int4_compact" else "float16"
    return dequantize_rows_int4(*quantize_rows_int4(values, scale_dtype), values.shape[1])


def _stored_bytes(rows: int, dim: int, storage: str) -> int:
    """Bytes a ``rows x dim`` table takes in ``storage`` (codes and per-row parameters)."""
    half = (dim + 1) // 2
    return {
        "float": rows * dim * 4,
        "int8_row": rows * dim + 2 * rows,
        "int8_tensor": rows * dim + 2,
        "int4": rows * half + 4 * rows,
        "int4_compact": rows * half + rows + 1024,
    }[storage]


def _constant_bytes(path) -> int:
    """Bytes of every constant tensor of a .tflite file (tables, scales, weights)."""
    interpreter = Interpreter(str(path))
    total = 0
    for d in interpreter.get_tensor_details():
        try:
            total += interpreter.get_tensor(d["index"]).nbytes
        except ValueError:
            continue  # an activation, not a constant
    return total


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    ids = keras.Input((SEQ,), dtype="int32", name="ids")
    qr = QREmbedding(V, D, 64, name="qr")  # quotient 79 rows, remainder 64
    tiny = HashedEmbedding(V, 8, 40, name="tiny")  # 40 rows: left float
    hashed = HashedEmbedding(V, D, 2000, seed=3, name="hashed")
    emb = keras.layers.Embedding(V, D)
    emb.build((None,))
    counts = rng.zipf(1.3, V).astype(float)
    mixed = MixedDimEmbedding.from_embedding(emb, counts, [50, 950, 4000], [16, 8, 4], name="mixed")
    outs = [keras.layers.Flatten()(layer(ids)) for layer in (qr, tiny, hashed, mixed)]
    model = keras.Model(ids, keras.layers.Concatenate()(outs), name="tables")
    for layer in (qr, tiny, hashed):  # trained-like rows, not the initialisers' ones
        layer.set_weights([rng.normal(0, 0.1, w.shape).astype("f4") for w in layer.weights])
    return model


def _reference(model: keras.Model, ids: np.ndarray, mode: str) -> np.ndarray:
    """What the stored model serves, from the float layers' weights in numpy."""
    qr, tiny, hashed = (model.get_layer(n) for n in ("qr", "tiny", "hashed"))
    mixed = model.get_layer("mixed")

    def deq(values: np.ndarray) -> np.ndarray:
        rows, dim = values.shape
        return _dequantized(values, "float" if rows < 64 else resolve_storage(mode, dim))

    nonzero = (ids != 0)[..., None]
    q, r = deq(qr.quotient.numpy()), deq(qr.remainder.numpy())
    out_qr = q[ids // 64] * r[ids % 64] * nonzero
    out_tiny = tiny.table.numpy()[hash_ids(ids, 40, 0)] * nonzero
    out_hashed = deq(hashed.table.numpy())[hash_ids(ids, 2000, 3)] * nonzero
    parts = []
    for table, projection in zip(mixed.tables, mixed.projections, strict=True):
        rows = deq(table.numpy())
        parts.append(rows if projection is None else rows @ projection.numpy())
    out_mixed = np.concatenate(parts)[mixed.rank_map()][ids]
    outs = [o.reshape(len(ids), -1) for o in (out_qr, out_tiny, out_hashed, out_mixed)]
    return np.concatenate(outs, axis=1)


def _ids(n: int = 256) -> np.ndarray:
    ids = np.random.default_rng(1).integers(0, V, (n, SEQ)).astype("int32")
    ids[:8, 0] = 0  # padding reads zeros
    ids[8:16, 1] = V - 1
    return ids


@pytest.fixture(scope="module")
def float_export(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "float.tflite"
    return export.export_tflite(model, path, embeddings="float")


@pytest.mark.parametrize("mode", STORAGES)
def test_export_stores_the_row_tables_and_litert_serves_the_dequantized_rows(
    mode, model, float_export, tmp_path
):
    result = export.export_tflite(
        model, tmp_path / f"{mode}.tflite", embeddings=mode, drift="ignore"
    )
    tables = result.options["embedding_tables"]
    assert sorted(tables) == ["hashed", "mixed", "qr"]
    storage = resolve_storage(mode, D)
    assert "mixed_0" not in tables["mixed"]
    assert "table_0 51x16 float32 rows, 3264 bytes (< 64 rows: left" in tables["mixed"]
    assert tables["hashed"].startswith(f"HashedEmbedding: table 2000x16 {storage[:4]} rows")
    left = result.options["embedding_tables_left"]
    assert left == {
        "tiny": "HashedEmbedding: every row table stays float (40x8: < 64 rows: left to the "
        "converter)"
    }

    ids = _ids()
    out = next(iter(export.load_variant(result.path)({"ids": ids}).values()))
    np.testing.assert_allclose(out, _reference(model, ids, mode), rtol=0, atol=1e-6)
    # id 0 (position 0 of the first 8 examples) reads zeros in the QR and hashed tables
    widths = np.cumsum([0, SEQ * D, SEQ * 8, SEQ * D])
    for start, end in zip(widths[:-1], widths[1:], strict=True):
        per_id = out[:, start:end].reshape(len(ids), SEQ, -1)
        assert not per_id[:8, 0].any() and per_id[8:, 0].any()

    # the file shrinks by the stored tables' float bytes minus their stored bytes
    shapes = {"qr": [(79, D), (64, D)], "hashed": [(2000, D)]}
    shapes["mixed"] = [(950 + 2, 8), (4000 + 1, 4)]  # padded with zero rows; block 0 float
    saved = sum(
        _stored_bytes(rows, dim, "float") - _stored_bytes(rows, dim, resolve_storage(mode, dim))
        for parts in shapes.values()
        for rows, dim in parts
    )
    constants = _constant_bytes(float_export.path) - _constant_bytes(result.path)
    assert abs(constants - saved) <= 0.01 * saved, (constants, saved)
    # the file: the same, less the dequantize-after-gather ops (~2 KB a stored int4 table)
    assert 0.9 * saved <= float_export.bytes - result.bytes <= saved, (result.bytes, saved)


@pytest.mark.parametrize("mode", ["int8", "int4_compact"])
def test_stored_twins_round_trip_through_keras_files_and_keep_the_lookup(mode, model, tmp_path):
    stored, info = store_tables(model, mode)
    assert {type(stored.get_layer(n)) for n in ("qr", "hashed", "mixed")} == {
        StoredQREmbedding,
        StoredHashedEmbedding,
        StoredMixedDimEmbedding,
    }
    assert stored.get_layer("tiny") is model.get_layer("tiny")  # left float, shared
    assert stored.get_layer("mixed").storages == ["float", resolve_storage(mode, 8)] + [
        resolve_storage(mode, 4)
    ]
    ids = _ids(64)
    expected = stored(ids).numpy()
    np.testing.assert_allclose(expected, _reference(model, ids, mode), rtol=0, atol=1e-6)
    for name in ("qr", "hashed", "mixed"):  # the numpy lookup of each twin agrees too
        twin = stored.get_layer(name)
        got = stored.get_layer(name)(ids).numpy()
        np.testing.assert_allclose(twin.lookup(ids), got, rtol=0, atol=1e-6)
        assert not twin.trainable_weights
    stored.save(tmp_path / "stored.keras")
    loaded = keras.models.load_model(tmp_path / "stored.keras")
    for name in ("qr", "hashed", "mixed"):
        assert loaded.get_layer(name).get_config() == stored.get_layer(name).get_config()
    np.testing.assert_array_equal(loaded(ids).numpy(), expected)


def test_mask_zero_and_id_zero_are_kept_by_the_twins():
    qr = QREmbedding(1000, 4, 100, combine="concat", mask_zero=True, name="qr")
    hashed = HashedEmbedding(10**6, 4, 100, mask_zero=True, name="h")
    ids = tf.constant([[0, 5, 999]])
    for layer, cls, n in ((qr, StoredQREmbedding, 2), (hashed, StoredHashedEmbedding, 1)):
        layer(ids)
        twin = cls.from_layer(layer, ["int4"] * n)
        assert twin.mask_zero and twin.get_config()["mask_zero"]
        np.testing.assert_array_equal(twin.compute_mask(ids).numpy(), [[False, True, True]])
        out = twin(ids).numpy()
        assert not out[0, 0].any() and out[0, 1:].any()
    mixed = StoredMixedDimEmbedding(10, 4, [2, 8], [4, 1], mask_zero=True, storages=["float"] * 2)
    assert mixed.compute_mask(ids).numpy().tolist() == [[False, True, True]]


def test_table_storage_primitive_matches_the_row_math_and_checks_its_input():
    values = np.random.default_rng(2).normal(size=(70, 5)).astype("f4")
    for storage in ("float", "int8_row", "int8_tensor", "int4", "int4_compact"):
        layer = stored_table(values, storage, name="t")
        ids = np.array([[0, 69, 3]])
        np.testing.assert_array_equal(layer(ids).numpy(), _dequantized(values, storage)[ids])
        stored = sum(w.numpy().nbytes for w in layer.weights)
        assert stored == storage_bytes(70, 5, storage) == _stored_bytes(70, 5, storage)
    # a storage that would not be smaller stays float: int4 rows of one value take 5 bytes
    assert TableStorage("int4").storage_for(1000, 1) == "float"
    assert "int4 would not be smaller" in TableStorage("int4").float_reason(1000, 1)
    assert TableStorage("int4_compact").storage_for(1000, 1) == "int4_compact"  # 2 bytes
    assert resolve_storage("int8", 32) == "int8_row" and resolve_storage("int8", 31) == (
        "int8_tensor"
    )
    with pytest.raises(ValueError, match="`storage` must be one of"):
        stored_table(values, "int5", name="t")
    with pytest.raises(ValueError, match="`values` must be a 2-D"):
        stored_table(values[0], "int4", name="t")
    with pytest.raises(ValueError, match=r"holds a \(3, 5\) table, `values` has shape \(70, 5\)"):
        fill_table(empty_table(3, 5, "int8_row", name="t"), values)
    with pytest.raises(ValueError, match="`storages` must be a list of 2 storages"):
        StoredQREmbedding(100, 4, 10, storages=["int4"])
    with pytest.raises(ValueError, match="`mode` must be one of"):
        TableStorage("float")


class ScaledTable(keras.layers.Layer):
    """A user's table layer: ``2 * rows[id]``."""

    def __init__(self, n=1000, d=8, **kwargs):
        super().__init__(**kwargs)
        self.rows = self.add_weight(name="rows", shape=(n, d))

    def call(self, ids):
        return 2.0 * tf.gather(self.rows, ids)


class StoredScaled(keras.layers.Layer):
    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def call(self, ids):
        return 2.0 * self.table(ids)


class MyQR(QREmbedding):
    """A subclass nobody registered: its lookup may differ."""


def test_registry_takes_user_tables_rejects_bad_input_and_leaves_unknown_subclasses_float(
    tmp_path,
):
    with pytest.raises(TypeError, match=r"`layer_class` must be a keras.layers.Layer .*Dense"):
        register_table_storage(keras.layers.Dense(2), lambda layer, s: layer)
    with pytest.raises(TypeError, match=r"`layer_class` must be .*received <class 'int'>"):
        register_table_storage(int, lambda layer, s: layer)
    with pytest.raises(TypeError, match=r"`handler` for ScaledTable must be callable.*'nope'"):
        register_table_storage(ScaledTable, "nope")
    assert ScaledTable not in registered_tables()

    ids = keras.Input((2,), dtype="int32", name="ids")
    user, sub = ScaledTable(name="user"), MyQR(1000, 8, 100, name="sub")
    model = keras.Model(ids, keras.layers.Concatenate()([user(ids), sub(ids)]))
    user.set_weights([np.random.default_rng(3).normal(size=(1000, 8)).astype("f4")])
    register_table_storage(
        ScaledTable, lambda layer, s: StoredScaled(s.table(layer.rows.numpy(), "rows"))
    )
    assert ScaledTable in registered_tables()
    result = export.export_tflite(model, tmp_path / "m.tflite", embeddings="int8_row")
    assert list(result.options["embedding_tables"]) == ["user"]
    assert "rows 1000x8 int8 rows" in result.options["embedding_tables"]["user"]
    reason = result.options["embedding_tables_left"]["sub"]
    assert "MyQR is a subclass of QREmbedding" in reason and "register_table_storage" in reason
    x = np.random.default_rng(4).integers(1, 1000, (16, 2)).astype("int32")
    out = next(iter(export.load_variant(result.path)({"ids": x}).values()))
    rows = _dequantized(user.rows.numpy(), "int8_row")
    np.testing.assert_allclose(out[:, :, :8], 2.0 * rows[x], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[:, :, 8:], sub(x).numpy(), rtol=0, atol=1e-6)  # float

    register_table_storage(ScaledTable, lambda layer, s: 42)
    with pytest.raises(TypeError, match="table handler of ScaledTable returned int"):
        store_tables(model, "int4")


def test_nested_and_subclassed_models():
    inner_ids = keras.Input((1,), dtype="int32")
    inner = keras.Model(inner_ids, HashedEmbedding(10**5, 4, 500, name="h")(inner_ids), name="in")
    ids = keras.Input((1,), dtype="int32", name="ids")
    outer = keras.Model(ids, inner(ids))
    stored, info = store_tables(outer, "int4")
    assert list(info["embedding_tables"]) == ["in/h"]
    assert isinstance(stored.get_layer("in").get_layer("h"), StoredHashedEmbedding)
    assert store_tables(outer, "float") == (
        outer,
        {"embedding_tables": {}, "embedding_tables_left": {}},
    )

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.table = QREmbedding(1000, 4, 100, name="qr")

        def call(self, x):
            return self.table(x)

    sub = Sub()
    sub(np.ones((1, 1), "int32"))
    same, info = store_tables(sub, "int8")
    assert same is sub and "subclassed model" in info["embedding_tables_left"]["qr"]


def test_default_tables_of_the_quantized_modes_are_stored_too(model, tmp_path):
    # embeddings=None in "dynamic" means "int8" (tensor scale at width 16), as for Embedding
    result = export.export_tflite(model, tmp_path / "dynamic.tflite", "dynamic", drift="ignore")
    assert result.options["embeddings"] == "int8"
    assert sorted(result.options["embedding_tables"]) == ["hashed", "mixed", "qr"]
    assert "2000x16 int8 rows (one scale)" in result.options["embedding_tables"]["hashed"]
    ids = _ids(64)
    out = next(iter(export.load_variant(result.path)({"ids": ids}).values()))
    np.testing.assert_allclose(out, _reference(model, ids, "int8"), rtol=0, atol=1e-5)
    # the full-integer modes unpack int4 codes in int32 (exact under their converters)
    for mode, exact in (("int8", True), ("int16x8", True), ("float32", False)):
        prepared = {"embeddings": "int4", "embedding_tables": {}}
        stored, info = with_stored_tables(model, prepared, mode)
        assert stored.get_layer("hashed").tables[0].integer_unpack is exact
        assert sorted(info["embedding_tables"]) == ["hashed", "mixed", "qr"]


def _strip_id_map(src, dst) -> None:
    """A copy of the ``.keras`` file ``src`` whose config has no ``id_map`` key: what a file
    saved before the compact id map existed holds."""
    import json
    import zipfile

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "id_map"}
        return [strip(v) for v in node] if isinstance(node, list) else node

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                data = json.dumps(strip(json.loads(data))).encode()
            zout.writestr(item, data)


def test_mixed_id_map_takes_a_byte_an_id_in_the_file_and_old_int32_files_load(tmp_path):
    """``id_map="blocked"`` (uint8 codes + int32 bases) against the int32 map: the same rows
    through LiteRT, 4 * V - block_rank_bytes(V, 3) fewer bytes in the .tflite file; a .keras
    file of the int32 layout without ``id_map`` in its config loads with that layout."""
    from tfcompress.embeddings.remap import block_rank_bytes

    rng = np.random.default_rng(3)
    emb = keras.layers.Embedding(V, D)
    emb.build((None,))
    emb.set_weights([rng.normal(size=(V, D)).astype("f4")])
    counts = rng.zipf(1.3, V).astype(float)
    ids = _ids()
    results, outs, models = {}, {}, {}
    for id_map in ("int32", "blocked"):
        layer = MixedDimEmbedding.from_embedding(
            emb, counts, [50, 950, 4000], [16, 8, 4], name="mixed", id_map=id_map
        )
        inp = keras.Input((SEQ,), dtype="int32", name="ids")
        models[id_map] = keras.Model(inp, layer(inp))
        results[id_map] = export.export_tflite(
            models[id_map], tmp_path / f"{id_map}.tflite", embeddings="float"
        )
        outs[id_map] = next(iter(export.load_variant(results[id_map].path)({"ids": ids}).values()))
        np.testing.assert_allclose(outs[id_map], layer.dense_table()[ids], rtol=0, atol=1e-5)
    # the same lookup (block rows in id order instead of frequency order: the same SVD rows)
    np.testing.assert_allclose(outs["blocked"], outs["int32"], rtol=0, atol=1e-4)
    saved = 4 * V - block_rank_bytes(V, 3)  # 20,000 -> 5,708 bytes
    assert saved == 20_000 - 5_708
    constants = _constant_bytes(results["int32"].path) - _constant_bytes(results["blocked"].path)
    assert abs(constants - saved) <= 64, (constants, saved)
    # the file: the same less the map's extra ops (measured 14,292 -> 12,920 bytes)
    assert 0.85 * saved <= results["int32"].bytes - results["blocked"].bytes <= saved + 64
    dtypes = {
        (d["dtype"].__name__, tuple(d["shape"]))
        for d in Interpreter(str(results["blocked"].path)).get_tensor_details()
    }
    assert ("uint8", (V,)) in dtypes and ("int32", (V,)) not in dtypes
    # the stored twin keeps the layout, in .keras files too
    stored, _ = store_tables(models["blocked"], "int8")
    twin = stored.get_layer("mixed")
    assert twin.id_map == "blocked" and twin.map_bytes() == block_rank_bytes(V, 3)
    np.testing.assert_array_equal(twin.rank_map(), models["blocked"].get_layer("mixed").rank_map())
    # an int32-map file saved before `id_map` existed (no key in its config) still loads
    for name, model in (
        ("float", models["int32"]),
        ("stored", store_tables(models["int32"], "int8")[0]),
    ):
        model.save(tmp_path / f"{name}.keras")
        _strip_id_map(tmp_path / f"{name}.keras", tmp_path / f"{name}_old.keras")
        old = keras.models.load_model(tmp_path / f"{name}_old.keras", safe_mode=True)
        assert old.get_layer("mixed").id_map == "int32"
        np.testing.assert_array_equal(old(ids).numpy(), model(ids).numpy())
