"""Re-creating a model for QAT: subclasses of functional models (Model Garden ``BertEncoder``,
``BertClassifier``) rebuilt as plain functional models, the custom objects their layers need, and
the error that names the layer TFMOT or Keras could not re-create.

Example:
    >>> plain = as_functional(bert_encoder)  # doctest: +SKIP
    >>> type(plain).__name__  # doctest: +SKIP
    'Functional'
"""

from __future__ import annotations

from typing import Any

from tfcompress._compat import flatten_layers, nested_io
from tfcompress._keras import keras
from tfcompress.quantization.composite import function_objects
from tfcompress.quantization.saving import model_custom_objects, quantize_scope

__all__ = ["as_functional", "clone_layer", "copy_graph", "rebuild_error", "rebuild_objects"]


def as_functional(model: keras.Model) -> keras.Model:
    """``model`` itself, or, for a subclass of a functional model with its own ``get_config``
    (``BertEncoder(**config)``), a plain functional model over the same graph and layers.

    Keras clones such a model through its ``from_config``, which re-runs the subclass's
    ``__init__`` (and fails on a lambda activation); the graph itself clones layer by layer.
    """
    if isinstance(model, keras.Sequential) or type(model).get_config is keras.Model.get_config:
        return model
    if type(model).__module__.startswith("tf_keras."):
        return model
    inputs, outputs = nested_io(model)
    return keras.Model(inputs, outputs, name=model.name)


def clone_layer(layer: Any) -> Any:
    """Keras' default clone of one layer, except that a nested functional subclass becomes a
    plain functional clone (:func:`as_functional`) that keeps its name (``BertEncoder`` inside
    ``BertClassifier``: its config has no name, so ``from_config`` would rename it)."""
    if isinstance(layer, keras.Model) and as_functional(layer) is not layer:
        return keras.models.clone_model(as_functional(layer), clone_function=clone_layer)
    return type(layer).from_config(layer.get_config())


def copy_graph(model: keras.Model) -> keras.Model:
    """A functional (or Sequential) copy of ``model`` with the same weights and layer names."""
    base = keras.models.clone_model(as_functional(model), clone_function=clone_layer)
    base.set_weights(model.get_weights())
    return base


def rebuild_objects(model: keras.Model) -> dict[str, Any]:
    """Every layer class of ``model`` and the plain functions its layers hold (lambdas)."""
    layers = list(flatten_layers(model, include_self=False, recursive=True))
    return {**function_objects(layers), **model_custom_objects(model)}


def _failing_layer(model: keras.Model, objects: dict[str, Any]) -> tuple[Any, Exception] | None:
    """The first layer of ``model`` whose config does not re-create it, with the error."""
    for layer in flatten_layers(model, include_self=False, recursive=True):
        if isinstance(layer, (keras.layers.InputLayer, keras.Model)):
            continue
        try:
            with quantize_scope(objects):
                type(layer).from_config(layer.get_config())
        except Exception as e:  # noqa: BLE001 - diagnosis only: the error is reported
            return layer, e
    return None


def rebuild_error(model: keras.Model, error: Exception, objects: dict[str, Any]) -> Exception:
    """A ``ValueError`` naming the layer (name and class) whose re-creation failed and the fix.

    Called for any exception out of Keras' clone or TFMOT's ``quantize_apply`` (a raw
    ``KeyError`` from TFMOT's model transformer included); chain the original with ``from``.
    """
    what = f"{type(error).__name__}: {error}"
    found = _failing_layer(model, objects)
    if found is not None:
        layer, err = found
        return ValueError(
            f"quantize: layer {layer.name!r} ({type(layer).__module__}.{type(layer).__name__}) "
            f"of model {model.name!r} cannot be re-created from its config for QAT "
            f"({type(err).__name__}: {err}). Make its get_config()/from_config() round-trip "
            "(e.g. a named activation such as 'gelu' instead of a lambda, every __init__ "
            "argument in the config) and register the class with "
            "keras.saving.register_keras_serializable."
        )
    custom = [
        f"{layer.name!r} ({type(layer).__name__})"
        for layer in flatten_layers(model, include_self=False, recursive=True)
        if not type(layer).__module__.startswith(("tf_keras.", "tensorflow_model_optimization."))
    ]
    return ValueError(
        f"quantize: TFMOT could not rebuild model {model.name!r} for QAT ({what}); its custom "
        f"layers: {', '.join(custom) or 'none'}. Pass the layer named in the error (or these "
        "custom layers) in `skip` to keep it float, or register a QuantizeConfig for its class "
        "with tfcompress.quantization.register_layer."
    )
