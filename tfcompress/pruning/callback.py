"""How a pruned model prunes inside ``fit``: by itself (:func:`enable_fit_pruning`, which
``prune`` calls), or with :class:`PruningCallback`, which also logs the sparsity.

Example:
    >>> import numpy as np
    >>> from tfcompress._keras import keras
    >>> from tfcompress.pruning import prune, sparsity_report
    >>> pruned = prune(keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)]), 0.75)
    >>> pruned.compile("adam", "mse")
    >>> x, y = np.ones((64, 16)), np.ones((64, 8))
    >>> _ = pruned.fit(x, y, epochs=2, verbose=0)  # no callback: prunes by itself
    >>> round(sparsity_report(pruned).overall, 2)
    0.75
    >>> history = pruned.fit(x, y, epochs=1, verbose=0, callbacks=[PruningCallback()])
    >>> round(history.history["sparsity"][-1], 2)  # the callback adds the logs
    0.75
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import check_bool
from tfcompress.pruning.masks import apply_masks, finalize_masks, mask_sparsity, sparsity_logs
from tfcompress.pruning.report import find_wrappers
from tfcompress.pruning.schedule import FitSizedSchedule, PruneLowMagnitude, PruneWrapper

__all__ = ["PruningCallback", "enable_fit_pruning"]

_log = logging.getLogger("tfcompress")


def _no_wrappers(model: keras.Model, who: str) -> ValueError:
    return ValueError(
        f"{who}: model '{model.name}' has no pruning wrappers, so there is nothing to prune. "
        "Call `model = tfcompress.prune(model, ...)` first and fit the model it returns (or "
        "drop this call)."
    )


class _FitPruning(keras.callbacks.Callback):
    """Drives the pruning schedules of a model during ``fit`` (no logs): the self-driving fit
    of a pruned model adds one; :class:`PruningCallback` is one with logs."""

    _who = "prune"

    def __init__(self) -> None:
        super().__init__()
        self._wrappers: list[tuple[str, PruneLowMagnitude]] = []
        self._schedules: list[FitSizedSchedule] = []
        self._sized = False
        self._start_iteration = 0

    def set_model(self, model: keras.Model) -> None:
        check_model(model, "model")
        wrappers = find_wrappers(model)
        if not wrappers:
            raise _no_wrappers(model, type(self).__name__)
        super().set_model(model)
        self._wrappers = wrappers
        schedules: dict[int, FitSizedSchedule] = {}
        for _, wrapper in wrappers:
            if isinstance(wrapper.pruning_schedule, FitSizedSchedule):
                schedules[id(wrapper.pruning_schedule)] = wrapper.pruning_schedule
                # a checkpoint dependency of the wrapper (not a weight): BackupAndRestore
                # saves and restores the schedule's sizing with the masks
                wrapper.tfcompress_schedule = wrapper.pruning_schedule.checkpoint_state
        self._schedules = list(schedules.values())

    def _wrappers_of(self, schedule: FitSizedSchedule) -> list[PruneLowMagnitude]:
        return [w for _, w in self._wrappers if w.pruning_schedule is schedule]

    def _iterations(self) -> tf.Variable:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or getattr(optimizer, "iterations", None) is None:
            raise ValueError(
                f"{self._who}: model '{self.model.name}' has no optimizer; compile it before fit."
            )
        return optimizer.iterations

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        iterations = self._iterations()
        self._start_iteration = int(iterations.numpy())
        self._sized = False
        failed = [s for s in self._schedules if s.trace_failed]
        for schedule in self._schedules:
            schedule.iterations = iterations
            schedule.armed.assign(True)
            schedule.trace_failed = False
        if failed and hasattr(self.model, "make_train_function"):
            # An earlier fit traced the train function without a driver and failed half-way;
            # that tf.function cannot be traced again ("Creating variables on a non-first
            # call"). Fit calls `model.train_function` at every step, so a fresh one, traced
            # on its first call with the schedule armed, replaces it.
            _log.info(
                "%s: rebuilding the train function of model '%s' (an earlier fit ran "
                "without pruning driver).",
                self._who,
                self.model.name,
            )
            self.model.make_train_function(force=True)
        stock = [
            (w.pruning_step, 0)
            for _, w in self._wrappers
            if not isinstance(w, PruneWrapper) and int(w.pruning_step.numpy()) == -1
        ]
        if stock:
            keras.backend.batch_set_value(stock)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._sized:
            return
        self._sized = True
        # read again here: BackupAndRestore (listed after this callback) restores
        # optimizer.iterations in its on_train_begin, after ours
        self._start_iteration = int(self._iterations().numpy())
        steps = self.params.get("steps") if self.params else None
        epochs = self.params.get("epochs") if self.params else None
        fit_steps = None if steps is None or epochs is None else (int(epochs) - epoch) * steps
        # a fit starting at epoch k > 0 (BackupAndRestore resumed it, or initial_epoch=k)
        # continues the fit that started at epoch 0: the schedule spans all its epochs from
        # the sparsity it started from, exactly as if it had not been interrupted
        resumed = epoch > 0 and steps is not None and epochs is not None
        if resumed:
            self._start_iteration -= epoch * int(steps)
            fit_steps = int(epochs) * int(steps)
        for schedule in self._schedules:
            if schedule.planned_total is None and fit_steps is None:
                schedule.armed.assign(False)
                raise ValueError(
                    f"{self._who}: cannot size the pruning schedule of model "
                    f"'{self.model.name}': the number of steps of this fit is unknown (a "
                    "dataset of unknown length, e.g. filtered, without steps_per_epoch). Pass "
                    "steps_per_epoch= to fit, or size the schedule yourself with "
                    "tfcompress.prune(..., steps=total_steps or (epochs, steps_per_epoch))."
                )
            initial = (
                schedule.initial_sparsity
                if resumed and schedule.planned_total is None
                else min((mask_sparsity(w) for w in self._wrappers_of(schedule)), default=0.0)
            )
            schedule.start_fit(self._start_iteration, fit_steps, initial)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for _, wrapper in self._wrappers:
            apply_masks(wrapper)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        now = int(self._iterations().numpy())
        ran = now - self._start_iteration
        for schedule in self._schedules:
            schedule.armed.assign(False)
            if ran <= 0 or not schedule.sized:
                continue
            if schedule.planned_total is None:
                sparsity = schedule.target
            else:
                sparsity = schedule.sparsity_at(schedule.steps_done(now))
            if sparsity <= 0.0:
                continue
            for wrapper in self._wrappers_of(schedule):
                finalize_masks(wrapper, sparsity)
        for _, wrapper in self._wrappers:
            if not isinstance(wrapper.pruning_schedule, FitSizedSchedule):
                apply_masks(wrapper)
        summary = sparsity_logs(self._wrappers, per_layer=False)
        _log.info("%s: final sparsity %.4f after %d steps.", self._who, summary["sparsity"], ran)


class PruningCallback(_FitPruning):
    """Sparsity logs for the fit of a pruned model; it also drives models that cannot drive
    themselves.

    A model returned by :func:`tfcompress.prune` prunes correctly in a plain ``fit`` without
    any callback (recommended unless you want the logs). What this callback adds:

    - epoch end: ``logs["sparsity"]`` (zeros over all pruned weights) and, with
      ``log_layers``, ``logs["sparsity/<layer path>"]``. History always records them; list
      this callback before ``CSVLogger``/``TensorBoard`` so that they do too.
    - it drives the schedule where the model being fitted cannot: a pruned model nested in a
      subclassed model of your own (a ``Distiller`` drives its pruned student itself), a
      pruned model loaded from a file,
      wrappers made by TFMOT's own ``prune_low_magnitude`` (step initialisation, re-masking
      and logs, as TFMOT's ``UpdatePruningStep``), a custom training loop.

    When it is in ``callbacks`` it is the one driver of the fit (the model adds none of its
    own): the schedule steps once per batch either way, and the masks are the same as in a
    plain fit. Driving means: train start arms the schedules (``model.optimizer.iterations``
    is the step); first epoch start re-reads the step (``BackupAndRestore`` restores it) and
    sizes schedules pruned with ``steps=None`` from this fit (``(epochs - initial_epoch) *
    steps_per_epoch``; unknown -> ``ValueError`` asking for ``steps_per_epoch`` or
    ``prune(steps=...)``); epoch end re-masks the weights (checkpoints are sparse); train end
    applies exact final masks at the final sparsity (or 2:4), whatever the frequency (a
    schedule with explicit ``steps`` that has not reached its end step gets the sparsity it
    has reached). If an earlier fit failed for want of a driver, the train function is
    rebuilt, so the model stays usable.

    Order in ``callbacks``: after ``EarlyStopping(restore_best_weights=True)`` (so the final
    masks apply to the restored weights; otherwise :func:`tfcompress.pruning.strip` re-applies the
    target masks with a warning), before ``CSVLogger``/``TensorBoard`` (so they see
    the sparsity keys). In a custom training loop, drive it by hand: ``set_model(model)``,
    ``set_params({"epochs": E, "steps": S})``, ``on_train_begin()``, ``on_epoch_begin(0)``,
    ``on_epoch_end(epoch, logs)`` and ``on_train_end()`` (``model.optimizer.iterations`` must
    count the steps, as ``optimizer.apply_gradients`` does).

    Args:
        log_layers: also publish the per-layer sparsity.

    Raises:
        TypeError: ``log_layers`` is not a bool; the fitted model is not a tf_keras model.
        ValueError: the fitted model has no pruning wrappers, or is not compiled.

    Example:
        >>> import numpy as np
        >>> from tfcompress.pruning import prune
        >>> pruned = prune(keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)]), 0.5)
        >>> pruned.compile("sgd", "mse")
        >>> history = pruned.fit(np.ones((8, 4)), np.ones((8, 4)), epochs=2, verbose=0,
        ...                      callbacks=[PruningCallback()])
        >>> round(history.history["sparsity"][-1], 2)
        0.5
    """

    _who = "PruningCallback"

    def __init__(self, log_layers: bool = True) -> None:
        super().__init__()
        self.log_layers = check_bool(log_layers, "log_layers")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs.update(sparsity_logs(self._wrappers, per_layer=self.log_layers))


# ---------------------------------------------------------------------- self-driving fit


def _fit_with_pruning(model: keras.Model, fit: Callable[..., Any]) -> Callable[..., Any]:
    """``fit`` that adds a driver (last in ``callbacks``) unless one is already there."""
    names = list(inspect.signature(type(model).fit).parameters)[1:]  # without self
    position = names.index("callbacks") if "callbacks" in names else None

    @functools.wraps(fit)
    def fit_with_pruning(*args: Any, **kwargs: Any) -> Any:
        args = list(args)
        positional = position is not None and len(args) > position
        given = args[position] if positional else kwargs.get("callbacks")
        if isinstance(given, keras.callbacks.CallbackList):
            if not any(isinstance(c, _FitPruning) for c in given.callbacks):
                driver = _FitPruning()
                given.append(driver)
                driver.set_model(model)
                driver.set_params(getattr(given, "params", None) or {})
            return fit(*args, **kwargs)
        listed = tf.nest.flatten(given) if given else []
        if not any(isinstance(c, _FitPruning) for c in listed):
            # last: after EarlyStopping(restore_best_weights=True) and BackupAndRestore
            listed = [*listed, _FitPruning()]
        if positional:
            args[position] = listed
        else:
            kwargs["callbacks"] = listed
        return fit(*args, **kwargs)

    return fit_with_pruning


def enable_fit_pruning(model: keras.Model) -> keras.Model:
    """Make ``model.fit`` drive the pruning of the wrappers ``model`` holds, without a callback.

    :func:`tfcompress.prune` calls it on the model it returns. Call it yourself on a model
    whose ``fit`` should prune but does not: a pruned model loaded from a file, or a
    subclassed model of your own holding a pruned one (``Distiller`` calls it itself).
    Its ``fit`` then adds a driver callback (last in ``callbacks``) unless a
    :class:`PruningCallback` is there: the schedule is sized from the fit (or from
    ``prune(steps=...)``), the masks update during training and the exact final masks apply
    at the end. The hook is an attribute of this model object: a copy (``clone_model``,
    ``load_model``) does not carry it.

    Args:
        model: a tf_keras model holding pruning wrappers (searched through nested and
            subclassed models).

    Returns:
        ``model`` itself.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ``model`` holds no pruning wrappers.

    Example:
        >>> import numpy as np
        >>> from tfcompress.pruning import prune, sparsity_report
        >>> dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
        >>> pruned = prune(dense, 0.5)
        >>> holder = keras.Sequential([pruned])  # a model holding the pruned one
        >>> holder.compile("sgd", "mse")
        >>> _ = enable_fit_pruning(holder).fit(np.ones((8, 4)), np.ones((8, 4)), verbose=0)
        >>> round(sparsity_report(holder).overall, 2)
        0.5
    """
    check_model(model, "model")
    if not find_wrappers(model):
        raise _no_wrappers(model, "enable_fit_pruning")
    if getattr(model.fit, "_tfcompress_prunes", False):
        return model
    hooked = _fit_with_pruning(model, model.fit)
    hooked._tfcompress_prunes = True  # type: ignore[attr-defined]
    # object.__setattr__: a plain instance attribute, not tracked by Keras (not saved, not
    # part of checkpoints); it shadows Model.fit for this object only.
    object.__setattr__(model, "fit", hooked)
    return model
