"""Tests of tfcompress.quantization.embedding_int4: int4 rows (two codes a byte, a scale and
offset per row), ``quantize_embeddings(bits=4)`` and ``export_tflite(embeddings="int4")``."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import data, export, models
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras, tf
from tfcompress.quantization.embedding import quantize_embeddings, quantize_rows
from tfcompress.quantization.embedding_int4 import (
    Int4AwareEmbedding,
    QuantizedEmbedding4,
    dequantize_rows_int4,
    fake_quantize_rows_int4,
    int4_aware_embeddings,
    int4_row_bytes,
    quantize_rows_int4,
)

ROWS = 300


def _table(rows=ROWS, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.01, 1.0, size=(rows, 1))
    return (rng.normal(size=(rows, dim)) * scale + rng.normal(size=(rows, 1)) * 0.1).astype("f4")


def _lookup_model(dim, mask_zero=False):
    ids = keras.Input((3,), dtype="int32", name="ids")
    emb = keras.layers.Embedding(ROWS, dim, mask_zero=mask_zero, name="emb")
    model = keras.Model(ids, keras.layers.Flatten()(emb(ids)), name=f"lookup{dim}")
    emb.set_weights([_table(dim=dim)])
    return model


def _ops(path):
    interpreter = Interpreter(str(path))
    interpreter.allocate_tensors()
    return interpreter, [op["op_name"] for op in interpreter_ops(interpreter)]


@pytest.mark.parametrize("dim", [16, 32, 64])
def test_int4_codes_are_half_the_int8_table_and_row_bytes_are_counted(dim):
    table = _table(dim=dim)
    packed, params = quantize_rows_int4(table)
    q8, _ = quantize_rows(table, "row")
    assert packed.dtype == np.uint8 and packed.shape == (ROWS, dim // 2)
    assert packed.nbytes <= 0.55 * q8.numpy().nbytes
    # with the per-row float16 scale + offset (4 bytes) against int8 with a float16 scale (2)
    assert int4_row_bytes(dim) == dim // 2 + 4
    assert int4_row_bytes(dim, "float32") == dim // 2 + 8
    assert int4_row_bytes(dim) / (dim + 2) == pytest.approx((dim / 2 + 4) / (dim + 2))


def test_quantization_error_is_half_a_step_and_fake_quant_is_straight_through():
    table = _table(dim=7)  # odd width: a pad code
    packed, params = quantize_rows_int4(table)
    assert packed.shape == (ROWS, 4)
    restored = dequantize_rows_int4(packed, params, 7)
    step = (table.max(1) - table.min(1)) / 15
    err = np.abs(restored - table).max(1)
    assert np.all(err <= 0.5 * step * 1.01 + 1e-3 * np.abs(table).max(1))
    # float16 vs float32 scale/offset: the same error up to float16 rounding of the offset
    err32 = np.abs(dequantize_rows_int4(*quantize_rows_int4(table, "float32"), 7) - table)
    assert abs(err.mean() - err32.max(1).mean()) < 0.02 * err.mean()
    variable = tf.Variable(table)
    with tf.GradientTape() as tape:
        fake = fake_quantize_rows_int4(variable)
        loss = tf.reduce_sum(fake * 3.0)
    np.testing.assert_allclose(fake.numpy(), restored, atol=1e-6)
    np.testing.assert_array_equal(tape.gradient(loss, variable).numpy(), np.full(table.shape, 3.0))


def test_layer_serves_the_codes_masks_and_round_trips(tmp_path):
    model = _lookup_model(9, mask_zero=True)
    small = quantize_embeddings(model, bits=4)
    layer = small.get_layer("emb")
    assert isinstance(layer, QuantizedEmbedding4) and layer.table.shape == (ROWS, 5)
    assert small.compression_report["emb"].applied
    ids = np.array([[0, 5, 299], [1, 2, 3]], "int32")
    expected = layer.dequantized()[ids].reshape(2, -1)
    np.testing.assert_allclose(small(ids).numpy(), expected, atol=1e-6)
    table = _table(dim=9)
    half_step = (table.max(1) - table.min(1))[ids][..., None] / 30 * 1.01 + 1e-3
    assert np.all(np.abs(layer.dequantized()[ids] - table[ids]) <= half_step)
    assert layer.compute_mask(tf.constant(ids)).numpy().tolist() == (ids != 0).tolist()
    clone = QuantizedEmbedding4.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.mask_zero
    small.save(tmp_path / "int4.keras")
    loaded = keras.models.load_model(tmp_path / "int4.keras")
    assert isinstance(loaded.get_layer("emb"), QuantizedEmbedding4)
    np.testing.assert_array_equal(loaded(ids).numpy(), small(ids).numpy())


@pytest.mark.parametrize("dim", [16, 7])
def test_int4_tflite_equals_numpy_dequantization_with_builtin_ops_only(dim, tmp_path):
    model = _lookup_model(dim)
    result = export.export_tflite(model, tmp_path / "m.tflite", embeddings="int4", drift="ignore")
    assert result.options["embeddings"] == "int4"
    interpreter, ops = _ops(result.path)
    assert "FLOOR" in ops and "FLOOR_MOD" not in ops  # the float unpack (4x faster)
    assert not [op for op in ops if "Flex" in op or "CUSTOM" in op.upper()]
    tables = [
        d for d in interpreter.get_tensor_details() if tuple(d["shape"]) == (ROWS, (dim + 1) // 2)
    ]
    assert [np.dtype(d["dtype"]).name for d in tables] == ["uint8"]
    packed, params = quantize_rows_int4(_table(dim=dim))
    ids = np.random.default_rng(1).integers(0, ROWS, (64, 3)).astype("int32")
    tflite = export.load_variant(result.path).predict({"ids": ids})
    out = next(iter(tflite.values()))
    np.testing.assert_allclose(out, dequantize_rows_int4(packed, params, dim)[ids].reshape(64, -1),
                               rtol=1e-6, atol=1e-6)  # fmt: skip


def test_int4_aware_fine_tune_trains_the_values_quantize_embeddings_serves(tmp_path):
    ids = keras.Input((3,), dtype="int32", name="ids")
    emb = keras.layers.Embedding(ROWS, 8, mask_zero=True, name="emb")
    pooled = keras.layers.GlobalAveragePooling1D()(emb(ids))  # masked mean, padding id 0
    model = keras.Model(ids, keras.layers.Dense(1, name="out")(pooled))
    emb.set_weights([_table(dim=8)])
    aware = int4_aware_embeddings(model)
    layer = aware.get_layer("emb")
    assert isinstance(layer, Int4AwareEmbedding) and layer.mask_zero
    assert aware.get_layer("out") is model.get_layer("out")
    x = np.random.default_rng(2).integers(0, ROWS, (32, 3)).astype("int32")
    x[:, 2] = 0
    before = layer.get_weights()[0].copy()
    aware.compile(keras.optimizers.SGD(0.5), "mse")
    aware.fit(x, np.ones((32, 1)), epochs=1, batch_size=32, verbose=0)
    moved = np.abs(layer.get_weights()[0] - before).max(1) > 0
    assert moved[x[:, :2].ravel()].all() and moved.sum() <= 64  # straight-through, looked-up rows
    served = quantize_embeddings(aware, bits=4)
    assert isinstance(served.get_layer("emb"), QuantizedEmbedding4)
    np.testing.assert_allclose(served(x).numpy(), aware(x).numpy(), atol=1e-6)
    aware.save(tmp_path / "aware.keras")
    loaded = keras.models.load_model(tmp_path / "aware.keras")
    assert loaded.get_layer("emb").get_config() == layer.get_config()
    np.testing.assert_allclose(loaded(x).numpy(), aware(x).numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def student():
    task = data.load_task("ctr", n_samples=2000, seed=0, batch_size=128)
    keras.utils.set_random_seed(0)
    model = models.build("dcn", task.schema, size="student")
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.fit(task.train, epochs=2, verbose=0)
    return task, model


@pytest.mark.parametrize(
    ("mode", "embeddings"),
    [(None, "int4"), ("dynamic", "int4"), ("int8", "int4"), (None, "int4_compact"),
     ("int8", "int4_compact")],
)  # fmt: skip
def test_student_dcn_int4_export_keeps_auc_and_sequence_pooling(
    student, mode, embeddings, tmp_path
):
    task, model = student
    assert any(name.startswith("hist_") for name in model.input_names)
    result = export.export_tflite(
        model,
        tmp_path / "s.tflite",
        mode,
        embeddings=embeddings,
        representative_data=task.train if mode == "int8" else None,
        num_calibration_steps=16,
        parity_data=task.test,
        drift="error",
    )
    assert sorted(result.options["embedding_tables"]) == [
        "emb_item_brand",
        "emb_item_id",
        "emb_user_id",
    ]
    _, ops = _ops(result.path)
    assert not [op for op in ops if "Flex" in op or "CUSTOM" in op.upper()]
    # full-integer: nibbles unpacked in int32 (a float unpack would be requantized to int8)
    integer, float_unpack = {
        "int4": ("FLOOR_MOD", "FLOOR"),
        "int4_compact": ("FLOOR_DIV", "ROUND"),
    }[embeddings]
    assert (integer in ops) == (mode == "int8") and (float_unpack in ops) == (mode != "int8")
    parity = result.parity
    assert parity["keras_quality"] > 0.6
    assert parity["export_quality"] >= parity["keras_quality"] - 0.01
    # measured (seed 0): 0.0036 float, 0.0049 dynamic, 0.098 int8 (within DRIFT_TOLERANCES)
    assert parity["max_abs_diff"] < {None: 0.01, "dynamic": 0.02, "int8": 0.15}[mode]


def test_bad_inputs():
    model = _lookup_model(8)
    with pytest.raises(ValueError, match=r"`bits` must be one of \[8, 4\].*bits=4"):
        quantize_embeddings(model, bits=3)
    with pytest.raises(ValueError, match=r"`embeddings` must be .*'int4'.*received 'int3'"):
        export.export_tflite(model, "/tmp/unused_tfc.tflite", embeddings="int3")
    with pytest.raises(
        ValueError, match=r"`scale_dtype` must be one of \['float16', 'float32', 'codebook'\]"
    ):
        QuantizedEmbedding4(4, 2, scale_dtype="bfloat16")
    with pytest.raises(ValueError, match="`output_dim` must be an int >= 1"):
        QuantizedEmbedding4(4, 0)
    layer = QuantizedEmbedding4(4, 3)
    with pytest.raises(
        ValueError, match=r"shapes \[\(4, 2\), \(4, 2\)\].*received \[\(4, 3\), \(4, 2\)\]"
    ):
        layer.set_quantized(np.zeros((4, 3), "uint8"), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="must be 2-D"):
        quantize_rows_int4(np.zeros(4))
    with pytest.raises(TypeError, match="must be a keras.layers.Embedding"):
        QuantizedEmbedding4.from_embedding(keras.layers.Dense(2))
