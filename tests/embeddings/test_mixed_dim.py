"""mixed_dimension_embeddings / MixedDimEmbedding: the frequency blocks, the SVD start, the
lookup in Keras and LiteRT, save/load, distillation fine-tune, the DCN's shared and padded
tables, bad input."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import data, export, models
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras, tf
from tfcompress.distillation import Distiller
from tfcompress.embeddings import count_ids
from tfcompress.embeddings.mixed_dim import (
    MixedDimEmbedding,
    frequency_blocks,
    mixed_dimension_embeddings,
    svd_init,
)

ROWS, DIM = 200, 8


def _model(seed=0):
    """A table of ROWS x DIM read by an id and a 5-id history (shared), trained-like rows."""
    keras.utils.set_random_seed(seed)
    item = keras.Input((1,), dtype="int32", name="item")
    hist = keras.Input((5,), dtype="int32", name="hist")
    emb = keras.layers.Embedding(ROWS, DIM, name="emb")
    pooled = keras.layers.GlobalAveragePooling1D()(emb(hist))
    x = keras.layers.Concatenate()([keras.layers.Flatten()(emb(item)), pooled])
    model = keras.Model([item, hist], keras.layers.Dense(1, name="out")(x))
    rng = np.random.default_rng(seed)
    # low-rank-ish rows, as trained tables are: 3 strong directions plus noise
    table = rng.normal(size=(ROWS, 3)) @ rng.normal(size=(3, DIM)) + 0.1 * rng.normal(
        size=(ROWS, DIM)
    )
    emb.set_weights([table.astype("float32")])
    return model


def _counts(seed=0):
    return {"emb": np.random.default_rng(seed).permutation(ROWS) * 3}  # distinct counts


def _ids(seed=1, n=64):
    rng = np.random.default_rng(seed)
    return {
        "item": rng.integers(0, ROWS, (n, 1)).astype("int32"),
        "hist": rng.integers(0, ROWS, (n, 5)).astype("int32"),
    }


def test_frequency_blocks_rank_ids_and_the_layer_reads_block_and_row_exactly():
    counts = np.array([0, 5, 9, 1, 9, 2])  # ties (9, 9) in id order
    positions, sizes = frequency_blocks(counts, [2, 1, 3])
    assert positions.tolist() == [5, 2, 0, 4, 1, 3] and sizes == [2, 1, 3]
    assert frequency_blocks(counts, (0.34, 0.16, 0.5))[1] == [2, 1, 3]
    assert frequency_blocks(np.arange(1000), (0.01, 0.09, 0.9))[1] == [10, 90, 900]
    layer = MixedDimEmbedding(6, 4, [2, 1, 3], [4, 2, 1], id_map="int32")  # any rank order
    layer.positions.assign(positions)
    tables = [np.arange(n * d, dtype="float32").reshape(n, d) + 10 * k
              for k, (n, d) in enumerate(zip([2, 1, 3], [4, 2, 1], strict=True))]  # fmt: skip
    for var, value in zip(layer.tables, tables, strict=True):
        var.assign(value)
    proj = [None, np.ones((2, 4), "float32"), np.full((1, 4), 2.0, "float32")]
    for var, value in zip(layer.projections[1:], proj[1:], strict=True):
        var.assign(value)
    out = layer(tf.constant(np.arange(6)[:, None])).numpy()[:, 0]
    expected = {  # id: (block, row)
        2: (0, 0), 4: (0, 1), 1: (1, 0), 5: (2, 0), 3: (2, 1), 0: (2, 2)
    }  # fmt: skip
    for i, (k, r) in expected.items():
        row = tables[k][r] if proj[k] is None else tables[k][r] @ proj[k]
        np.testing.assert_array_equal(out[i], row, err_msg=f"id {i}")
    np.testing.assert_array_equal(layer.dense_table(), out)
    # training gathers masked rows (sparse updates), inference padded tables: the same values
    ids = tf.constant(np.arange(6)[:, None])
    np.testing.assert_array_equal(layer(ids, training=True).numpy()[:, 0], out)
    # bytes: rows + projections (float32) + the int32 id -> rank map
    assert layer.table_bytes() == (2 * 4 + 1 * 2 + 3 * 1 + 2 * 4 + 1 * 4) * 4 + 6 * 4


def test_popular_block_copies_rows_and_svd_error_falls_with_width():
    model = _model()
    table = model.get_layer("emb").get_weights()[0]
    counts = _counts()
    errors = []
    for width in (1, 2, 3, 4, 8):
        new, report = mixed_dimension_embeddings(
            model, counts, blocks=(0.1, 0.9), dims=(DIM, width)
        )
        layer = new.get_layer("emb")
        popular = np.sort(np.argsort(-counts["emb"], kind="stable")[:20])  # in id order
        np.testing.assert_array_equal(layer.tables[0].numpy(), table[popular])
        np.testing.assert_array_equal(layer.dense_table()[popular], table[popular])
        errors.append(report.settings["tables"]["emb"]["init_error"])
        assert report.settings["tables"]["emb"]["blocks"] == [[20, DIM], [180, width]]
    assert all(b < a for a, b in pairwise(errors)) and errors[-1] < 1e-6
    assert errors[2] < 0.1  # rank-3 structure: width 3 already recovers it (noise 0.1)
    rows = np.random.default_rng(0).normal(size=(30, 6)).astype("float32")
    t, p = svd_init(rows, 6)
    np.testing.assert_allclose(t @ p, rows, atol=1e-5)


def test_shared_table_report_and_outputs_close_to_the_original():
    model = _model()
    new, report = mixed_dimension_embeddings(model, _counts(), dims=(8, 3, 3))
    layer = new.get_layer("emb")
    assert isinstance(layer, MixedDimEmbedding) and report.technique == "mixed_dimension"
    assert len(layer.inbound_nodes) == 2  # read by the id and the history: one table
    info = report.settings["tables"]["emb"]
    assert info["blocks"] == [[2, 8], [18, 3], [180, 3]]
    assert info["bytes_before"] == ROWS * DIM * 4
    # the id map: a uint8 code an id + 3 int32 bases per chunk of 85 ids (3 chunks)
    assert info["bytes_after"] == (2 * 8 + 198 * 3 + 2 * 3 * 8) * 4 + ROWS + 3 * 3 * 4
    assert report["emb"].applied and "6400 -> 2868 bytes" in report["emb"].detail
    # nothing shared with the original (a Distiller needs separate weights)
    assert not {id(v) for v in new.weights} & {id(v) for v in model.weights}
    x = _ids()
    np.testing.assert_allclose(new.get_layer("out").get_weights()[0],
                               model.get_layer("out").get_weights()[0])  # fmt: skip
    gap = np.abs(new.predict(x, verbose=0) - model.predict(x, verbose=0)).max()
    scale = np.abs(model.predict(x, verbose=0)).max()
    assert gap < 0.1 * scale


def test_tflite_parity_with_builtin_ops_and_keras_round_trip(tmp_path):
    new, _ = mixed_dimension_embeddings(_model(), _counts(), dims=(8, 2, 1))
    layer = new.get_layer("emb")
    config = layer.get_config()
    again = MixedDimEmbedding.from_config(config)
    assert again.get_config() == config
    new.save(tmp_path / "mixed.keras")
    loaded = keras.models.load_model(tmp_path / "mixed.keras", safe_mode=True)
    x = _ids()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), new.predict(x, verbose=0))
    result = export.export_tflite(new, tmp_path / "mixed.tflite", "float", drift="ignore")
    interpreter = Interpreter(str(result.path))
    interpreter.allocate_tensors()
    ops = [op["op_name"] for op in interpreter_ops(interpreter)]
    assert not [op for op in ops if "Flex" in op or "CUSTOM" in op.upper()]
    # inference: zero-padded block tables (constants), clamped indices: no mask ops; the
    # id map's CAST (uint8 code) and MUL (its base slot) once per call (item, hist)
    assert "FULLY_CONNECTED" in ops and not {"SHAPE", "EQUAL", "SELECT_V2"} & set(ops)
    assert ops.count("CAST") == ops.count("MUL") == 2
    out = next(iter(export.load_variant(result.path).predict(x).values()))
    np.testing.assert_allclose(out, new.predict(x, verbose=0), atol=1e-5)


@pytest.fixture(scope="module")
def dcn():
    task = data.load_task("ctr", n_samples=2000, seed=0, batch_size=128)
    keras.utils.set_random_seed(0)
    model = models.build("dcn", task.schema, size="student")
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.fit(task.train, epochs=2, verbose=0)
    return task, model, count_ids(model, task.train)


def test_dcn_padding_id_is_masked_and_distillation_closes_the_gap(dcn, tmp_path):
    task, teacher, counts = dcn
    student, report = mixed_dimension_embeddings(teacher, counts, dims=(8, 2, 1))
    assert sorted(d.layer for d in report.applied) == ["emb_item_brand", "emb_item_id",
                                                       "emb_user_id"]  # fmt: skip
    assert "min_rows=64" in report["emb_hour"].reason
    x, _ = next(iter(task.test))
    item = student.get_layer("emb_item_id")  # shared: item_id and hist_item_ids (0 = padding)
    assert (x["hist_item_ids"].numpy() == 0).any() and (x["item_id"].numpy() > 0).all()
    before = student.predict(x, verbose=0)
    rank = int(item.rank_map()[0])
    assert rank == 0  # padding is the most frequent id: the popular block, row 0
    item.tables[0].assign(tf.tensor_scatter_nd_update(item.tables[0], [[0]], [[50.0] * 8]))
    np.testing.assert_allclose(student.predict(x, verbose=0), before, atol=1e-6)
    # distillation from the original (tables trained, the rest frozen at the teacher's values)
    # moves the mixed model's outputs towards it (measured: 0.0080 -> 0.0063 mean |diff|)
    student, _ = mixed_dimension_embeddings(teacher, counts, dims=(8, 1, 1))
    for layer in student.layers:
        layer.trainable = isinstance(layer, MixedDimEmbedding)
    target = teacher.predict(task.test, verbose=0)
    start = np.abs(student.predict(task.test, verbose=0) - target).mean()
    keras.utils.set_random_seed(0)
    distiller = Distiller(student, teacher, student_loss_weight=0.0)
    distiller.compile(keras.optimizers.Adam(0.001))
    distiller.fit(task.train, epochs=2, verbose=0)
    assert np.abs(student.predict(task.test, verbose=0) - target).mean() < 0.9 * start
    result = export.export_tflite(
        student, tmp_path / "dcn.tflite", "float", parity_data=task.test, drift="error"
    )
    assert result.parity["max_abs_diff"] < 1e-5


def test_budget_sizes_widths_by_frequency_within_the_bytes():
    model = _model()
    counts = {"emb": (np.arange(ROWS)[::-1] ** 2).astype(np.int64)}
    _, report = mixed_dimension_embeddings(model, counts, blocks=(0.05, 0.15, 0.8), budget=0.4)
    info = report.settings["tables"]["emb"]
    widths = [d for _, d in info["blocks"]]
    assert widths[0] == DIM and widths == sorted(widths, reverse=True) and widths[-1] < DIM
    assert info["bytes_after"] <= 0.4 * info["bytes_before"]
    with pytest.raises(ValueError, match=r"cannot fit `budget`=0.05.*raise `budget`"):
        mixed_dimension_embeddings(model, counts, budget=0.05)


def test_bad_input_names_argument_and_fix():
    model = _model()
    counts = _counts()
    with pytest.raises(ValueError, match=r"`dims` \[2, 4, 1\] must be non-increasing"):
        mixed_dimension_embeddings(model, counts, dims=(2, 4, 1))
    with pytest.raises(ValueError, match=r"at most the table width 8"):
        mixed_dimension_embeddings(model, counts, dims=(16, 4, 1))
    with pytest.raises(ValueError, match=r"has 2 widths for 3 blocks"):
        mixed_dimension_embeddings(model, counts, dims=(8, 4))
    with pytest.raises(ValueError, match=r"sum to 150, the table has 200 rows"):
        mixed_dimension_embeddings(model, counts, blocks=[50, 100], dims=(8, 2))
    with pytest.raises(ValueError, match=r"must cover the vocabulary \(sum to 1\)"):
        mixed_dimension_embeddings(model, counts, blocks=(0.1, 0.5), dims=(8, 2))
    with pytest.raises(ValueError, match=r"\['nope'\], which are not Embedding layers.*\['emb'\]"):
        mixed_dimension_embeddings(model, counts, tables=["nope"])
    with pytest.raises(ValueError, match=r"no `counts` for table\(s\) \['emb'\]"):
        mixed_dimension_embeddings(model, {}, tables="emb")
    with pytest.raises(ValueError, match=r"`counts\['emb'\]` has shape \(10,\).*\(200,\)"):
        mixed_dimension_embeddings(model, {"emb": np.ones(10)})
    with pytest.raises(ValueError, match="not both"):
        mixed_dimension_embeddings(model, counts, dims=(8, 2, 1), budget=0.5)
    with pytest.raises(ValueError, match="`budget` must be"):
        mixed_dimension_embeddings(model, counts, budget=1.5)
    with pytest.raises(TypeError, match="`counts` must be a dict"):
        mixed_dimension_embeddings(model, [1, 2])
    with pytest.raises(TypeError, match="model"):
        mixed_dimension_embeddings("model", counts)
    # small tables are left alone by default, with the reason
    small, report = mixed_dimension_embeddings(model, counts, min_rows=500)
    assert not report.applied and "200 rows < min_rows=500" in report["emb"].reason
    assert not isinstance(small.get_layer("emb"), MixedDimEmbedding)


def test_mask_zero_and_sequential_models_keep_the_mask():
    model = keras.Sequential(
        [
            keras.Input((4,), dtype="int32"),
            keras.layers.Embedding(ROWS, DIM, mask_zero=True, name="emb"),
            keras.layers.GlobalAveragePooling1D(),  # masked mean: reads the Embedding's mask
            keras.layers.Dense(1, name="out"),
        ]
    )
    new, report = mixed_dimension_embeddings(model, _counts(), dims=(8, 8, 8))
    layer = new.get_layer("emb")
    assert isinstance(layer, MixedDimEmbedding) and layer.mask_zero and report["emb"].applied
    x = np.array([[3, 7, 0, 0], [5, 0, 0, 0]], "int32")
    np.testing.assert_array_equal(layer.compute_mask(tf.constant(x)).numpy(), x != 0)
    np.testing.assert_allclose(new.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_blocked_id_map_stores_each_blocks_ids_in_id_order_in_a_byte_an_id():
    from tfcompress.embeddings.remap import (
        block_rank_bytes,
        canonical_block_ranks,
        decode_block_ranks,
        encode_block_ranks,
    )

    rng = np.random.default_rng(0)
    for sizes in ([1000], [10, 990], [10, 90, 900], [3, 7, 90, 400, 500]):
        n = sum(sizes)
        ranked = np.searchsorted(np.cumsum(sizes), rng.permutation(n), side="right")
        positions = canonical_block_ranks(ranked, sizes)
        codes, bases = encode_block_ranks(positions, sizes)
        assert codes.dtype == np.uint8 and bases.dtype == np.int32
        assert codes.nbytes + bases.nbytes == block_rank_bytes(n, len(sizes))
        np.testing.assert_array_equal(decode_block_ranks(codes, bases, len(sizes)), positions)
        layer = MixedDimEmbedding(n, 4, sizes, [4] + [1] * (len(sizes) - 1))
        layer.set_rank_map(positions)
        np.testing.assert_array_equal(layer.rank_map(), positions)
        np.testing.assert_array_equal(  # the layer reads the rank it was given
            layer(tf.constant(np.arange(n)[:, None])).numpy()[:, 0], layer.dense_table()
        )
    assert block_rank_bytes(100_000, 3) == 114_124  # 1.14 bytes an id against 4
    layer = MixedDimEmbedding(6, 4, [2, 1, 3], [4, 2, 1], name="emb")
    assert layer.table_bytes() == (2 * 4 + 1 * 2 + 3 * 1 + 2 * 4 + 1 * 4) * 4 + 6 + 3 * 4
    # a rank order the blocked map cannot hold: the error names the layer and the fix
    with pytest.raises(ValueError, match=r"MixedDimEmbedding 'emb'.*id order.*id_map='int32'"):
        layer.set_rank_map([5, 2, 0, 4, 1, 3])
    with pytest.raises(ValueError, match=r"'emb'.*must have shape \(6,\), received \(3,\)"):
        layer.set_rank_map([0, 1, 2])
    with pytest.raises(ValueError, match=r"`id_map` must be one of \['blocked', 'int32', 'none'\]"):
        MixedDimEmbedding(6, 4, [2, 4], [4, 1], id_map="int16")
    ranks = MixedDimEmbedding(6, 4, [2, 4], [4, 1], id_map="none", name="ranks")
    assert not ranks.map_bytes() and ranks.rank_map().tolist() == list(range(6))
    with pytest.raises(ValueError, match=r"'ranks': with id_map='none' the layer reads ranks"):
        ranks.set_rank_map([1, 0, 2, 3, 4, 5])


def test_dcn_mixed_tables_detach_with_the_masked_mean_reading_the_history(dcn, tmp_path):
    from tfcompress.embeddings.detach import detach_vocabulary

    task, teacher, counts = dcn
    student, _ = mixed_dimension_embeddings(teacher, counts, dims=(8, 2, 1))
    detached, maps = detach_vocabulary(student)
    # the click history also feeds MaskedMean's mask: padding (the most frequent item id) has
    # rank 0 and every other id a rank > 0, so the mask is unchanged and the map moves out
    assert sorted(maps) == ["hist_item_ids", "item_brand", "item_id", "user_id"]
    np.testing.assert_array_equal(maps["item_id"], student.get_layer("emb_item_id").rank_map())
    assert detached.get_layer("emb_item_id").id_map == "none"
    x, _ = next(iter(task.test))
    x = {k: v.numpy() for k, v in x.items()}
    ranks = {k: maps[k][v] if k in maps else v for k, v in x.items()}
    expected = student.predict(x, verbose=0)
    np.testing.assert_array_equal(detached.predict(ranks, verbose=0), expected)
    # LiteRT: the same outputs, and the maps' bytes (~1.14 an id) out of the file
    with_map = export.export_tflite(student, tmp_path / "map.tflite", "float", drift="ignore")
    without = export.export_tflite(detached, tmp_path / "ranks.tflite", "float", drift="ignore")
    out = next(iter(export.load_variant(without.path).predict(ranks).values()))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    ids = sum(student.get_layer(f"emb_{n}").input_dim for n in ("user_id", "item_id", "item_brand"))
    assert with_map.bytes - without.bytes >= ids
