"""Tests of tfcompress.pruning.register_shrink_handler (layer class -> how shrink rewrites it)."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress._keras import keras
from tfcompress.pruning import _graph, register_shrink_handler, shrink


class _Scale(keras.layers.Layer):
    """A per-channel scale: one weight per input channel, output width = input width."""

    def build(self, shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(int(shape[-1]),), initializer="random_normal"
        )

    def call(self, x):
        return x * self.kernel


@pytest.fixture(autouse=True)
def _restore_handlers():
    visitors, rewrites = dict(_graph._VISITORS), dict(_graph._REWRITES)
    yield
    _graph._VISITORS.clear()
    _graph._VISITORS.update(visitors)
    _graph._REWRITES.clear()
    _graph._REWRITES.update(rewrites)


def _model(scale_cls=_Scale):
    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="x")
    h = keras.layers.Dense(8, name="h")(x)
    s = scale_cls(name="scale")(h)
    return keras.Model(x, keras.layers.Dense(1, name="out")(s))


def test_unregistered_layer_blocks_its_input_with_the_reason():
    model = _model()
    small = shrink(model, ratio=0.5)
    assert small.get_layer("h").units == 8
    decision = small.compression_report["h"]
    assert not decision.applied and "which shrink cannot rewire" in decision.reason
    assert "_Scale" in decision.reason


def test_registered_layer_is_shrunk_as_its_handler_says():
    calls = []

    def handler(layer, kept):
        calls.append((layer.name, kept.tolist()))
        return [layer.kernel.numpy()[kept]]

    register_shrink_handler(_Scale, handler)
    model = _model()
    small = shrink(model, ratio=0.5)
    assert small.get_layer("h").units == 4
    assert small.compression_report["h"].applied
    [(name, kept)] = calls
    assert name == "scale" and len(kept) == 4 and kept == sorted(kept)
    np.testing.assert_array_equal(
        small.get_layer("scale").kernel.numpy(), model.get_layer("scale").kernel.numpy()[kept]
    )
    np.testing.assert_array_equal(
        small.get_layer("h").kernel.numpy(), model.get_layer("h").kernel.numpy()[:, kept]
    )
    np.testing.assert_array_equal(
        small.get_layer("out").kernel.numpy(), model.get_layer("out").kernel.numpy()[kept]
    )


def test_subclass_takes_the_handler_of_its_registered_base():
    class _SubScale(_Scale):
        pass

    register_shrink_handler(_Scale, lambda layer, kept: [layer.kernel.numpy()[kept]])
    small = shrink(_model(_SubScale), ratio=0.5)
    assert small.get_layer("h").units == 4 and small.get_layer("scale").kernel.shape[0] == 4


def test_handler_returning_wrong_weights_names_the_layer():
    register_shrink_handler(_Scale, lambda layer, kept: [layer.kernel.numpy()])  # not sliced
    with pytest.raises(ValueError, match="layer 'scale'"):
        shrink(_model(), ratio=0.5)


@pytest.mark.parametrize(
    ("layer_class", "handler", "argument"),
    [
        (_Scale(), lambda layer, kept: [], "layer_class"),
        ("Scale", lambda layer, kept: [], "layer_class"),
        (dict, lambda layer, kept: [], "layer_class"),
        (_Scale, "not callable", "handler"),
        (_Scale, None, "handler"),
    ],
)
def test_bad_registration_is_a_type_error_naming_the_argument(layer_class, handler, argument):
    with pytest.raises(TypeError, match=f"`{argument}`"):
        register_shrink_handler(layer_class, handler)
    assert _Scale not in _graph._VISITORS and _Scale not in _graph._REWRITES
