"""Tests of tfcompress.pruning.depth: finding and dropping residual blocks (depth pruning)."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress import data
from tfcompress._keras import keras
from tfcompress.models.builders import sequence_transformer
from tfcompress.pruning.depth import drop_blocks, find_blocks

_SIZE = {"embedding_dim": 8, "num_heads": 2, "ff_dim": 16, "mlp_units": (8,), "dropout": 0.0}


@pytest.fixture(scope="module")
def task():
    return data.load_task("ctr", n_samples=300, seed=0, batch_size=32)


@pytest.fixture(scope="module")
def bst(task):
    keras.utils.set_random_seed(0)
    return sequence_transformer(task.schema, size={**_SIZE, "num_blocks": 3})


def _block(i: int) -> tuple[str, ...]:
    parts = ("mha", "add_1", "ln_1", "ff_1", "ff_2", "add_2", "ln_2")
    return tuple(f"block_{i}_{p}" for p in parts)


def _residual_mlp() -> keras.Model:
    x = keras.Input((4,), name="x")
    h = x
    for i in range(3):
        f = keras.layers.Dense(4, activation="relu", name=f"r{i}_d")(h)
        h = keras.layers.Add(name=f"r{i}_add")([h, f])
    return keras.Model(x, keras.layers.Dense(1, name="out")(h), name="resmlp")


def test_bst_blocks_are_exactly_the_transformer_blocks(task, bst):
    blocks = find_blocks(bst)
    assert [b.layers for b in blocks] == [_block(0), _block(1), _block(2)]
    assert [(b.input_name, b.output_name) for b in blocks] == [
        ("position_embedding", "block_0_ln_2"),
        ("block_0_ln_2", "block_1_ln_2"),
        ("block_1_ln_2", "block_2_ln_2"),
    ]
    params = sum(bst.get_layer(n).count_params() for n in _block(1))
    assert [b.params for b in blocks] == [params] * 3
    teacher = sequence_transformer(task.schema, size="teacher")  # dropout layers inside
    found = find_blocks(teacher)
    assert [b.layers[0] for b in found] == ["block_0_mha", "block_1_mha"]
    assert [b.layers[-1] for b in found] == ["block_0_ln_2", "block_1_ln_2"]


def test_dropping_the_middle_block_equals_the_model_without_it(task, bst):
    small, report = drop_blocks(bst, ["block_1_ff_1"])
    names = {layer.name for layer in small.layers}
    assert not names & set(_block(1)) and set(_block(0)) | set(_block(2)) <= names
    # reference: the builder's 2-block model with block 0 and (old) block 2 as its blocks
    ref = sequence_transformer(task.schema, size={**_SIZE, "num_blocks": 2})
    for layer in ref.layers:
        source = layer.name.replace("block_1_", "block_2_")
        if layer.weights:
            layer.set_weights(bst.get_layer(source).get_weights())
    x = next(iter(task.test))[0]
    np.testing.assert_allclose(small(x).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(small(x).numpy(), bst(x).numpy(), atol=1e-4)
    removed = sum(bst.get_layer(n).count_params() for n in _block(1))
    assert bst.count_params() - small.count_params() == removed
    assert report.settings["params_removed"] == removed and report.settings["dropped"] == [1]
    assert [d.layer for d in report.applied] == list(_block(1))
    assert report["block_0_mha"].reason == "in block 0, kept"
    assert small.get_layer("block_2_mha") is not bst.get_layer("block_2_mha")  # fresh copies


def test_int_drops_the_last_blocks(bst):
    small, report = drop_blocks(bst, 2)
    assert report.settings["dropped"] == [1, 2]
    assert {layer.name for layer in small.layers} & set(_block(1) + _block(2)) == set()
    assert len(find_blocks(small)) == 1


def test_residual_mlp_by_hand():
    model = _residual_mlp()
    assert [b.layers for b in find_blocks(model)] == [(f"r{i}_d", f"r{i}_add") for i in range(3)]
    small, _ = drop_blocks(model, ["r1_add"])
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    w = {n: model.get_layer(n).get_weights() for n in ("r0_d", "r2_d", "out")}
    h = x + np.maximum(x @ w["r0_d"][0] + w["r0_d"][1], 0)
    h = h + np.maximum(h @ w["r2_d"][0] + w["r2_d"][1], 0)
    expected = h @ w["out"][0] + w["out"][1]
    np.testing.assert_allclose(small(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_plain_mlp_has_no_block():
    x = keras.Input((8,))
    h = keras.layers.Dense(8, activation="relu", name="h1")(x)
    h = keras.layers.Dense(8, activation="relu", name="h2")(h)
    mlp = keras.Model(x, keras.layers.Dense(1, name="out")(h), name="plain")
    assert find_blocks(mlp) == []
    with pytest.raises(ValueError, match=r"model 'plain' has \(0\).*no residual block"):
        drop_blocks(mlp, 1)
    same, report = drop_blocks(mlp, 0)
    assert report.decisions == () and "no residual block" in report.settings["reason"]
    assert same.count_params() == mlp.count_params()


def test_bad_input(bst):
    with pytest.raises(ValueError, match=r"`blocks`=4 asks for more.*has \(3\).*block_2_mha"):
        drop_blocks(bst, 4)
    with pytest.raises(ValueError, match=r"'mlp_0' of `blocks` is in no droppable block"):
        drop_blocks(bst, ["mlp_0"])
    with pytest.raises(ValueError, match=r"`blocks` must be an int >= 0"):
        drop_blocks(bst, -1)
    for bad in (True, 1.5, [3], []):
        with pytest.raises(TypeError, match=r"`blocks` must be an int .* or a list of layer"):
            drop_blocks(bst, bad)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match=r"subclassed model.*functional API"):
        drop_blocks(Sub(), 1)
    with pytest.raises(TypeError, match=r"`model` must be a tf_keras.Model"):
        drop_blocks("model.keras", 1)
    import keras as keras3  # the real Keras 3 package, installed alongside TF

    model3 = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)])
    with pytest.raises(TypeError, match=r"`model` is a Keras 3 model.*import tf_keras"):
        find_blocks(model3)


def test_model_garden_block_is_a_one_layer_block():
    pytest.importorskip("official")
    from official.nlp.modeling import layers as nlp_layers

    x = keras.Input((6, 16), name="x")
    h = x
    for i in range(2):
        h = nlp_layers.TransformerEncoderBlock(2, 32, "relu", name=f"tb{i}")(h)
    model = keras.Model(x, keras.layers.Dense(1, name="out")(h[:, 0]))
    assert [b.layers for b in find_blocks(model)] == [("tb0",), ("tb1",)]
    small, _ = drop_blocks(model, 1)
    v = np.random.default_rng(0).normal(size=(2, 6, 16)).astype("float32")
    expected = model.get_layer("out")(model.get_layer("tb0")(v)[:, 0])
    np.testing.assert_allclose(small(v).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
