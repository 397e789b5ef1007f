"""Layer class -> how :func:`~tfcompress.quantization.quantize` quantizes it; users add their own
layer classes with :func:`register_layer`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tfcompress._keras import keras

__all__ = ["register_layer"]

# TFMOT is imported after tfcompress._keras, which makes it use tf_keras (Keras 2).
import tensorflow_model_optimization as tfmot  # noqa: E402


@dataclass(frozen=True)
class _Plan:
    """How one layer is quantized: ``kind`` is annotate | registry | multi | pass | float."""

    kind: str
    detail: str = ""
    reason: str = ""
    config: Any = None
    strict_ok: bool = True


#: A built-in handler: ``(layer, scheme, tfmot_registry) -> _Plan``.
_Handler = Callable[[Any, Any, Any], _Plan]

#: Layer class -> handler; a layer takes the handler of the first class of its MRO found here.
_HANDLERS: dict[type, _Handler] = {}


def _handler_for(layer: Any) -> _Handler | None:
    """The handler of the most specific registered class of ``layer`` (None: none registered)."""
    for cls in type(layer).__mro__:
        handler = _HANDLERS.get(cls)
        if handler is not None:
            return handler
    return None


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_registration(layer_class: Any, handler: Any, what: str) -> None:
    """Shared checks of the public register functions (TypeError naming the argument)."""
    if not isinstance(layer_class, type) or not issubclass(layer_class, keras.layers.Layer):
        raise TypeError(
            f"{what}: `layer_class` must be a tf_keras Layer subclass (the class itself, not an "
            f"instance), got {layer_class!r} of type {type(layer_class).__name__}."
        )
    if not callable(handler):
        raise TypeError(
            f"{what}: `handler` must be callable (a function of the layer), got {handler!r} of "
            f"type {type(handler).__name__}."
        )


def _user_handler(layer_class: type, handler: Callable[[Any, Any], Any]) -> _Handler:
    """Wrap a user's ``handler(layer, scheme) -> QuantizeConfig | None`` into a built-in one."""
    name = getattr(handler, "__qualname__", repr(handler))

    def plan(layer: Any, scheme: Any, _registry: Any) -> _Plan:
        config = handler(layer, scheme)
        if config is None:
            return _Plan(
                "float",
                reason=f"kept float: the handler {name} registered for "
                f"{_class_name(layer_class)} returned None",
                strict_ok=False,
            )
        if not isinstance(config, tfmot.quantization.keras.QuantizeConfig):
            raise TypeError(
                f"quantize: the handler {name} registered for {_class_name(layer_class)} "
                f"returned {type(config).__name__} for layer '{layer.name}'; it must return a "
                "tfmot QuantizeConfig (e.g. tfcompress.quantization.configs."
                "LayerQuantizeConfig) or None to keep the layer float."
            )
        return _Plan("annotate", f"{type(config).__name__} from the handler {name}", config=config)

    return plan


def register_layer(layer_class: type, handler: Callable[[Any, Any], Any]) -> None:
    """Tell :func:`~tfcompress.quantization.quantize` how to quantize ``layer_class``.

    Without a handler, a layer class of your own is quantized through the ``Dense``/
    ``EinsumDense``/``Embedding``/``MultiHeadAttention`` sublayers it holds (the report lists
    their kernels), runs as it is when it has no weights, and otherwise stays float with the
    reason in the report (``"kept float: unknown layer class ..."``); a handler overrides that.
    The handler is called once per layer of that class (and of its subclasses, unless a
    subclass has a handler of its own) with the layer and the
    :class:`~tfcompress.quantization.QuantizationScheme`, and returns either a TFMOT
    ``QuantizeConfig`` — the layer is annotated with it, and the report names the config and
    the handler — or ``None`` to keep the layer float (reported as skipped; ``strict=True``
    raises for it). :class:`tfcompress.quantization.configs.LayerQuantizeConfig` covers most
    layers: it fake-quantizes the named weights (int8, per tensor) and optionally the output. A
    ``QuantizeConfig`` class of your own must be registered with
    ``keras.saving.register_keras_serializable`` so that TFMOT can re-create it. Registering a
    built-in class (``Dense``, ``Embedding``, ...) replaces tfcompress's own handling of it.

    Args:
        layer_class: a tf_keras ``Layer`` subclass (the class, not an instance).
        handler: ``handler(layer, scheme) -> QuantizeConfig | None``.

    Raises:
        TypeError: ``layer_class`` is not a Layer subclass, or ``handler`` is not callable.

    Example:
        >>> from tfcompress._keras import keras
        >>> from tfcompress.quantization import quantize, register_layer
        >>> from tfcompress.quantization.configs import LayerQuantizeConfig
        >>> class Scale(keras.layers.Layer):
        ...     def build(self, shape):
        ...         self.kernel = self.add_weight("kernel", shape=(shape[-1],))
        ...     def call(self, x):
        ...         return x * self.kernel
        >>> def scale_config(layer, scheme):
        ...     return LayerQuantizeConfig(["kernel"], quantize_output=scheme.activations,
        ...                                weight_bits=scheme.weight_bits)
        >>> register_layer(Scale, scale_config)
        >>> x = keras.Input((4,))
        >>> model = keras.Model(x, keras.layers.Dense(1)(Scale(name="scale")(x)))
        >>> with keras.utils.custom_object_scope({"Scale": Scale}):
        ...     qat = quantize(model)
        >>> qat.compression_report["scale"].applied
        True
    """
    _check_registration(layer_class, handler, "register_layer")
    _HANDLERS[layer_class] = _user_handler(layer_class, handler)
