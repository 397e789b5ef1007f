"""Which part of a model's output the Distiller distils: :func:`detect_output_kind` tells
probabilities (a sigmoid/softmax head, also through TFMOT wrappers) from logits.

Example:
    >>> from tfcompress._keras import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
    ...                       keras.layers.Activation("softmax")])
    >>> detect_output_kind(m)
    'softmax'
"""

from __future__ import annotations

from typing import Any

from tfcompress._compat import is_graph_network, keras_history
from tfcompress._keras import check_model, keras, tf
from tfcompress.distillation.losses import (
    BinaryDistillationLoss,
    ListwiseDistillationLoss,
    SoftmaxDistillationLoss,
    _sigmoid_logits,
    _softmax_logits,
)

__all__ = ["detect_output_kind"]

DECLARED = ("auto", "probabilities", "logits", "sigmoid", "softmax")


# --------------------------------------------------------------------------- output heads


def _unwrap(layer: Any) -> Any:
    """The layer inside TFMOT/Keras wrappers (``PruneLowMagnitude``, ``QuantizeWrapper``)."""
    while isinstance(layer, keras.layers.Wrapper):
        layer = layer.layer
    return layer


def _activation_name(fn: Any) -> str | None:
    """``"sigmoid"``/``"softmax"``/``"linear"``... of an activation (QAT wraps it once)."""
    for _ in range(3):
        if fn is None:
            return None
        name = getattr(fn, "__name__", None)
        if name is not None:
            return name
        fn = getattr(fn, "activation", None)  # TFMOT's QuantizeAwareActivation
    return None


#: modules whose layers apply their ``activation`` attribute to their output (Keras' own, ours)
_TRUSTED_MODULES = ("tf_keras", "keras", "tfcompress")
#: the sublayer that makes the output of a third-party head: Model Garden's
#: ``ClassificationHead`` / ``MultiClsHeads`` keep a tanh ``dense`` (the pooler) and a linear
#: ``out_proj`` (the logits); its own ``activation`` attribute is the pooler's
_OUTPUT_SUBLAYERS = ("out_proj",)


def _output_activation(layer: Any) -> tuple[str | None, str]:
    """The name of the activation ``layer`` applies to its output, and where it was read.

    Keras' and tfcompress' layers apply their ``activation``; another package's layer may hold
    an ``activation`` it applies elsewhere (Model Garden's ``ClassificationHead``: tanh on the
    pooler, logits out), so its output sublayer (``out_proj``) is read when it has one, and
    its own ``activation`` otherwise.
    """
    module = type(layer).__module__ or ""
    if module.split(".")[0] in _TRUSTED_MODULES:
        return _activation_name(getattr(layer, "activation", None)), ""
    for attr in _OUTPUT_SUBLAYERS:
        sub = getattr(layer, attr, None)
        if isinstance(sub, keras.layers.Layer):
            return _activation_name(getattr(sub, "activation", None)), f" via '{attr}'"
    return _activation_name(getattr(layer, "activation", None)), ""  # a user's own head


def is_functional(model: keras.Model) -> bool:
    """Whether ``model`` is a functional/sequential graph network with known outputs."""
    return is_graph_network(model) and bool(model.outputs)


def _detect(model: keras.Model) -> tuple[str | None, Any, str]:
    """``(kind, logits tensor or None, description)`` of a functional model's output head."""
    from tfcompress.models.layers import CatalogLogits

    output = model.outputs[0]
    layer, node_index, _ = keras_history(output)
    inner = _unwrap(layer)
    where = f"output layer '{layer.name}' ({type(inner).__name__}"
    if isinstance(inner, keras.layers.Softmax):
        return "softmax", layer.get_input_at(node_index), f"{where})"
    if isinstance(inner, CatalogLogits):
        return "logits", output, f"{where}: catalogue logits)"
    name, via = _output_activation(inner)
    if name is None:
        return None, None, f"{where})"
    where = f"{where}, activation {name}{via})"
    if isinstance(inner, keras.layers.Activation):
        if name in ("sigmoid", "softmax"):
            return name, layer.get_input_at(node_index), where
        if name == "linear":
            return "logits", output, where
        return None, None, where
    if name in ("sigmoid", "softmax"):
        return name, None, where  # e.g. Dense(..., activation="sigmoid"): logits not in graph
    if name == "linear":
        return "logits", output, where
    return None, None, where


def detect_output_kind(model: keras.Model) -> str | None:
    """What a model outputs: ``"sigmoid"``/``"softmax"`` probabilities, ``"logits"``, or None.

    Looks at the layer producing the (single) output of a functional or sequential model, through
    TFMOT wrappers: an ``Activation``/``Softmax`` layer or a layer with an ``activation``
    (sigmoid/softmax: probabilities; linear: logits), or a two-tower ``CatalogLogits`` layer.
    Returns None when it cannot tell (a subclassed model, another activation or layer).

    Args:
        model: a tf_keras model.

    Raises:
        TypeError: ``model`` is not a tf_keras model.

    Example:
        >>> from tfcompress._keras import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
        >>> detect_output_kind(m)
        'sigmoid'
    """
    check_model(model, "model")
    if not is_functional(model) or len(model.outputs) != 1:
        return None
    return _detect(model)[0]


class _Head:
    """How to get a model's logits: a graph tensor, or a conversion of its probabilities."""

    def __init__(self, kind: str, logits: Any, source: str) -> None:
        self.kind = kind  # "logits" | "sigmoid" | "softmax" | "probabilities" (width unknown)
        self.logits = logits  # symbolic tensor in the model's graph, or None
        self.source = source


def resolve_head(model: keras.Model, declared: object, argument: str) -> _Head:
    """Reconcile the detected output head of ``model`` with what ``argument`` declares.

    Raises:
        ValueError: unknown declaration, undetectable head with ``"auto"``, a declaration that
            contradicts a detected head, a multi-output model.
    """
    if not isinstance(declared, str) or declared not in DECLARED:
        raise ValueError(f"`{argument}` must be one of {list(DECLARED)}, received {declared!r}.")
    if not is_functional(model):
        if declared == "auto":
            raise ValueError(
                f"`{argument}`='auto' cannot inspect model '{model.name}' "
                f"({type(model).__name__}): it is not a functional/sequential model with known "
                f"outputs. Declare what it outputs: {argument}='logits' or 'probabilities' "
                "(or 'sigmoid'/'softmax')."
            )
        return _Head(declared, None, f"declared {declared!r}")
    if len(model.outputs) != 1:
        raise ValueError(
            f"The Distiller needs single-output models; model '{model.name}' ({argument}) has "
            f"{len(model.outputs)} outputs. Build a model with the one output to distil."
        )
    width = model.outputs[0].shape[-1]
    kind, logits, where = _detect(model)
    probabilities = ("sigmoid", "softmax")
    fix = f"declare {argument}='logits' or 'probabilities' (or 'sigmoid'/'softmax')"
    if declared == "auto":
        if kind is None:
            raise ValueError(
                f"Cannot tell whether model '{model.name}' outputs probabilities or logits from "
                f"its {where}; {fix}."
            )
        return _Head(kind, logits, f"detected from the {where}")
    if declared == "logits":
        if kind in probabilities:
            raise ValueError(
                f"`{argument}`='logits' contradicts model '{model.name}': its {where} outputs "
                f"{kind} probabilities. Use {argument}='auto' (the logits are read before the "
                "activation) or 'probabilities'."
            )
        return _Head("logits", model.outputs[0], "declared 'logits'")
    if kind == "logits":
        raise ValueError(
            f"`{argument}`={declared!r} contradicts model '{model.name}': its {where} outputs "
            f"logits. Use {argument}='logits' (or 'auto')."
        )
    wanted = declared
    if declared == "probabilities":
        wanted = kind or ("sigmoid" if width == 1 else "softmax")
    if kind is not None and kind != wanted:
        raise ValueError(
            f"`{argument}`={declared!r} contradicts model '{model.name}': its {where} outputs "
            f"{kind} probabilities. Use {argument}='auto' or {kind!r}."
        )
    return _Head(wanted, logits, f"declared {declared!r}")


def to_logits(values: tf.Tensor, kind: str) -> tf.Tensor:
    """Logits of model outputs of ``kind`` (log-odds of sigmoid, log of softmax outputs)."""
    values = tf.cast(values, tf.float32)
    if kind == "probabilities":
        kind = "sigmoid" if values.shape[-1] == 1 else "softmax"
    if kind == "sigmoid":
        return _sigmoid_logits(values)
    if kind == "softmax":
        return _softmax_logits(values)
    return values


# --------------------------------------------------------------------------- argument checks


def find_layer(model: keras.Model, name: str, argument: str) -> Any:
    """The top-level layer ``name`` of ``model`` (also a wrapper of a layer of that name).

    Raises:
        ValueError: no such layer; the message lists the available layer names.
    """
    for layer in model.layers:
        if layer.name == name or _unwrap(layer).name == name:
            return layer
    available = ", ".join(
        layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
    )
    raise ValueError(
        f"`{argument}`: model '{model.name}' has no layer named {name!r}. Available layers: "
        f"{available}."
    )


def layer_output(model: keras.Model, layer: Any, argument: str) -> Any:
    """The single symbolic output tensor of ``layer`` in ``model`` (ValueError if ambiguous)."""
    try:
        output = layer.output
    except (AttributeError, RuntimeError) as err:
        raise ValueError(
            f"`{argument}`: layer '{layer.name}' of model '{model.name}' is used at several places "
            f"of the graph (or not at all), so its output is ambiguous ({err}); pick a layer that "
            "is called once."
        ) from err
    if isinstance(output, (list, tuple)):
        raise ValueError(
            f"`{argument}`: layer '{layer.name}' of model '{model.name}' has {len(output)} "
            "outputs; pick a layer with a single tensor output."
        )
    return output


def auto_loss(student: _Head, teacher: _Head, width: Any, teacher_model: keras.Model) -> Any:
    """The distillation loss class ``"auto"`` picks for these output heads.

    Sigmoid outputs: :class:`BinaryDistillationLoss`; softmax outputs or multi-class logits:
    :class:`SoftmaxDistillationLoss`; two-tower catalogue logits:
    :class:`ListwiseDistillationLoss`. One logit output is ambiguous (binary logit or score)
    and raises.
    """
    from tfcompress.models.layers import CatalogLogits

    kinds = {student.kind, teacher.kind} - {"logits"}
    if kinds == {"probabilities"}:
        kinds = {"sigmoid" if width == 1 else "softmax"}
    kinds.discard("probabilities")
    if len(kinds) > 1:
        raise ValueError(
            f"The student outputs {student.kind} and the teacher {teacher.kind}; "
            "distillation_loss='auto' needs the same kind of output. Pass a loss object, e.g. "
            "tfcompress.distillation.SoftmaxDistillationLoss() or "
            "tfcompress.distillation.BinaryDistillationLoss()."
        )
    if kinds == {"sigmoid"}:
        return BinaryDistillationLoss
    if kinds == {"softmax"}:
        return SoftmaxDistillationLoss
    if is_functional(teacher_model) and isinstance(
        _unwrap(keras_history(teacher_model.outputs[0])[0]), CatalogLogits
    ):
        return ListwiseDistillationLoss
    if width is not None and width > 1:
        return SoftmaxDistillationLoss
    raise ValueError(
        "distillation_loss='auto' cannot choose for models with one logit output (a binary "
        "logit or a regression score?). Pass distillation_loss='binary' "
        "(tfcompress.distillation.BinaryDistillationLoss) for a click/binary logit or 'mse' "
        "(tfcompress.distillation.MSEDistillationLoss) for a score."
    )
