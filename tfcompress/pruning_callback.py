"""The one callback a pruned model needs in ``fit``: :class:`PruningCallback`.

It replaces TFMOT's ``UpdatePruningStep``: it sizes the schedules of :func:`tfcompress.prune`
from the fit that runs, arms them (without it the first train step fails with an error naming
it), publishes the sparsity into ``logs`` and applies exact final masks at the end of fit.

Example:
    >>> import numpy as np
    >>> from tfcompress.keras_compat import keras
    >>> from tfcompress.pruning import prune, sparsity_report
    >>> pruned = prune(keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)]), 0.75)
    >>> pruned.compile("adam", "mse")
    >>> history = pruned.fit(np.ones((64, 16)), np.ones((64, 8)), epochs=2, verbose=0,
    ...                      callbacks=[PruningCallback()])
    >>> round(history.history["sparsity"][-1], 2)
    0.75
"""

from __future__ import annotations

import logging
from typing import Any

from tfcompress.keras_compat import check_model, keras, tf
from tfcompress.pruning_report import find_wrappers
from tfcompress.pruning_schedule import (
    FitSizedSchedule,
    PruneLowMagnitude,
    PruneWrapper,
    apply_masks,
    finalize_masks,
    mask_sparsity,
    sparsity_logs,
)

__all__ = ["PruningCallback"]

_log = logging.getLogger("tfcompress")


class PruningCallback(keras.callbacks.Callback):
    """The one callback a pruned model needs in ``fit`` (replaces TFMOT's UpdatePruningStep).

    - ``set_model``: finds the pruning wrappers, through nested models and the sub-models of
      subclassed models (e.g. a distiller's ``student``); none -> ``ValueError``.
    - train start: arms the schedules (reads ``model.optimizer.iterations``).
    - first epoch start: re-reads the optimizer step (``BackupAndRestore`` restores it after
      train start, so either order works) and sizes the schedule of models pruned with
      ``steps=None`` from this fit (``(epochs - initial_epoch) * steps_per_epoch``; unknown
      steps -> ``ValueError`` asking for ``steps_per_epoch`` or ``prune(steps=...)``), and
      warns when a schedule with explicit ``steps`` cannot reach its target within this fit.
    - epoch end: re-masks the weights (checkpoints are sparse) and publishes
      ``logs["sparsity"]`` (zeros over all pruned weights) and, with ``log_layers``,
      ``logs["sparsity/<layer path>"]``. History always records them; list this callback
      before ``CSVLogger``/``TensorBoard`` so that they do too.
    - train end: exact final masks at the final sparsity (or 2:4), weights zeroed, whatever the
      frequency; a schedule with explicit ``steps`` that has not reached its end step gets the
      sparsity it has reached.

    Fitting a pruned model without this callback fails at the first train step with an error
    naming ``tfcompress.PruningCallback``. Wrappers made by TFMOT's own
    ``prune_low_magnitude`` are supported too (step initialisation, re-masking and logs, as
    TFMOT's ``UpdatePruningStep``).

    Order in ``callbacks``: after ``EarlyStopping(restore_best_weights=True)`` (so the final
    masks apply to the restored weights; otherwise :func:`tfcompress.strip` re-applies the
    target masks with a warning), before ``CSVLogger``/``TensorBoard`` (so they see
    the sparsity keys). In a custom training loop, drive it by hand: ``set_model(model)``,
    ``set_params({"epochs": E, "steps": S})``, ``on_train_begin()``, ``on_epoch_begin(0)``,
    ``on_epoch_end(epoch, logs)`` and ``on_train_end()`` (``model.optimizer.iterations`` must
    count the steps, as ``optimizer.apply_gradients`` does).

    Args:
        log_layers: also publish the per-layer sparsity.

    Example:
        >>> history = pruned.fit(x, y, epochs=2, callbacks=[PruningCallback()])  # doctest: +SKIP
        >>> history.history["sparsity"][-1]  # doctest: +SKIP
        0.8
    """

    def __init__(self, log_layers: bool = True) -> None:
        super().__init__()
        if not isinstance(log_layers, bool):
            raise TypeError(f"`log_layers` must be True or False, received {log_layers!r}.")
        self.log_layers = log_layers
        self._wrappers: list[tuple[str, PruneLowMagnitude]] = []
        self._schedules: list[FitSizedSchedule] = []
        self._sized = False
        self._start_iteration = 0

    def set_model(self, model: keras.Model) -> None:
        check_model(model, "model")
        wrappers = find_wrappers(model)
        if not wrappers:
            raise ValueError(
                f"PruningCallback: model '{model.name}' has no pruning wrappers, so there is "
                "nothing to prune. Call `model = tfcompress.prune(model, ...)` first and fit "
                "the model it returns (or drop this callback)."
            )
        super().set_model(model)
        self._wrappers = wrappers
        schedules: dict[int, FitSizedSchedule] = {}
        for _, wrapper in wrappers:
            if isinstance(wrapper.pruning_schedule, FitSizedSchedule):
                schedules[id(wrapper.pruning_schedule)] = wrapper.pruning_schedule
        self._schedules = list(schedules.values())

    def _wrappers_of(self, schedule: FitSizedSchedule) -> list[PruneLowMagnitude]:
        return [w for _, w in self._wrappers if w.pruning_schedule is schedule]

    def _iterations(self) -> tf.Variable:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or getattr(optimizer, "iterations", None) is None:
            raise ValueError(
                f"PruningCallback: model '{self.model.name}' has no optimizer; compile it "
                "before fit."
            )
        return optimizer.iterations

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        iterations = self._iterations()
        self._start_iteration = int(iterations.numpy())
        self._sized = False
        for schedule in self._schedules:
            schedule.iterations = iterations
            schedule.armed.assign(True)
        stock = [(w.pruning_step, 0) for _, w in self._wrappers
                 if not isinstance(w, PruneWrapper) and int(w.pruning_step.numpy()) == -1]
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
        for schedule in self._schedules:
            if schedule.planned_total is None and fit_steps is None:
                schedule.armed.assign(False)
                raise ValueError(
                    f"PruningCallback cannot size the pruning schedule of model "
                    f"'{self.model.name}': the number of steps of this fit is unknown (a "
                    "dataset of unknown length, e.g. filtered, without steps_per_epoch). Pass "
                    "steps_per_epoch= to fit, or size the schedule yourself with "
                    "tfcompress.prune(..., steps=total_steps or (epochs, steps_per_epoch))."
                )
            initial = min((mask_sparsity(w) for w in self._wrappers_of(schedule)), default=0.0)
            schedule.start_fit(self._start_iteration, fit_steps, initial)

    def _sparsity_logs(self) -> dict[str, float]:
        return sparsity_logs(self._wrappers, per_layer=self.log_layers)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for _, wrapper in self._wrappers:
            apply_masks(wrapper)
        if logs is not None:
            logs.update(self._sparsity_logs())

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
        summary = self._sparsity_logs()
        _log.info("PruningCallback: final sparsity %.4f after %d steps.",
                  summary["sparsity"], ran)
