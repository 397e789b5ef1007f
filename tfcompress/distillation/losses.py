"""Knowledge-distillation losses (teacher and student logits as ``(y_true, y_pred)``) for
classification, CTR, scores and candidate lists, and :class:`FeatureDistillation` (hints).

Example:
    >>> import numpy as np
    >>> loss = SoftmaxDistillationLoss(temperature=2.0)
    >>> float(loss(np.array([[2.0, 0.0]]), np.array([[2.0, 0.0]])))  # same logits: no loss
    0.0
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

from tfcompress._keras import keras, tf
from tfcompress._validation import check_bool, check_float

__all__ = [
    "BinaryDistillationLoss",
    "FeatureDistillation",
    "ListwiseDistillationLoss",
    "MSEDistillationLoss",
    "SoftmaxDistillationLoss",
    "get_distillation_loss",
]

#: the names of the losses before 0.2 (deprecated aliases, gone in the next release)
DEPRECATED_NAMES: dict[str, str] = {
    "BinaryKD": "BinaryDistillationLoss",
    "ListwiseKD": "ListwiseDistillationLoss",
    "MSEKD": "MSEDistillationLoss",
    "SoftmaxKD": "SoftmaxDistillationLoss",
}

_log = logging.getLogger("tfcompress")
_register = keras.saving.register_keras_serializable(package="tfcompress")

#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before being turned into logits.
EPSILON = 1e-7


def _check_temperature(value: object, owner: str) -> float:
    """``temperature`` as a finite float > 0; the error is prefixed with ``owner``."""
    fix = "Typical values are 1-4 (1 = no softening)."
    return check_float(value, "temperature", minimum=0, min_open=True, fix=fix, where=owner)


def _prepare(y_true: Any, y_pred: Any, owner: str) -> tuple[tf.Tensor, tf.Tensor]:
    teacher = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
    student = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
    if not teacher.shape.is_compatible_with(student.shape):
        raise ValueError(
            f"{owner}: teacher values (y_true) of shape {teacher.shape} and student values "
            f"(y_pred) of shape {student.shape} must have the same shape; distil between "
            "outputs of the same width."
        )
    return teacher, student


def _sigmoid_logits(p: tf.Tensor) -> tf.Tensor:
    """Log-odds of probabilities ``p`` (clipped to [EPSILON, 1 - EPSILON])."""
    p = tf.clip_by_value(p, EPSILON, 1.0 - EPSILON)
    return tf.math.log(p) - tf.math.log1p(-p)


def _softmax_logits(p: tf.Tensor) -> tf.Tensor:
    """Logits (up to a constant per row, which softmax ignores) of probabilities ``p``."""
    return tf.math.log(tf.clip_by_value(p, EPSILON, 1.0))


class _TemperatureLoss(keras.losses.Loss):
    """Shared arguments of the temperature-scaled losses."""

    _default_temperature = 1.0

    def __init__(
        self,
        temperature: float | None = None,
        *,
        from_logits: bool = True,
        reduction: str = "auto",
        name: str | None = None,
    ) -> None:
        owner = type(self).__name__
        if temperature is None:
            temperature = self._default_temperature
        self.temperature = _check_temperature(temperature, owner)
        self.from_logits = check_bool(from_logits, "from_logits", where=owner)
        super().__init__(reduction=reduction, name=name or _snake(owner))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "from_logits": self.from_logits,
        }


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@_register
class SoftmaxDistillationLoss(_TemperatureLoss):
    """Softened-softmax distillation for classification: ``KL(p_t || p_s) * T^2``.

    With ``p_t = softmax(t / T)`` and ``p_s = softmax(s / T)`` over the last axis. Scaling by
    ``T^2`` keeps the gradient's size independent of ``T`` (Hinton et al. 2015). The per-example
    value is 0 when the student's logits equal the teacher's (up to a constant).

    Args:
        temperature: softening temperature ``T`` > 0 (default 2).
        from_logits: True (default) when inputs are logits; False for probabilities (turned
            into logits by ``log``, after clipping to ``[1e-7, 1]``).
        reduction: Keras loss reduction (``"auto"``, ``"sum_over_batch_size"``, ``"sum"``,
            ``"none"``).
        name: the loss name.

    Example:
        >>> loss = SoftmaxDistillationLoss(temperature=1.0)
        >>> round(float(loss([[0.0, 0.0]], [[0.0, 2.0]])), 4)  # KL([.5,.5] || [.12,.88])
        0.4338
    """

    _default_temperature = 2.0

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        teacher, student = _prepare(y_true, y_pred, "SoftmaxDistillationLoss")
        if not self.from_logits:
            teacher, student = _softmax_logits(teacher), _softmax_logits(student)
        t = self.temperature
        log_p_t = tf.nn.log_softmax(teacher / t, axis=-1)
        log_p_s = tf.nn.log_softmax(student / t, axis=-1)
        p_t = tf.exp(log_p_t)
        terms = tf.where(p_t > 0, p_t * (log_p_t - log_p_s), tf.zeros_like(p_t))
        return tf.reduce_sum(terms, axis=-1) * (t * t)


@_register
class BinaryDistillationLoss(_TemperatureLoss):
    """Distillation of sigmoid (CTR) outputs: ``BCE(sigmoid(t/T), sigmoid(s/T)) * T^2``.

    The teacher's softened click probability is the soft label of a binary cross-entropy on
    the student's softened probability, averaged over the last axis (several independent
    sigmoid outputs are allowed). Its minimum over the student is the teacher's entropy, reached
    when the logits are equal; its gradient is that of the binary KL divergence.

    Args:
        temperature: softening temperature ``T`` > 0 (default 1: the plain soft labels).
        from_logits: True (default) when inputs are logits; False for probabilities (turned
            into log-odds after clipping to ``[1e-7, 1 - 1e-7]``).
        reduction: Keras loss reduction.
        name: the loss name.

    Example:
        >>> round(float(BinaryDistillationLoss()([[0.0]], [[0.0]])), 4)  # BCE(.5, .5) = log 2
        0.6931
    """

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        teacher, student = _prepare(y_true, y_pred, "BinaryDistillationLoss")
        if not self.from_logits:
            teacher, student = _sigmoid_logits(teacher), _sigmoid_logits(student)
        t = self.temperature
        target = tf.sigmoid(teacher / t)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=student / t)
        return tf.reduce_mean(bce, axis=-1) * (t * t)


@_register
class MSEDistillationLoss(keras.losses.Loss):
    """Mean squared error between the teacher's and the student's raw outputs (score models).

    Args:
        reduction: Keras loss reduction.
        name: the loss name.

    Example:
        >>> float(MSEDistillationLoss()([[1.0, 3.0]], [[2.0, 1.0]]))  # ((1-2)^2 + (3-1)^2)/2
        2.5
    """

    def __init__(
        self, *, reduction: str = "auto", name: str | None = "mse_distillation_loss"
    ) -> None:
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        teacher, student = _prepare(y_true, y_pred, "MSEDistillationLoss")
        return tf.reduce_mean(tf.square(student - teacher), axis=-1)


@_register
class ListwiseDistillationLoss(_TemperatureLoss):
    """Listwise ranking distillation: the teacher's softmax over a candidate list as target.

    ``-sum_i q_i log softmax(s / T)_i * T^2`` with ``q = softmax(t / T)`` over the last axis
    (the list: candidates of a query, or the whole catalogue of a retrieval model). With
    ``top_k``, ``q`` is the teacher's softmax over its own ``top_k`` items only (0 elsewhere),
    so the student learns to rank the teacher's best items first against the whole list.
    Items the teacher masks with a very low logit (padding) get ``q_i = 0`` and cost nothing.

    Args:
        temperature: softening temperature ``T`` > 0 (default 1).
        top_k: keep only the teacher's ``top_k`` items as targets (None: the whole list).
        from_logits: True (default) when inputs are logits; False for probabilities.
        reduction: Keras loss reduction.
        name: the loss name.

    Example:
        >>> round(float(ListwiseDistillationLoss()([[0.0, 0.0]], [[0.0, 0.0]])), 4)  # log 2
        0.6931
    """

    def __init__(
        self,
        temperature: float | None = None,
        *,
        top_k: int | None = None,
        from_logits: bool = True,
        reduction: str = "auto",
        name: str | None = None,
    ) -> None:
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(
                "ListwiseDistillationLoss: `top_k` must be None (whole list) or an int >= 1, "
                f"received {top_k!r}."
            )
        self.top_k = top_k
        super().__init__(temperature, from_logits=from_logits, reduction=reduction, name=name)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        teacher, student = _prepare(y_true, y_pred, "ListwiseDistillationLoss")
        if not self.from_logits:
            teacher, student = _softmax_logits(teacher), _softmax_logits(student)
        t = self.temperature
        teacher = teacher / t
        if self.top_k is not None:
            width = teacher.shape[-1]
            if width is not None and self.top_k > width:
                raise ValueError(
                    f"ListwiseDistillationLoss: `top_k`={self.top_k} is larger than the list "
                    f"length {width}; use a smaller top_k or None."
                )
            kth = tf.math.top_k(teacher, k=self.top_k).values[..., -1:]
            teacher = tf.where(teacher >= kth, teacher, tf.fill(tf.shape(teacher), -math.inf))
        target = tf.nn.softmax(teacher, axis=-1)
        log_q_s = tf.nn.log_softmax(student / t, axis=-1)
        terms = tf.where(target > 0, target * log_q_s, tf.zeros_like(target))
        return -tf.reduce_sum(terms, axis=-1) * (t * t)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "top_k": self.top_k}


def feature_mse(student_feature: Any, teacher_feature: Any) -> tf.Tensor:
    """Per-example mean squared error over every non-batch axis (the hint loss).

    Example:
        >>> feature_mse([[1.0, 1.0]], [[0.0, 2.0]]).numpy().tolist()
        [1.0]
    """
    student = tf.cast(tf.convert_to_tensor(student_feature), tf.float32)
    teacher = tf.cast(tf.convert_to_tensor(teacher_feature), tf.float32)
    squared = tf.square(student - teacher)
    axes = list(range(1, squared.shape.rank)) if squared.shape.rank else None
    if axes == []:
        return squared
    return tf.reduce_mean(squared, axis=axes)


@_register
class FeatureDistillation:
    """A hint term: student layer ``student_layer`` mimics teacher layer ``teacher_layer``.

    The Distiller adds ``weight * MSE(projection(student_feature), teacher_feature)`` to its
    loss (FitNets, Romero et al. 2015). The projection is a ``Dense`` layer owned and trained
    by the Distiller (the student itself is not changed); with ``projection="auto"`` it exists
    only when the widths (last axes) differ.

    Args:
        student_layer: name of a top-level layer of the student (a layer wrapped by TFMOT is
            found by its original name too).
        teacher_layer: name of a top-level layer of the teacher.
        weight: the term's weight (>= 0) in the total loss.
        projection: ``"auto"``, True (always a learned ``Dense``) or False (never: the widths
            must match).

    Example:
        >>> FeatureDistillation("mlp_0", "mlp_1", weight=0.1).get_config()["weight"]
        0.1
    """

    def __init__(
        self,
        student_layer: str,
        teacher_layer: str,
        *,
        weight: float = 1.0,
        projection: str | bool = "auto",
    ) -> None:
        for argument, value in (("student_layer", student_layer), ("teacher_layer", teacher_layer)):
            if not isinstance(value, str) or not value:
                raise TypeError(
                    f"FeatureDistillation: `{argument}` must be a layer name (non-empty str), "
                    f"received {value!r}."
                )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise ValueError(
                f"FeatureDistillation: `weight` must be a finite float >= 0, received {weight!r}."
            )
        if not isinstance(projection, bool) and projection != "auto":
            raise ValueError(
                f"FeatureDistillation: `projection` must be 'auto', True or False, received "
                f"{projection!r}."
            )
        self.student_layer = student_layer
        self.teacher_layer = teacher_layer
        self.weight = float(weight)
        self.projection = projection

    def get_config(self) -> dict[str, Any]:
        return {
            "student_layer": self.student_layer,
            "teacher_layer": self.teacher_layer,
            "weight": self.weight,
            "projection": self.projection,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureDistillation:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureDistillation) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items(), key=lambda kv: kv[0])))

    def __repr__(self) -> str:
        return (
            f"FeatureDistillation({self.student_layer!r}, {self.teacher_layer!r}, "
            f"weight={self.weight}, projection={self.projection!r})"
        )


_BY_NAME: dict[str, type[keras.losses.Loss]] = {
    "softmax": SoftmaxDistillationLoss,
    "binary": BinaryDistillationLoss,
    "mse": MSEDistillationLoss,
    "listwise": ListwiseDistillationLoss,
}
#: The names :func:`get_distillation_loss` knows (tfcompress' own KD losses).
KD_LOSS_NAMES = frozenset(_BY_NAME)


def get_distillation_loss(
    identifier: str | keras.losses.Loss | dict[str, Any], temperature: float | None = None
) -> keras.losses.Loss:
    """A distillation loss from a name, a config dict or a loss object.

    Args:
        identifier: ``"softmax"``, ``"binary"``, ``"mse"``, ``"listwise"``, a serialized loss
            (``keras.saving.serialize_keras_object``) or a ``keras.losses.Loss`` instance
            (returned as is; any ``keras.losses.Loss(y_true=teacher, y_pred=student)`` works).
        temperature: the temperature of a loss built by name (None: the loss's default). Given
            with a loss object, it must equal the object's temperature.

    Returns:
        The loss object.

    Raises:
        ValueError: unknown name, temperature given for MSE, or conflicting temperatures.
        TypeError: ``identifier`` of another type.

    Example:
        >>> get_distillation_loss("softmax", temperature=3.0).temperature
        3.0
    """
    if temperature is not None:
        temperature = _check_temperature(temperature, "get_distillation_loss")
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(
                f"Unknown distillation loss {identifier!r}; valid names are {sorted(_BY_NAME)} "
                "(or pass a loss object such as "
                "tfcompress.distillation.SoftmaxDistillationLoss(temperature=2.0))."
            )
        cls = _BY_NAME[key]
        if cls is MSEDistillationLoss:
            if temperature is not None:
                raise ValueError(
                    f"The 'mse' distillation loss has no temperature, received temperature="
                    f"{temperature!r}; leave it None or pick 'binary'/'softmax'/'listwise'."
                )
            return MSEDistillationLoss()
        return cls(temperature)
    if isinstance(identifier, keras.losses.Loss):
        own = getattr(identifier, "temperature", None)
        if temperature is not None and (own is None or abs(float(own) - temperature) > 1e-12):
            raise ValueError(
                f"`temperature`={temperature!r} conflicts with the distillation loss "
                f"{type(identifier).__name__} (temperature {own!r}); set the temperature on the "
                "loss object only, or pass the loss by name."
            )
        return identifier
    raise TypeError(
        "`distillation_loss` must be 'auto', a name in "
        f"{sorted(_BY_NAME)} or a keras.losses.Loss (y_true=teacher, y_pred=student), received "
        f"{type(identifier).__name__}: {identifier!r:.80}."
    )


def with_reduction_none(loss: keras.losses.Loss) -> keras.losses.Loss:
    """A copy of ``loss`` returning per-example values (reduction ``"none"``).

    Falls back to wrapping ``loss.call`` when the class cannot be rebuilt from its config.

    Example:
        >>> with_reduction_none(BinaryDistillationLoss(2.0)).reduction
        'none'
    """
    try:
        config = loss.get_config()
        config["reduction"] = "none"
        copy = type(loss).from_config(config)
    except Exception as err:  # a user class whose config does not round-trip
        _log.debug("Wrapping %s.call for per-example values (%s).", type(loss).__name__, err)
        copy = FunctionLoss(loss.call, name=getattr(loss, "name", None))
    return copy


class FunctionLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` around a function ``fn(y_true, y_pred) -> per-example values``.

    Example:
        >>> FunctionLoss(lambda t, p: (t - p) ** 2)([[1.0], [3.0]], [[0.0], [1.0]]).numpy()
        array([1., 4.], dtype=float32)
    """

    def __init__(self, fn: Any, *, reduction: str = "none", name: str | None = None) -> None:
        super().__init__(reduction=reduction, name=name or getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return self.fn(y_true, y_pred)


# Models and configs saved before 0.2 name the losses "tfcompress>BinaryKD", ...: they still load.
for _old, _new in DEPRECATED_NAMES.items():
    keras.saving.get_custom_objects().setdefault(f"tfcompress>{_old}", globals()[_new])


def __getattr__(name: str) -> Any:
    if name in DEPRECATED_NAMES:
        new = DEPRECATED_NAMES[name]
        warnings.warn(
            f"tfcompress.distillation.losses.{name} is now {new} (tfcompress.distillation.{new}); "
            "the old name goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
