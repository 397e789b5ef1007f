"""Tests of tfcompress.pruning: prune(), PruningCallback, strip(), sparsity_report(), is_pruned().

Every fit here is short (20 steps): the point of the module is that the target sparsity is
reached exactly on such fits, where TFMOT's defaults prune nothing.
"""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
from fit_helpers import RestoreFirstEpoch

from tfcompress import data, models
from tfcompress._keras import keras, tf
from tfcompress._layers import CompressionReport
from tfcompress.pruning import (
    PruningCallback,
    SparsityReport,
    is_pruned,
    prune,
    sparsity_report,
    strip,
)
from tfcompress.pruning.schedule import FitSizedSchedule

N, BATCH = 320, 16  # 20 steps per epoch
STEPS = N // BATCH


@keras.saving.register_keras_serializable(package="test_pruning")
class TfrsCross(keras.layers.Layer):
    """tensorflow-recommenders' DCN ``Cross`` layer: ``x0 * Dense(x) + x``.

    Like tfrs, the ``Dense`` is a sublayer created in ``build`` and built lazily on the first
    call, the layer is called as ``cross(x0, x)`` and it has no ``get_prunable_weights``: TFMOT
    refuses a model containing it.
    """

    def build(self, input_shape):
        self._dense = keras.layers.Dense(int(input_shape[-1]), name="dense")
        super().build(input_shape)

    def call(self, x0, x=None):
        x = x0 if x is None else x
        return x0 * self._dense(x) + x


@keras.saving.register_keras_serializable(package="test_pruning")
class RawKernel(keras.layers.Layer):
    """A custom layer owning a raw kernel variable: nothing tfcompress can prune for it."""

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), 4))
        super().build(input_shape)

    def call(self, x):
        return tf.matmul(x, self.kernel)


def toy_model(raw: bool = False) -> keras.Model:
    """Dense 16x32, Embedding 64x8, a tfrs-style Cross over 40 dims, Dense 40x1."""
    x = keras.Input((16,), name="x")
    ids = keras.Input((1,), dtype="int32", name="ids")
    dense = keras.layers.Dense(32, activation="relu", name="dense")(x)
    emb = keras.layers.Flatten(name="flat")(keras.layers.Embedding(64, 8, name="emb")(ids))
    x0 = keras.layers.Concatenate(name="concat")([dense, emb])
    top = TfrsCross(name="tfrs_cross")(x0, x0)
    if raw:
        top = RawKernel(name="raw")(top)
    out = keras.layers.Dense(1, name="out")(top)
    return keras.Model([x, ids], out, name="toy")


def toy_data(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 16)).astype("float32")
    ids = rng.integers(0, 64, size=(N, 1)).astype("int32")
    y = (x[:, :1] - 0.5 * x[:, 1:2] + 0.1 * (ids % 3)).astype("float32")
    return [x, ids], y


def fit(model, inputs, y, epochs=2, steps_per_epoch=STEPS // 2, callbacks=None, **compile_kw):
    """``epochs * steps_per_epoch`` = 20 steps by default."""
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", **compile_kw)
    batch = N // steps_per_epoch
    return model.fit(
        inputs,
        y,
        batch_size=batch,
        epochs=epochs,
        verbose=0,
        callbacks=[PruningCallback()] if callbacks is None else callbacks,
    )


@pytest.fixture(scope="module")
def pruned_toy(tmp_path_factory):
    """The toy model pruned to 0.8 and fit for 20 steps, with History and a CSVLogger."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = toy_model()
    original = [w.copy() for w in model.get_weights()]
    pruned = prune(model, 0.8)
    inputs, y = toy_data()
    log = tmp_path_factory.mktemp("logs") / "log.csv"
    history = fit(pruned, inputs, y, callbacks=[PruningCallback(), keras.callbacks.CSVLogger(log)])
    return {
        "model": model,
        "original": original,
        "pruned": pruned,
        "history": history.history,
        "inputs": inputs,
        "y": y,
        "csv": log,
    }


# ------------------------------------------------------------------ target on a 20-step fit


def test_twenty_step_fit_reaches_target_on_dense_embedding_and_custom_sublayer(pruned_toy):
    report = sparsity_report(pruned_toy["pruned"])
    assert isinstance(report, SparsityReport)
    layers = report.layers
    assert set(layers) == {"dense", "emb", "tfrs_cross", "out"}
    for layer, sparsity in layers.items():
        assert sparsity == pytest.approx(0.8, abs=0.01), (layer, report.to_markdown())
    assert report.overall == pytest.approx(0.8, abs=0.01)
    # the masked kernel of the custom layer's Dense sublayer is what the layer uses
    wrapper = pruned_toy["pruned"].get_layer("prune_low_magnitude_tfrs_cross")
    kernel = wrapper.layer._dense.kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.8, abs=0.01)
    # training worked and the original model was left alone
    history = pruned_toy["history"]
    assert history["loss"][-1] < history["loss"][0]
    for before, after in zip(
        pruned_toy["original"], pruned_toy["model"].get_weights(), strict=True
    ):
        np.testing.assert_array_equal(before, after)


def test_sparsity_logged_in_history_and_csv(pruned_toy):
    history = pruned_toy["history"]
    for key in ("sparsity", "sparsity/dense", "sparsity/emb", "sparsity/tfrs_cross"):
        assert len(history[key]) == 2, key
    assert 0.3 < history["sparsity"][0] < 0.79  # mid-ramp after epoch 1 (steps 1..10 of 16)
    assert history["sparsity"][-1] == pytest.approx(0.8, abs=0.01)
    with open(pruned_toy["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[-1]["sparsity"]) == pytest.approx(0.8, abs=0.01)
    assert float(rows[-1]["sparsity/emb"]) == pytest.approx(0.8, abs=0.01)


def test_prune_report_lists_every_layer(pruned_toy):
    report = pruned_toy["pruned"].compression_report
    assert isinstance(report, CompressionReport) and report.technique == "prune"
    assert report["dense"].applied and report["dense"].detail == "sparsity 0.80 on kernel"
    assert report["emb"].detail == "sparsity 0.80 on embeddings"
    cross = report["tfrs_cross"]
    assert cross.applied and cross.detail == "sparsity 0.80 on dense/kernel"
    assert "Dense/EinsumDense/Conv/Embedding sublayers" in cross.reason
    assert not report["flat"].applied and report["flat"].reason == "no weights"
    assert report.settings["sparsity"] == 0.8
    assert "| tfrs_cross | TfrsCross | yes |" in report.to_markdown()


# ------------------------------------------------------------------ strip


def test_strip_gives_plain_model_with_equal_outputs_and_saves(pruned_toy, tmp_path):
    pruned, inputs = pruned_toy["pruned"], pruned_toy["inputs"]
    assert is_pruned(pruned)
    stripped = strip(pruned)
    assert not is_pruned(stripped)
    assert [layer.name for layer in stripped.layers] == [
        layer.name for layer in pruned_toy["model"].layers
    ]
    expected = pruned.predict(inputs, verbose=0)
    np.testing.assert_allclose(stripped.predict(inputs, verbose=0), expected, atol=1e-6)
    assert sparsity_report(stripped).overall == pytest.approx(0.8, abs=0.01)
    assert sparsity_report(stripped)["tfrs_cross"] == pytest.approx(0.8, abs=0.01)
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), expected, atol=1e-6)
    assert sparsity_report(loaded)["dense"] == pytest.approx(0.8, abs=0.01)


def test_pruned_model_saves_loads_and_resumes(pruned_toy, tmp_path):
    pruned, inputs, y = pruned_toy["pruned"], pruned_toy["inputs"], pruned_toy["y"]
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert is_pruned(loaded)
    expected = pruned.predict(inputs, verbose=0)
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), expected, atol=1e-6)
    history = fit(loaded, inputs, y, epochs=1)  # a second fit keeps the reached sparsity
    assert history.history["sparsity"][-1] == pytest.approx(0.8, abs=0.01)
    assert sparsity_report(loaded)["tfrs_cross"] == pytest.approx(0.8, abs=0.01)


def test_strip_of_unpruned_model_is_an_independent_copy():
    model = toy_model()
    copy = strip(model)
    assert copy is not model and not is_pruned(copy)
    copy.get_layer("dense").kernel.assign(tf.zeros((16, 32)))
    assert np.count_nonzero(model.get_layer("dense").kernel.numpy()) == 16 * 32


# ------------------------------------------------------------------ 2:4


def _groups_of_four(kernel: np.ndarray) -> np.ndarray:
    """Groups of 4 consecutive weights along TFMOT's m-by-n axis (input axis of a kernel)."""
    rows = kernel.T
    assert rows.shape[1] % 4 == 0
    return rows.reshape(-1, 4)


def test_two_four_structure_on_twenty_step_fit():
    pruned = prune(toy_model(), structure="2:4")
    assert pruned.compression_report["dense"].detail == "2:4 on kernel"
    inputs, y = toy_data()
    fit(pruned, inputs, y)
    stripped = strip(pruned)
    kernels = {
        "dense": stripped.get_layer("dense").kernel,
        "emb": stripped.get_layer("emb").embeddings,
        "tfrs_cross": stripped.get_layer("tfrs_cross")._dense.kernel,
        "out": stripped.get_layer("out").kernel,
    }
    for name, kernel in kernels.items():
        groups = _groups_of_four(kernel.numpy())
        zeros = np.sum(groups == 0, axis=1)
        assert np.all(zeros >= 2), name
        assert np.mean(kernel.numpy() == 0) == pytest.approx(0.5, abs=0.01), name
    report = sparsity_report(pruned)
    assert all(row.two_four for row in report.rows)
    assert report.overall == pytest.approx(0.5, abs=0.01)


def test_two_four_fixes_sparsity_and_rejects_contradictions():
    with pytest.raises(ValueError, match=r"fixes the sparsity at 0.5.*sparsity=0.8"):
        prune(toy_model(), 0.8, structure="2:4")
    with pytest.raises(ValueError, match=r"`frequency` has no effect with structure='2:4'"):
        prune(toy_model(), structure="2:4", frequency=5)
    assert prune(toy_model(), 0.5, structure="2:4").compression_report.settings["sparsity"] == 0.5


# ------------------------------------------------------------------ distribution


def test_mirrored_strategy_reaches_target(mirrored):
    with mirrored.scope():
        pruned = prune(toy_model(), 0.75, schedule="constant")
        pruned.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    inputs, y = toy_data()
    history = pruned.fit(
        inputs, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[PruningCallback()]
    )
    assert history.history["sparsity"][-1] == pytest.approx(0.75, abs=0.01)
    for layer, sparsity in sparsity_report(pruned).layers.items():
        assert sparsity == pytest.approx(0.75, abs=0.01), layer


def test_mirrored_strategy_matches_single_device(mirrored):
    """Same data, same initial weights: two replicas prune and train like one device."""
    inputs, y = toy_data()
    initial = toy_model().get_weights()

    def run(scope):
        with scope:
            model = toy_model()
            model.set_weights(initial)
            pruned = prune(model, 0.6)
            pruned.compile(optimizer=keras.optimizers.SGD(1e-2), loss="mse")
        history = pruned.fit(
            inputs,
            y,
            batch_size=BATCH,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[PruningCallback()],
        )
        return history.history, strip(pruned)

    single_history, single = run(tf.distribute.get_strategy().scope())
    multi_history, multi = run(mirrored.scope())
    np.testing.assert_allclose(multi_history["loss"], single_history["loss"], rtol=1e-4)
    assert sparsity_report(multi).overall == pytest.approx(
        sparsity_report(single).overall, abs=1e-6
    )
    for a, b in zip(single.get_weights(), multi.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4)
        np.testing.assert_array_equal(b == 0, a == 0)  # the same weights were pruned


# ------------------------------------------------------------------ reference models


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dcn", "sequence_transformer"])
def test_reference_models_prune_fit_strip(name):
    task = data.load_task("ctr", n_samples=400, seed=0, batch_size=32)
    model = models.build(name, task.schema, size="tiny")
    pruned = prune(model, 0.8)
    report = pruned.compression_report
    assert report["emb_item_id"].applied
    if name == "dcn":
        assert report["cross_0"].detail == "sparsity 0.80 on kernel"
    else:
        mha = report["block_0_mha"]
        assert mha.applied and mha.detail.count("kernel") == 4
        assert not report["block_0_ln_1"].applied
        assert report["block_0_ln_1"].reason.startswith("nothing to prune")
    models.compile_for_task(pruned, task.schema)
    train = task.train.take(10)  # 10 steps per epoch, 20 in all
    history = pruned.fit(train, epochs=2, verbose=0, callbacks=[PruningCallback()])
    assert history.history["sparsity"][-1] == pytest.approx(0.8, abs=0.01)
    stripped = strip(pruned)
    assert not is_pruned(stripped)
    features, _ = next(iter(task.test))
    np.testing.assert_allclose(stripped(features).numpy(), pruned(features).numpy(), atol=1e-6)
    assert sparsity_report(stripped).overall == pytest.approx(0.8, abs=0.01)


def test_nested_two_tower_is_pruned_recursively():
    task = data.load_task("retrieval", n_samples=300, seed=0)
    model = models.build("two_tower", task.schema, size="tiny", catalog=task.info["catalog"])
    pruned = prune(model, 0.5, layers="query_tower")
    report = pruned.compression_report
    assert report["query_tower/projection"].applied
    assert report["query_tower/mlp_0"].applied
    assert report["candidate_tower/projection"].reason == "not selected by layers="
    assert "query_tower/emb_user_id" in sparsity_report(pruned).layers
    stripped = strip(pruned)
    assert not is_pruned(stripped)
    assert stripped.get_layer("query_tower").get_layer("projection").__class__ is (
        keras.layers.Dense
    )
    features, _ = next(iter(task.test))
    features = {name: features[name] for name in model.input_names}
    np.testing.assert_allclose(stripped(features).numpy(), model(features).numpy(), atol=1e-5)


# ------------------------------------------------------------------ custom layers, strict


def test_custom_layer_without_prunable_weights_is_skipped_and_reported():
    pruned = prune(toy_model(raw=True), 0.5)
    report = pruned.compression_report
    assert report["tfrs_cross"].applied
    raw = report["raw"]
    assert not raw.applied
    assert raw.reason.startswith("custom layer RawKernel has no prunable weights")
    assert "get_prunable_weights" in raw.reason
    with pytest.raises(ValueError, match=r"strict=True.*raw \(RawKernel\)"):
        prune(toy_model(raw=True), 0.5, strict=True)
    # excluding it makes strict happy
    ok = prune(toy_model(raw=True), 0.5, strict=True, skip="raw")
    assert ok.compression_report["raw"].reason == "excluded by skip="


def test_strict_accepts_layers_with_nothing_to_prune_by_design():
    task = data.load_task("ctr", n_samples=300, seed=0)
    model = models.build("sequence_transformer", task.schema, size="tiny")
    message = r"block_0_mha \(MultiHeadAttention\): 2:4 structure needs rank-2 or rank-4"
    with pytest.raises(ValueError, match=message):
        prune(model, structure="2:4", strict=True)
    pruned = prune(model, 0.5, strict=True)  # LayerNormalization etc. are not failures
    assert pruned.compression_report["block_0_ln_1"].reason.startswith("nothing to prune")


# ------------------------------------------------------------------ callback


def _dense_model(name: str = "small") -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(32, name="dense"),
            keras.layers.Dense(1, name="out"),
        ],
        name=name,
    )


def test_train_on_batch_without_driver_fails_naming_the_fixes_then_fit_works():
    """train_on_batch has no callbacks: it fails naming the fixes; the model stays usable."""
    pruned = prune(_dense_model(), 0.5)
    pruned.compile("adam", "mse")
    inputs, y = toy_data()
    with pytest.raises(
        ValueError,
        match=(
            r"callbacks=\[tfcompress.PruningCallback\(\)\].*"
            r"from tfcompress.pruning import enable_fit_pruning; enable_fit_pruning\(model\)"
        ),
    ):
        pruned.train_on_batch(inputs[0][:BATCH], y[:BATCH])
    fit(pruned, inputs[0], y, callbacks=[])  # the plain fit drives the pruning itself
    assert sparsity_report(pruned)["dense"] == pytest.approx(0.5, abs=0.01)


def test_callback_on_unpruned_model_raises():
    model = _dense_model()
    with pytest.raises(ValueError, match=r"no pruning wrappers.*tfcompress.prune\(model"):
        PruningCallback().set_model(model)
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"no pruning wrappers"):
        model.fit(np.ones((4, 16)), np.ones((4, 1)), verbose=0, callbacks=[PruningCallback()])
    with pytest.raises(TypeError, match=r"`log_layers` must be True or False"):
        PruningCallback(log_layers="yes")


class _Distiller(keras.Model):
    """A subclassed model holding functional models as attributes, like a distiller."""

    def __init__(self, student, teacher):
        super().__init__()
        self.student = student
        self.teacher = teacher

    def call(self, inputs, training=None):
        return self.student(inputs, training=training) + 0.0 * self.teacher(inputs)


def test_callback_finds_wrappers_in_subclassed_model():
    student = prune(_dense_model(), 0.6)
    distiller = _Distiller(student, _dense_model("teacher"))
    inputs, y = toy_data()
    history = fit(distiller, inputs[0], y)
    assert history.history["sparsity/small/dense"][-1] == pytest.approx(0.6, abs=0.01)
    assert sparsity_report(distiller)["small/dense"] == pytest.approx(0.6, abs=0.01)
    assert is_pruned(distiller)
    with pytest.raises(ValueError, match=r"subclassed model.*distiller.student"):
        prune(distiller)
    with pytest.raises(ValueError, match=r"subclassed model"):
        strip(distiller)


def test_callback_drives_tfmot_own_wrappers():
    import tensorflow_model_optimization as tfmot

    sparsity = tfmot.sparsity.keras
    model = sparsity.prune_low_magnitude(
        _dense_model(), pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1)
    )
    assert is_pruned(model)
    inputs, y = toy_data()
    history = fit(model, inputs[0], y, epochs=1)
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=0.01)
    assert sparsity_report(strip(model))["dense"] == pytest.approx(0.5, abs=0.01)


def test_unknown_number_of_steps_asks_for_steps_per_epoch():
    pruned = prune(_dense_model(), 0.5)
    pruned.compile("adam", "mse")
    inputs, y = toy_data()
    unknown = tf.data.Dataset.from_tensor_slices((inputs[0], y)).filter(lambda a, b: True)
    with pytest.raises(ValueError, match=r"steps_per_epoch=.*prune\(\.\.\., steps="):
        pruned.fit(unknown.batch(BATCH), verbose=0, callbacks=[PruningCallback()])
    # with steps_per_epoch it is sized from the fit
    history = pruned.fit(
        unknown.repeat().batch(BATCH),
        steps_per_epoch=STEPS,
        verbose=0,
        callbacks=[PruningCallback()],
    )
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=0.01)


def test_explicit_steps_longer_than_the_fit_warns_and_keeps_the_schedule(caplog):
    pruned = prune(_dense_model(), 0.8, steps=(4, STEPS), end=1.0)
    schedule = pruned.get_layer("prune_low_magnitude_dense").pruning_schedule
    assert (schedule.begin_step, schedule.end_step) == (1, 4 * STEPS)
    inputs, y = toy_data()
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        fit(pruned, inputs[0], y, epochs=1, steps_per_epoch=STEPS)
    assert "before the step 80" in caplog.text
    expected = schedule.sparsity_at(STEPS)
    assert 0.3 < expected < 0.8
    assert sparsity_report(pruned)["dense"] == pytest.approx(expected, abs=0.01)


def test_schedule_sizing_and_unreachable_frequency_warning(caplog):
    schedule = FitSizedSchedule(0.8, steps=20)
    assert (schedule.begin_step, schedule.end_step, schedule.frequency) == (1, 16, 1)
    assert schedule.sparsity_at(16) == pytest.approx(0.8)
    assert 0.0 < schedule.sparsity_at(8) < 0.8
    should, sparsity = schedule(tf.constant(16))
    assert bool(should) and float(sparsity) == pytest.approx(0.8)
    assert not bool(schedule(tf.constant(17))[0])
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        FitSizedSchedule(0.8, steps=100, frequency=500)
    assert "one-shot jump" in caplog.text


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval_raises(sparsity):
    with pytest.raises(ValueError, match=r"`sparsity` must be in \[0, 1\)"):
        prune(_dense_model(), sparsity)


@pytest.mark.parametrize("structure", ["4:8", "2by4", (2, 4)])
def test_unknown_structure_raises(structure):
    with pytest.raises(ValueError, match=r"`structure` must be None \(unstructured\) or '2:4'"):
        prune(_dense_model(), structure=structure)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"schedule": "cubic"}, ValueError, r"`schedule` must be 'polynomial' or 'constant'"),
        ({"steps": 0}, ValueError, r"`steps` must be None"),
        ({"steps": (2, 0)}, ValueError, r"`steps` must be None"),
        ({"begin": 0.5, "end": 0.2}, ValueError, r"`end` \(0.2\) must be >= `begin`"),
        ({"end": 1.5}, ValueError, r"`end` must be in \[0, 1\]"),
        ({"frequency": 0}, ValueError, r"`frequency` must be None"),
        ({"strict": "yes"}, TypeError, r"`strict` must be True or False"),
        ({"sparsity": "0.8"}, TypeError, r"`sparsity` must be a float"),
    ],
)
def test_bad_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        prune(_dense_model(), **kwargs)


def test_layer_filter_matching_nothing_raises():
    with pytest.raises(ValueError, match=r"`layers` entry 'nope' matches no layer.*dense"):
        prune(_dense_model(), layers="nope")
    with pytest.raises(ValueError, match=r"`skip` entry 'nope' matches no layer"):
        prune(_dense_model(), skip="nope")
    with pytest.raises(ValueError, match=r"nothing to prune in model 'small'"):
        prune(_dense_model(), layers=lambda layer: False)


def test_already_pruned_model_raises():
    with pytest.raises(ValueError, match=r"already pruned.*tfcompress.pruning.strip"):
        prune(prune(_dense_model(), 0.5))


def _keras3_model():
    import keras as keras3

    return keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)])


@pytest.mark.parametrize(
    "function",
    [prune, strip, sparsity_report, is_pruned, lambda m: PruningCallback().set_model(m)],
    ids=["prune", "strip", "sparsity_report", "is_pruned", "PruningCallback"],
)
def test_keras3_model_rejected(function):
    with pytest.raises(TypeError, match=r"`model` is a Keras 3 model"):
        function(_keras3_model())


def test_sparsity_report_of_plain_model():
    report = sparsity_report(toy_model())
    assert report.overall == 0.0
    assert set(report.layers) == {"dense", "emb", "tfrs_cross", "out"}
    assert report["emb"] == 0.0
    assert "| emb | embeddings | 64x8 | 0 | 512 | 0.0000 |" in report.to_markdown()
    assert report.to_dict()["weights"][0]["size"] == 16 * 32
    with pytest.raises(KeyError, match=r"No prunable layer 'flat'"):
        report["flat"]
    assert not is_pruned(toy_model())


def test_strip_reaches_target_when_early_stopping_restored_earlier_masks(caplog):
    x = np.random.default_rng(1).normal(size=(256, 16)).astype("float32")
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, name="d"), keras.layers.Dense(1, name="out")]
    )
    pruned = prune(model, 0.8)
    pruned.compile("adam", "mse")
    # Listed after PruningCallback, the restore runs after the final masks: sparsity drops.
    pruned.fit(
        x,
        x[:, :1],
        epochs=2,
        batch_size=32,
        verbose=0,
        callbacks=[PruningCallback(), RestoreFirstEpoch()],
    )
    assert sparsity_report(pruned).overall < 0.75
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        stripped = strip(pruned)
    assert sparsity_report(stripped).overall == pytest.approx(0.8, abs=0.01)
    assert "final masks were undone" in caplog.text
    np.testing.assert_allclose(
        stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6
    )
