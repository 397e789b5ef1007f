"""tfcompress.data.epochs.epoch_batches and the run's per-epoch seeds (_pipeline_seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress import data
from tfcompress._keras import keras
from tfcompress.data.epochs import epoch_batches
from tfcompress.recipe._seeds import EpochSeeds, has_random_layers, stage_seed


@pytest.fixture(scope="module")
def task():
    return data.load_task("ctr", n_samples=600, seed=0)


def _rows(ds) -> list[tuple[int, ...]]:
    """Each batch as the tuple of its labels and first feature (identifies the rows' order)."""
    out = []
    for features, labels in ds:
        first = next(iter(features.values())).numpy().reshape(len(labels), -1)[:, 0]
        out.append(tuple(np.round(first, 6).tolist()) + tuple(labels.numpy().ravel().tolist()))
    return out


def test_order_is_a_function_of_seed_and_position_only(task):
    position = [0]
    ds = epoch_batches(task, batch_size=50, seed=7, position=lambda: position[0])
    first, again = _rows(ds), _rows(ds)
    assert first == again  # same (seed, position): same order, however often it was iterated
    position[0] = 12
    moved = _rows(ds)
    assert moved != first  # a new epoch (position) gets a new order
    fresh = epoch_batches(task, batch_size=50, seed=7, position=lambda: 12)
    assert _rows(fresh) == moved  # ... equal to a new dataset's at that position
    assert _rows(epoch_batches(task, batch_size=50, seed=8, position=lambda: 12)) != moved


def test_batches_cover_the_training_split_once_with_the_schema_features(task):
    features, labels = task.info["arrays"]["train"]
    ds = epoch_batches(task, batch_size=64, seed=1, position=lambda: 0)
    batches = list(ds)
    assert int(ds.cardinality()) == len(batches) == -(-len(labels) // 64)
    assert list(batches[0][0]) == [f.name for f in task.schema]
    assert sum(len(y) for _, y in batches) == len(labels)
    assert float(sum(float(np.sum(y)) for _, y in batches)) == pytest.approx(float(labels.sum()))
    # a permutation of the rows: every label sum and feature sum is kept
    name = list(task.schema)[0].name
    got = np.concatenate([x[name].numpy() for x, _ in batches])
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(features[name], axis=0))


def test_a_keras_fit_reads_it(task):
    from tfcompress import models

    model = models.build("dcn", task.schema, size="tiny")
    models.compile_for_task(model, task.schema, learning_rate=1e-3)
    ds = epoch_batches(
        task, batch_size=64, seed=1, position=lambda: int(model.optimizer.iterations.numpy())
    )
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert int(model.optimizer.iterations.numpy()) == 2 * int(ds.cardinality())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"task": "ctr"}, TypeError, "`task` must be a tfcompress.data.TaskData"),
        (
            {"batch_size": 0},
            ValueError,
            r"epoch_batches: `batch_size` must be an int >= 1, received 0 \(int\)",
        ),
        ({"batch_size": 2.5}, TypeError, "`batch_size` must be an int >= 1, received 2.5"),
        ({"batch_size": True}, TypeError, "`batch_size` must be an int >= 1, received True"),
        ({"seed": -1}, ValueError, "`seed` must be an int >= 0, received -1"),
        ({"position": 3}, TypeError, "`position` must be a callable"),
    ],
)
def test_bad_arguments_name_themselves(task, kwargs, error, match):
    args = {"task": task, "batch_size": 8, "seed": 0, "position": lambda: 0, **kwargs}
    with pytest.raises(error, match=match):
        epoch_batches(args.pop("task"), **args)


def test_a_task_without_arrays_falls_back_to_its_train_dataset_with_a_warning(task, caplog):
    bare = data.TaskData(task.train, task.validation, task.test, task.schema, {})
    with caplog.at_level("WARNING", logger="tfcompress"):
        assert epoch_batches(bare, batch_size=8, seed=0, position=lambda: 0) is task.train
    assert "depends on how often it was iterated" in caplog.text


def test_random_layers_are_found_in_nested_models():
    inner = keras.Sequential([keras.layers.Dense(2, input_shape=(3,)), keras.layers.Dropout(0.5)])
    outer = keras.Sequential([inner, keras.layers.Dense(1)])
    plain = keras.Sequential([keras.layers.Dense(1, input_shape=(3,))])
    assert has_random_layers(outer) and has_random_layers(inner)
    assert not has_random_layers(plain)
    assert stage_seed(10, -1) == 10 and stage_seed(10, 2) == 13


def _dropout_fit(stop_after: int | None, epochs: int = 3) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = keras.Sequential(
        [keras.layers.Dense(8, input_shape=(4,)), keras.layers.Dropout(0.5), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.1), "mse")
    if stop_after is not None:  # the first epochs in this "process", the rest in a fresh model
        model.fit(
            x,
            y,
            batch_size=64,
            epochs=stop_after,
            shuffle=False,
            verbose=0,
            callbacks=[EpochSeeds(5)],
        )
        weights = model.get_weights()
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.layers.Dense(8, input_shape=(4,)),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(1),
            ]
        )
        model.compile(keras.optimizers.SGD(0.1), "mse")
        model.set_weights(weights)
        model.fit(
            x,
            y,
            batch_size=64,
            epochs=epochs,
            initial_epoch=stop_after,
            shuffle=False,
            verbose=0,
            callbacks=[EpochSeeds(5)],
        )
    else:
        model.fit(
            x, y, batch_size=64, epochs=epochs, shuffle=False, verbose=0, callbacks=[EpochSeeds(5)]
        )
    return model.get_weights()


def test_epoch_seeds_make_dropout_a_function_of_the_epoch():
    """A fit continued at epoch 1 by a new model (a resumed process) draws the same dropout
    masks as the uninterrupted fit: the same weights, bit for bit."""
    whole, resumed = _dropout_fit(None), _dropout_fit(1)
    for a, b in zip(whole, resumed, strict=True):
        np.testing.assert_array_equal(a, b)
