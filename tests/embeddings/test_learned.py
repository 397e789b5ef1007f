"""Learned row pruning (group-lasso proximal step): it finds the rows the loss needs where id
frequency cannot (every id equally frequent), and the pruned ids compute a zero row."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets up tf_keras)
from tfcompress._keras import keras
from tfcompress.embeddings.learned import RowShrinkage, learned_row_pruning
from tfcompress.embeddings.vocabulary import prune_vocabulary

INFORMATIVE = 50  # ids 1..50 decide the label; ids 51..200 are noise, all equally frequent


def _data(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 201, size=n)
    p = np.where(ids <= INFORMATIVE, np.where(ids % 2 == 0, 0.9, 0.1), 0.5)
    return ids[:, None].astype("int32"), (rng.random(n) < p).astype("float32")


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    x, y = _data()
    inp = keras.Input((1,), dtype="int32", name="item")
    emb = keras.layers.Embedding(201, 8, name="emb")
    out = keras.layers.Dense(1, activation="sigmoid", name="out")(keras.layers.Flatten()(emb(inp)))
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x, y, batch_size=256, epochs=2, verbose=0)
    return model, (x, y)


def _kept_ids(stats: dict) -> np.ndarray:
    mapping = stats["mapping"]
    return np.flatnonzero(mapping[1:] <= stats["rows_kept"] - 1) + 1


def test_learned_pruning_keeps_the_informative_ids_frequency_cannot_tell(trained):
    model, (x, y) = trained
    keras.utils.set_random_seed(1)
    small, report = learned_row_pruning(
        model, (x, y), strength=2e-3, epochs=2, batch_size=256, verbose=0
    )
    stats = report.settings["tables"]["emb"]
    kept = _kept_ids(stats)
    assert (kept <= INFORMATIVE).sum() == INFORMATIVE  # every informative id keeps its row
    assert (kept > INFORMATIVE).sum() <= 30  # >= 80% of the 150 noise ids pruned
    assert report.settings["learned"]["zero_rows"]["emb"] == 200 - kept.size
    assert report.settings["learned"]["history"]["zero_rows"][-1] > 0.5
    # frequency is blind here: every id is about equally frequent, so a count threshold keeps
    # all of them or none
    counts = np.bincount(x[:, 0], minlength=201)
    informative, noise = counts[1 : INFORMATIVE + 1].mean(), counts[INFORMATIVE + 1 :].mean()
    assert abs(informative - noise) < 0.05 * noise
    # the pruned ids read an all-zero OOV row: the output of a zero embedding, sigmoid(bias)
    pruned = np.setdiff1d(np.arange(1, 201), kept)
    bias = small.get_layer("out").get_weights()[1][0]
    got = small.predict(pruned[:, None].astype("int32"), verbose=0)[:, 0]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-bias)), atol=1e-6)
    assert stats["pruned_impression_share"] is None


def test_learned_pruning_max_ids_keeps_the_largest_rows_and_counts_give_the_share(trained):
    model, (x, y) = trained
    counts = {"emb": np.bincount(x[:, 0], minlength=201)}
    keras.utils.set_random_seed(1)
    _, report = learned_row_pruning(
        model, (x, y), strength=1e-3, max_ids=20, counts=counts, batch_size=256, verbose=0
    )
    stats = report.settings["tables"]["emb"]
    kept = _kept_ids(stats)
    assert stats["rows_kept"] == 21 and kept.size == 20
    assert (kept <= INFORMATIVE).all()
    assert 0.7 < stats["pruned_impression_share"] < 0.95  # ~180 of 200 equally frequent ids


def test_row_shrinkage_zeroes_rows_without_gradient_and_logs():
    emb = keras.layers.Embedding(4, 2, name="e")
    model = keras.Sequential(
        [keras.Input((1,)), emb, keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    emb.set_weights([np.array([[1, 1], [0.3, 0.4], [3, 4], [0.06, 0.08]], "float32")])
    shrink = RowShrinkage(["e"], 0.1)
    shrink.set_model(model)
    shrink.on_train_batch_end(0)
    table = emb.get_weights()[0]
    np.testing.assert_allclose(table[0], [1, 1])  # padding untouched
    np.testing.assert_allclose(table[1], [0.24, 0.32], rtol=1e-6)  # norm 0.5 -> 0.4
    np.testing.assert_allclose(table[2], [2.94, 3.92], rtol=1e-6)  # norm 5 -> 4.9
    np.testing.assert_array_equal(table[3], [0, 0])  # norm 0.1 -> exactly 0
    logs: dict = {}
    shrink.on_epoch_end(0, logs)
    assert logs["zero_rows"] == pytest.approx(1 / 3)


def test_bad_input(trained):
    model, data = trained
    with pytest.raises(ValueError, match="strength"):
        learned_row_pruning(model, data, strength=0.0)
    with pytest.raises(ValueError, match="epochs"):
        learned_row_pruning(model, data, strength=1e-3, epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        learned_row_pruning(model, data, strength=1e-3, optimizer="rmsprop")
    with pytest.raises(TypeError, match="data"):
        learned_row_pruning(model, "train.csv", strength=1e-3, verbose=0)
    with pytest.raises(ValueError, match="not layers"):
        learned_row_pruning(model, data, strength=1e-3, tables=["nope"])
    fresh = keras.models.clone_model(model)
    with pytest.raises(ValueError, match="loss="):
        learned_row_pruning(fresh, data, strength=1e-3)
    with pytest.raises(ValueError, match="strength"):
        RowShrinkage(["emb"], -1.0)
    with pytest.raises(TypeError, match="tables"):
        RowShrinkage("emb", 1e-3)
    with pytest.raises(ValueError, match="not a built Embedding"):  # fails when fit starts
        RowShrinkage(["out"], 1e-3).set_model(model)
    with pytest.raises(TypeError, match="tf_keras"):
        learned_row_pruning(object(), data, strength=1e-3)


def test_prune_vocabulary_with_the_same_row_budget_by_frequency_is_blind(trained):
    """The contrast the learned criterion is for: at 20 kept ids, frequency keeps the 20 most
    frequent ids, of which only ~a quarter are informative (50 of 200 ids are)."""
    model, (x, _) = trained
    counts = {"emb": np.bincount(x[:, 0], minlength=201)}
    _, report = prune_vocabulary(model, counts, max_ids=20)
    kept = _kept_ids(report.settings["tables"]["emb"])
    assert (kept <= INFORMATIVE).sum() < 12
