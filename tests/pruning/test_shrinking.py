"""Tests of tfcompress.pruning.shrinking.shrink: structured removal of units, dimensions and
heads."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress import data, models
from tfcompress._keras import keras, tf
from tfcompress._layers import CompressionReport
from tfcompress.pruning.shrinking import shrink


@pytest.fixture(scope="module")
def task():
    return data.load_task("ctr", n_samples=600, seed=0, batch_size=64)


def _batch(task):
    return next(iter(task.test))[0]


def _mlp(sequential: bool = False) -> keras.Model:
    layers = [
        keras.layers.Dense(16, activation="relu", name="h1"),
        keras.layers.Dropout(0.1, name="drop"),
        keras.layers.Dense(8, activation="relu", name="h2"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(1, name="logits"),
        keras.layers.Activation("sigmoid", name="output"),
    ]
    if sequential:
        return keras.Sequential([keras.Input((10,), name="x"), *layers], name="mlp")
    x = inp = keras.Input((10,), name="x")
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x, name="mlp")


def _zero_units(layer, units) -> None:
    kernel, bias = layer.get_weights()
    kernel[..., units] = 0.0
    bias[units] = 0.0
    layer.set_weights([kernel, bias])


def _emb_parts(schema, use_sequence=True):
    return [
        f for f in schema.features if f.kind != "numeric" and (use_sequence or f.kind != "sequence")
    ]


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("sequential", [False, True])
def test_mlp_parameter_count(sequential):
    model = _mlp(sequential)
    small = shrink(model, 0.5)
    # h1: 10 -> 8 units; h2: 8 -> 4 units; bn: 4 channels x 4 params; logits: 4 inputs + bias
    expected = (10 * 8 + 8) + (8 * 4 + 4) + 4 * 4 + (4 * 1 + 1)
    assert small.count_params() == expected
    assert model.count_params() == (10 * 16 + 16) + (16 * 8 + 8) + 8 * 4 + (8 + 1)
    assert [small.get_layer(n).units for n in ("h1", "h2", "logits")] == [8, 4, 1]
    assert isinstance(small, keras.Sequential) == sequential
    assert small.compression_report.settings["params_after"] == expected


@pytest.mark.parametrize(
    "size, use_sequence",
    [
        ("tiny", True),
        ({"base": "tiny", "cross_layers": 2, "cross_rank": 3, "mlp_units": (8, 6)}, True),
        ({"base": "tiny", "cross_layers": 2}, False),
    ],
)
def test_dcn_parameter_count(task, size, use_sequence):
    schema = task.schema
    model = models.dcn(schema, size=size, use_sequence=use_sequence)
    small = shrink(model, 0.5)
    hp = {**models.SIZES["tiny"], **(size if isinstance(size, dict) else {})}
    dim = hp["embedding_dim"] // 2  # 4 -> 2
    parts = _emb_parts(schema, use_sequence)
    vocab = schema.vocab_sizes()
    tables = {f.vocab_name for f in parts}
    numeric = sum(f.length for f in schema.features if f.kind == "numeric")
    width = len(parts) * dim + numeric
    expected = sum(vocab[v] * dim for v in tables)
    rank = hp.get("cross_rank")
    per_cross = (width * width if rank is None else 2 * width * rank) + width
    expected += hp["cross_layers"] * per_cross
    prev = width
    for units in hp["mlp_units"]:
        expected += prev * (units // 2) + units // 2
        prev = units // 2
    expected += (width + prev) + 1  # logits over [cross, deep]
    assert small.count_params() == expected
    assert small.get_layer("cross_0").kernel.shape[0] == width
    report = small.compression_report
    assert not [d.layer for d in report.skipped if d.layer != "logits"]
    assert "reaches the model output" in report["logits"].reason


# ----------------------------------------------------------------------------- exactness


def test_mlp_removing_zero_units_keeps_outputs_exact():
    model = _mlp()
    model(np.zeros((1, 10), "float32"))
    rng = np.random.default_rng(0)
    _zero_units(model.get_layer("h1"), rng.permutation(16)[:8])
    _zero_units(model.get_layer("h2"), [1, 3, 4, 6])
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    gamma = rng.uniform(0.5, 2.0, 8).astype("float32")  # beta = mean = 0: BN(0) = 0
    mean[[0, 2, 5, 7]] = rng.normal(size=4)
    var[:] = rng.uniform(0.5, 2.0, 8)
    model.get_layer("bn").set_weights([gamma, beta, mean, var])
    x = rng.normal(size=(64, 10)).astype("float32")
    small = shrink(model, 0.5)
    np.testing.assert_allclose(
        small.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    kept = small.get_layer("h2").get_weights()[0]
    np.testing.assert_array_equal(
        kept,
        model.get_layer("h2").get_weights()[0][
            np.flatnonzero(np.any(model.get_layer("h1").get_weights()[0], axis=0))
        ][:, [0, 2, 5, 7]],
    )


@pytest.mark.parametrize("cross_rank", [None, 3])
def test_dcn_removing_zero_dimensions_keeps_outputs_exact(task, cross_rank):
    size = {"base": "tiny", "cross_layers": 2, "cross_rank": cross_rank, "mlp_units": (8, 6)}
    model = models.dcn(task.schema, size=size)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding):
            table = layer.get_weights()[0]
            table[:, rng.permutation(4)[:2]] = 0.0
            layer.set_weights([table])
        elif isinstance(layer, keras.layers.Dense) and layer.name.startswith("mlp_"):
            _zero_units(layer, rng.permutation(layer.units)[: layer.units // 2])
        elif layer.name.startswith("cross_"):  # non-zero biases: they must be sliced right
            layer.set_weights(
                [w + rng.normal(size=w.shape).astype("float32") * 0.1 for w in layer.get_weights()]
            )
    batch = _batch(task)
    small = shrink(model, 0.5)
    assert small.count_params() < model.count_params() / 2
    np.testing.assert_allclose(small(batch).numpy(), model(batch).numpy(), rtol=1e-5, atol=1e-6)


def _two_branches(layer_norm: bool) -> keras.Model:
    inp = keras.Input((6,), name="x")
    a = keras.layers.Dense(8, activation="relu", name="a")(inp)
    b = keras.layers.Dense(8, activation="relu", name="b")(inp)
    s = keras.layers.Concatenate(name="cat")([keras.layers.Add(name="sum")([a, b]), inp])
    if layer_norm:
        s = keras.layers.LayerNormalization(name="ln")(s)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="output")(s))
    _zero_units(model.get_layer("a"), [0, 2, 4, 6])
    _zero_units(model.get_layer("b"), [0, 2, 4, 6])
    return model


def test_add_branches_shrink_as_one_group_exactly():
    model = _two_branches(layer_norm=False)
    small = shrink(model, 0.5)
    report = small.compression_report
    assert report["a"].detail == "units 8 -> 4" and "shrunk together with b" in report["a"].reason
    assert report["output"].detail == "inputs 14 -> 10"
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    np.testing.assert_allclose(
        small.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    # LayerNormalization follows its input channels (its statistics then change: no parity)
    with_ln = shrink(_two_branches(layer_norm=True), 0.5)
    assert with_ln.compression_report["ln"].detail == "channels 14 -> 10"
    assert [w.shape for w in with_ln.get_layer("ln").get_weights()] == [(10,), (10,)]


def test_attention_heads_are_removed_exactly_when_zero(task):
    size = {"base": "tiny", "num_heads": 2, "embedding_dim": 4}
    model = models.sequence_transformer(task.schema, size=size)
    mha = model.get_layer("block_0_mha")
    for dense in (mha._query_dense, mha._key_dense, mha._value_dense):
        kernel, bias = dense.get_weights()
        kernel[:, 1] = 0.0
        bias[1] = 0.0
        dense.set_weights([kernel, bias])
    kernel, bias = mha._output_dense.get_weights()
    kernel[1] = 0.0
    mha._output_dense.set_weights([kernel, bias])
    small = shrink(model, 0.5, layers=keras.layers.MultiHeadAttention)
    assert small.get_layer("block_0_mha")._num_heads == 1
    assert small.compression_report["block_0_mha"].detail == "num_heads 2 -> 1"
    batch = _batch(task)
    np.testing.assert_allclose(small(batch).numpy(), model(batch).numpy(), rtol=1e-5, atol=1e-6)
    assert model.count_params() - small.count_params() == 3 * (4 * 2 + 2) + 2 * 4


# ----------------------------------------------------------------------------- training, saving


def test_shrunk_dcn_trains_and_saves(task, tmp_path):
    model = models.compile_for_task(
        models.dcn(task.schema, size="tiny"), task.schema, learning_rate=5e-3
    )
    model.fit(task.train, epochs=1, verbose=0)
    small = shrink(model, 0.5)
    models.compile_for_task(small, task.schema, learning_rate=5e-3)
    before = small.evaluate(task.train, verbose=0, return_dict=True)["loss"]
    small.fit(task.train, epochs=3, verbose=0)
    assert small.evaluate(task.train, verbose=0, return_dict=True)["loss"] < before
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    batch = _batch(task)
    np.testing.assert_allclose(loaded(batch).numpy(), small(batch).numpy(), rtol=1e-6)
    assert loaded.get_layer("emb_user_id").output_dim == 2
    assert loaded.count_params() == small.count_params()


@pytest.mark.slow
def test_shrink_inside_mirrored_scope_then_fit(task, mirrored):
    model = models.dcn(task.schema, size="tiny")
    reference = shrink(model, 0.5)
    with mirrored.scope():
        small = shrink(model, 0.5)
        models.compile_for_task(small, task.schema, learning_rate=1e-2)
    batch = _batch(task)
    np.testing.assert_allclose(small(batch).numpy(), reference(batch).numpy(), rtol=1e-6)
    steps = task.train.take(4).cache()
    before = small.evaluate(steps, verbose=0, return_dict=True)["loss"]
    small.fit(steps, epochs=3, verbose=0)
    assert small.evaluate(steps, verbose=0, return_dict=True)["loss"] < before


# ----------------------------------------------------------------------------- criteria


def _dead_unit_model() -> keras.Model:
    """h: units 0-3 have big weights but are dead (bias -100); units 4-7 small and alive."""
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="h")(inp)
    model = keras.Model(inp, keras.layers.Dense(1, name="out")(h))
    kernel = np.full((4, 8), 0.1, "float32")
    kernel[:, :4] = 5.0
    bias = np.zeros(8, "float32")
    bias[:4] = -100.0
    model.get_layer("h").set_weights([kernel, bias])
    return model


@pytest.mark.parametrize("batched", [True, False])
def test_activation_criterion_keeps_the_live_units(batched):
    model = _dead_unit_model()
    x = np.random.default_rng(0).uniform(0.0, 1.0, size=(200, 4)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros((200, 1), "float32")))
    if batched:
        dataset = dataset.batch(32)
    by_activation = shrink(model, 0.5, criterion="activation", data=dataset)
    by_norm = shrink(model, 0.5)
    np.testing.assert_array_equal(by_activation.get_layer("h").get_weights()[1], np.zeros(4))
    np.testing.assert_array_equal(by_norm.get_layer("h").get_weights()[1], np.full(4, -100.0))
    np.testing.assert_allclose(
        by_activation.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )
    assert by_activation.compression_report.settings["criterion"] == "activation"


def test_activation_criterion_on_dcn_with_task_data(task):
    model = models.dcn(task.schema, size="tiny")
    small = shrink(model, 0.5, criterion="activation", data=task.validation)
    assert small.get_layer("mlp_0").units == 4
    assert small.get_layer("emb_item_id").output_dim == 2


# ----------------------------------------------------------------------------- reports, filters


def test_report_of_wide_deep_and_transformer(task):
    report = shrink(models.wide_deep(task.schema, size="tiny"), 0.5).compression_report
    assert isinstance(report, CompressionReport) and report.technique == "shrink"
    assert report["emb_user_id"].detail == "output_dim 4 -> 2"
    assert report["mlp_0"].detail == "units 8 -> 4, inputs 46 -> 24"
    assert not report["wide_emb_user_id"].applied
    assert "reaches the model output 'output'" in report["wide_emb_user_id"].reason
    assert report.settings["ratio"] == 0.5

    bst = shrink(models.sequence_transformer(task.schema, size="tiny"), 0.5)
    report = bst.compression_report
    assert report["mlp_0"].applied and report["block_0_ff_1"].detail == "units 8 -> 4"
    assert "MultiHeadAttention 'block_0_mha'" in report["emb_item_id"].reason
    assert report["emb_user_id"].detail == "output_dim 4 -> 2"
    assert report["block_0_mha"].reason.startswith("nothing to remove: 1 head(s)")
    assert "block_0_mha" in report.to_markdown()


class _Scale(keras.layers.Layer):
    """An unknown custom layer: shrink cannot know it is channel-wise."""

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


def test_unknown_layers_and_nested_models_are_left_alone_and_reported():
    inp = keras.Input((6,), name="x")
    a = keras.layers.Dense(8, name="a")(inp)
    scaled = _Scale(name="scale")(a)
    inner_in = keras.Input((8,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="inner_dense")(inner_in), name="sub")
    b = keras.layers.Dense(8, name="b")(inp)
    top = keras.layers.Concatenate(name="cat")([scaled, inner(b)])
    reshaped = keras.layers.Reshape((3, 4), name="to_3x4")(keras.layers.Dense(12, name="c")(top))
    out = keras.layers.Dense(1, name="out")(keras.layers.Flatten(name="flat")(reshaped))
    model = keras.Model(inp, out)
    small = shrink(model, 0.5)
    report = small.compression_report
    assert "_Scale 'scale'" in report["a"].reason and not report["a"].applied
    assert "nested model 'sub'" in report["b"].reason
    assert report["sub"].reason.startswith("nested model: not handled")
    assert "Reshape 'to_3x4'" in report["c"].reason
    assert report["scale"].reason.startswith("_Scale is not a layer shrink can change")
    assert small.count_params() == model.count_params()
    with pytest.raises(ValueError, match=r"strict=True.*a \(feeds _Scale 'scale'"):
        shrink(model, 0.5, strict=True)


def test_layer_filters_and_embeddings_flag(task):
    model = models.dcn(task.schema, size="tiny")
    only_mlp = shrink(model, 0.5, layers="mlp_0")
    assert only_mlp.get_layer("mlp_0").units == 4
    assert only_mlp.get_layer("emb_user_id").output_dim == 4
    assert "not selected" in only_mlp.compression_report["emb_user_id"].reason
    no_emb = shrink(model, 0.5, embeddings=False)
    assert no_emb.get_layer("emb_item_id").output_dim == 4
    assert no_emb.get_layer("mlp_0").units == 4
    assert not no_emb.compression_report["cross_0"].applied
    skipped = shrink(model, 0.5, skip=[keras.layers.Embedding, "mlp_0"])
    assert skipped.count_params() == model.count_params()
    with_min = shrink(model, 0.9, min_units=3)
    assert with_min.get_layer("mlp_0").units == 3
    assert with_min.get_layer("emb_user_id").output_dim == 3


def test_strict(task):
    small = shrink(models.dcn(task.schema, size="tiny"), 0.5, strict=True)
    assert small.get_layer("mlp_0").units == 4
    assert shrink(models.wide_deep(task.schema, size="tiny"), 0.5, strict=True)
    with pytest.raises(ValueError, match=r"strict=True.*emb_item_id .*MultiHeadAttention"):
        shrink(models.sequence_transformer(task.schema, size="tiny"), 0.5, strict=True)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("ratio", [0, 0.0, 1, 1.0, 1.5, -0.2])
def test_ratio_outside_open_interval(ratio):
    with pytest.raises(ValueError, match=r"`ratio` must be in \(0, 1\).*received"):
        shrink(_mlp(), ratio)


@pytest.mark.parametrize("ratio", [True, "0.5", None])
def test_ratio_wrong_type(ratio):
    with pytest.raises(TypeError, match=r"`ratio` must be a float in \(0, 1\)"):
        shrink(_mlp(), ratio)


def test_bad_arguments():
    model = _mlp()
    with pytest.raises(ValueError, match=r"unknown `criterion` 'taylor'; use 'l2'"):
        shrink(model, criterion="taylor")
    with pytest.raises(ValueError, match=r"criterion='activation' needs `data`"):
        shrink(model, criterion="activation")
    with pytest.raises(TypeError, match=r"`embeddings` must be True or False, received 'yes'"):
        shrink(model, embeddings="yes")
    with pytest.raises(TypeError, match=r"`strict` must be True or False"):
        shrink(model, strict=1)
    with pytest.raises(ValueError, match=r"`min_units` must be >= 1.*received 0"):
        shrink(model, min_units=0)
    with pytest.raises(TypeError, match=r"`min_units` must be an int"):
        shrink(model, min_units=2.5)
    with pytest.raises(ValueError, match=r"`layers` entry 'nope' matches no layer"):
        shrink(model, layers="nope")
    with pytest.raises(ValueError, match=r"`skip` entry 'nope' matches no layer"):
        shrink(model, skip="nope")
    with pytest.raises(ValueError, match=r"selects no layer shrink can change.*\['output'\]"):
        shrink(model, layers="output")
    with pytest.raises(ValueError, match=r"`data`.*"):
        shrink(model, criterion="activation", data={"other": np.zeros((4, 3), "float32")})


def test_rejects_keras3_subclassed_and_non_models():
    import keras as keras3  # the real Keras 3 package, installed alongside TF

    model3 = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)])
    with pytest.raises(TypeError, match=r"`model` is a Keras 3 model.*import tf_keras"):
        shrink(model3)
    with pytest.raises(TypeError, match=r"`model` must be a tf_keras.Model"):
        shrink("model.keras")

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(4)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match=r"not a functional or built Sequential model"):
        shrink(sub)
