"""The pruning schedule sized from the fit that runs (:class:`FitSizedSchedule`) and the wrapper
that uses it (:class:`PruneWrapper`); why TFMOT's own schedule is not enough: docs/pruning.md.

Example:
    >>> s = FitSizedSchedule(0.8)  # steps=None: sized at the start of every fit
    >>> s.size(20)
    >>> s.begin_step, s.end_step, s.frequency, round(s.sparsity_at(16), 2)
    (1, 16, 1, 0.8)
"""

from __future__ import annotations

import inspect
import logging
import weakref
from typing import Any

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress.pruning.masks import m_by_n_mask

# TFMOT is imported after keras_compat, which makes it use tf_keras (Keras 2).
_log = logging.getLogger("tfcompress")

from tfcompress._compat import (  # noqa: E402
    autocasts,
    prune_registry,
    pruning_impl,
    pruning_internals,
    pruning_schedule,
    pruning_wrapper,
    set_layer_name,
)
from tfcompress._compat import tfmot_keras_utils as tfmot_utils  # noqa: E402

__all__ = [
    "MISSING_CALLBACK_MESSAGE",
    "FitSizedSchedule",
    "PruneWrapper",
]

_register = keras.saving.register_keras_serializable(package="tfcompress")

MISSING_CALLBACK_MESSAGE = (
    "tfcompress: this model has pruning wrappers (tfcompress.prune) and is being trained "
    "without anything driving its pruning schedule: it is nested in another model of yours, "
    "was loaded from a file, or runs in train_on_batch or a custom loop (the model returned by "
    "tfcompress.prune, and a Distiller holding one, drive it in their own fit). Pass "
    "callbacks=[tfcompress.PruningCallback()] to this fit, or call "
    "`from tfcompress.pruning import enable_fit_pruning; enable_fit_pruning(model)` on the "
    "model you fit; it stays usable."
)

PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude
PruneRegistry = prune_registry.PruneRegistry


def _check_fraction(value: Any, argument: str, upper_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"`{argument}` must be a float, received {value!r}.")
    value = float(value)
    ok = 0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0
    if not ok:
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"`{argument}` must be in {interval}, received {value!r}.")
    return value


def _positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def total_steps(steps: Any) -> int | None:
    """Validate ``steps`` (None, an int total or ``(epochs, steps_per_epoch)``); the total."""
    if steps is None:
        return None
    if _positive_int(steps):
        return int(steps)
    if (
        isinstance(steps, (tuple, list))
        and len(steps) == 2
        and all(_positive_int(s) for s in steps)
    ):
        return int(steps[0]) * int(steps[1])
    raise ValueError(
        f"`steps` must be None (sized from each fit), an int >= 1 (total training steps) or a "
        f"tuple (epochs, steps_per_epoch) of ints >= 1; received {steps!r}."
    )


@_register
class FitSizedSchedule(pruning_schedule.PruningSchedule):
    """A TFMOT pruning schedule whose steps live in variables, sized from the fit that runs.

    Steps count from 1 at the first train step of the schedule (``optimizer.iterations``,
    offset at fit start). Pruning happens at ``begin_step``, then every ``frequency`` steps, and
    always at ``end_step``; from ``end_step`` on the sparsity is the target. With
    ``structure="2:4"`` the 2:4 masks are chosen once, at ``begin_step``.

    Args:
        target: final sparsity in [0, 1) (0.5 for 2:4).
        kind: ``"polynomial"`` (TFMOT's cubic ramp from the initial sparsity) or ``"constant"``.
        structure: None or ``"2:4"``.
        steps: None (sized at the start of every fit), an int total or
            ``(epochs, steps_per_epoch)`` (one schedule over all fits).
        begin: fraction of the steps at which pruning starts.
        end: fraction of the steps at which the target is reached.
        frequency: steps between mask updates; None derives ``max(1, span // 10)``.
        power: exponent of the polynomial ramp.

    Example:
        >>> s = FitSizedSchedule(0.8, steps=100)
        >>> s.begin_step, s.end_step, s.frequency
        (1, 80, 7)
        >>> round(s.sparsity_at(80), 2), round(s.sparsity_at(1), 2)
        (0.8, 0.0)
    """

    def __init__(
        self,
        target: float,
        kind: str = "polynomial",
        structure: str | None = None,
        steps: Any = None,
        begin: float = 0.0,
        end: float = 0.8,
        frequency: int | None = None,
        power: int = 3,
    ) -> None:
        self.target = _check_fraction(target, "sparsity", upper_open=True)
        if kind not in ("polynomial", "constant"):
            raise ValueError(f"`schedule` must be 'polynomial' or 'constant', received {kind!r}.")
        if structure not in (None, "2:4"):
            raise ValueError(
                f"`structure` must be None (unstructured) or '2:4', received {structure!r}."
            )
        self.kind = kind
        self.structure = structure
        self.steps = steps if steps is None or isinstance(steps, int) else tuple(steps)
        self.planned_total = total_steps(steps)
        self.begin = _check_fraction(begin, "begin")
        self.end = _check_fraction(end, "end")
        if self.end < self.begin:
            raise ValueError(
                f"`end` ({self.end}) must be >= `begin` ({self.begin}): pruning starts at "
                "begin * steps and reaches the target at end * steps."
            )
        if frequency is not None and not _positive_int(frequency):
            raise ValueError(
                f"`frequency` must be None (derived from the fit) or an int >= 1, received "
                f"{frequency!r}."
            )
        self.frequency_arg = None if frequency is None else int(frequency)
        self.power = int(power)
        with tf.init_scope():
            self._begin = tf.Variable(1, dtype=tf.int64, trainable=False, name="prune_begin")
            self._end = tf.Variable(1, dtype=tf.int64, trainable=False, name="prune_end")
            self._frequency = tf.Variable(1, dtype=tf.int64, trainable=False, name="prune_freq")
            self._offset = tf.Variable(0, dtype=tf.int64, trainable=False, name="prune_offset")
            self._initial = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="prune_s0")
            self.armed = tf.Variable(False, trainable=False, name="prune_armed")
            #: the sizing a fit resumed by ``BackupAndRestore`` needs again: the driver hangs it
            #: on each wrapper, so the model's checkpoints carry it (not a weight)
            self.checkpoint_state = tf.train.Checkpoint(initial=self._initial)
        #: the optimizer's ``iterations``; set by the fit's driver at fit start.
        self.iterations: tf.Variable | None = None
        #: a train function was traced without a driver (and failed); see PruningCallback.
        self.trace_failed = False
        self.started = False
        self.sized = False
        self._graph_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        if self.planned_total is not None:
            self.size(self.planned_total)
            self.warn_if_unreachable(None)

    # ------------------------------------------------------------------ sizing

    @property
    def begin_step(self) -> int:
        return int(self._begin.numpy())

    @property
    def end_step(self) -> int:
        return int(self._end.numpy())

    @property
    def frequency(self) -> int:
        return int(self._frequency.numpy())

    @property
    def initial_sparsity(self) -> float:
        return float(self._initial.numpy())

    def size(self, total: int, initial: float = 0.0) -> None:
        """Size the schedule for ``total`` train steps, starting from ``initial`` sparsity."""
        total = max(int(total), 1)
        begin = min(total, 1 + int(round(self.begin * total)))
        end = max(begin, min(total, int(round(self.end * total))))
        frequency = self.frequency_arg or max(1, (end - begin) // 10)
        self._begin.assign(begin)
        self._end.assign(end)
        self._frequency.assign(frequency)
        self._initial.assign(min(float(initial), self.target))
        self.sized = True

    def start_fit(self, start_iteration: int, fit_steps: int | None, initial: float) -> None:
        """Prepare for a fit starting at optimizer step ``start_iteration``.

        With ``steps=None`` the schedule restarts, sized for ``fit_steps``, from the sparsity
        ``initial`` already reached; with planned ``steps`` it continues (its first fit starts
        it) and warns when this fit ends before the target is reached.
        """
        if self.planned_total is None:
            if fit_steps is None:
                raise ValueError("the number of steps of this fit is unknown")
            self._offset.assign(start_iteration)
            self.size(fit_steps, initial=initial)
            _log.info(
                "prune: this fit runs %d steps; pruning from step %d to %d every %d step(s), "
                "target sparsity %.2f%s.",
                fit_steps,
                self.begin_step,
                self.end_step,
                self.frequency,
                self.target,
                " (2:4)" if self.structure else "",
            )
            self.warn_if_unreachable(None)
        else:
            if not self.started:
                self._offset.assign(start_iteration)
            self.warn_if_unreachable(fit_steps, self.steps_done(start_iteration))
        self.started = True

    def steps_done(self, iteration: int) -> int:
        """Schedule steps run when the optimizer is at step ``iteration``."""
        return int(iteration) - int(self._offset.numpy())

    def warn_if_unreachable(self, fit_steps: int | None, done: int = 0) -> None:
        """Log a warning when the planned schedule cannot reach its target as asked."""
        span = self.end_step - self.begin_step
        if (
            self.structure is None
            and self.kind == "polynomial"
            and self.frequency_arg is not None
            and span > 0
            and self.frequency_arg > span
        ):
            _log.warning(
                "prune: frequency=%d exceeds the pruning span of %d steps (steps %d..%d): the "
                "masks are updated only at steps %d and %d, a one-shot jump to sparsity %.2f. "
                "Pass a smaller frequency (or frequency=None) for a gradual ramp.",
                self.frequency_arg,
                span,
                self.begin_step,
                self.end_step,
                self.begin_step,
                self.end_step,
                self.target,
            )
        if fit_steps is not None and self.planned_total is not None:
            last = done + fit_steps
            if last < self.end_step:
                _log.warning(
                    "prune: this fit runs %d steps and ends at schedule step %d, before the "
                    "step %d at which the schedule (steps=%s) reaches sparsity %.2f; the model "
                    "will be at sparsity %.2f after this fit. Fit further, or pass steps=None "
                    "to size the schedule from each fit.",
                    fit_steps,
                    last,
                    self.end_step,
                    self.steps,
                    self.target,
                    self.sparsity_at(last),
                )

    # ------------------------------------------------------------------ TFMOT interface

    def step(self) -> tf.Tensor:
        """The schedule step of the current train step (1 at the first one)."""
        if self.iterations is None:
            # this trace fails half-way; the next driver rebuilds the train function
            self.trace_failed = True
            raise ValueError(MISSING_CALLBACK_MESSAGE)
        return tf.cast(self.iterations, tf.int64) + 1 - self._offset

    def current(self) -> tuple[tf.Tensor, tf.Tensor]:
        """``self(self.step())``, evaluated once per traced graph and shared by all the wrappers
        of the model (fewer ops to trace; every wrapper sees the same step)."""
        if tf.executing_eagerly():
            return self(self.step())
        graph = tf.compat.v1.get_default_graph()
        cached = self._graph_cache.get(graph)
        if cached is None:
            cached = self._graph_cache[graph] = self(self.step())
        return cached

    def __call__(self, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        step = tf.cast(step, tf.int64)
        begin, end, frequency = self._begin, self._end, self._frequency
        if self.structure is not None:
            return tf.equal(step, begin), tf.constant(0.5, tf.float32)
        in_range = tf.logical_and(step >= begin, step <= end)
        turn = tf.logical_or(
            tf.equal(tf.math.floormod(step - begin, frequency), 0), tf.equal(step, end)
        )
        should = tf.logical_and(in_range, turn)
        if self.kind == "constant":
            return should, tf.constant(self.target, tf.float32)
        span = tf.cast(tf.maximum(end - begin, 1), tf.float32)
        progress = tf.clip_by_value(tf.cast(step - begin, tf.float32) / span, 0.0, 1.0)
        progress = tf.where(end > begin, progress, tf.ones_like(progress))
        sparsity = self.target + (self._initial - self.target) * tf.pow(
            1.0 - progress, float(self.power)
        )
        return should, sparsity

    def sparsity_at(self, step: int) -> float:
        """The sparsity the schedule asks for at ``step`` (0 before ``begin_step``)."""
        begin, end = self.begin_step, self.end_step
        if step < begin:
            return 0.0
        if self.structure is not None:
            return 0.5
        if self.kind == "constant" or step >= end or end == begin:
            return self.target
        progress = (step - begin) / (end - begin)
        s0 = self.initial_sparsity
        return self.target + (s0 - self.target) * (1.0 - progress) ** self.power

    def get_config(self) -> dict[str, Any]:
        return {
            "class_name": "tfcompress>FitSizedSchedule",
            "config": {
                "target": self.target,
                "kind": self.kind,
                "structure": self.structure,
                "steps": self.steps,
                "begin": self.begin,
                "end": self.end,
                "frequency": self.frequency_arg,
                "power": self.power,
            },
        }


class _Pruning(pruning_impl.Pruning):
    """TFMOT's pruning logic, with one schedule evaluation per layer call, a leaner magnitude
    mask (fewer graph ops to trace), and the 2:4 mask update taken by the schedule (TFMOT
    hard-codes it to step 1)."""

    def _magnitude_mask(self, weight: Any, sparsity: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        magnitude = tf.abs(tf.convert_to_tensor(weight))
        size = int(np.prod(weight.shape))
        keep = tf.cast(tf.maximum(tf.round(size * (1.0 - sparsity)), 1.0), tf.int32)
        ranked = tf.math.top_k(tf.reshape(magnitude, [-1]), k=size).values
        threshold = tf.gather(ranked, keep - 1)
        return threshold, tf.cast(magnitude >= threshold, weight.dtype)

    def _new_masks(self, sparsity: tf.Tensor) -> list[tuple[Any, Any, tf.Tensor, tf.Tensor]]:
        out = []
        pruning_vars, m_by_n, _ = pruning_internals(self)
        for weight, mask, threshold in pruning_vars:
            if m_by_n:
                value = tf.convert_to_tensor(weight)
                new_mask = m_by_n_mask(value, tuple(m_by_n))
                new_threshold = tf.constant(0.0, threshold.dtype)
            else:
                new_threshold, new_mask = self._magnitude_mask(weight, sparsity)
            out.append(
                (
                    mask,
                    threshold,
                    tf.cast(new_mask, mask.dtype),
                    tf.cast(new_threshold, threshold.dtype),
                )
            )
        return out

    def conditional_mask_update(self) -> Any:
        def update_with(distribution: Any) -> Any:
            should, sparsity = pruning_internals(self)[2].current()

            def update() -> Any:
                ops = []
                for mask, threshold, new_mask, new_threshold in self._new_masks(sparsity):
                    for var, value in ((mask, new_mask), (threshold, new_threshold)):
                        if distribution is None:
                            ops.append(var.assign(value))
                        else:
                            ops.append(
                                distribution.extended.update(
                                    var, lambda v, x: v.assign(x), (value,)
                                )
                            )
                return tf.group(ops)

            return tf.cond(should, update, tf.no_op)

        context = tf.distribute.get_replica_context()
        if context:
            return context.merge_call(update_with)
        return update_with(None)


def _named_error(err: Exception, layer: Any, path: str | None, what: str) -> Exception:
    """``err`` (raised by TFMOT's ``PruneLowMagnitude``) re-raised naming the layer and the fix."""
    name = path or getattr(layer, "name", repr(layer))
    cls = type(err) if type(err) in (ValueError, TypeError) else ValueError
    return cls(
        f"prune: TFMOT could not {what} layer '{name}' ({type(layer).__name__}): "
        f"{type(err).__name__}: {err}. Leave it out with prune(..., skip=['{name}']), or give "
        "the layer a get_prunable_weights() method returning the float kernels to prune."
    )


@_register
class PruneWrapper(PruneLowMagnitude):
    """TFMOT's ``PruneLowMagnitude`` driven by a :class:`FitSizedSchedule`.

    Args:
        layer: the (built) layer to prune.
        pruning_schedule: the :class:`FitSizedSchedule` shared by all wrappers of a model.
        sparsity_m_by_n: None or ``(2, 4)``.
        prunable_indices: indices into ``layer.weights`` of the variables to prune; None uses
            the layer's own ``get_prunable_weights`` or TFMOT's registry.
        path: the layer's path in the model (``"tower/dense"``), for logs and reports.
        **kwargs: passed to the Keras ``Wrapper``.

    Example:
        >>> dense = keras.layers.Dense(4, name="d")
        >>> dense.build((None, 8))
        >>> PruneWrapper(dense, FitSizedSchedule(0.5), prunable_indices=[0]).name
        'prune_low_magnitude_d'
    """

    _PRUNE_CALLBACK_ERROR_MSG = MISSING_CALLBACK_MESSAGE

    def __init__(
        self,
        layer: keras.layers.Layer,
        pruning_schedule: FitSizedSchedule | None = None,
        sparsity_m_by_n: tuple[int, int] | None = None,
        prunable_indices: list[int] | None = None,
        path: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(pruning_schedule, FitSizedSchedule):
            raise TypeError(
                "PruneWrapper needs a tfcompress FitSizedSchedule as `pruning_schedule`, "
                f"received {pruning_schedule!r}; build pruned models with tfcompress.prune."
            )
        self.prunable_indices = (
            None if prunable_indices is None else [int(i) for i in prunable_indices]
        )
        if self.prunable_indices is not None:
            indices = list(self.prunable_indices)
            owner = layer

            def get_prunable_weights() -> list[tf.Variable]:
                weights = owner.weights
                if indices and max(indices) >= len(weights):
                    raise ValueError(
                        f"Layer {owner.name!r} ({type(owner).__name__}) has {len(weights)} "
                        f"weights once built, but pruning expects weight indices {indices}; "
                        "re-create the pruned model with tfcompress.prune."
                    )
                return [weights[i] for i in indices]

            layer.get_prunable_weights = get_prunable_weights
        kwargs.pop("block_size", None)
        kwargs.pop("block_pooling_type", None)
        if not autocasts(layer):
            # e.g. Embedding under mixed precision: its table is never autocast (float32), so
            # the wrapper computes in the variable dtype and its masks are read as float32 too
            # (weight * mask needs one dtype); the layer still casts its own outputs
            kwargs.setdefault("dtype", layer.dtype_policy.variable_dtype)
        try:
            super().__init__(
                layer,
                pruning_schedule=pruning_schedule,
                sparsity_m_by_n=None if sparsity_m_by_n is None else tuple(sparsity_m_by_n),
                **kwargs,
            )
        except (ValueError, TypeError) as err:
            raise _named_error(err, layer, path, "wrap") from err
        self.path = path or layer.name
        set_layer_name(self, f"prune_low_magnitude_{layer.name}")  # TFMOT's, not the class's

    def _inner_ready(self) -> bool:
        indices = self.prunable_indices
        return not indices or max(indices) < len(self.layer.weights)

    def build(self, input_shape: Any) -> None:
        self._pending_shape = input_shape
        if self._inner_ready():
            self._build_pruning(input_shape)
        else:
            # The layer creates (some of) its weights on its first call (e.g. a deserialized
            # MultiHeadAttention or a tfrs-style layer): the masks are created then, in call.
            keras.layers.Wrapper.build(self, input_shape)
            self._pending = True

    def _build_pruning(self, input_shape: Any) -> None:
        try:
            PruneLowMagnitude.build(self, input_shape)
            self.pruning_obj = _Pruning(
                training_step_fn=self.pruning_schedule.step,
                pruning_vars=self.pruning_vars,
                pruning_schedule=self.pruning_schedule,
                block_size=self.block_size,
                block_pooling_type=self.block_pooling_type,
                sparsity_m_by_n=self.sparsity_m_by_n,
            )
        except (ValueError, TypeError, AttributeError) as err:
            raise _named_error(err, self.layer, self.path, "build the pruning masks of") from err
        self._pending = False

    def _call_layer(self, inputs: Any, args: Any, training: Any, kwargs: Any) -> Any:
        spec = inspect.getfullargspec(self.layer.call)
        if "training" in spec.args or "training" in spec.kwonlyargs:
            return self.layer.call(inputs, *args, training=training, **kwargs)
        return self.layer.call(inputs, *args, **kwargs)

    # Plain graph code (tf.cond, no Python control flow on tensors): skipping AutoGraph's
    # conversion of the TFMOT code it calls makes tracing the train function much faster.
    @tf.autograph.experimental.do_not_convert
    def call(self, inputs: Any, *args: Any, training: Any = None, **kwargs: Any) -> Any:
        if training is None:
            training = keras.backend.learning_phase()
        if getattr(self, "_pending", False):
            self._call_layer(inputs, args, training, kwargs)  # creates the layer's weights
            if tf.compat.v1.executing_eagerly_outside_functions():
                with tf.init_scope():
                    self._build_pruning(self._pending_shape)
            else:  # pragma: no cover - TF1 graph mode
                self._build_pruning(self._pending_shape)
        schedule = self.pruning_schedule

        def train_update() -> Any:
            check = tf.debugging.Assert(schedule.armed, [MISSING_CALLBACK_MESSAGE])
            with tf.control_dependencies([check] if check is not None else []):
                return self.pruning_obj.conditional_mask_update()

        self.add_update(tfmot_utils.smart_cond(training, train_update, tf.no_op))
        # weights <- weights * mask before the layer runs: the layer uses the masked variable.
        self.add_update(self.pruning_obj.weight_mask_op())
        return self._call_layer(inputs, args, training, kwargs)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "sparsity_m_by_n": self.sparsity_m_by_n,
            "prunable_indices": self.prunable_indices,
            "path": self.path,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PruneWrapper:
        config = dict(config)
        schedule = config.pop("pruning_schedule")
        if isinstance(schedule, dict):
            schedule = FitSizedSchedule(**schedule.get("config", schedule))
        layer = keras.layers.deserialize(config.pop("layer"))
        return cls(layer, pruning_schedule=schedule, **config)
