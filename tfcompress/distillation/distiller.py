"""Knowledge distillation as a Keras model: ``Distiller(student, teacher)``.

Compile it with the student's loss and metrics and ``fit`` it like any model; ``.student`` is
the trained student. The objective, output kinds and losses: docs/distillation.md.

Example:
    >>> from tfcompress import data, models
    >>> from tfcompress._keras import keras
    >>> task = data.load_task("ctr", n_samples=2_000)
    >>> teacher = models.sequence_transformer(task.schema, size="teacher")  # trained before
    >>> student = models.dcn(task.schema, size="student")
    >>> distiller = Distiller(student, teacher, student_loss_weight=0.5)  # KD on the logits
    >>> distiller.compile("adam", loss="binary_crossentropy", metrics=[keras.metrics.AUC()])
    >>> history = distiller.fit(task.train, epochs=1, verbose=0)  # doctest: +SKIP
    >>> sorted(history.history)[:3]  # doctest: +SKIP
    ['auc', 'distillation_loss', 'loss']
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import check_float
from tfcompress.distillation.heads import (
    auto_loss,
    detect_output_kind,
    find_layer,
    is_functional,
    layer_output,
    resolve_head,
    to_logits,
)
from tfcompress.distillation.keras_losses import (
    DistillationTerm,
    LossFunctionWrapper,
    ResolvedLoss,
    get_kd_loss,
    resolve_loss,
)
from tfcompress.distillation.losses import (
    FeatureDistillation,
    _check_temperature,
    feature_mse,
)
from tfcompress.pruning.pruner import enable_fit_pruning, is_pruned

__all__ = ["Distiller", "detect_output_kind"]

_log = logging.getLogger("tfcompress")


def _feature_specs(spec: object) -> list[FeatureDistillation]:
    if spec is None:
        return []
    if isinstance(spec, FeatureDistillation):
        return [spec]
    if isinstance(spec, Mapping):
        return [FeatureDistillation(s, t) for s, t in spec.items()]
    if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, str) for v in spec):
        return [FeatureDistillation(*spec)]
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        out = []
        for item in spec:
            if isinstance(item, dict) and "class_name" in item:
                item = keras.saving.deserialize_keras_object(item)
            if isinstance(item, FeatureDistillation):
                out.append(item)
            elif (
                isinstance(item, (tuple, list))
                and len(item) == 2
                and all(isinstance(v, str) for v in item)
            ):
                out.append(FeatureDistillation(*item))
            else:
                raise TypeError(
                    "`feature_distillation` entries must be FeatureDistillation objects or "
                    f"(student_layer, teacher_layer) pairs, received {item!r:.80}."
                )
        return out
    raise TypeError(
        "`feature_distillation` must be None, a FeatureDistillation, a (student_layer, "
        "teacher_layer) pair, a {student_layer: teacher_layer} dict or a list of those; "
        f"received {type(spec).__name__}: {spec!r:.80}."
    )


def _loss_weights(alpha: object, student_loss_weight: object) -> tuple[float, float]:
    """(student loss weight, distillation loss weight) from ``student_loss_weight`` or the
    deprecated ``alpha`` (its complement, the distillation loss weight)."""
    if alpha is not None and student_loss_weight is not None:
        raise ValueError(
            f"Distiller: give `student_loss_weight` only; `alpha` (deprecated) is "
            f"1 - student_loss_weight; received alpha={alpha!r} and "
            f"student_loss_weight={student_loss_weight!r}."
        )
    if alpha is not None:
        warnings.warn(
            "Distiller(alpha=a) is now Distiller(student_loss_weight=1 - a), the weight of the "
            "student's loss as in Keras 3's keras.distillation.Distiller; alpha goes in the next "
            "release.",
            DeprecationWarning,
            stacklevel=3,
        )
        alpha = check_float(
            alpha,
            "alpha",
            minimum=0,
            maximum=1,
            fix="It is the weight of the distillation loss (0: student loss only, 1: "
            "distillation loss only).",
        )
        return 1.0 - alpha, alpha
    if student_loss_weight is None:
        return 0.5, 0.5
    weight = check_float(
        student_loss_weight,
        "student_loss_weight",
        minimum=0,
        maximum=1,
        fix="It is the weight of the student's loss on the labels (1: student loss only, 0: "
        "distillation loss only).",
    )
    return weight, 1.0 - weight


# --------------------------------------------------------------------------- the model


@keras.saving.register_keras_serializable(package="tfcompress")
class Distiller(keras.Model):
    """Trains ``student`` on the labels and on a frozen ``teacher``'s outputs (and features).

    Args:
        student: the model to train (tf_keras; functional, sequential, TFMOT-wrapped, or
            subclassed with declared ``student_outputs``).
        teacher: the trained model to learn from; set ``trainable=False`` here and always run
            with ``training=False``.
        distillation_loss: ``"auto"`` (binary KD for sigmoid outputs, softmax KD for softmax or
            multi-class logits, listwise KD for two-tower catalogue logits), a name
            (``"binary"``, ``"softmax"``, ``"mse"``, ``"listwise"``), a loss object taking
            ``(teacher_logits, student_logits)``, or any Keras loss ``Model.compile`` takes
            (``"binary_crossentropy"``, ``"kl_divergence"``, ``keras.losses.Huber()``, ...):
            Keras cross-entropies and the KL divergence get the teacher's probabilities as soft
            labels and the student's probabilities (logits with ``from_logits=True``).
        student_loss_weight: weight of the student's loss on the labels in [0, 1] (default
            0.5); the distillation loss gets ``1 - student_loss_weight`` (Keras 3's
            ``keras.distillation.Distiller`` name and meaning).
        alpha: deprecated: the distillation loss weight, ``1 - student_loss_weight``.
        temperature: the temperature of a loss chosen by name/"auto" (None: the loss's
            default: 2 for softmax, 1 otherwise).
        student_outputs: ``"auto"``, ``"logits"``, ``"probabilities"``, ``"sigmoid"`` or
            ``"softmax"``: what the student outputs (see the module docstring).
        teacher_outputs: the same for the teacher.
        feature_distillation: hint terms: a :class:`FeatureDistillation`, a
            ``(student_layer, teacher_layer)`` pair, a ``{student_layer: teacher_layer}`` dict, or
            a list of those (functional models only).
        **kwargs: ``keras.Model`` arguments (``name``).

    Raises:
        TypeError: a model is not a tf_keras model (Keras 3 included), bad argument types.
        ValueError: output shapes that differ, temperature <= 0, a weight outside [0, 1], an
            unknown layer name (the message lists the available layers), an output kind that
            cannot be detected or contradicts the declaration, student and teacher sharing
            weights, a sparse or (on one-unit outputs) categorical Keras distillation loss.

    Example:
        A sigmoid CTR student with 1-D labels and the student loss given by name, as for a
        plain ``model.compile``:

        >>> import numpy as np
        >>> from tfcompress._keras import keras
        >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
        >>> y = (x[:, 0] > 0).astype("float32")  # labels of shape (64,)
        >>> def mlp(width):
        ...     return keras.Sequential([keras.Input((4,)),
        ...                              keras.layers.Dense(width, activation="relu"),
        ...                              keras.layers.Dense(1, activation="sigmoid")])
        >>> teacher, student = mlp(16), mlp(4)
        >>> teacher.compile("adam", loss="binary_crossentropy")
        >>> _ = teacher.fit(x, y, epochs=2, verbose=0)
        >>> distiller = Distiller(student, teacher, student_loss_weight=0.5, temperature=2.0)
        >>> distiller.compile("adam", loss="binary_crossentropy", metrics=["accuracy"])
        >>> history = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0)
        >>> sorted(history.history)
        ['accuracy', 'distillation_loss', 'loss', 'student_loss']
        >>> distiller.student.predict(x[:2], verbose=0).shape  # a plain model, for export
        (2, 1)
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        *,
        distillation_loss: str | keras.losses.Loss | dict[str, Any] = "auto",
        student_loss_weight: float | None = None,
        alpha: float | None = None,
        temperature: float | None = None,
        student_outputs: str = "auto",
        teacher_outputs: str = "auto",
        feature_distillation: Any = None,
        **kwargs: Any,
    ) -> None:
        check_model(student, "student")
        check_model(teacher, "teacher")
        student_weight, distillation_weight = _loss_weights(alpha, student_loss_weight)
        if temperature is not None:
            temperature = _check_temperature(temperature, "Distiller")
        features = _feature_specs(feature_distillation)
        if student is teacher:
            raise ValueError(
                "`student` and `teacher` are the same model; distil into a separate (usually "
                "smaller) model, e.g. tfcompress.models.dcn(schema, size='student')."
            )
        shared = {id(v) for v in student.weights} & {id(v) for v in teacher.weights}
        if shared:
            names = [v.name for v in student.weights if id(v) in shared][:5]
            raise ValueError(
                f"`student` '{student.name}' and `teacher` '{teacher.name}' share weights "
                f"({', '.join(names)}); freezing the teacher would freeze them in the student. "
                "Build the student with its own layers (copy the weights if you want to start "
                "from the teacher's)."
            )
        student_head = resolve_head(student, student_outputs, "student_outputs")
        teacher_head = resolve_head(teacher, teacher_outputs, "teacher_outputs")
        s_ref = student_head.logits if student_head.logits is not None else _maybe_output(student)
        t_ref = teacher_head.logits if teacher_head.logits is not None else _maybe_output(teacher)
        if s_ref is not None and t_ref is not None:
            s_shape, t_shape = s_ref.shape[1:], t_ref.shape[1:]
            if not s_shape.is_compatible_with(t_shape):
                raise ValueError(
                    f"The student's output shape {tuple(student.outputs[0].shape)} (logits "
                    f"{tuple(s_ref.shape)}) and the teacher's output shape "
                    f"{tuple(teacher.outputs[0].shape)} (logits {tuple(t_ref.shape)}) must match "
                    "except for the batch axis: build both models for the same task/schema."
                )
        width = t_ref if t_ref is not None else s_ref
        width = None if width is None else width.shape[-1]
        if isinstance(distillation_loss, str) and distillation_loss == "auto":
            loss_cls = auto_loss(student_head, teacher_head, width, teacher)
            loss_obj = loss_cls(temperature)
        else:
            loss_obj = get_kd_loss(distillation_loss, temperature)
        kd_term = DistillationTerm(
            loss_obj, student_head.kind, teacher_head.kind, width, spec=distillation_loss
        )
        if features and not (is_functional(student) and is_functional(teacher)):
            raise ValueError(
                "`feature_distillation` needs functional (or sequential) student and teacher "
                "models, to read their intermediate layers."
            )
        hints = []  # (spec, student tensor, teacher tensor, needs a projection)
        for spec in features:
            s_layer = find_layer(student, spec.student_layer, "feature_distillation")
            t_layer = find_layer(teacher, spec.teacher_layer, "feature_distillation")
            s_out = layer_output(student, s_layer, "feature_distillation")
            t_out = layer_output(teacher, t_layer, "feature_distillation")
            hints.append((spec, s_out, t_out, _needs_projection(spec, s_out, t_out)))

        if student.built and not student.trainable_weights:
            # e.g. a student shrunk/cloned from a model an earlier Distiller froze as its
            # teacher: fit would run and silently change nothing
            raise ValueError(
                f"the student {student.name!r} has no trainable weights (all its layers are "
                "frozen), so distillation would change nothing. Set `student.trainable = True`; "
                "if it was copied or shrunk from the teacher of an earlier Distiller, that "
                "Distiller froze it (`teacher.trainable = False`): unfreeze it before copying."
            )
        # Every argument is valid: only now touch the teacher and build the Distiller.
        super().__init__(**kwargs)
        teacher.trainable = False
        self.student = student
        self.teacher = teacher
        self.student_loss_weight = student_weight
        self.distillation_loss_weight = distillation_weight
        self.distillation_loss = loss_obj
        self._distillation_loss_spec = distillation_loss
        self._kd_loss = kd_term
        self._declared = {"student_outputs": student_outputs, "teacher_outputs": teacher_outputs}
        self.feature_distillation = tuple(features)
        self._student_kind = student_head.kind
        self._teacher_kind = teacher_head.kind
        _log.info(
            "Distiller: student '%s' output %s (%s); teacher '%s' output %s (%s); loss %s, "
            "student_loss_weight=%.3g.",
            student.name,
            student_head.kind,
            student_head.source,
            teacher.name,
            teacher_head.kind,
            teacher_head.source,
            type(loss_obj).__name__,
            student_weight,
        )
        # Sub-models sharing the student's/teacher's layers: logits, output and hint features
        # from ONE call (a pruning wrapper counts its steps per call).
        self._student_net = _net(student, student_head, [h[1] for h in hints])
        self._teacher_net = _net(teacher, teacher_head, [h[2] for h in hints])
        # Hint projections (student width -> teacher width) belong to the Distiller.
        self.hint_projections = []
        index = []
        for i, (_, s_out, t_out, needed) in enumerate(hints):
            if not needed:
                index.append(None)
                continue
            projection = keras.layers.Dense(t_out.shape[-1], name=f"hint_projection_{i}")
            projection.build(s_out.shape)
            index.append(len(self.hint_projections))
            self.hint_projections.append(projection)
        self._projection_index = tuple(index)

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.feature_loss_tracker = keras.metrics.Mean(name="feature_loss") if features else None
        self._student_output_shape = student.outputs[0].shape if is_functional(student) else None
        self._student_loss_spec: Any = None
        self._student_loss: ResolvedLoss | None = None
        self.built = True
        if is_pruned(student):  # distillation-aware pruning: fit prunes, no callback needed
            enable_fit_pruning(self)

    # ----------------------------------------------------------------- Keras API

    @property
    def alpha(self) -> float:
        """Deprecated: the distillation loss weight, ``1 - student_loss_weight``."""
        warnings.warn(
            "Distiller.alpha is now Distiller.distillation_loss_weight (1 - "
            "student_loss_weight); alpha goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.distillation_loss_weight

    def compile(
        self,
        optimizer: Any = "rmsprop",
        loss: Any = None,
        metrics: Any = None,
        **kwargs: Any,
    ) -> None:
        """Configure training: ``loss`` is the student's loss on the labels.

        Args:
            optimizer: a Keras optimizer (instance or name).
            loss: the student's loss on its own output: anything ``Model.compile`` takes (a
                name such as ``"binary_crossentropy"``, a function, a ``keras.losses.Loss``),
                with the label shapes Keras takes (``(n,)`` or ``(n, 1)`` for a ``(None, 1)``
                output; one-hot ``(n, k)`` or class ids ``(n,)``/``(n, 1)`` with a sparse loss).
                May be None only when ``student_loss_weight == 0`` (pure distillation, labels
                unused).
            metrics: metrics of the student's output against the labels (as in
                ``Model.compile``).
            **kwargs: other ``keras.Model.compile`` arguments (``loss_weights`` excepted: use
                ``student_loss_weight``).

        Raises:
            ValueError: ``loss`` None with ``student_loss_weight > 0``, ``loss_weights``
                given, an unknown loss name, several losses, or a loss that cannot train the
                student's output (a categorical loss on a one-unit output, ``from_logits``
                contradicting the output). Labels that do not fit the loss raise at the first
                batch.
            TypeError: ``loss`` is not a loss name, function or ``keras.losses.Loss``.

        Example:
            >>> distiller.compile("adam", loss="binary_crossentropy",
            ...                   metrics=[keras.metrics.AUC(name="auc")])  # doctest: +SKIP
        """
        if kwargs.get("loss_weights") is not None:
            raise ValueError(
                "Distiller.compile: `loss_weights` is not supported; weigh the student and "
                "distillation losses with Distiller(student_loss_weight=...) (now "
                f"{self.student_loss_weight})."
            )
        if loss is None and self.student_loss_weight > 0.0:
            raise ValueError(
                f"Distiller.compile: `loss` (the student's loss on the labels) is required when "
                f"student_loss_weight > 0 (student_loss_weight={self.student_loss_weight}); e.g. "
                "loss='binary_crossentropy', or use student_loss_weight=0.0 for pure distillation."
            )
        student_loss = None
        if loss is not None:
            # Resolved and applied exactly as Model.compile does (distillation_keras_losses).
            student_loss = resolve_loss(loss, "loss")
            student_loss.check_output(
                self._student_output_shape, self._student_kind, self.student.name
            )
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)
        self._student_loss_spec = loss
        self._student_loss = student_loss

    def get_compile_config(self) -> dict[str, Any] | None:
        config = super().get_compile_config()
        if config is not None:
            config["loss"] = keras.saving.serialize_keras_object(self._student_loss_spec)
        return config

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        own = [self.loss_tracker, self.student_loss_tracker, self.distillation_loss_tracker]
        own.append(self.feature_loss_tracker)
        shown = [self.loss_tracker]
        if self._student_loss is not None:
            shown.append(self.student_loss_tracker)
        shown.append(self.distillation_loss_tracker)
        if self.feature_loss_tracker is not None:
            shown.append(self.feature_loss_tracker)
        hidden = {id(t) for t in own if t is not None}
        return shown + [m for m in super().metrics if id(m) not in hidden]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """The student's output (what ``predict`` returns)."""
        return self.student(inputs, training=training)

    # ----------------------------------------------------------------- one step

    def _forward(self, x: Any, training: bool) -> tuple[Any, Any, Any, list[Any], list[Any]]:
        if self._student_net is not None:
            out = self._student_net(x, training=training)
            y_pred = out["output"]
            s_logits = out["logits"] if "logits" in out else to_logits(y_pred, self._student_kind)
            s_feats = [out[f"feature_{i}"] for i in range(len(self.feature_distillation))]
        else:
            y_pred = self.student(x, training=training)
            s_logits, s_feats = to_logits(y_pred, self._student_kind), []
        if self._teacher_net is not None:
            out = self._teacher_net(x, training=False)
            t_logits = (
                out["logits"] if "logits" in out else to_logits(out["output"], self._teacher_kind)
            )
            t_feats = [out[f"feature_{i}"] for i in range(len(self.feature_distillation))]
        else:
            t_logits = to_logits(self.teacher(x, training=False), self._teacher_kind)
            t_feats = []
        t_logits = tf.stop_gradient(tf.cast(t_logits, tf.float32))
        t_feats = [tf.stop_gradient(tf.cast(f, tf.float32)) for f in t_feats]
        return y_pred, tf.cast(s_logits, tf.float32), t_logits, s_feats, t_feats

    def _step_losses(self, data: Any, training: bool) -> tuple[tf.Tensor, Any, Any, Any]:
        """Scaled loss for the gradient, and updates the loss trackers; returns ``y, y_pred``."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred, s_logits, t_logits, s_feats, t_feats = self._forward(x, training)
        local_n = tf.cast(tf.shape(s_logits)[0], tf.float32)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        global_n = local_n
        if replicas > 1:
            global_n = context.all_reduce(tf.distribute.ReduceOp.SUM, local_n)

        def per_example(values: tf.Tensor) -> tf.Tensor:
            values = tf.cast(values, tf.float32)
            if values.shape.rank and values.shape.rank > 1:
                values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
            return values

        def weighted(values: tf.Tensor) -> tf.Tensor:
            if sample_weight is None:
                return values
            weights = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            return values * weights

        total = tf.zeros_like(local_n)  # sum over the local batch of the per-example totals
        if self._student_loss is not None:
            if y is None:
                raise ValueError(
                    "Distiller: the data has no labels but the student loss needs them; give "
                    "(x, y) data, or use student_loss_weight=0.0 and compile(loss=None) for pure "
                    "distillation."
                )
            # Static shapes: raises once, when the step is traced (the first batch).
            self._student_loss.check_batch(y, y_pred, self._student_kind, self.student.name)
            s_values = per_example(self._student_loss(y, y_pred, sample_weight=sample_weight))
            s_sum = tf.reduce_sum(s_values)
            self.student_loss_tracker.update_state(s_sum / local_n, sample_weight=local_n)
            total += self.student_loss_weight * s_sum
        kd_values = per_example(self._kd_loss(t_logits, s_logits, sample_weight=sample_weight))
        kd_sum = tf.reduce_sum(kd_values)
        self.distillation_loss_tracker.update_state(kd_sum / local_n, sample_weight=local_n)
        total += self.distillation_loss_weight * kd_sum
        if self.feature_distillation:
            f_sum = tf.zeros_like(local_n)
            for i, spec in enumerate(self.feature_distillation):
                feature = s_feats[i]
                if self._projection_index[i] is not None:
                    feature = self.hint_projections[self._projection_index[i]](feature)
                f_sum += spec.weight * tf.reduce_sum(weighted(feature_mse(feature, t_feats[i])))
            self.feature_loss_tracker.update_state(f_sum / local_n, sample_weight=local_n)
            total += f_sum
        regularization = self.student.losses + [
            loss for p in self.hint_projections for loss in p.losses
        ]
        reg = tf.add_n([tf.cast(r, tf.float32) for r in regularization]) if regularization else 0.0
        self.loss_tracker.update_state(total / local_n + reg, sample_weight=local_n)
        scaled = tf.math.divide_no_nan(total, global_n) + reg / float(replicas)
        return scaled, y, y_pred, sample_weight

    def train_step(self, data: Any) -> dict[str, Any]:
        with tf.GradientTape() as tape:
            loss, y, y_pred, sample_weight = self._step_losses(data, training=True)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self._metric_results(y, y_pred, sample_weight)

    def test_step(self, data: Any) -> dict[str, Any]:
        _, y, y_pred, sample_weight = self._step_losses(data, training=False)
        return self._metric_results(y, y_pred, sample_weight)

    def _metric_results(self, y: Any, y_pred: Any, sample_weight: Any) -> dict[str, Any]:
        if y is not None:
            self.compiled_metrics.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result()

    # ----------------------------------------------------------------- serialization

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            # A Keras loss given by name/function is saved as given; loss objects as objects.
            "distillation_loss": keras.saving.serialize_keras_object(
                self._distillation_loss_spec
                if type(self.distillation_loss) is LossFunctionWrapper
                else self.distillation_loss
            ),
            "student_loss_weight": self.student_loss_weight,
            "student_outputs": self._declared["student_outputs"],
            "teacher_outputs": self._declared["teacher_outputs"],
            "feature_distillation": [
                keras.saving.serialize_keras_object(f) for f in self.feature_distillation
            ],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Distiller:
        config = dict(config)
        if "alpha" in config and "student_loss_weight" not in config:  # saved before 0.2
            config["student_loss_weight"] = 1.0 - config.pop("alpha")
        for key in ("student", "teacher", "distillation_loss"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        config["feature_distillation"] = [
            keras.saving.deserialize_keras_object(f, custom_objects=custom_objects)
            for f in config.get("feature_distillation") or []
        ] or None
        return cls(config.pop("student"), config.pop("teacher"), **config)


def _maybe_output(model: keras.Model) -> Any:
    return model.outputs[0] if is_functional(model) else None


def _net(model: keras.Model, head: Any, features: list[Any]) -> keras.Model | None:
    """A functional model sharing ``model``'s layers: ``{"output", "logits"?, "feature_i"}``."""
    if not is_functional(model):
        return None
    outputs = {"output": model.outputs[0]}
    if head.logits is not None:
        outputs["logits"] = head.logits
    outputs.update({f"feature_{i}": tensor for i, tensor in enumerate(features)})
    return keras.Model(model.input, outputs, name=f"{model.name}_net")


def _needs_projection(spec: FeatureDistillation, s_out: Any, t_out: Any) -> bool:
    """Whether the hint needs a learned projection; raises when the shapes cannot match."""
    s_shape, t_shape = s_out.shape, t_out.shape
    if s_shape.rank != t_shape.rank or not s_shape[1:-1].is_compatible_with(t_shape[1:-1]):
        raise ValueError(
            f"`feature_distillation`: student layer '{spec.student_layer}' output "
            f"{tuple(s_shape)} and teacher layer '{spec.teacher_layer}' output "
            f"{tuple(t_shape)} must have the same shape except for the last (width) axis."
        )
    if s_shape[-1] is None or t_shape[-1] is None:
        raise ValueError(
            f"`feature_distillation`: the widths of student layer '{spec.student_layer}' "
            f"{tuple(s_shape)} and teacher layer '{spec.teacher_layer}' {tuple(t_shape)} must be "
            "known."
        )
    differ = s_shape[-1] != t_shape[-1]
    if spec.projection is False and differ:
        raise ValueError(
            f"`feature_distillation`: student layer '{spec.student_layer}' width "
            f"{s_shape[-1]} differs from teacher layer '{spec.teacher_layer}' width "
            f"{t_shape[-1]} and projection=False; use projection='auto'."
        )
    return differ or spec.projection is True
