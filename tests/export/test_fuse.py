"""Tests of tfcompress.export.fuse: the fused embedding front end (one GATHER per table width,
pooling as a sum over zero padding rows) and ``export_tflite(fuse_embeddings=...)``."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import data, export, models
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras, tf
from tfcompress.export.fuse import fusable_tables, fuse_embeddings, fuse_for_export
from tfcompress.export.fuse_layers import FusedGatherIds
from tfcompress.export.manifest import read_manifest
from tfcompress.models.layers import MaskedMean


def _gathers(path):
    """(rows, dim) of the table each GATHER of the file reads."""
    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    return sorted(
        tuple(int(s) for s in details[op["inputs"][0]]["shape"])
        for op in interpreter_ops(interpreter)
        if op["op_name"] == "GATHER"
    )


@pytest.fixture(scope="module")
def dcn():
    task = data.load_task("ctr", n_samples=400, seed=0, batch_size=64)
    keras.utils.set_random_seed(0)
    model = models.dcn(task.schema, size="tiny")
    features = next(iter(task.test.unbatch().batch(256)))[0]
    features = {k: v.numpy() for k, v in features.items()}
    features["hist_item_ids"][:3] = 0  # fully padded histories: a zero vector, never NaN
    return task, model, features


def _user_model():
    """Two width-4 tables (one shared by a categorical and a sequence input), one width-6 table,
    a mask_zero table, a table read by a computed tensor, a nested model's table, a raw use."""
    a = keras.Input((1,), dtype="int32", name="a")
    seq = keras.Input((3,), dtype="int32", name="seq")
    b = keras.Input((2,), dtype="int32", name="b")
    c = keras.Input((1,), dtype="int32", name="c")
    m = keras.Input((3,), dtype="int32", name="m")
    items = keras.layers.Embedding(50, 4, name="items")
    other = keras.layers.Embedding(50, 4, name="other")
    wide = keras.layers.Embedding(20, 6, name="wide")
    masked = keras.layers.Embedding(10, 4, mask_zero=True, name="masked")
    computed = keras.layers.Embedding(10, 4, name="computed")
    inner_in = keras.Input((1,), dtype="int32")
    inner = keras.Model(
        inner_in, keras.layers.Flatten()(keras.layers.Embedding(9, 4, name="inner")(inner_in))
    )
    parts = [
        keras.layers.Flatten(name="flat_a")(items(a)),
        keras.layers.Flatten(name="flat_b")(other(b)),  # (batch, 2) categorical: 8 values
        MaskedMean(name="pool_seq")([items(seq), seq]),
        keras.layers.GlobalAveragePooling1D(name="gap_seq")(other(seq)),  # a raw use
        keras.layers.Flatten(name="flat_c")(wide(c)),
        keras.layers.GlobalAveragePooling1D(name="gap_m")(masked(m)),
        keras.layers.Flatten(name="flat_comp")(computed(keras.layers.Maximum()([c, c]))),
        inner(c),
    ]
    x = keras.layers.Concatenate(name="all")(parts)
    model = keras.Model([a, seq, b, c, m], keras.layers.Dense(1, name="out")(x), name="user")
    rng = np.random.default_rng(0)
    batch = {
        "a": rng.integers(0, 50, (64, 1)),
        "seq": rng.integers(0, 50, (64, 3)) * (rng.random((64, 3)) > 0.4),
        "b": rng.integers(0, 50, (64, 2)),
        "c": rng.integers(0, 9, (64, 1)),
        "m": rng.integers(0, 10, (64, 3)),
    }
    batch["seq"][:4] = 0
    return model, {k: v.astype("int32") for k, v in batch.items()}


def test_fuse_dcn_is_one_table_with_exact_math(dcn):
    _, model, features = dcn
    fused, report = fuse_embeddings(model)
    assert sorted(d.layer for d in report.applied) == sorted(
        layer.name for layer in model.layers if isinstance(layer, keras.layers.Embedding)
    )
    assert not report.skipped
    tables = [layer for layer in fused.layers if isinstance(layer, keras.layers.Embedding)]
    rows = sum(
        layer.input_dim for layer in model.layers if isinstance(layer, keras.layers.Embedding)
    )
    assert [(t.name, t.input_dim) for t in tables] == [("fused_embedding", rows + 1)]
    assert not np.any(tables[0].get_weights()[0][-1])  # the zero row padding ids read
    want = model(features).numpy()
    for pooling in ("sum", "matmul"):
        got = fuse_embeddings(model, pooling=pooling)[0](features).numpy()
        assert np.abs(got - want).max() <= 1e-5, pooling
    assert "rows 0-" in report[report.applied[0].layer].detail


def test_export_fuses_by_default_to_one_gather_with_parity(dcn, tmp_path):
    task, model, features = dcn
    plain = export.export_tflite(model, tmp_path / "plain.tflite", fuse_embeddings=False)
    fused = export.export_tflite(model, tmp_path / "fused.tflite", parity_data=task.test)
    record = fused.options["fused_embeddings"]
    assert plain.options["fused_embeddings"] is None
    assert record["auto"] is True and len(record["tables"]) == 9 and not record["left_alone"]
    manifest = read_manifest(tmp_path / "manifest.json")
    assert manifest["artifacts"]["fused.tflite"]["options"]["fused_embeddings"] == record
    rows = sum(
        layer.input_dim for layer in model.layers if isinstance(layer, keras.layers.Embedding)
    )
    assert _gathers(fused.path) == [(rows + 1, 4)]  # one GATHER where there were 13
    assert len(_gathers(plain.path)) == 13
    assert fused.parity["max_abs_diff"] <= 1e-5
    want = model(features).numpy().reshape(-1)
    got = export.load_variant(fused.path).predict(features)
    assert np.abs(next(iter(got.values())).reshape(-1) - want).max() <= 1e-5


def test_user_model_fuses_what_it_can_and_says_why_not(tmp_path):
    model, batch = _user_model()
    assert fusable_tables(model) == ["items", "other"]
    fused, report = fuse_embeddings(model)
    assert [d.layer for d in report.applied] == ["items", "other"]
    reasons = {d.layer: d.reason for d in report.skipped}
    assert set(reasons) == {"wide", "masked", "computed", "inner"}
    assert "only lookup of width 6" in reasons["wide"]
    assert "mask_zero=True" in reasons["masked"]
    assert "not a model input" in reasons["computed"] and "Maximum" in reasons["computed"]
    assert "nested model" in reasons["inner"]
    assert "items" not in [layer.name for layer in fused.layers]
    assert np.abs(fused(batch).numpy() - model(batch).numpy()).max() <= 1e-5
    result = export.export_tflite(
        model, tmp_path / "u.tflite", fuse_embeddings=True, parity_data=batch
    )
    # the fused width-4 table (50 + 50 rows + the zero row) once; the others untouched
    assert _gathers(result.path) == [(9, 4), (10, 4), (10, 4), (20, 6), (101, 4)]
    assert result.options["fused_embeddings"]["left_alone"] == reasons
    got = export.load_variant(result.path).predict(batch)
    want = model(batch).numpy()
    assert np.abs(next(iter(got.values())) - want).max() <= 1e-5


def test_fused_table_composes_with_int8_and_int4_rows(dcn, tmp_path):
    task, model, _ = dcn
    rows = sum(
        layer.input_dim for layer in model.layers if isinstance(layer, keras.layers.Embedding)
    )
    for tables in ("int8_row", "int4"):
        result = export.export_tflite(
            model,
            tmp_path / f"{tables}.tflite",
            embeddings=tables,
            fuse_embeddings=True,
            parity_data=task.test,
            drift="error",
        )
        assert list(result.options["embedding_tables"]) == ["fused_embedding"]
        assert result.options["fused_embeddings"]["auto"] is False
        assert result.parity["max_abs_diff"] < 0.02
        interpreter = Interpreter(str(result.path))
        dtypes = {
            np.dtype(d["dtype"]).name
            for d in interpreter.get_tensor_details()
            if len(d["shape"]) == 2 and d["shape"][0] == rows + 1
        }
        assert dtypes & {"int8", "uint8"}, dtypes


def test_auto_rules_and_saving(dcn, tmp_path):
    _, model, features = dcn
    for mode, tables, fused in [
        ("float32", None, True),
        ("float16", None, True),
        ("dynamic", None, False),  # int8 row tables by default: opt in with True
        ("dynamic", "float", True),
        ("int8", None, False),
        ("int16x8", "float", False),
        ("qat", None, False),
    ]:
        _, record = fuse_for_export(model, None, mode, tables)
        assert (record is not None) == fused, (mode, tables)
    assert fuse_for_export(model, False, "float32") == (model, None)
    # lookups alone fused (no masked mean) measured no faster: auto leaves them, True fuses
    a, b = keras.Input((1,), dtype="int32", name="a"), keras.Input((1,), dtype="int32", name="b")
    flat = [keras.layers.Flatten()(keras.layers.Embedding(9, 2)(x)) for x in (a, b)]
    flat_only = keras.Model([a, b], keras.layers.Concatenate()(flat))
    assert fuse_for_export(flat_only, None, "float32") == (flat_only, None)
    assert fuse_for_export(flat_only, True, "float32")[1]["auto"] is False
    new, _ = fuse_embeddings(model)
    new.save(tmp_path / "fused.keras")
    loaded = keras.models.load_model(tmp_path / "fused.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(features).numpy(), new(features).numpy(), atol=1e-6)


def test_bad_input(dcn, tmp_path):
    _, model, _ = dcn
    with pytest.raises(TypeError, match="model"):
        fuse_embeddings("not a model")
    with pytest.raises(ValueError, match="`pooling` must be one of"):
        fuse_embeddings(model, pooling="mean")
    seq = keras.Sequential([keras.Input((2,), dtype="int32"), keras.layers.Embedding(5, 2)])
    with pytest.raises(ValueError, match="Sequential model"):
        fuse_embeddings(seq)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed model"):
        fuse_embeddings(Sub())
    with pytest.raises(TypeError, match="`fuse_embeddings` must be True, False or None"):
        export.export_tflite(model, tmp_path / "x.tflite", fuse_embeddings="yes")
    ids = keras.Input((1,), dtype="int32", name="ids")
    one = keras.Model(ids, keras.layers.Flatten()(keras.layers.Embedding(5, 2, name="t")(ids)))
    with pytest.raises(
        ValueError, match=r"no embedding tables to fuse: 't' \(Embedding\) the only"
    ):
        export.export_tflite(one, tmp_path / "one.tflite", fuse_embeddings=True)
    assert not (tmp_path / "one.tflite").exists()
    assert fuse_embeddings(one)[0] is one  # nothing to fuse: the model itself
    assert tf.is_tensor(one(np.zeros((1, 1), "int32")))


def test_rows_in_int32_for_full_integer_exports_match_the_float_rows(dcn):
    _, model, features = dcn
    fused, record = fuse_for_export(model, True, "int8")
    layer = next(x for x in fused.layers if isinstance(x, FusedGatherIds))
    assert layer.integer_rows is True and record["auto"] is False
    ids = [features[t.name] for t in layer.input]
    ids[-1] = ids[-1].copy()
    ids[-1][:2] = -3  # negative ids count as padding in MaskedMean: the zero row too
    as_int = [t.numpy() for t in layer(ids)]
    layer.integer_rows = False
    as_float = [t.numpy() for t in layer(ids)]
    np.testing.assert_array_equal(as_int[0], as_float[0])
    np.testing.assert_array_equal(as_int[1], as_float[1])
    assert (as_int[1][:2, -1] == layer.zero_row).all()
    assert fuse_for_export(model, True, "float32")[0].get_layer("fused_ids").integer_rows is False


def test_outputs_that_were_fused_keep_their_names(tmp_path):
    ids = keras.Input((1,), dtype="int32", name="ids")
    seq = keras.Input((4,), dtype="int32", name="seq")
    table = keras.layers.Embedding(20, 3, name="table")
    pooled = MaskedMean(name="user_vector")([table(seq), seq])
    flat = keras.layers.Flatten(name="item_vector")(table(ids))
    model = keras.Model([ids, seq], [pooled, flat], name="towers")
    fused, report = fuse_embeddings(model)
    assert [d.layer for d in report.applied] == ["table"]
    assert fused.output_names == ["user_vector", "item_vector"]
    batch = {
        "ids": np.array([[3], [0]], "int32"),
        "seq": np.array([[1, 2, 0, 0], [0] * 4], "int32"),
    }
    for want, got in zip(model(batch), fused(batch), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    result = export.export_tflite(
        model, tmp_path / "t.tflite", parity_data=batch, fuse_embeddings=True
    )
    assert result.options["fused_embeddings"]["tables"] == ["table"]
    assert sorted(export.load_variant(result.path).predict(batch)) == sorted(model.output_names)


def test_float16_export_of_a_fused_front_end_keeps_parity(tmp_path):
    """The fused rows go past 2048 (float16's last exact integer): they are computed in int32."""
    task = data.load_task("ctr", n_samples=400, seed=0, batch_size=64)
    model = models.dcn(task.schema, size="tiny")
    assert sum(layer.input_dim for layer in model.layers if hasattr(layer, "input_dim")) > 2048
    fused = export.export_tflite(
        model, tmp_path / "f.tflite", "float16", fuse_embeddings=True, parity_data=task.test
    )
    plain = export.export_tflite(
        model, tmp_path / "p.tflite", "float16", fuse_embeddings=False, parity_data=task.test
    )
    assert fused.options["fused_embeddings"] is not None
    assert fused.parity["max_abs_diff"] < 2 * plain.parity["max_abs_diff"] + 1e-4


def test_out_of_range_ids_read_their_own_tables_clipped_rows(dcn, tmp_path):
    """An id past its table's rows (or negative) is clipped to [0, rows - 1] of ITS table, in
    the fused Keras model, its int32-rows twin and the fused .tflite (the unfused file's GATHER
    fails on such ids: "gather index out of bounds"); the rest keeps parity."""
    _, model, features = dcn
    fused, _ = fuse_embeddings(model)
    layer = fused.get_layer("fused_ids")
    limit, position = {}, 0
    for t in layer.input:  # each input's positions are contiguous, in input order
        limit[t.name.split(":")[0]] = layer.limits[position]
        position += int(t.shape[1])
    assert limit["user_id"] == 2000 and limit["hist_item_ids"] == 1000
    wild = {k: v.copy() for k, v in features.items()}
    rng = np.random.default_rng(1)
    for name, last in limit.items():
        rows = rng.random(len(wild[name])) < 0.5  # half the examples: out-of-range ids
        wild[name][rows] += np.where(rng.random(wild[name][rows].shape) < 0.5, last + 1, -7)
    wild["hist_item_ids"][-1] = 10**9  # far out of range everywhere: the last row, counted
    clipped = {k: np.clip(v, 0, limit[k]) if k in limit else v for k, v in wild.items()}
    want = model(clipped).numpy()
    assert np.abs(fused(wild).numpy() - want).max() <= 1e-5
    layer.integer_rows = True  # the full-integer and float16 exports' int32 rows clip alike
    assert np.abs(fused(wild).numpy() - want).max() <= 1e-5
    layer.integer_rows = False
    path = export.export_tflite(model, tmp_path / "fused.tflite", fuse_embeddings=True).path
    got = export.load_variant(path).predict(wild)
    assert np.abs(next(iter(got.values())).reshape(-1) - want.reshape(-1)).max() <= 1e-5
    got = export.load_variant(path).predict(features)  # in-range ids: unchanged
    assert (
        np.abs(next(iter(got.values())).reshape(-1) - model(features).numpy().reshape(-1)).max()
        <= 1e-5
    )
    with pytest.raises(ValueError, match="limits"):
        FusedGatherIds([0, 5], [0, 0], 0, [4])


def test_full_int8_fused_wide_tables_take_one_scale_not_row_scales(tmp_path):
    """A fused table's rows span every table's magnitudes: its row scales, calibrated as one
    int8 tensor, lost the small ones (max |diff| 0.107 against 0.013 unfused, 32-wide tables).
    Full-integer exports give the fused table one scale: the drift of the unfused file."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    user = keras.Input((1,), dtype="int32", name="user")
    items = keras.Input((6,), dtype="int32", name="items")
    users_table = keras.layers.Embedding(40, 32, name="emb_user")
    items_table = keras.layers.Embedding(1000, 32, name="emb_items")
    x = keras.layers.Concatenate()(
        [
            keras.layers.Flatten()(users_table(user)),
            MaskedMean()([items_table(items), items]),
        ]
    )
    model = keras.Model([user, items], keras.layers.Dense(1, name="out")(x))
    users_table.set_weights([rng.normal(size=(40, 32)).astype("f4") * 2.0])
    items_table.set_weights([rng.normal(size=(1000, 32)).astype("f4") * 0.02])
    feats = {
        "user": rng.integers(1, 40, size=(512, 1)).astype("i4"),
        "items": rng.integers(1, 1000, size=(512, 6)).astype("i4"),
    }
    reference = model.predict(feats, verbose=0).reshape(-1)
    calibration = tf.data.Dataset.from_tensor_slices(feats).batch(64)
    diffs, tables = {}, {}
    for fuse in (False, True):
        result = export.export_tflite(
            model,
            tmp_path / f"{fuse}.tflite",
            "int8",
            representative_data=calibration,
            fuse_embeddings=fuse,
            drift="ignore",
        )
        out = export.load_variant(result.path).predict(feats, batch_size=512)
        out = np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)
        diffs[fuse] = float(np.abs(out.reshape(-1) - reference).max())
        tables[fuse] = result.options["embedding_tables"]
    assert tables[True] == {"fused_embedding": "int8 table, one scale"}
    assert tables[False] == {"emb_items": "int8 table, a float16 scale per row"}
    assert diffs[True] <= 2 * diffs[False] + 0.01, diffs
