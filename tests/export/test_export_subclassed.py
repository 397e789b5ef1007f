"""Subclassed models export to TFLite (issue 13 item 7), checked against LiteRT."""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest

import tfcompress
from tfcompress import export
from tfcompress._keras import keras, tf

ROWS = 2000


class _Ranker(keras.Model):
    """Subclassed id model: one 2000-row table (>= 64 rows: export_tflite swaps such tables)."""

    def __init__(self) -> None:
        super().__init__(name="ranker")
        self.emb = keras.layers.Embedding(ROWS, 8, name="item_emb")
        self.flat = keras.layers.Flatten()
        self.out = keras.layers.Dense(1, activation="sigmoid", name="p")

    def call(self, ids):
        return self.out(self.flat(self.emb(ids)))


def _ids(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, ROWS, (n, 3)).astype("int32")


@pytest.fixture(scope="module")
def ranker():
    keras.utils.set_random_seed(3)
    model = _Ranker()
    model(_ids())
    return model


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_subclassed_embedding_model_exports_with_float_tables(ranker, tmp_path, caplog, mode):
    ids = _ids()
    with caplog.at_level(logging.INFO, logger="tfcompress"):
        r = export.export_tflite(
            ranker,
            tmp_path / f"{mode}.tflite",
            mode,
            representative_data=ids if mode == "int8" else None,
            parity_data=ids,
        )
    assert r.options["embeddings"] == "float" and r.options["embedding_tables"] == {}
    assert "subclassed model" in caplog.text and "embeddings='float'" in caplog.text
    # parity checked here through LiteRT itself, on examples the export did not see
    fresh = _ids(32, seed=9)
    variant = export.load_variant(r.path)
    (spec,) = variant.input_specs
    assert spec.shape == (3,) and spec.dtype == "int32"  # ids stay ids
    (got,) = variant({spec.name: fresh}).values()
    assert got.shape == (32, 1)
    np.testing.assert_allclose(got, ranker(fresh).numpy(), atol=0.02)
    assert r.parity["drift_flag"] is None
    # the converter still stores the 2000 x 8 table int8 (one scale per table)
    float_bytes = export.export_tflite(ranker, tmp_path / "f.tflite").bytes
    assert r.bytes < float_bytes / 3, (r.bytes, float_bytes)


def test_subclassed_model_explicit_int8_tables_say_the_fix(ranker, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"embeddings='int8_row'.*'ranker' is a subclassed model.*"
        r"\['item_emb'\].*Pass embeddings='float'",
    ):
        export.export_tflite(ranker, tmp_path / "m.tflite", "dynamic", embeddings="int8_row")
    assert list(tmp_path.iterdir()) == []


def _tower(name: str) -> keras.Model:
    inp = keras.Input((4,), name=f"{name}_in")
    h = keras.layers.Dense(8, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Dense(4)(h), name=name)


class _TwoTower(keras.Model):
    """Subclassed model holding tfcompress.quantize'd functional towers as attributes."""

    def __init__(self) -> None:
        super().__init__(name="two_tower")
        self.user = tfcompress.quantize(_tower("user"))
        self.item = tfcompress.quantize(_tower("item"))

    def towers(self):
        return self.user, self.item

    def call(self, inputs):
        user, item = self.towers()
        u, v = user(inputs["u"]), item(inputs["v"])
        return tf.sigmoid(tf.reduce_sum(u * v, axis=-1, keepdims=True))


class _UntrackedTwoTower(_TwoTower):
    """The towers sit in a SimpleNamespace, a container Keras does not track: the model's
    ``variables`` miss the towers' weights although ``call`` reads them."""

    def __init__(self) -> None:
        keras.Model.__init__(self, name="untracked_two_tower")
        self.held = types.SimpleNamespace(
            user=tfcompress.quantize(_tower("user")), item=tfcompress.quantize(_tower("item"))
        )

    def towers(self):
        return self.held.user, self.held.item


def _pairs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=(n, 4)).astype("float32") for k in ("u", "v")}


def _built(cls: type) -> keras.Model:
    keras.utils.set_random_seed(4)
    model = cls()
    model(_pairs(8, 0))
    return model


@pytest.mark.parametrize("cls", [_TwoTower, _UntrackedTwoTower])
def test_subclassed_model_with_quantized_towers_exports_int8(tmp_path, cls):
    """Before, the untracked variant failed in the calibrator with "SignatureDef signature_key is
    None and model has 0 Signatures" (the converter's own SavedModel save failed silently and it
    fell back to a frozen graph without signatures)."""
    model = _built(cls)
    data = _pairs(256, 1)
    r = export.export_tflite(
        model,
        tmp_path / "tt.tflite",
        "int8",
        representative_data=data,
        parity_data=data,
        num_calibration_steps=256,
        drift="error",
    )
    variant = export.load_variant(r.path)
    assert sorted(s.name for s in variant.input_specs) == ["u", "v"]
    fresh = {k: v[:32] for k, v in data.items()}  # within the calibrated ranges
    (got,) = variant(fresh).values()
    np.testing.assert_allclose(got, model(fresh).numpy(), atol=0.03)
    assert r.parity["drift_flag"] is None and r.parity["max_abs_diff"] < 0.03
    ops = {d["op_name"] for d in variant.interpreter._get_ops_details()}
    assert "FULLY_CONNECTED" in ops and not any("FAKE_QUANT" in o for o in ops)
    dense_weights = [
        d for d in variant.interpreter.get_tensor_details() if tuple(d["shape"]) in ((8, 4), (4, 8))
    ]
    assert dense_weights and {np.dtype(d["dtype"]).name for d in dense_weights} == {"int8"}


def test_subclassed_qat_model_in_other_modes_says_the_fix(tmp_path):
    model = _built(_TwoTower)
    with pytest.raises(
        ValueError,
        match=r"'two_tower' is a subclassed model holding QAT layers.*"
        r"quantization='dynamic'.*Export it with "
        r"quantization='int8'",
    ):
        export.export_tflite(model, tmp_path / "tt.tflite", "dynamic")
    assert list(tmp_path.iterdir()) == []
