"""compositional_embeddings (quotient-remainder and hashed tables), collision_report: shapes and
bytes, padding, initialisation from the trained table, LiteRT parity, a distilled fine-tune."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tfcompress import export
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras
from tfcompress.distillation import Distiller
from tfcompress.embeddings.compositional import (
    HashedEmbedding,
    QREmbedding,
    collision_report,
    compositional_embeddings,
    hash_ids,
)

ITEMS = 400


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    item = keras.Input((1,), dtype="int32", name="item")
    hist = keras.Input((4,), dtype="int32", name="history")
    items = keras.layers.Embedding(ITEMS, 8, mask_zero=True, name="emb_item")
    x = keras.layers.Concatenate()(
        [
            keras.layers.Flatten()(items(item)),
            keras.layers.GlobalAveragePooling1D()(items(hist)),
        ]
    )
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    model = keras.Model(
        [item, hist], keras.layers.Dense(1, activation="sigmoid", name="head")(hidden)
    )
    # a table with structure the QR init can find: row = a(id // 20) * b(id % 20)
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    ids = np.arange(ITEMS)
    items.set_weights([(a[ids // 20] * b[ids % 20]).astype("f4")])
    return model


def _batch(rng, n=64):
    history = np.where(rng.random((n, 4)) < 0.3, 0, rng.integers(1, ITEMS, size=(n, 4)))
    history[:, 0] = rng.integers(1, ITEMS, size=n)  # no all-padding history (0 / 0 in pooling)
    return {
        "item": rng.integers(1, ITEMS, size=(n, 1)).astype("i4"),
        "history": history.astype("i4"),
    }


def test_qr_table_bytes_padding_and_exact_init_on_a_product_table():
    model = _model()
    small, report = compositional_embeddings(model, mode="qr", buckets=20, combine="mul")
    layer = small.get_layer("emb_item")
    assert isinstance(layer, QREmbedding) and layer.mask_zero
    assert layer.quotient.shape == (20, 8) and layer.remainder.shape == (20, 8)
    stats = report.settings["tables"]["emb_item"]
    assert (stats["bytes_before"], stats["bytes_after"]) == (ITEMS * 8 * 4, 40 * 8 * 4)  # 10x
    ids = np.array([[0, 1, 57, 399]])
    out = layer(ids).numpy()[0]
    np.testing.assert_array_equal(out[0], 0.0)  # padding reads zeros
    table = model.get_layer("emb_item").get_weights()[0]
    # the table is a product of a quotient and a remainder table: alternating least squares
    # recovers it (to 1e-3: padding 0 is left out of the fit)
    np.testing.assert_allclose(out[1:], table[[1, 57, 399]], atol=1e-3)
    batch = _batch(np.random.default_rng(1))
    np.testing.assert_allclose(small.predict(batch, verbose=0), model(batch).numpy(), atol=1e-3)
    for combine, widths in (("add", (8, 8)), ("concat", (4, 4))):
        other, _ = compositional_embeddings(model, mode="qr", buckets=20, combine=combine)
        got = other.get_layer("emb_item")
        assert (got.quotient.shape[1], got.remainder.shape[1]) == widths
        assert got(ids).numpy().shape == (1, 4, 8) and not got(ids).numpy()[0, 0].any()


def test_hash_rows_are_weighted_means_and_collisions_are_counted():
    model = _model()
    counts = np.zeros(ITEMS, np.int64)
    counts[1:] = np.arange(1, ITEMS)
    small, report = compositional_embeddings(
        model, mode="hash", buckets=50, counts={"emb_item": counts}, seed=3
    )
    layer = small.get_layer("emb_item")
    assert isinstance(layer, HashedEmbedding) and layer.table.shape == (50, 8)
    assert report.settings["tables"]["emb_item"]["bytes_after"] == 50 * 8 * 4
    table = model.get_layer("emb_item").get_weights()[0]
    where = hash_ids(np.arange(ITEMS), 50, 3)
    members = np.flatnonzero((where == where[7]) & (np.arange(ITEMS) > 0))
    expected = (table[members] * counts[members, None]).sum(0) / counts[members].sum()
    np.testing.assert_allclose(layer(np.array([[7]])).numpy()[0, 0], expected, atol=1e-5)
    # the Keras hash equals the numpy one for large ids (int64, no overflow)
    big = np.array([1, 2**31 - 2, 123456789], np.int64)
    layer_big = HashedEmbedding(2**31, 1, 50, seed=3)
    layer_big.set_weights([np.arange(50, dtype="f4")[:, None]])
    assert layer_big(big).numpy()[:, 0].tolist() == hash_ids(big, 50, 3).tolist()
    hashed = collision_report(counts, "hash", 50, seed=3)
    assert hashed["ids"] == ITEMS - 1
    assert hashed["ids_colliding_share"] == pytest.approx(1 - len(set(where[1:])) / (ITEMS - 1))
    assert 0 < hashed["impressions_colliding_share"] < hashed["ids_colliding_share"]
    qr = collision_report(counts, "qr", 20)
    assert qr["ids_colliding_share"] == 0.0 and qr["impressions_colliding_share"] == 0.0
    # a toy: one bucket, ids 1..3 counted 5, 3, 1: ids 2 and 3 collide with id 1
    toy = collision_report(np.array([0, 5, 3, 1]), "hash", 1)
    assert toy["ids_colliding_share"] == pytest.approx(2 / 3)
    assert toy["impressions_colliding_share"] == pytest.approx(4 / 9)


@pytest.mark.parametrize("mode", ["qr", "hash"])
def test_tflite_parity_through_litert_with_builtin_ops(mode, tmp_path):
    model = _model()
    small, _ = compositional_embeddings(model, mode=mode, buckets=20 if mode == "qr" else 64)
    batch = _batch(np.random.default_rng(2))
    result = export.export_tflite(
        small, tmp_path / f"{mode}.tflite", parity_data=batch, drift="error"
    )
    interpreter = Interpreter(str(result.path))
    interpreter.allocate_tensors()
    ops = [op["op_name"] for op in interpreter_ops(interpreter)]
    assert not [op for op in ops if "Flex" in op or "CUSTOM" in op.upper()]
    assert "GATHER" in ops and "FLOOR_MOD" in ops
    (tflite,) = interpreter.get_signature_runner()(**batch).values()
    np.testing.assert_allclose(tflite, small.predict(batch, verbose=0), atol=1e-5)
    assert result.parity["max_abs_diff"] <= 1e-5
    small.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(batch, verbose=0), small.predict(batch, verbose=0))


def test_a_distilled_fine_tune_lowers_the_distillation_loss():
    teacher = _model()
    student, _ = compositional_embeddings(teacher, mode="hash", buckets=64, seed=1)
    rng = np.random.default_rng(4)
    x = _batch(rng, n=256)
    y = teacher.predict(x, verbose=0) > 0.5
    distiller = Distiller(student, teacher, student_loss_weight=0.0)
    distiller.compile(keras.optimizers.Adam(0.02), loss="binary_crossentropy")
    target = teacher.predict(x, verbose=0)
    before = distiller.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"]
    gap_before = np.abs(student.predict(x, verbose=0) - target).mean()
    distiller.fit(x, y, batch_size=64, epochs=15, verbose=0)
    after = distiller.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"]
    gap_after = np.abs(student.predict(x, verbose=0) - target).mean()
    # the loss is a cross-entropy to the teacher's probabilities: its floor is their entropy,
    # so the gap between the two models shows the fine-tune better than the loss's ratio
    assert after < before
    assert gap_after < 0.7 * gap_before, (gap_before, gap_after)


def test_bad_inputs():
    model = _model()
    with pytest.raises(ValueError, match="needs `buckets`"):
        compositional_embeddings(model, mode="hash")
    with pytest.raises(ValueError, match="mode"):
        compositional_embeddings(model, mode="bloom")
    with pytest.raises(ValueError, match="combine"):
        compositional_embeddings(model, combine="max")
    with pytest.raises(ValueError, match="buckets"):
        compositional_embeddings(model, buckets=0)
    with pytest.raises(ValueError, match=r"`tables` names \['nope'\]"):
        compositional_embeddings(model, tables="nope")
    with pytest.raises(ValueError, match=r"counts\['emb_item'\]"):
        compositional_embeddings(model, mode="hash", buckets=8, counts={"emb_item": np.ones(3)})
    with pytest.raises(TypeError, match="model"):
        compositional_embeddings("m.keras")
    with pytest.raises(ValueError, match="counts"):
        collision_report(np.ones((2, 2)), "hash", 4)
    with pytest.raises(ValueError, match="mode"):
        collision_report(np.ones(4), "bloom", 4)
    same, report = compositional_embeddings(model, tables="hidden")
    assert same is model and report["hidden"].reason == "not a keras.layers.Embedding"
    same, report = compositional_embeddings(model, mode="hash", buckets=ITEMS)
    assert same is model and "would not be smaller" in report["emb_item"].reason
