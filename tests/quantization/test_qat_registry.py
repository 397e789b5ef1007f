"""Tests of tfcompress.quantization.register_layer (layer class -> how QAT quantizes it)."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress._keras import keras
from tfcompress.quantization import quantize, register_layer
from tfcompress.quantization import registry as qreg
from tfcompress.quantization.configs import LayerQuantizeConfig


class _Scale(keras.layers.Layer):
    """A per-channel scale: one float weight per input channel."""

    def build(self, shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(int(shape[-1]),), initializer="ones", trainable=True
        )

    def call(self, x):
        return x * self.kernel


@pytest.fixture(autouse=True)
def _restore_handlers():
    saved = dict(qreg._HANDLERS)
    yield
    qreg._HANDLERS.clear()
    qreg._HANDLERS.update(saved)


def _model():
    x = keras.Input((4,), name="x")
    h = _Scale(name="scale")(x)
    return keras.Model(x, keras.layers.Dense(1, name="out")(h))


def test_unregistered_layer_is_skipped_with_the_reason():
    qat = quantize(_model())
    decision = qat.compression_report["scale"]
    assert not decision.applied
    assert "unknown layer class" in decision.reason and "_Scale" in decision.reason


def test_registered_layer_is_quantized_as_its_handler_says():
    calls = []

    def handler(layer, scheme):
        calls.append((layer.name, scheme.weight_bits))
        return LayerQuantizeConfig(["kernel"], weight_bits=scheme.weight_bits)

    register_layer(_Scale, handler)
    model = _model()
    qat = quantize(model)
    decision = qat.compression_report["scale"]
    assert decision.applied and "LayerQuantizeConfig" in decision.detail
    assert "handler" in decision.detail
    assert calls == [("scale", 8)]
    # the kernel is fake-quantized: the wrapper holds kernel range variables
    wrapper = qat.get_layer("scale")
    names = [w.name for w in wrapper.weights]
    assert any("kernel_min" in n for n in names) and any("kernel_max" in n for n in names)
    x = np.linspace(-1, 1, 8, dtype="float32").reshape(2, 4)
    np.testing.assert_allclose(qat(x).numpy(), model(x).numpy(), atol=0.05)


def test_handler_returning_none_keeps_the_layer_float_and_says_so():
    register_layer(_Scale, lambda layer, scheme: None)
    decision = quantize(_model()).compression_report["scale"]
    assert not decision.applied and "returned None" in decision.reason
    with pytest.raises(ValueError, match="returned None"):
        quantize(_model(), strict=True)


def test_handler_returning_a_non_config_is_a_type_error():
    register_layer(_Scale, lambda layer, scheme: "int8")
    with pytest.raises(TypeError, match="must return a tfmot QuantizeConfig"):
        quantize(_model())


def test_subclass_takes_the_handler_of_its_registered_base():
    class _SubScale(_Scale):
        pass

    register_layer(_Scale, lambda layer, scheme: LayerQuantizeConfig(["kernel"]))
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(1)(_SubScale(name="sub")(x)))
    assert quantize(model).compression_report["sub"].applied


@pytest.mark.parametrize(
    ("layer_class", "handler", "argument"),
    [
        (_Scale(), lambda layer, scheme: None, "layer_class"),
        ("Scale", lambda layer, scheme: None, "layer_class"),
        (int, lambda layer, scheme: None, "layer_class"),
        (_Scale, "not callable", "handler"),
        (_Scale, None, "handler"),
    ],
)
def test_bad_registration_is_a_type_error_naming_the_argument(layer_class, handler, argument):
    with pytest.raises(TypeError, match=f"`{argument}`"):
        register_layer(layer_class, handler)
    assert _Scale not in qreg._HANDLERS
