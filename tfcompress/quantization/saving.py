"""Saving, loading and unwrapping QAT models: :func:`quantize_scope`, :func:`load_quantized`
(checks the file first) and the float model a QAT model computes.

Example:
    >>> qat.save("qat.keras")  # doctest: +SKIP
    >>> again = load_quantized("qat.keras")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._compat import flatten_layers, quantized_weights
from tfcompress._keras import check_keras_file, check_model, keras
from tfcompress.quantization import configs as qc

# TFMOT is imported after keras_compat, which makes it use tf_keras (Keras 2).
__all__ = [
    "is_quantized",
    "load_quantized",
    "model_custom_objects",
    "quantize_scope",
    "strip_quantization",
]

import tensorflow_model_optimization as tfmot  # noqa: E402

from tfcompress._compat import (  # noqa: E402
    quantize_aware_activation,
    quantize_layer,
    quantize_wrapper,
)

_qk = tfmot.quantization.keras


@contextlib.contextmanager
def quantize_scope(custom_objects: dict[str, Any] | None = None) -> Iterator[None]:
    """TFMOT's ``quantize_scope`` plus tfcompress's quantization classes and ``custom_objects``.

    Example:
        >>> with quantize_scope():  # doctest: +SKIP
        ...     model = keras.models.load_model("qat.keras")
    """
    objects = {**qc.custom_objects(), **(custom_objects or {})}
    # TFMOT's scope registers its own classes last, over ours ("QuantizeLayer" included); the
    # nested scope wins, so every saved QuantizeLayer loads as tfcompress's (see there)
    with _qk.quantize_scope(objects), keras.utils.custom_object_scope(objects):
        yield


def model_custom_objects(model: keras.Model) -> dict[str, Any]:
    """Every layer class of ``model`` by class name and registered name (for re-creation)."""
    objects: dict[str, Any] = {}
    for layer in flatten_layers(model, include_self=False, recursive=True):
        cls = type(layer)
        objects[cls.__name__] = cls
        objects[keras.saving.get_registered_name(cls)] = cls
    return objects


def is_quantized(model: keras.Model) -> bool:
    """True when ``model`` has TFMOT quantization layers (a QAT model from :func:`quantize`).

    Example:
        >>> is_quantized(keras.Sequential([keras.layers.Dense(1, input_shape=(2,))]))
        False
    """
    check_model(model, "model")
    return any(
        isinstance(layer, (quantize_wrapper.QuantizeWrapper, quantize_layer.QuantizeLayer))
        for layer in flatten_layers(model, include_self=False, recursive=True)
    )


def load_quantized(
    path: str | os.PathLike, *, custom_objects: dict[str, Any] | None = None, compile: bool = True
) -> keras.Model:
    """Load a QAT model saved with ``qat_model.save(path)`` (``.keras``), safely.

    The file is checked first (:func:`tfcompress._keras.check_keras_file`), so a missing,
    empty, truncated or Keras 3 file is an error that names it and says what to do, never an
    h5py or deserialization traceback.

    Args:
        path: the ``.keras`` file.
        custom_objects: extra classes (your own custom layers, if not registered), and
            ``"<lambda>"``: the lambda activation the model was built with, if any.
        compile: restore the training configuration.

    Returns:
        The QAT model, with the quantizer ranges and weights it was saved with.

    Raises:
        TypeError: ``path`` is not a path; the file was saved by Keras 3 (the message says
            how to convert it); ``custom_objects`` is not a dict.
        ValueError: the file does not exist, is empty, truncated or not a Keras archive, or
            Keras cannot rebuild the model from it (the message names the file).

    Example:
        >>> qat.save("qat.keras"); again = load_quantized("qat.keras")  # doctest: +SKIP
    """
    path = check_keras_file(path, argument="path")
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(
            f"`custom_objects` must be a dict {{name: class}}, received {custom_objects!r}."
        )
    from tfcompress.quantization.composite import with_lambda  # composite imports configs

    custom_objects = with_lambda(custom_objects or {})
    try:
        with quantize_scope(custom_objects):
            return keras.models.load_model(path, compile=compile, safe_mode=True)
    except (OSError, ValueError, TypeError) as e:
        if "__lambda__" in str(e) or "'<lambda>'" in str(e):
            raise ValueError(
                f"load_quantized: {str(path)!r} holds a lambda activation (Model Garden's "
                "legacy BertEncoder default is one), which a .keras file cannot store safely. "
                "Pass the same function as `custom_objects={'<lambda>': fn}` (e.g. fn = lambda "
                "x: tf_keras.activations.gelu(x, approximate=True)), or build the model with a "
                "named activation such as inner_activation='gelu'."
            ) from e
        unknown = _unknown_classes(path, custom_objects or {})
        if unknown:
            example = ", ".join(f"{name!r}: {name}" for name in unknown)
            raise ValueError(
                f"load_quantized: {str(path)!r} uses layer class(es) Keras cannot find: "
                f"{unknown} ({e}). Pass them as `custom_objects={{{example}}}` or register "
                "them with keras.saving.register_keras_serializable()."
            ) from e
        raise ValueError(
            f"load_quantized: could not load the QAT model in {str(path)!r}: {e}. Save it again "
            "with qat_model.save(path) from tfcompress.quantize()'s model; pass the classes of "
            "your own unregistered layers in `custom_objects`."
        ) from e


_KNOWN_MODULES = ("tf_keras", "keras", "tensorflow", "tensorflow_model_optimization", "tfcompress")


def _unknown_classes(path: Path, custom_objects: dict[str, Any]) -> list[str]:
    """Classes in the archive's config from outside Keras/TFMOT/tfcompress that nothing names."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module = str(node.get("module") or "")
            name = node.get("registered_name") or node.get("class_name")
            if (
                module
                and isinstance(name, str)
                and module.split(".")[0] not in _KNOWN_MODULES
                and name not in custom_objects
                and keras.saving.get_registered_object(name) is None
            ):
                found.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return sorted(found)


# --------------------------------------------------------------------------- strip / ranges


def _weight_key(layer_name: str, variable: Any) -> str:
    """``"query/kernel"`` for ``"[wrapper/]block_0_mha/query/kernel:0"`` of ``block_0_mha``."""
    name = variable.name.split(":")[0]
    at = name.rfind(layer_name + "/")
    return name[at + len(layer_name) + 1 :] if at >= 0 else name


def _baked_weights(wrapper: Any) -> dict[str, np.ndarray]:
    """The wrapped layer's weights by name, quantized ones at their fake-quantized value.

    TFMOT replaces each quantized weight attribute by a tensor, which untracks the variable
    from the wrapped layer; the wrapper's ``_weight_vars`` still holds it.
    """
    inner = wrapper.layer
    values = {}
    for weight, quantizer, variables in quantized_weights(wrapper):
        values[_weight_key(inner.name, weight)] = quantizer(weight, False, weights=variables)
    for weight in inner.weights:
        values.setdefault(_weight_key(inner.name, weight), weight)
    return {k: np.asarray(v.numpy()) for k, v in values.items()}


def _set_baked(layer: Any, values: dict[str, np.ndarray]) -> None:
    try:
        layer.set_weights([values[_weight_key(layer.name, w)] for w in layer.weights])
    except KeyError as e:
        raise ValueError(
            f"strip_quantization: weight {e} of layer {layer.name!r} has no counterpart in the "
            f"QAT model (it has {sorted(values)})."
        ) from e


def _float_config(layer: Any) -> dict[str, Any]:
    config = layer.get_config()
    for attr in ("activation",):
        value = getattr(layer, attr, None)
        if isinstance(value, quantize_aware_activation.QuantizeAwareActivation):
            config[attr] = keras.activations.serialize(value.activation)
        elif isinstance(value, quantize_aware_activation.NoOpActivation):
            config[attr] = "linear"
    return config


def strip_quantization(model: keras.Model) -> keras.Model:
    """A float model computing what a QAT model computes minus the activation fake-quant.

    Every wrapped layer becomes its plain layer holding the fake-quantized (int8-grid) weight
    values, and input quantizers become identities. This is what ``export_tflite`` converts in
    the non-``"int8"`` modes (``"dynamic"``: the converter then stores exactly these int8
    values).

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ``model`` is not a QAT model.

    Example:
        >>> plain = strip_quantization(qat)  # doctest: +SKIP
    """
    check_model(model, "model")
    if not is_quantized(model):
        raise ValueError(
            f"strip_quantization: model {model.name!r} has no quantization layers; pass the "
            "model returned by tfcompress.quantize()."
        )
    pending: list[tuple[Any, Any]] = []

    def unwrap(layer: Any) -> Any:
        if isinstance(layer, quantize_layer.QuantizeLayer):
            return keras.layers.Activation("linear", name=layer.name)
        if isinstance(layer, keras.Model) and is_quantized(layer):  # a quantized tower
            return strip_quantization(layer)
        if isinstance(layer, quantize_wrapper.QuantizeWrapper):
            inner = layer.layer
            new = type(inner).from_config(_float_config(inner))
            pending.append((new, _baked_weights(layer)))
        else:
            new = type(layer).from_config(layer.get_config())
            pending.append((new, layer.get_weights()))
        return new

    with quantize_scope(model_custom_objects(model)):
        plain = keras.models.clone_model(model, clone_function=unwrap)
    for new, values in pending:
        if isinstance(values, dict):
            _set_baked(new, values)
        else:
            new.set_weights(values)
    return plain
