"""Failures of the TFLite converter and of ``tf.saved_model.save`` come out of ``export``
naming the mode, the op and layer, and the fix, chained from TF's own exception."""

import numpy as np
import pytest

from tfcompress._keras import keras, tf
from tfcompress.export import export_saved_model, export_tflite
from tfcompress.export.converter import ConversionError
from tfcompress.export.converter_errors import describe_conversion_failure


class Igamma(keras.layers.Layer):
    """An op with no TFLite builtin kernel (the export allows no Select TF ops)."""

    def call(self, x):
        return tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 0.5)


def _refused_model():
    inp = keras.Input((4,))
    x = Igamma(name="weird")(keras.layers.Dense(4, name="d")(inp))
    return keras.Model(inp, keras.layers.Dense(1, name="out")(x), name="refused")


@pytest.mark.parametrize("mode", [None, "dynamic"])
def test_a_refused_op_is_named_with_its_layer_and_the_fix(tmp_path, mode):
    target = tmp_path / "m.tflite"
    with pytest.raises(ConversionError) as info:
        export_tflite(_refused_model(), target, quantization=mode)
    message = str(info.value)
    name = mode or "float32"
    assert message.startswith(
        f"TFLite conversion of model 'refused' with quantization={name!r} failed: "
        "op Igamma (layer 'weird' (Igamma)) has no TFLite builtin kernel"
    )
    first, *rest = message.splitlines()
    assert first.endswith("or export a SavedModel instead.")  # the summary is one line
    assert rest[0] == "Converter output (last lines):"  # then what the converter printed
    cause = info.value.__cause__
    assert type(cause).__name__ == "ConverterError"  # chained from the converter's own error
    assert "tf.Igamma" in info.value.converter_output  # the whole text is kept
    assert not target.exists()


def test_a_savedmodel_save_failure_names_the_model_and_the_fix(tmp_path):
    scale = tf.Variable(2.0)  # a global: the model does not track it

    class Untracked(keras.layers.Layer):
        def call(self, x):
            return x * scale

    inp = keras.Input((4,))
    model = keras.Model(inp, Untracked(name="untracked")(inp), name="globals")
    np.testing.assert_allclose(model(np.ones((1, 4), "float32")).numpy(), 2.0)
    with pytest.raises(ValueError) as info:
        export_saved_model(model, tmp_path / "sm")
    message = str(info.value)
    assert message.startswith(
        "SavedModel export of model 'globals' (jit_compile=True) failed while saving: "
        "AssertionError: Tried to export a function which references an 'untracked' resource."
    )
    assert "must be an attribute of the model or of one of its layers" in message
    assert isinstance(info.value.__cause__, AssertionError)
    assert not (tmp_path / "sm").exists()


def test_converter_texts_are_described():
    text = "error: Quantization not yet supported for op: 'COS'"
    assert describe_conversion_failure(text, None, "int8") == (
        "op COS has no int8 kernel. Use strict=False (it stays in float), keep it in float "
        "with float_ops=[...], or use quantization='dynamic'."
    )
    other = describe_conversion_failure("\n<unknown>:0: error: something odd\nmore", None, "int8")
    assert other.startswith("something odd. Check the model's ops are TFLite builtins")
