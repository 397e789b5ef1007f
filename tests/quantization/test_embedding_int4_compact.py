"""Tests of the compact int4 rows (one byte of per-row parameters, a 256-entry scale codebook a
table): tfcompress.quantization.embedding_int4_compact, ``QuantizedEmbedding4(scale_dtype=
"codebook")``, ``quantize_embeddings(bits=4, scale_dtype="codebook")`` and
``export_tflite(embeddings="int4_compact")``."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import export
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras, tf
from tfcompress.quantization.embedding import quantize_embeddings
from tfcompress.quantization.embedding_int4 import (
    Int4AwareEmbedding,
    QuantizedEmbedding4,
    dequantize_rows_int4,
    fake_quantize_rows_int4,
    int4_aware_embeddings,
    int4_row_bytes,
    quantize_rows_int4,
)
from tfcompress.quantization.embedding_int4_compact import (
    dequantize_rows_int4_compact,
    fake_quantize_rows_int4_compact,
    int4_codebook,
    quantize_rows_int4_compact,
)

ROWS = 8192  # 8192 * 64 / (8192 * 9 + 1024) = 7.01: the codebook's 1 KiB is paid from here on


def _trained_like(rows=ROWS, dim=16, seed=0):
    """Rows of very different norms, as a trained table: never-seen ids near their uniform init,
    popular ids (Zipf counts) grown with their count, heavy-tailed entries, a few zero rows."""
    rng = np.random.default_rng(seed)
    counts = rng.zipf(1.2, rows).astype(float)
    counts[rng.random(rows) < 0.4] = 0
    grow = 0.6 * np.log1p(counts)[:, None] / np.sqrt(np.log1p(counts.max()))
    table = rng.uniform(-0.05, 0.05, (rows, dim)) + rng.normal(size=(rows, dim)) * grow
    table += 0.05 * rng.standard_t(3, (rows, dim)) * (counts[:, None] > 0)
    table[:4] = 0.0
    return table.astype("f4")


def _rmse(restored, table):
    return float(np.sqrt(np.mean((restored - table) ** 2)) / table.std())


def _lookup_model(table, ids_per_example=1):
    ids = keras.Input((ids_per_example,), dtype="int32", name="ids")
    emb = keras.layers.Embedding(*table.shape, name="emb")
    model = keras.Model(ids, keras.layers.Flatten()(emb(ids)), name="lookup")
    emb.set_weights([table])
    return model


@pytest.fixture(scope="module")
def table():
    return _trained_like()


@pytest.fixture(scope="module")
def compact(table):
    return quantize_rows_int4_compact(table)


def test_nine_bytes_a_16_wide_row_and_error_between_symmetric_and_asymmetric_float16(
    table, compact
):
    packed, scale_codes, codebook = compact
    assert packed.dtype == np.int8 and packed.shape == (ROWS, 8)
    assert scale_codes.dtype == np.uint8 and scale_codes.shape == (ROWS,)
    assert codebook.dtype == np.float32 and codebook.shape == (256,)
    assert int4_row_bytes(16, "codebook") == 9 and int4_row_bytes(7, "codebook") == 5
    assert table.nbytes / (packed.nbytes + scale_codes.nbytes + codebook.nbytes) >= 7.0
    restored = dequantize_rows_int4_compact(packed, scale_codes, codebook, 16)
    assert not restored[:4].any()  # all-zero rows are exactly zero
    # the same as the generic reference, bit for bit
    np.testing.assert_array_equal(
        dequantize_rows_int4(packed, (scale_codes, codebook), 16), restored
    )
    # every value is code * the row's codebook scale; byte = low + 16 * high, codes -7..7
    byte = packed.astype(int)
    high = np.round(byte / 16)
    codes = np.concatenate([byte - 16 * high, high], 1)
    assert codes.min() >= -7 and codes.max() <= 7
    np.testing.assert_array_equal(restored, codes.astype("f4") * codebook[scale_codes][:, None])
    # measured on this table: 0.080 compact, 0.085 symmetric float16 scale (10 B a row, codes
    # -7..7), 0.065 today's int4 (asymmetric float16 scale + offset, 12 B a row)
    sym_scale = (np.abs(table).max(1) / 7).astype("f2").astype("f4")
    sym_scale = np.where(sym_scale > 0, sym_scale, 1)[:, None]
    symmetric = np.clip(np.round(table / sym_scale), -7, 7) * sym_scale
    asymmetric = dequantize_rows_int4(*quantize_rows_int4(table), 16)
    error = _rmse(restored, table)
    assert error < 0.97 * _rmse(symmetric, table)
    assert error < 1.3 * _rmse(asymmetric, table)
    # the codebook is log-uniform between the smallest and largest nonzero row scale
    scale = np.abs(table).max(1) / 7
    np.testing.assert_allclose(codebook[[0, -1]], [scale[scale > 0].min(), scale.max()], 1e-6)
    np.testing.assert_allclose(np.diff(np.log(codebook)), np.log(codebook[1] / codebook[0]), 1e-3)
    # each row's squared error is at most that of its no-clip scale (the search only helps)
    top = codebook[np.searchsorted(codebook, scale * (1 - 1e-6))][:, None]
    no_clip = np.clip(np.round(table / top), -7, 7) * top
    sse, sse_top = ((restored - table) ** 2).sum(1), ((no_clip - table) ** 2).sum(1)
    assert np.all(sse <= sse_top * (1 + 1e-5) + 1e-12)


def test_layer_serves_the_codes_round_trips_and_unpacks_the_same_in_int32(table, tmp_path):
    small = quantize_embeddings(_lookup_model(table, 3), bits=4, scale_dtype="codebook")
    layer = small.get_layer("emb")
    assert isinstance(layer, QuantizedEmbedding4) and layer.scale_dtype == "codebook"
    assert layer.table.shape == (ROWS, 8) and layer.params.shape == (ROWS, 1)
    assert layer.codebook.shape == (256,)
    assert "one-byte scale code" in small.compression_report["emb"].detail
    ids = np.random.default_rng(1).integers(0, ROWS, (64, 3)).astype("int32")
    packed, scale_codes, codebook = quantize_rows_int4_compact(table)
    expected = dequantize_rows_int4_compact(packed, scale_codes, codebook, 16)
    np.testing.assert_array_equal(layer.float_params()[:, 0], codebook[scale_codes])
    np.testing.assert_array_equal(small(ids).numpy(), expected[ids].reshape(64, -1))
    np.testing.assert_array_equal(layer.dequantized(), expected)
    exact = QuantizedEmbedding4.from_config({**layer.get_config(), "integer_unpack": True})
    exact.set_weights(layer.get_weights())
    np.testing.assert_array_equal(exact(ids).numpy(), layer(ids).numpy())
    clone = QuantizedEmbedding4.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.table.shape == (ROWS, 8)
    small.save(tmp_path / "compact.keras")
    loaded = keras.models.load_model(tmp_path / "compact.keras")
    assert loaded.get_layer("emb").scale_dtype == "codebook"
    np.testing.assert_array_equal(loaded(ids).numpy(), small(ids).numpy())


@pytest.mark.parametrize("dim", [16, 7])
def test_int4_compact_tflite_is_7x_smaller_and_equals_the_keras_layer(dim, tmp_path):
    table = _trained_like(dim=dim)
    model = _lookup_model(table, 3)
    result = export.export_tflite(
        model, tmp_path / "m.tflite", embeddings="int4_compact", drift="ignore"
    )
    assert result.options["embeddings"] == "int4_compact"
    interpreter = Interpreter(str(result.path))
    interpreter.allocate_tensors()
    ops = [op["op_name"] for op in interpreter_ops(interpreter)]
    # codes, scale code, codebook entry; the float unpack (ROUND), not the int32 one
    assert ops.count("GATHER") == 3 and "ROUND" in ops and "FLOOR_DIV" not in ops
    assert "SPLIT" not in ops and "SUB" in ops and "ADD" not in ops
    assert not [op for op in ops if "Flex" in op or "CUSTOM" in op.upper()]
    half = (dim + 1) // 2
    details = interpreter.get_tensor_details()
    stored = {
        (tuple(d["shape"]), np.dtype(d["dtype"]).name)
        for d in details
        if tuple(d["shape"]) in ((ROWS, half), (ROWS, 1), (256,))
    }
    assert stored == {((ROWS, half), "int8"), ((ROWS, 1), "uint8"), ((256,), "int32")}
    stored_bytes = ROWS * (half + 1) + 1024
    if dim == 16:
        assert table.nbytes / stored_bytes >= 7.0  # 7.01
    runner = interpreter.get_signature_runner()
    ids = np.random.default_rng(2).integers(0, ROWS, (256, 3)).astype("int32")
    out = next(iter(runner(ids=ids).values()))
    keras_out = quantize_embeddings(model, bits=4, scale_dtype="codebook")(ids).numpy()
    np.testing.assert_allclose(out, keras_out, rtol=0, atol=1e-6)
    reference = dequantize_rows_int4(*quantize_rows_int4(table, "codebook"), dim)
    np.testing.assert_array_equal(out, reference[ids].reshape(256, -1))


def test_fake_quant_and_int4_aware_fine_tune_serve_what_the_export_stores(tmp_path):
    table = _trained_like(rows=512, dim=8, seed=3)
    fake = fake_quantize_rows_int4(tf.constant(table), "codebook").numpy()
    np.testing.assert_array_equal(
        fake, dequantize_rows_int4_compact(*quantize_rows_int4_compact(table), 8)
    )
    book = tf.constant(int4_codebook(table))
    variable = tf.Variable(table[:32])
    with tf.GradientTape() as tape:
        rows = fake_quantize_rows_int4_compact(variable, book)
        loss = tf.reduce_sum(rows * 2.0)
    np.testing.assert_array_equal(rows.numpy(), fake[:32])  # row-local on a given codebook
    np.testing.assert_array_equal(tape.gradient(loss, variable).numpy(), np.full((32, 8), 2.0))

    ids = keras.Input((3,), dtype="int32", name="ids")
    emb = keras.layers.Embedding(512, 8, name="emb")
    model = keras.Model(ids, keras.layers.Dense(1, name="out")(keras.layers.Flatten()(emb(ids))))
    emb.set_weights([table])
    aware = int4_aware_embeddings(model, scale_dtype="codebook")
    layer = aware.get_layer("emb")
    assert isinstance(layer, Int4AwareEmbedding) and layer.scale_dtype == "codebook"
    x = np.random.default_rng(4).integers(0, 512, (64, 3)).astype("int32")
    aware.compile(keras.optimizers.SGD(0.1), "mse")
    aware.fit(x, np.ones((64, 1)), epochs=2, batch_size=32, verbose=0)
    served = quantize_embeddings(aware, bits=4)  # takes the aware layer's scale_dtype
    assert served.get_layer("emb").scale_dtype == "codebook"
    np.testing.assert_array_equal(served(x).numpy(), aware(x).numpy())
    aware.save(tmp_path / "aware.keras")
    loaded = keras.models.load_model(tmp_path / "aware.keras")
    assert loaded.get_layer("emb").get_config() == layer.get_config()


def test_bad_inputs():
    model = _lookup_model(_trained_like(rows=64, dim=4))
    with pytest.raises(ValueError, match=r"`scale_dtype` applies to int4 rows only.*bits=8"):
        quantize_embeddings(model, scale_dtype="codebook")
    with pytest.raises(ValueError, match=r"`scale_dtype` must be one of .*'codebook'.*'int4'"):
        quantize_embeddings(model, bits=4, scale_dtype="int4")
    with pytest.raises(ValueError, match=r"`embeddings` must be .*'int4_compact'.*'int5'"):
        export.export_tflite(model, "/tmp/unused_tfc.tflite", embeddings="int5")
    layer = QuantizedEmbedding4(4, 3, scale_dtype="codebook")
    with pytest.raises(ValueError, match=r"scale_dtype='codebook'.*\[\(4, 2\), \(4,\), \(256,\)\]"
                       r".*received \[\(4, 3\), \(4,\), \(255,\)\]"):  # fmt: skip
        layer.set_quantized(np.zeros((4, 3), "int8"), (np.zeros(4, "uint8"), np.ones(255)))
    with pytest.raises(ValueError, match="quantize_rows_int4_compact: `table` must be 2-D"):
        quantize_rows_int4_compact(np.zeros(4))
    np.testing.assert_array_equal(int4_codebook(np.zeros((3, 2))), np.ones(256, "f4"))
