"""Learned dimension pruning (group-lasso proximal step on embedding columns): the columns the
loss does not need reach exactly zero, ``shrink`` removes exactly those, and the pruned model
computes what the fine-tuned one computes."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets up tf_keras)
from tfcompress._keras import keras
from tfcompress.pruning.learned_dims import DimShrinkage, learned_dim_pruning, remove_zero_dims

USEFUL = 4  # columns 0..3 of table "a" carry the label; columns 4..7 are tiny noise


def _data(n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 41, size=n)
    b = rng.integers(1, 11, size=n)
    y = (rng.random(n) < np.where(a % 2 == 0, 0.9, 0.1)).astype("float32")
    return {"a": a[:, None].astype("int32"), "b": b[:, None].astype("int32")}, y


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    x, y = _data()
    ia = keras.Input((1,), dtype="int32", name="a")
    ib = keras.Input((1,), dtype="int32", name="b")
    ea = keras.layers.Embedding(41, 8, name="emb_a")
    eb = keras.layers.Embedding(11, 4, name="emb_b")
    h = keras.layers.Concatenate(name="cat")(
        [keras.layers.Flatten()(ea(ia)), keras.layers.Flatten()(eb(ib))]
    )
    h = keras.layers.Dense(8, activation="relu", name="hidden")(h)
    out = keras.layers.Dense(1, activation="sigmoid", name="out")(h)
    model = keras.Model([ia, ib], out)
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x, y, batch_size=256, epochs=2, verbose=0)
    # columns 0..3 of emb_a: the parity of the id, large; 4..7 tiny noise the loss cannot use
    rng = np.random.default_rng(1)
    table = rng.normal(0.0, 1e-3, size=(41, 8)).astype("float32")
    table[:, :USEFUL] = np.where(np.arange(41)[:, None] % 2 == 0, 1.0, -1.0)
    ea.set_weights([table])
    return model, (x, y)


def test_learned_dims_zero_the_noise_columns_and_remove_them(trained):
    model, (x, y) = trained
    keras.utils.set_random_seed(2)
    small, report = learned_dim_pruning(
        model, (x, y), strength=2e-3, epochs=1, batch_size=256, tables="emb_a", verbose=0
    )
    stats = report.settings["tables"]["emb_a"]
    assert (stats["dims_before"], stats["dims_after"]) == (8, USEFUL)
    assert stats["kept"] == list(range(USEFUL))  # the informative columns, not the noise
    assert stats["zero_dims"] == 8 - USEFUL
    assert stats["bytes_after"] == 41 * USEFUL * 4
    assert small.get_layer("emb_a").output_dim == USEFUL
    assert small.get_layer("emb_b").output_dim == 4  # not chosen: left whole
    assert small.get_layer("hidden").get_weights()[0].shape == (USEFUL + 4, 8)
    assert report["emb_a"].detail == "dims 8 -> 4"
    history = report.settings["history"]
    assert history["zero_dims"] == [pytest.approx((8 - USEFUL) / 8)]
    assert "emb_b" not in report.settings["tables"]
    # the original model is untouched
    assert model.get_layer("emb_a").output_dim == 8


def test_pruned_model_computes_what_the_finetuned_model_computes(trained):
    model, (x, y) = trained
    tuned = keras.models.clone_model(model)
    tuned.set_weights(model.get_weights())
    tuned.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    callback = DimShrinkage(2e-3)  # every table
    history = tuned.fit(x, y, batch_size=256, epochs=1, verbose=0, callbacks=[callback])
    assert callback.zero_dims() == {"emb_a": 8 - USEFUL, "emb_b": 0}
    assert history.history["zero_dims"] == [pytest.approx((8 - USEFUL) / 12)]
    small, report = remove_zero_dims(tuned)
    assert small.get_layer("emb_a").output_dim == USEFUL
    assert not report["emb_b"].applied and report["emb_b"].reason == "no column is zero"
    feed = {k: v[:512] for k, v in x.items()}
    np.testing.assert_allclose(
        small.predict(feed, verbose=0), tuned.predict(feed, verbose=0), atol=1e-6
    )
    # the proximal step left nonzero columns nonzero and the rest exactly zero
    table = tuned.get_layer("emb_a").get_weights()[0]
    assert not table[:, USEFUL:].any() and np.all(np.abs(table[:, :USEFUL]).sum(axis=0) > 0)


def test_remove_zero_dims_without_zero_columns_returns_the_model(trained):
    model, _ = trained
    same, report = remove_zero_dims(model, tables=["emb_b"])
    assert same is model
    assert report.settings["tables"]["emb_b"]["dims_after"] == 4


@pytest.mark.parametrize("strength", [0.0, -1e-3])
def test_bad_strength_names_the_argument(trained, strength):
    model, data = trained
    with pytest.raises(ValueError, match="strength"):
        learned_dim_pruning(model, data, strength=strength)
    with pytest.raises(ValueError, match="strength"):
        DimShrinkage(strength)


def test_unknown_table_names_the_argument_and_the_tables(trained):
    model, data = trained
    with pytest.raises(ValueError, match=r"`tables` entry 'emb_c'.*emb_a"):
        learned_dim_pruning(model, data, strength=1e-3, tables=["emb_c"])
    with pytest.raises(ValueError, match=r"`tables` entry 'hidden' \(Dense\)"):
        remove_zero_dims(model, tables="hidden")


def test_misuse_fails_when_fit_starts(trained):
    model, (x, y) = trained
    callback = DimShrinkage(1e-3, tables=["cat"])  # a Concatenate, not a table
    with pytest.raises(ValueError, match=r"DimShrinkage: `tables` entry 'cat' \(Concatenate\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    dense.compile("adam", "mse")
    with pytest.raises(ValueError, match="no top-level Embedding"):
        dense.fit(np.zeros((4, 3)), np.zeros(4), verbose=0, callbacks=[DimShrinkage(1e-3)])


def test_zero_columns_removed_through_the_dcn_cross_exactly():
    from tfcompress import data, models

    keras.utils.set_random_seed(0)
    task = data.load_task("ctr", n_samples=256, batch_size=64)
    size = {"base": "student", "embedding_dim": 8, "mlp_units": (16,)}
    model = models.dcn(task.schema, size=size)
    for name, zero in (("emb_user_id", [1, 5, 6]), ("emb_item_brand", [0])):
        table = model.get_layer(name).get_weights()[0]
        table[:, zero] = 0.0
        model.get_layer(name).set_weights([table])
    small, report = remove_zero_dims(model)
    assert small.get_layer("emb_user_id").output_dim == 5
    assert small.get_layer("emb_item_brand").output_dim == 7
    assert report.settings["tables"]["emb_user_id"]["kept"] == [0, 2, 3, 4, 7]
    assert (
        small.get_layer("cross_0").get_weights()[0].shape[0]
        == model.get_layer("cross_0").get_weights()[0].shape[0] - 4
    )
    x, _ = task.info["arrays"]["test"]
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
