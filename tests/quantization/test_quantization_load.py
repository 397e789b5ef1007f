"""``load_quantized`` errors name the file and the fix (issue 13, item 3)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from tfcompress._keras import keras
from tfcompress.quantization import is_quantized, load_quantized, quantize


class Scale(keras.layers.Layer):
    """A user layer that is not registered with Keras: loading needs ``custom_objects``."""

    def build(self, input_shape):
        self.scale = self.add_weight("scale", shape=(input_shape[-1],), initializer="ones")
        super().build(input_shape)

    def call(self, x):
        return x * self.scale


@pytest.fixture
def saved(tmp_path):
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(1, name="out")(Scale(name="scale")(hidden))
    qat = quantize(keras.Model(inputs, outputs))
    path = tmp_path / "qat.keras"
    qat.save(path)
    return qat, path


def test_empty_file_is_a_value_error_naming_it(tmp_path):
    path = tmp_path / "interrupted.keras"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"interrupted\.keras' is empty \(0 bytes\).*save the"):
        load_quantized(path)


def test_truncated_file_is_a_value_error_naming_it(saved, tmp_path):
    _, path = saved
    half = tmp_path / "half.keras"
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(
        ValueError,
        match=r"half\.keras' \(\d+ bytes\) is not a Keras archive: "
        r"it is truncated.*model\.save",
    ):
        load_quantized(half)


def test_non_zip_and_foreign_zip_are_value_errors(tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(ValueError, match=r"notes\.keras' \(11 bytes\) is not a Keras archive"):
        load_quantized(text)
    foreign = tmp_path / "photos.keras"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("cat.jpg", b"\xff\xd8")
    with pytest.raises(ValueError, match=r"photos\.keras' is a zip file but not a Keras archive"):
        load_quantized(foreign)
    with pytest.raises(ValueError, match=r"missing\.keras' does not exist"):
        load_quantized(tmp_path / "missing.keras")
    with pytest.raises(TypeError, match="`path` must be a path to a .keras file, received int"):
        load_quantized(3)


def test_keras3_file_is_a_type_error_with_the_conversion(tmp_path):
    import keras as keras3  # Keras 3, installed alongside tf_keras

    path = tmp_path / "k3.keras"
    keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)]).save(path)
    with pytest.raises(
        TypeError,
        match=r"k3\.keras' was saved by Keras 3\.\S+ \(Keras 3\)\. "
        r"tfcompress works on Keras 2.*import tf_keras as keras",
    ):
        load_quantized(path)


def test_unknown_custom_layer_is_a_value_error_naming_file_and_custom_objects(saved):
    qat, path = saved
    with pytest.raises(
        ValueError,
        match=r"qat\.keras' uses layer class\(es\) Keras cannot find: "
        r"\['Scale'\].*`custom_objects=\{'Scale': Scale\}`",
    ):
        load_quantized(path)
    again = load_quantized(path, custom_objects={"Scale": Scale})
    assert is_quantized(again)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    np.testing.assert_allclose(again(x, training=False), qat(x, training=False), atol=1e-6)
    with pytest.raises(TypeError, match=r"`custom_objects` must be a dict \{name: class\}"):
        load_quantized(path, custom_objects=[Scale])
