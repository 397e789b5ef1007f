"""benchmarks/int8_choices.py's per-tensor hook: the converter switches it sets (private TF 2.21
attributes) still make full-int8 weights one scale a tensor, and weight_scales counts them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import tfcompress
from tfcompress._keras import keras, tf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
int8_choices = pytest.importorskip("int8_choices")


@pytest.fixture(scope="module")
def dense_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((8,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    model = keras.Model(x, keras.layers.Dense(4, name="out")(h))
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        ({"x": rng.random((64, 8), dtype=np.float32)}, np.zeros(64, np.float32))
    ).batch(8)
    return model, data


def _export(model, data, path):
    return tfcompress.export_tflite(model, path, "int8", representative_data=data, drift="ignore")


def test_per_tensor_hook_gives_one_scale_a_weight_and_is_undone(dense_model, tmp_path):
    model, data = dense_model
    channel = _export(model, data, tmp_path / "pc.tflite")
    with int8_choices.per_tensor_weights():
        tensor = _export(model, data, tmp_path / "pt.tflite")
    again = _export(model, data, tmp_path / "again.tflite")
    assert int8_choices.weight_scales(channel.path) == {"per_channel": 2, "per_tensor": 0}
    assert int8_choices.weight_scales(tensor.path) == {"per_channel": 0, "per_tensor": 2}
    assert int8_choices.weight_scales(again.path) == {"per_channel": 2, "per_tensor": 0}
    # one float scale (and zero point) a weight tensor instead of one a channel: 16 + 4 - 2
    assert channel.bytes > tensor.bytes


def test_per_tensor_hook_inactive_changes_nothing(dense_model, tmp_path):
    model, data = dense_model
    with int8_choices.per_tensor_weights(active=False):
        result = _export(model, data, tmp_path / "m.tflite")
    assert int8_choices.weight_scales(result.path) == {"per_channel": 2, "per_tensor": 0}


def test_split_concat_dense_groups_inputs_by_range_and_keeps_the_function():
    keras.utils.set_random_seed(0)
    small = keras.Input((4,), name="small")
    large = keras.Input((2,), name="large")
    x = keras.layers.Concatenate(name="joined")([small, large])
    h = keras.layers.Dense(8, activation="relu", name="d0")(x)
    model = keras.Model([small, large], keras.layers.Dense(1, name="out")(h))
    rng = np.random.default_rng(0)
    feats = {
        "small": (0.1 * rng.standard_normal((32, 4))).astype("float32"),
        "large": (5.0 * rng.standard_normal((32, 2))).astype("float32"),
    }
    split, groups = int8_choices.split_concat_dense(model, "joined", "d0", ("out",), feats)
    assert groups == [[0], [1]]
    assert [layer.name for layer in split.layers if layer.name.startswith("d0_part")] == [
        "d0_part_0",
        "d0_part_1",
    ]
    expected = model.predict(feats, verbose=0)
    np.testing.assert_allclose(split.predict(feats, verbose=0), expected, atol=1e-5)
    # one group when the ranges are within the ratio
    _, together = int8_choices.split_concat_dense(model, "joined", "d0", ("out",), feats, 1e3)
    assert together == [[0, 1]]
