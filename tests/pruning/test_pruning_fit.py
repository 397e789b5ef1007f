"""A pruned model prunes inside a plain ``model.fit`` and stays usable after a mistake (issue 13).

``prune()`` returns a model whose ``fit`` drives the pruning schedule itself (sized from the
fit); :class:`PruningCallback` adds the sparsity logs and drives models that cannot drive
themselves (a pruned student inside a subclassed model, a pruned model loaded from a file).
Every fit is 20 steps of a tiny Dense model.
"""

from __future__ import annotations

import numpy as np
import pytest
from fit_helpers import RestoreFirstEpoch

from tfcompress._keras import keras, tf
from tfcompress.pruning import PruningCallback, prune, sparsity_report, strip

N, BATCH = 320, 32  # 10 steps per epoch, 20 per 2-epoch fit
STEPS = N // BATCH


def _model(name: str = "small") -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, name="dense"),
            keras.layers.Dense(1, name="out"),
        ],
        name=name,
    )


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 16)).astype("float32")
    return x, (x[:, :1] - 0.5 * x[:, 1:2]).astype("float32")


def _compile(model: keras.Model) -> keras.Model:
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def _fit(model: keras.Model, callbacks=None, epochs: int = 2, **kwargs):
    x, y = _data()
    if callbacks is not None:
        kwargs["callbacks"] = callbacks
    return model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0, **kwargs)


def _masks(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.weights if "mask" in w.name]


class _Distiller(keras.Model):
    """A subclassed model holding the pruned model as an attribute, like a Distiller."""

    def __init__(self, student: keras.Model) -> None:
        super().__init__(name="holder")
        self.student = student

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)


# ------------------------------------------------------------------ (a) a mistake, then the fix


def test_fit_without_callback_then_with_callback_reaches_target():
    """The notebook sequence of issue 13: ``pm.fit(x, y)`` then ``pm.fit(x, y, callbacks=...)``."""
    pm = _compile(prune(_model(), 0.5))
    try:
        _fit(pm, epochs=1)
    except ValueError as err:  # whichever way the first fit goes, it names the callback
        assert "PruningCallback" in str(err)
    history = _fit(pm, callbacks=[PruningCallback()])
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=0.01)
    assert sparsity_report(pm).overall == pytest.approx(0.5, abs=0.01)
    assert sparsity_report(strip(pm))["dense"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("holder", ["subclassed", "loaded"])
def test_model_that_cannot_drive_itself_raises_then_fits_with_the_callback(holder, tmp_path):
    """A pruned model nested in a subclassed model, or loaded from a file, has no fit of its own
    driving the schedule: fitting it without the callback fails naming the fixes, and the same
    model (its cached train function included) then fits with the callback."""
    if holder == "subclassed":
        model = _Distiller(prune(_model(), 0.5))
        model(np.zeros((1, 16), "float32"))
    else:
        prune(_model(), 0.5).save(tmp_path / "pruned.keras")
        model = keras.models.load_model(tmp_path / "pruned.keras", safe_mode=True)
    _compile(model)
    with pytest.raises(ValueError, match=r"callbacks=\[tfcompress.PruningCallback\(\)\]"):
        _fit(model, epochs=1)
    history = _fit(model, callbacks=[PruningCallback()])
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=0.01)
    assert sparsity_report(model).overall == pytest.approx(0.5, abs=0.01)


def test_enable_fit_pruning_makes_a_loaded_or_holding_model_prune_without_the_callback(tmp_path):
    from tfcompress.pruning import enable_fit_pruning

    prune(_model(), 0.6).save(tmp_path / "pruned.keras")
    loaded = keras.models.load_model(tmp_path / "pruned.keras", safe_mode=True)
    assert enable_fit_pruning(loaded) is loaded
    _fit(_compile(loaded))
    assert sparsity_report(loaded).overall == pytest.approx(0.6, abs=0.01)
    holder = _Distiller(prune(_model(), 0.6))
    holder(np.zeros((1, 16), "float32"))
    _fit(_compile(enable_fit_pruning(holder)))
    assert sparsity_report(holder)["small/dense"] == pytest.approx(0.6, abs=0.01)


# ------------------------------------------------------------------ (b) no callback at all


class _MaskSparsity(keras.callbacks.Callback):
    """Records the measured sparsity at the end of every epoch (no PruningCallback needed)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(sparsity_report(self.model).overall)


def test_plain_fit_without_callback_reaches_target_and_strip_keeps_it():
    keras.utils.set_random_seed(0)
    pm = _compile(prune(_model(), 0.8))
    x, y = _data()
    seen = _MaskSparsity()
    history = pm.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[seen])
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert 0.3 < seen.seen[0] < 0.79  # the masks ramped during the fit (step 10 of 16)
    assert seen.seen[-1] == pytest.approx(0.8, abs=0.01)
    assert sparsity_report(pm).overall == pytest.approx(0.8, abs=0.01)
    stripped = strip(pm)
    report = sparsity_report(stripped)
    assert report.overall == pytest.approx(0.8, abs=0.01)
    assert report["dense"] == pytest.approx(0.8, abs=0.01)
    assert report["out"] == pytest.approx(26 / 32)  # keeps round(32 * 0.2) = 6 of 32
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pm.predict(x, verbose=0), atol=1e-6)
    # the callback's logs are what the callback adds: none without it
    assert "sparsity" not in history.history
    # a second plain fit keeps the target (the schedule restarts from the reached sparsity)
    _fit(pm, epochs=1)
    assert sparsity_report(pm).overall == pytest.approx(0.8, abs=0.01)


def test_plain_fit_with_explicit_steps_and_unknown_length():
    """``prune(steps=...)`` sizes the schedule when the fit's length is unknown."""
    pm = _compile(prune(_model(), 0.5, steps=STEPS))
    x, y = _data()
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(BATCH)
    pm.fit(unknown, epochs=1, verbose=0)
    assert sparsity_report(pm).overall == pytest.approx(0.5, abs=0.01)


# ------------------------------------------------------------------ (c) no double stepping


def test_callback_and_self_driving_fit_step_once_per_batch():
    """Plain fit, fit with the callback, with two callbacks and with a CallbackList: the same
    schedule steps, the same masks and the same weights (one step per batch, never two)."""
    initial = _model().get_weights()
    runs = {}
    for name, callbacks in (
        ("callback", lambda: [PruningCallback()]),
        ("plain", lambda: None),
        ("twice", lambda: [PruningCallback(), PruningCallback(log_layers=False)]),
        ("list", lambda: keras.callbacks.CallbackList([PruningCallback()])),
    ):
        keras.utils.set_random_seed(0)
        model = _model()
        model.set_weights(initial)
        pm = _compile(prune(model, 0.7))
        cbs = callbacks()
        if isinstance(cbs, keras.callbacks.CallbackList):
            cbs.set_model(pm)
            cbs.set_params({"epochs": 2, "steps": STEPS, "verbose": 0})
        recorder = _MaskSparsity()
        if isinstance(cbs, list):
            cbs.insert(0, recorder)
        elif cbs is None:
            cbs = [recorder]
        _fit(pm, callbacks=cbs)
        schedule = pm.get_layer("prune_low_magnitude_dense").pruning_schedule
        steps = schedule.steps_done(int(pm.optimizer.iterations.numpy()))
        runs[name] = (
            steps,
            schedule.end_step,
            recorder.seen if recorder.seen else None,
            _masks(pm),
            pm.get_weights(),
        )
    ref_steps, ref_end, ref_seen, ref_masks, ref_weights = runs["callback"]
    assert (ref_steps, ref_end) == (2 * STEPS, 16)
    for name, (steps, end, seen, masks, weights) in runs.items():
        assert (steps, end) == (ref_steps, ref_end), name
        if seen is not None:
            np.testing.assert_allclose(seen, ref_seen, atol=1e-9, err_msg=name)
        assert len(masks) == len(ref_masks) == 2
        for a, b in zip(masks, ref_masks, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
        for a, b in zip(weights, ref_weights, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6, err_msg=name)
    assert ref_seen[-1] == pytest.approx(0.7, abs=0.01)


# ------------------------------------------------------------------ (d) MirroredStrategy


def test_mirrored_plain_fit_without_callback_reaches_target(mirrored):
    with mirrored.scope():
        pm = _compile(prune(_model(), 0.75))
    history = _fit(pm)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for layer, sparsity in sparsity_report(pm).layers.items():
        assert sparsity == pytest.approx(0.75, abs=0.01), layer
    schedule = pm.get_layer("prune_low_magnitude_dense").pruning_schedule
    assert schedule.steps_done(int(pm.optimizer.iterations.numpy())) == 2 * STEPS


# ------------------------------------------------------------------ resumed fits


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted at epoch 2")


def test_backup_and_restore_resumes_a_plain_fit_like_one_with_the_callback(tmp_path):
    """Interrupted at epoch 2 and resumed by BackupAndRestore: the plain fit (its driver last,
    after BackupAndRestore) resumes exactly like the documented ``[PruningCallback(),
    BackupAndRestore]`` (tests/test_distribute.py), at the exact target."""
    initial = _model().get_weights()

    def run(backup, callback, interrupt=False):
        model = _model()
        model.set_weights(initial)
        pm = _compile(prune(model, 0.75))
        callbacks = [PruningCallback()] if callback else []
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup)))
        if interrupt:
            callbacks.append(_Interrupt())
        history = _fit(pm, callbacks=callbacks, epochs=3)
        return pm, history.history

    results = {}
    for callback in (True, False):
        backup = tmp_path / f"backup_{callback}"
        with pytest.raises(RuntimeError, match="interrupted at epoch 2"):
            run(backup, callback, interrupt=True)
        resumed, history = run(backup, callback)
        assert len(history["loss"]) == 1  # resumed at epoch 2, not restarted
        assert int(resumed.optimizer.iterations.numpy()) == 3 * STEPS  # the step was restored
        schedule = resumed.get_layer("prune_low_magnitude_dense").pruning_schedule
        # the schedule of the interrupted fit continues: sized over all 3 epochs from step 0
        # and from the sparsity that fit started at (restored with the checkpoint), as if
        # nothing had happened (issue 14: a resumed run equals an uninterrupted one)
        assert schedule.steps_done(3 * STEPS) == 3 * STEPS
        assert schedule.initial_sparsity == 0.0
        assert sparsity_report(resumed)["dense"] == pytest.approx(0.75, abs=0.01)
        results[callback] = history["loss"], _masks(resumed)
    (loss, masks), (plain_loss, plain_masks) = results[True], results[False]
    np.testing.assert_allclose(plain_loss, loss, rtol=1e-6)
    for a, b in zip(plain_masks, masks, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ (e) bad input


def test_plain_fit_of_unknown_length_names_the_fix_and_the_model_stays_usable():
    pm = _compile(prune(_model(), 0.5))
    x, y = _data()
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True)
    with pytest.raises(
        ValueError,
        match=(
            r"pruning schedule of model 'small'.*number of steps of this fit is unknown.*"
            r"steps_per_epoch=.*tfcompress.prune\(\.\.\., steps="
        ),
    ):
        pm.fit(unknown.batch(BATCH), verbose=0)
    pm.fit(unknown.repeat().batch(BATCH), steps_per_epoch=STEPS, epochs=2, verbose=0)
    assert sparsity_report(pm).overall == pytest.approx(0.5, abs=0.01)


def test_enable_fit_pruning_bad_input():
    from tfcompress.pruning import enable_fit_pruning

    with pytest.raises(ValueError, match=r"'small' has no pruning wrappers.*tfcompress.prune"):
        enable_fit_pruning(_model())
    with pytest.raises(TypeError, match=r"`model` must be a tf_keras.Model"):
        enable_fit_pruning("model")


def test_plain_fit_applies_the_final_masks_after_early_stopping_restores(caplog):
    """The plain fit's driver runs last, so the final masks apply to the restored weights (a
    PruningCallback listed before the restore leaves them below target until strip)."""
    pm = _compile(prune(_model(), 0.8))
    _fit(pm, callbacks=[RestoreFirstEpoch()])
    assert sparsity_report(pm)["dense"] == pytest.approx(0.8, abs=0.01)
    with caplog.at_level("WARNING", logger="tfcompress"):
        stripped = strip(pm)
    assert "final masks were undone" not in caplog.text
    assert sparsity_report(stripped)["dense"] == pytest.approx(0.8, abs=0.01)
