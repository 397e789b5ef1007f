"""Tests of tfcompress.quantization.embedding: int8 tables with per-row scales, and their export."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import data, export, models
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras, tf
from tfcompress.export.runtime import collect_examples, load_variant, model_input_specs
from tfcompress.quantization.embedding import (
    EXPORT_MIN_ROWS,
    QuantizedEmbedding,
    dequantize_rows,
    prepare_for_export,
    quantize_embeddings,
    quantize_rows,
)

VOCAB = 3000


def _table(rows=VOCAB, dim=8, seed=0):
    """Rows of very different norms, like popular vs long-tail items."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(rows, dim)) * rng.uniform(0.01, 1.0, size=(rows, 1))).astype("float32")


def _model(dim=8, mask_zero=False):
    keras.utils.set_random_seed(0)
    ids = keras.Input((1,), dtype="int32", name="ids")
    seq = keras.Input((5,), dtype="int32", name="seq")
    x = keras.Input((4,), name="x")
    emb = keras.layers.Embedding(VOCAB, dim, mask_zero=mask_zero, name="emb")
    small = keras.layers.Embedding(10, dim, name="small")
    parts = [
        keras.layers.Flatten()(emb(ids)),
        keras.layers.GlobalAveragePooling1D()(emb(seq)),
        keras.layers.Flatten()(small(ids % 10)),
        x,
    ]
    h = keras.layers.Dense(16, activation="relu", name="hidden")(keras.layers.Concatenate()(parts))
    out = keras.layers.Dense(1, activation="sigmoid", name="prob")(h)
    model = keras.Model({"ids": ids, "seq": seq, "x": x}, out, name="emb_model")
    model.get_layer("emb").set_weights([_table(dim=dim)])
    return model


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    feats = {
        "ids": rng.integers(1, VOCAB, (n, 1)).astype("int32"),
        "seq": rng.integers(1, VOCAB, (n, 5)).astype("int32"),
        "x": rng.normal(size=(n, 4)).astype("float32"),
    }
    return tf.data.Dataset.from_tensor_slices((feats, (rng.random((n, 1)) < 0.4).astype("f4")))


def test_quantize_rows_per_row_beats_per_table_on_uneven_rows():
    table = _table()
    q, scales = quantize_rows(table, "row")
    assert q.dtype == tf.int8 and scales.shape == (VOCAB,)
    assert int(tf.reduce_max(tf.abs(q))) == 127  # each row uses the full int8 range
    row_err = np.abs(dequantize_rows(q, scales).numpy() - table)
    tensor_err = np.abs(dequantize_rows(*quantize_rows(table, "tensor")).numpy() - table)
    norms = np.abs(table).max(axis=1)
    assert (row_err.max(axis=1) <= norms / 254 * 1.01 + 1e-8).all()  # half a step per row
    assert row_err.mean() < tensor_err.mean() / 2
    zero_q, zero_s = quantize_rows(np.zeros((2, 3), "float32"))
    assert zero_s.numpy().tolist() == [1.0, 1.0] and not zero_q.numpy().any()


def test_quantized_embedding_layer_matches_dequantized_table_and_serializes(tmp_path):
    emb = keras.layers.Embedding(VOCAB, 8)
    emb.build((None, 1))
    emb.set_weights([_table()])
    layer = QuantizedEmbedding.from_embedding(emb, "row", name="q")
    assert layer.table.dtype == tf.int8 and layer.scales.dtype == tf.int16
    ids = tf.constant([[0, 5, 2999]])
    np.testing.assert_allclose(layer(ids).numpy()[0], layer.dequantized()[[0, 5, 2999]])
    error = np.abs(layer.dequantized() - _table()).max(axis=1)
    assert (error <= np.abs(_table()).max(axis=1) / 254 * 1.01).all()  # half an int8 step a row
    inp = keras.Input((3,), dtype="int32")
    model = keras.Model(inp, layer(inp))
    model.save(tmp_path / "q.keras")
    again = keras.models.load_model(tmp_path / "q.keras", safe_mode=True)
    np.testing.assert_array_equal(again(ids).numpy(), model(ids).numpy())
    masked = QuantizedEmbedding(4, 2, mask_zero=True)
    assert masked.compute_mask(tf.constant([[0, 3]])).numpy().tolist() == [[False, True]]


def test_quantize_embeddings_swaps_tables_and_reports(tmp_path):
    model = _model()
    small = quantize_embeddings(model, min_rows=64)
    report = small.compression_report
    assert report.technique == "embeddings"
    assert report["emb"].applied and "one scale" in report["emb"].detail  # 8-wide: auto
    assert not report["small"].applied and "min_rows=64" in report["small"].reason
    assert isinstance(small.get_layer("emb"), QuantizedEmbedding)
    assert small.get_layer("hidden") is model.get_layer("hidden")  # other layers shared
    rows = quantize_embeddings(model, granularity="row", skip="small").compression_report
    assert "per row" in rows["emb"].detail and rows["small"].reason == "in `skip`"
    structure, specs = model_input_specs(model)
    features, _ = collect_examples(_data(), structure, specs, 256)
    want = load_variant(model).predict(features)["prob"]
    got = load_variant(quantize_embeddings(model, granularity="row")).predict(features)["prob"]
    assert 0 < np.abs(want - got).max() < 5e-3


@pytest.mark.parametrize("mode", ["dynamic", "int8", "int16x8"])
def test_export_stores_embedding_tables_as_int8_in_every_quantized_mode(mode, tmp_path):
    model = _model(dim=32)  # 32-wide rows: per-row scales under "auto"
    ds = _data().batch(32)
    calibrate = ds if mode != "dynamic" else None
    default = export.export_tflite(
        model, tmp_path / f"{mode}.tflite", mode, representative_data=calibrate, parity_data=ds
    )
    converter = export.export_tflite(
        model,
        tmp_path / f"{mode}_conv.tflite",
        mode,
        representative_data=calibrate,
        embeddings="float",
    )
    assert default.options["embeddings"] == "int8"
    assert "a float16 scale per row" in default.options["embedding_tables"]["emb"]
    interpreter = Interpreter(str(default.path))
    tables = {}
    for d in interpreter.get_tensor_details():
        shape = tuple(int(s) for s in d["shape"])
        if shape[:1] == (VOCAB,):
            try:
                interpreter.get_tensor(d["index"])
            except ValueError:
                continue
            tables[shape] = np.dtype(d["dtype"]).name
    assert tables == {(VOCAB, 32): "int8", (VOCAB, 1): "int16"}  # one int8 copy + scales
    assert default.parity["max_abs_diff"] < 0.05
    if mode == "int16x8":  # the converter keeps int16 tables: int8 halves them
        assert default.bytes < converter.bytes - VOCAB * 32 // 2


def test_float_modes_keep_float_tables_unless_asked(tmp_path):
    model = _model()
    _, info = prepare_for_export(model, "float16")
    assert info == {"qat": False, "embeddings": "float", "embedding_tables": {}}
    converted, info = prepare_for_export(model, "float16", "int8_row")
    assert info["embedding_tables"] == {"emb": "int8 table, a float16 scale per row"}
    assert isinstance(converted.get_layer("emb"), QuantizedEmbedding)
    result = export.export_tflite(model, tmp_path / "f32_int8.tflite", embeddings="int8")
    assert 0 < result.parity["max_abs_diff"] < 5e-3  # recorded, not an error (by design)
    assert EXPORT_MIN_ROWS == 64


def test_shared_student_dcn_table_stored_once_in_int8_mode(tmp_path):
    task = data.load_task("ctr", n_samples=400, seed=0, batch_size=64)
    model = models.dcn(task.schema, size="tiny")
    default = export.export_tflite(
        model,
        tmp_path / "d.tflite",
        "int8",
        representative_data=task.train,
        num_calibration_steps=16,
    )
    converter = export.export_tflite(
        model,
        tmp_path / "c.tflite",
        "int8",
        representative_data=task.train,
        num_calibration_steps=16,
        embeddings="float",
    )

    def item_tables(path):
        interpreter = Interpreter(str(path))
        return [
            np.dtype(d["dtype"]).name
            for d in interpreter.get_tensor_details()
            if tuple(d["shape"]) == (1001, 4)
        ]

    assert item_tables(converter.path) == ["int8", "int8"]  # shared table stored twice
    assert item_tables(default.path) == ["int8"]


def test_bad_inputs():
    model = _model()
    with pytest.raises(ValueError, match=r"`granularity` must be one of \['row', 'tensor', 'auto'"):
        quantize_embeddings(model, granularity="column")
    with pytest.raises(ValueError, match="`min_rows` must be an int >= 1"):
        quantize_embeddings(model, min_rows=0)
    with pytest.raises(ValueError, match="`skip` entry 'nope' matches no layer"):
        quantize_embeddings(model, skip="nope")
    with pytest.raises(TypeError, match="is a Keras 3 model"):
        import keras as keras3

        quantize_embeddings(keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)]))
    with pytest.raises(ValueError, match=r"`embeddings` must be None .* received 'int2'"):
        export.export_tflite(model, "/tmp/never.tflite", "dynamic", embeddings="int2")
    with pytest.raises(ValueError, match="`input_dim` must be an int >= 1"):
        QuantizedEmbedding(0, 4)
    with pytest.raises(ValueError, match="`output_range` must be"):
        QuantizedEmbedding(4, 4, output_range=(0.5, 1.0))
    with pytest.raises(ValueError, match="must be 2-D"):
        quantize_rows(np.zeros(3, "float32"))
    layer = QuantizedEmbedding(4, 2)
    with pytest.raises(ValueError, match=r"expected a table of shape \(4, 2\)"):
        layer.set_quantized(np.zeros((3, 2), "int8"), np.ones(3))
    with pytest.raises(TypeError, match="must be a keras.layers.Embedding"):
        QuantizedEmbedding.from_embedding(keras.layers.Dense(2))


def test_int8_mode_leaves_one_scale_unshared_tables_to_the_converter(tmp_path):
    """A one-scale table read once is one GATHER on an int8 table, no dequantize ops after it."""
    task = data.load_task("ctr", n_samples=400, seed=0, batch_size=64)
    model = models.dcn(task.schema, size="tiny")
    result = export.export_tflite(
        model,
        tmp_path / "d.tflite",
        "int8",
        representative_data=task.train,
        num_calibration_steps=16,
        parity_data=task.test,
    )
    tables = result.options["embedding_tables"]
    assert tables["emb_user_id"] == "int8 table, one scale (by the converter: one GATHER)"
    assert "by the converter" not in tables["emb_item_id"]  # shared: swapped, stored once
    interpreter = Interpreter(str(result.path))
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    consumers = {}
    for op in interpreter_ops(interpreter):
        for i in op["inputs"]:
            consumers.setdefault(i, []).append(op["op_name"])
    user = [
        op
        for op in interpreter_ops(interpreter)
        if op["op_name"] == "GATHER" and tuple(details[op["inputs"][0]]["shape"]) == (2001, 4)
    ]
    assert len(user) == 1 and np.dtype(details[user[0]["inputs"][0]]["dtype"]).name == "int8"
    assert consumers[user[0]["outputs"][0]] == ["RESHAPE"]  # no CAST / MUL dequantize chain
