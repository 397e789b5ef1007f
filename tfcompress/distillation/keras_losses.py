"""Keras losses in the Distiller, resolved, matched to the labels and checked the way
``Model.compile`` does (:func:`resolve_loss`), and the distillation term
(:class:`DistillationTerm`).

Example:
    >>> import numpy as np
    >>> loss = resolve_loss("binary_crossentropy", "loss")
    >>> labels = np.array([1.0, 0.0])  # 1-D labels of a (None, 1) sigmoid output
    >>> np.round(loss(labels, np.array([[0.9], [0.2]])).numpy(), 4).tolist()  # per example
    [0.1054, 0.2231]
"""

from __future__ import annotations

import logging
from typing import Any

from tfcompress._compat import LossFunctionWrapper
from tfcompress._keras import keras, tf
from tfcompress.distillation.losses import (
    KD_LOSS_NAMES,
    get_distillation_loss,
    with_reduction_none,
)

__all__ = [
    "DistillationTerm",
    "ResolvedLoss",
    "get_kd_loss",
    "match_labels",
    "resolve_loss",
]

_log = logging.getLogger("tfcompress")

# --------------------------------------------------------------------------- Keras hooks
# Pinned by tests/distillation/test_distillation_labels.py::
# test_label_matching_mirrors_keras_compile_utils.
#
# 1. ``LossesContainer._get_loss_object`` (tf_keras/src/engine/compile_utils.py) wraps a loss
#    function in ``losses.LossFunctionWrapper``; the same class is exported (not documented) as
#    ``keras.__internal__.losses.LossFunctionWrapper``. Its ``call`` squeezes/expands
#    ``y_pred``/``y_true`` by one axis before calling the function.
# 2. :func:`match_labels` is a copy of the private ``compile_utils.match_dtype_and_rank``, which
#    ``LossesContainer.__call__`` and ``MetricsContainer.update_state`` apply to every batch.


def match_labels(y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[Any, Any, Any]:
    """Match labels (and sample weights) to predictions as ``Model.compile``'s losses do.

    Rank-1 labels and sample weights of rank-2 predictions get a trailing axis; labels are cast
    to the predictions' dtype when both are floating or both are integers; sample weights are
    cast to the predictions' dtype.

    Example:
        >>> y, p, sw = match_labels(tf.constant([1, 0]), tf.zeros((2, 1)), None)
        >>> y.shape.as_list(), y.dtype.name
        ([2, 1], 'int32')
    """
    if y_true.shape.rank == 1 and y_pred.shape.rank == 2:
        y_true = tf.expand_dims(y_true, axis=-1)
    if sample_weight is not None and sample_weight.shape.rank == 1 and y_pred.shape.rank == 2:
        sample_weight = tf.expand_dims(sample_weight, axis=-1)
    if (y_true.dtype.is_floating and y_pred.dtype.is_floating) or (
        y_true.dtype.is_integer and y_pred.dtype.is_integer
    ):
        y_true = tf.cast(y_true, y_pred.dtype)
    if sample_weight is not None:
        sample_weight = tf.cast(sample_weight, y_pred.dtype)
    return y_true, y_pred, sample_weight


# --------------------------------------------------------------------------- loss families

# Built-in Keras loss functions (aliases such as "bce"/"kld" are the same objects), by what
# their labels are: "binary"/"categorical" probabilities, "sparse" class ids, or "elementwise"
# values of the output's shape. The class named is the Loss to use with from_logits=True.
_FAMILIES: dict[Any, tuple[str, str]] = {
    keras.losses.binary_crossentropy: ("binary", "BinaryCrossentropy"),
    keras.losses.binary_focal_crossentropy: ("binary", "BinaryFocalCrossentropy"),
    keras.losses.categorical_crossentropy: ("categorical", "CategoricalCrossentropy"),
    keras.losses.categorical_focal_crossentropy: ("categorical", "CategoricalFocalCrossentropy"),
    keras.losses.kl_divergence: ("categorical", "CategoricalCrossentropy"),
    keras.losses.sparse_categorical_crossentropy: ("sparse", "SparseCategoricalCrossentropy"),
    **{
        fn: ("elementwise", "")
        for fn in (
            keras.losses.mean_squared_error,
            keras.losses.mean_absolute_error,
            keras.losses.mean_absolute_percentage_error,
            keras.losses.mean_squared_logarithmic_error,
            keras.losses.huber,
            keras.losses.log_cosh,
            keras.losses.poisson,
            keras.losses.hinge,
            keras.losses.squared_hinge,
        )
    },
}
_PROBABILITY_FAMILIES = ("binary", "categorical", "sparse")


def _shape(shape: Any) -> str:
    return str(tuple(tf.TensorShape(shape).as_list())) if shape is not None else "(unknown)"


def _describe(spec: Any, argument: str) -> str:
    """How the user wrote the loss, for messages (``loss='bce'``, ``loss=Huber()``)."""
    if isinstance(spec, str):
        return f"{argument}={spec!r}"
    if type(spec) is LossFunctionWrapper:  # a function wrapped as Model.compile does
        return f"{argument}={getattr(spec.fn, '__name__', spec.name)!r}"
    if isinstance(spec, keras.losses.Loss):
        config = spec.get_config() if hasattr(spec, "get_config") else {}
        flag = f"from_logits={config['from_logits']}" if "from_logits" in config else ""
        return f"{argument}={type(spec).__name__}({flag})"
    name = getattr(spec, "__name__", type(spec).__name__)
    module = getattr(spec, "__module__", "") or ""
    prefix = "keras.losses." if module.startswith(("tf_keras", "keras")) else ""
    return f"{argument}={prefix}{name}"


class ResolvedLoss:
    """A ``Model.compile`` loss returning per-example values, with the label checks of its kind.

    Attributes:
        spec: the loss as the user gave it (serialized in the compile config).
        loss: the ``keras.losses.Loss`` computing per-example values (reduction ``"none"``).
        display: the loss as the user wrote it, for messages (``"loss='bce'"``).
        family: ``"binary"``, ``"categorical"``, ``"sparse"``, ``"elementwise"``, or None for a
            loss Keras does not ship (then no shape checks).
        from_logits: whether the loss takes logits (None when unknown).

    Example:
        >>> resolve_loss("sparse_categorical_crossentropy", "loss").family
        'sparse'
    """

    def __init__(
        self,
        spec: Any,
        loss: keras.losses.Loss,
        display: str,
        family: str | None,
        from_logits: bool | None,
        logits_class: str = "",
    ) -> None:
        self.spec = spec
        self.loss = loss
        self.display = display
        self.family = family
        self.from_logits = from_logits
        self._logits_class = logits_class

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tf.Tensor:
        """Per-example loss values (weighted by ``sample_weight``) after :func:`match_labels`."""
        y_true, y_pred, sample_weight = (
            v if v is None or tf.is_tensor(v) else tf.convert_to_tensor(v)
            for v in (y_true, y_pred, sample_weight)
        )
        y_true, y_pred, sample_weight = match_labels(y_true, y_pred, sample_weight)
        return self.loss(y_true, y_pred, sample_weight=sample_weight)

    # ------------------------------------------------------------------- checks

    def check_output(self, shape: Any, kind: str | None, model: str, role: str = "student") -> None:
        """Raise when this loss cannot train an output of ``shape`` and ``kind``.

        Args:
            shape: the output's shape (None or partly unknown: checks what is known).
            kind: ``"logits"``, ``"sigmoid"``, ``"softmax"``, ``"probabilities"`` or None.
            model: the model's name, for messages.
            role: ``"student"``, for messages.

        Raises:
            ValueError: a categorical/sparse loss on a one-unit output; a probability loss
                (``from_logits=False``) on logits or a logit loss on probabilities.
        """
        if self.family not in _PROBABILITY_FAMILIES:
            return
        shape = tf.TensorShape(shape) if shape is not None else tf.TensorShape(None)
        width = shape[-1] if shape.rank else None
        where = f"the {role} '{model}' output of shape {_shape(shape)}"
        if self.family in ("categorical", "sparse") and width == 1:
            raise ValueError(
                f"{self.display} needs one output unit per class, but {where} has one unit: a "
                "softmax over one unit is always 1, so this loss would always be 0 and the "
                f"{role} would learn nothing from the labels. For labels of shape (n,) or (n, 1) "
                "with 0/1 values use loss='binary_crossentropy' (a sigmoid output); for k "
                f"classes give the {role} a Dense(k) softmax output."
            )
        if kind == "logits" and not self.from_logits:
            raise ValueError(
                f"{self.display} expects probabilities (from_logits=False), but {where} outputs "
                f"logits. Use keras.losses.{self._logits_class}(from_logits=True), or end the "
                f"{role} with a sigmoid/softmax Activation layer."
            )
        if kind in ("sigmoid", "softmax", "probabilities") and self.from_logits:
            name = "" if kind == "probabilities" else f"{kind} "
            raise ValueError(
                f"{self.display} expects logits (from_logits=True), but {where} outputs "
                f"{name}probabilities. Use from_logits=False (e.g. "
                f"loss=keras.losses.{self._logits_class}()), or give the {role} a linear output."
            )

    def check_batch(
        self, y_true: Any, y_pred: Any, kind: str | None, model: str, role: str = "student"
    ) -> None:
        """Raise when labels of ``y_true``'s shape do not fit this loss and ``y_pred``.

        Runs on static shapes when a step is traced (the first batch). Losses Keras does not
        ship are not checked.

        Raises:
            ValueError: the message names the loss, the output shape, the label shape and the
                fix (e.g. one-hot labels for a sparse loss, class ids for a categorical loss).
        """
        self.check_output(y_pred.shape, kind, model, role)
        if self.family is None:
            return
        t_shape, p_shape = tf.TensorShape(y_true.shape), tf.TensorShape(y_pred.shape)
        if t_shape.rank is None or p_shape.rank is None or p_shape.rank < 2:
            return
        width = p_shape[-1]
        where = (
            f"{self.display}: the {role} '{model}' has an output of shape {_shape(p_shape)} but "
            f"got labels of shape {_shape(t_shape)}"
        )
        if self.family == "sparse":
            ids = t_shape.rank == p_shape.rank - 1 or (
                t_shape.rank == p_shape.rank and t_shape[-1] == 1
            )
            if ids:
                return
            hint = ""
            if t_shape.rank == p_shape.rank and t_shape[-1] == width:
                hint = (
                    " These look one-hot: use loss='categorical_crossentropy' for one-hot "
                    "labels, or pass the class ids (np.argmax(y, axis=-1))."
                )
            raise ValueError(f"{where}; this loss takes class ids of shape (n,) or (n, 1).{hint}")
        if t_shape.rank == p_shape.rank - 1:
            label_width = 1  # Keras squeezes a (n, 1) output to match (n,) labels
        elif t_shape.rank == p_shape.rank:
            label_width = t_shape[-1]
        else:
            return
        if label_width is None or width is None or label_width == width:
            return
        if label_width == 1:
            hint = (
                f"class ids? Use loss='sparse_categorical_crossentropy' for class ids, or one-hot "
                f"encode them (keras.utils.to_categorical(y, {width}))."
            )
            if self.family not in ("categorical",):
                hint = (
                    f"one value per example for a {width}-unit output: one-hot encode them "
                    f"(keras.utils.to_categorical(y, {width})), or use "
                    "loss='sparse_categorical_crossentropy' for class ids."
                )
            raise ValueError(f"{where}: {hint}")
        raise ValueError(
            f"{where}: the labels' last axis ({label_width}) must equal the output's "
            f"({width}). Build the {role} with {label_width} output units, or fix the labels."
        )


def resolve_loss(spec: Any, argument: str = "loss") -> ResolvedLoss:
    """Resolve a ``Model.compile`` loss (name, function, ``Loss``, config) as Keras does.

    Args:
        spec: what ``Model.compile(loss=...)`` accepts for a single-output model (a list or
            dict holding one loss is unwrapped).
        argument: the argument's name, for messages.

    Returns:
        The :class:`ResolvedLoss`.

    Raises:
        ValueError: an unknown name, several losses for the single-output student.
        TypeError: ``spec`` is neither a name, a callable nor a ``keras.losses.Loss`` (a Loss
            class instead of an instance included).

    Example:
        >>> resolve_loss("bce").family, resolve_loss("bce").from_logits
        ('binary', False)
    """
    if isinstance(spec, (list, tuple)) or (isinstance(spec, dict) and "class_name" not in spec):
        values = list(spec.values()) if isinstance(spec, dict) else list(spec)
        if len(values) != 1:
            raise ValueError(
                f"`{argument}`: the Distiller trains a single-output student, but received "
                f"{len(values)} losses ({spec!r:.80}); pass one loss, e.g. "
                f"{argument}='binary_crossentropy'."
            )
        spec = values[0]
    display = _describe(spec, argument)
    if isinstance(spec, type):
        raise TypeError(
            f"`{argument}` must be a loss name, function or keras.losses.Loss instance, received "
            f"the class {spec.__name__}; instantiate it, e.g. {argument}={spec.__name__}()."
        )
    if isinstance(spec, (str, dict)):
        try:
            resolved = keras.losses.get(spec)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"{display}: Unknown loss {spec!r:.80} ({err}). Use a Keras loss name (e.g. "
                "'binary_crossentropy', 'categorical_crossentropy', "
                "'sparse_categorical_crossentropy', 'mse'), function or keras.losses.Loss."
            ) from err
    else:
        resolved = spec
    if isinstance(resolved, keras.losses.Loss):
        if resolved.reduction not in ("auto", "sum_over_batch_size", "none"):
            _log.warning(
                "%s has reduction %r; the Distiller averages its per-example values over the "
                "(global) batch, as reduction 'sum_over_batch_size' does.",
                display,
                resolved.reduction,
            )
        fn = resolved.fn if isinstance(resolved, LossFunctionWrapper) else None
        config = resolved.get_config()
        loss = with_reduction_none(resolved)
    elif callable(resolved):
        fn, config = resolved, {}
        loss = LossFunctionWrapper(fn, name=getattr(fn, "__name__", None), reduction="none")
    else:
        raise TypeError(
            f"`{argument}` must be a loss name, function or keras.losses.Loss, received "
            f"{type(spec).__name__}: {spec!r:.80}."
        )
    family, logits_class = _FAMILIES.get(fn, (None, "")) if fn is not None else (None, "")
    from_logits = bool(config.get("from_logits", False)) if family else None
    return ResolvedLoss(spec, loss, display, family, from_logits, logits_class)


# --------------------------------------------------------------------------- distillation


def get_kd_loss(identifier: Any, temperature: float | None = None) -> keras.losses.Loss:
    """The distillation loss object for ``Distiller(distillation_loss=identifier)``.

    Our KD names (``"binary"``, ``"softmax"``, ``"mse"``, ``"listwise"``) and loss objects go
    through :func:`tfcompress.distillation.losses.get_distillation_loss`; any other
    ``Model.compile`` loss (``"binary_crossentropy"``, ``keras.losses.kl_divergence``, ...) is
    resolved as Keras does, a function wrapped in a ``LossFunctionWrapper``.

    Raises:
        ValueError: an unknown name, ``temperature`` with a Keras loss function.
        TypeError: an identifier of another type.

    Example:
        >>> type(get_kd_loss("binary_crossentropy")).__name__
        'LossFunctionWrapper'
    """
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, keras.losses.Loss) or (
        isinstance(identifier, str) and identifier.lower() in KD_LOSS_NAMES
    ):
        return get_distillation_loss(identifier, temperature)
    if isinstance(identifier, str) or (callable(identifier) and not isinstance(identifier, type)):
        try:
            resolved = keras.losses.get(identifier)
        except ValueError as err:
            raise ValueError(
                f"Unknown distillation loss {identifier!r}; valid names are "
                f"{sorted(KD_LOSS_NAMES)} or a Keras loss name such as 'binary_crossentropy' "
                "(or pass a loss object such as "
                "tfcompress.distillation.SoftmaxDistillationLoss(temperature=2.0))."
            ) from err
        if temperature is not None:
            raise ValueError(
                f"`temperature`={temperature!r} only applies to tfcompress' KD losses "
                f"{sorted(KD_LOSS_NAMES)}; the Keras loss {identifier!r:.60} has none. Leave "
                "temperature None, or use e.g. distillation_loss='binary'."
            )
        if isinstance(resolved, keras.losses.Loss):
            return resolved
        return LossFunctionWrapper(resolved, name=getattr(resolved, "__name__", None))
    return get_distillation_loss(identifier, temperature)  # raises the TypeError


def _probabilities(logits: tf.Tensor, kind: str, family: str) -> tf.Tensor:
    """Probabilities of ``logits`` of a model whose output is ``kind``."""
    width = logits.shape[-1]
    if kind == "probabilities":
        kind = "sigmoid" if width == 1 else "softmax"
    if kind not in ("sigmoid", "softmax"):  # logits: as the loss reads them
        kind = "sigmoid" if family == "binary" else "softmax"
    return tf.sigmoid(logits) if kind == "sigmoid" else tf.nn.softmax(logits, axis=-1)


class DistillationTerm:
    """Per-example distillation loss of the teacher's and the student's logits.

    Keras cross-entropies and the KL divergence get the teacher's probabilities as soft labels
    and the student's probabilities (its logits when the loss has ``from_logits=True``); every
    other loss (tfcompress' KD losses, MSE-like and user losses) gets both logits.

    Args:
        loss: the distillation loss object.
        student_kind: the student's output kind (``"logits"``, ``"sigmoid"``, ...).
        teacher_kind: the teacher's output kind.
        width: the output width (None if unknown).
        spec: the loss as the user gave it, for messages (default: ``loss``).

    Raises:
        ValueError: a sparse loss (it needs class ids, not soft labels), or a categorical loss
            on a one-unit output.

    Example:
        >>> term = DistillationTerm(get_kd_loss("bce"), "sigmoid", "sigmoid", 1)
        >>> round(float(term(tf.zeros((1, 1)), tf.zeros((1, 1)))[0]), 4)  # BCE(0.5, 0.5)
        0.6931
    """

    def __init__(
        self,
        loss: keras.losses.Loss,
        student_kind: str,
        teacher_kind: str,
        width: int | None,
        *,
        spec: Any = None,
    ) -> None:
        resolved = resolve_loss(loss, "distillation_loss")
        resolved.display = _describe(loss if spec is None else spec, "distillation_loss")
        family = resolved.family
        if family == "sparse":
            raise ValueError(
                f"{resolved.display} (sparse_categorical_crossentropy) takes class ids, but the "
                "distillation loss gets the teacher's probabilities as soft labels. Use "
                "distillation_loss='categorical_crossentropy' or 'softmax' "
                "(tfcompress.distillation.SoftmaxDistillationLoss)."
            )
        if family == "categorical" and width == 1:
            raise ValueError(
                f"{resolved.display} (categorical cross-entropy / KL divergence) needs one "
                "output unit per class, but the outputs have shape (None, 1): a softmax over "
                "one unit is always 1. Use distillation_loss='binary' "
                "(tfcompress.distillation.BinaryDistillationLoss) or 'binary_crossentropy'."
            )
        self.loss = resolved
        self.on_probabilities = family in ("binary", "categorical")
        self._kinds = (student_kind, teacher_kind)

    def __call__(
        self, teacher_logits: tf.Tensor, student_logits: tf.Tensor, sample_weight: Any = None
    ) -> tf.Tensor:
        if not self.on_probabilities:
            return self.loss.loss(teacher_logits, student_logits, sample_weight=sample_weight)
        student_kind, teacher_kind = self._kinds
        family = self.loss.family or ""
        target = _probabilities(teacher_logits, teacher_kind, family)
        prediction = student_logits
        if not self.loss.from_logits:
            prediction = _probabilities(student_logits, student_kind, family)
        return self.loss.loss(target, prediction, sample_weight=sample_weight)
