"""Tests of the reference models (tfcompress.models): shapes, saving, padding, TFLite parity."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress import models
from tfcompress._keras import keras, tf
from tfcompress.data.schema import Feature, Schema
from tfcompress.models.layers import (
    Catalog,
    CatalogLogits,
    Cross,
    L2Normalize,
    MaskedMean,
    PaddingMask,
)

SEQ_LEN = 10
N_ITEMS = 40  # item ids 1..39, 0 = padding


def _user_context() -> tuple[Feature, ...]:
    return (
        Feature("user_id", "categorical", vocab_size=50, group="user"),
        Feature("user_age", "categorical", vocab_size=7, group="user"),
        Feature("user_gender", "categorical", vocab_size=3, group="user"),
        Feature("hour", "categorical", vocab_size=25, group="context"),
        Feature("platform", "categorical", vocab_size=4, group="context"),
    )


def _history() -> tuple[Feature, ...]:
    return (
        Feature("hist_item_ids", "sequence", N_ITEMS, SEQ_LEN, vocab_name="item_id", group="user"),
        Feature(
            "hist_categories", "sequence", 8, SEQ_LEN, vocab_name="item_category", group="user"
        ),
    )


def _items() -> tuple[Feature, ...]:
    return (
        Feature("item_id", "categorical", vocab_size=N_ITEMS, group="item"),
        Feature("item_category", "categorical", vocab_size=8, group="item"),
        Feature("item_brand", "categorical", vocab_size=12, group="item"),
        Feature("item_price", "categorical", vocab_size=10, group="item"),
    )


def ctr_schema() -> Schema:
    """Mimics the simulated CTR schema."""
    return Schema(
        _user_context()
        + _items()
        + _history()
        + (
            Feature("item_popularity", "numeric", group="item"),
            Feature("user_activity", "numeric", group="user"),
        ),
        label="click",
        task="binary",
    )


def profile_schema() -> Schema:
    """A multiclass user-profile schema: no candidate item, an extra shorter sequence."""
    return Schema(
        _user_context()[:3]
        + _history()
        + (
            Feature("hist_hours", "sequence", 25, SEQ_LEN, vocab_name="hour", group="user"),
            Feature("recent_searches", "sequence", 30, 4, group="user"),
        ),
        label="interest",
        task="multiclass",
        num_classes=5,
    )


def retrieval_schema() -> Schema:
    return Schema(
        _user_context() + _history() + _items()[:2],
        label="next_item",
        task="retrieval",
        num_classes=N_ITEMS,
    )


def catalog(rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(1)
    category = np.concatenate([[0], rng.integers(1, 8, N_ITEMS - 1)]).astype(np.int32)
    return {
        "item_id": np.arange(N_ITEMS, dtype=np.int32)[:, None],
        "item_category": category[:, None],
    }


def make_batch(schema: Schema, n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Random features within the vocabularies; histories padded with leading zeros (some
    fully padded); categorical ids >= 1 (never the padding id)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    valid = rng.integers(0, SEQ_LEN + 1, n)
    valid[0] = 0  # one fully padded history
    valid[1] = SEQ_LEN  # one full history
    for f in schema:
        if f.kind == "numeric":
            out[f.name] = rng.normal(size=(n, f.length)).astype(np.float32)
        elif f.kind == "categorical":
            out[f.name] = rng.integers(1, f.vocab_size, (n, 1)).astype(np.int32)
        else:
            ids = rng.integers(1, f.vocab_size, (n, f.length)).astype(np.int32)
            keep = np.arange(f.length)[None, :] >= (f.length - np.minimum(valid, f.length))[:, None]
            out[f.name] = np.where(keep, ids, 0).astype(np.int32)
    return out


def make_labels(schema: Schema, n: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    if schema.task == "binary":
        return rng.integers(0, 2, (n, 1)).astype(np.float32)
    low = 1 if schema.task == "retrieval" else 0
    return rng.integers(low, schema.num_classes, n).astype(np.int32)


def inputs_of(model: keras.Model, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = set(model.input_names)
    return {k: v for k, v in batch.items() if k in names}


def build_tiny(name: str, schema: Schema, **kwargs) -> keras.Model:
    if name == "two_tower":
        kwargs.setdefault("catalog", catalog())
    return models.build(name, schema, size="tiny", **kwargs)


CASES = [
    ("lr", ctr_schema),
    ("wide_deep", ctr_schema),
    ("dcn", ctr_schema),
    ("transformer", ctr_schema),
    ("lr", profile_schema),
    ("wide_deep", profile_schema),
    ("dcn", profile_schema),
    ("transformer", profile_schema),
    ("two_tower", retrieval_schema),
]
CASE_IDS = [f"{name}-{fn.__name__.split('_')[0]}" for name, fn in CASES]


# --------------------------------------------------------------------------- every model


@pytest.mark.parametrize(("name", "schema_fn"), CASES, ids=CASE_IDS)
def test_output_shape_dtype_two_fit_steps_and_safe_mode_round_trip(name, schema_fn, tmp_path):
    """Shapes and dtypes, two fit steps, then a ``.keras`` round trip in safe mode.

    One test, so that each model is built and its train function traced once (the round trip
    needs weights away from their initial values: the two fit steps give them).
    """
    schema = schema_fn()
    model = build_tiny(name, schema)
    batch = make_batch(schema)
    width = 1 if schema.task == "binary" else schema.num_classes
    assert model.output_shape == (None, width)
    assert model.get_layer("output").name == "output"
    out = model(inputs_of(model, batch)).numpy()
    assert out.shape == (16, width)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    if schema.task == "binary":
        assert np.all((out > 0) & (out < 1))
    elif schema.task == "multiclass":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    else:  # retrieval logits: padding item ranked last
        assert np.all(out[:, 0] < out[:, 1:].min(axis=1))
    # every Input is named after a schema feature with its dtype and shape
    for tensor in model.inputs:
        feature = schema[tensor.name.split(":")[0]]
        assert tensor.dtype == feature.dtype
        assert tuple(tensor.shape[1:]) == feature.shape

    models.compile_for_task(model, schema, learning_rate=1e-2)
    history = model.fit(
        inputs_of(model, batch), make_labels(schema), batch_size=16, epochs=2, verbose=0
    )
    losses = history.history["loss"]
    assert len(losses) == 2
    assert np.all(np.isfinite(losses))
    assert losses[1] < losses[0] * 1.05

    batch = inputs_of(model, batch)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(batch).numpy(), model(batch).numpy())
    assert loaded.count_params() == model.count_params()
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("name", ["wide_deep", "dcn", "transformer", "two_tower"])
def test_teacher_is_much_bigger_than_student(name):
    schema = retrieval_schema() if name == "two_tower" else ctr_schema()
    kwargs = {"catalog": catalog()} if name == "two_tower" else {}
    teacher = models.build(name, schema, size="teacher", **kwargs).count_params()
    student = models.build(name, schema, size="student", **kwargs).count_params()
    tiny = models.build(name, schema, size="tiny", **kwargs).count_params()
    assert teacher >= 4 * student
    assert student > tiny


def _tflite_outputs(model: keras.Model, batch: dict[str, np.ndarray]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = Interpreter(model_content=content)
    runner = interpreter.get_signature_runner()
    assert sorted(runner.get_input_details()) == sorted(batch)
    outputs = runner(**batch)
    assert list(outputs) == ["output"]
    return outputs["output"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "schema_fn"),
    [
        ("dcn", ctr_schema),
        ("transformer", ctr_schema),
        ("transformer", profile_schema),
        ("two_tower", retrieval_schema),
        ("wide_deep", ctr_schema),
    ],
    ids=["dcn-ctr", "transformer-ctr", "transformer-profile", "two_tower", "wide_deep-ctr"],
)
def test_tflite_matches_keras(name, schema_fn):
    schema = schema_fn()
    model = build_tiny(name, schema)
    batch = inputs_of(model, make_batch(schema, n=8))
    expected = model(batch).numpy()
    got = _tflite_outputs(model, batch)
    assert got.shape == expected.shape
    # retrieval outputs are logits scaled by 1/temperature = 20: compare relative to that
    scale = 20.0 if name == "two_tower" else 1.0
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale, rtol=0)


# --------------------------------------------------------------------------- padding


def test_masked_mean_values_and_fully_padded_row():
    values = tf.constant(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]]]
    )
    ids = tf.constant([[5, 6, 0], [0, 0, 0]])
    out = MaskedMean()([values, ids]).numpy()
    np.testing.assert_allclose(out, [[2.0, 3.0], [0.0, 0.0]])
    assert np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="values, mask"):
        MaskedMean()(values)


def test_padding_mask_appends_valid_positions():
    mask = PaddingMask(append=1)(tf.constant([[0, 0, 4], [0, 0, 0]])).numpy()
    np.testing.assert_array_equal(mask, [[0, 0, 1, 1], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match="append"):
        PaddingMask(append=-1)


@pytest.mark.parametrize(
    ("name", "schema_fn"),
    [
        ("transformer", ctr_schema),
        ("transformer", profile_schema),
        ("dcn", ctr_schema),
        ("wide_deep", ctr_schema),
        ("lr", ctr_schema),
        ("two_tower", retrieval_schema),
    ],
    ids=["transformer-ctr", "transformer-profile", "dcn", "wide_deep", "lr", "two_tower"],
)
def test_outputs_do_not_depend_on_padding_embedding_row(name, schema_fn):
    schema = schema_fn()
    model = build_tiny(name, schema)
    batch = inputs_of(model, make_batch(schema))
    assert (batch["hist_item_ids"] == 0).all(axis=1).any()  # a fully padded history
    before = model(batch).numpy()
    sequence_vocabs = {f.vocab_name for f in schema.of_kind("sequence")}
    embeddings = [
        layer
        for sub in [model, *[m for m in model.layers if isinstance(m, keras.Model)]]
        for layer in sub.layers
        if isinstance(layer, keras.layers.Embedding)
        and layer.name.split("emb_", 1)[1] in sequence_vocabs
    ]
    assert embeddings
    rng = np.random.default_rng(3)
    for layer in embeddings:
        table = layer.get_weights()[0]
        table[0] = rng.normal(scale=10.0, size=table.shape[1])
        layer.set_weights([table])
    after = model(batch).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


def test_transformer_structure_and_candidate_token():
    schema = ctr_schema()
    model = models.sequence_transformer(schema, size={"base": "tiny", "num_blocks": 2})
    assert model.get_layer("tokens").output_shape == (None, SEQ_LEN + 1, 4)
    for name in ("block_0_mha", "block_1_mha", "block_1_ln_2", "position_embedding"):
        model.get_layer(name)
    # hist_item_ids and item_id share one table; hist_categories and item_category another
    assert model.get_layer("emb_item_id").input_dim == N_ITEMS
    assert {layer.name for layer in model.layers if layer.name.startswith("emb_")} == {
        f"emb_{v}" for v in schema.vocab_sizes()
    }
    # the candidate token changes the prediction: a different candidate item, same history
    batch = inputs_of(model, make_batch(schema))
    other = dict(batch, item_id=(batch["item_id"] % (N_ITEMS - 1)) + 1)
    assert np.abs(model(batch).numpy() - model(other).numpy()).max() > 1e-6


def test_transformer_without_candidate_pools_tokens_and_side_sequences():
    schema = profile_schema()
    model = models.sequence_transformer(schema, size="tiny")
    # hist_categories and hist_hours (same length) join the tokens; recent_searches is pooled
    assert model.get_layer("tokens").output_shape == (None, SEQ_LEN, 4)
    assert isinstance(model.get_layer("pool_recent_searches"), MaskedMean)
    assert isinstance(model.get_layer("sequence_output"), MaskedMean)


# --------------------------------------------------------------------------- model details


def test_logistic_regression_is_a_sum_of_weights():
    schema = ctr_schema()
    model = models.logistic_regression(schema)
    rng = np.random.default_rng(5)
    for layer in model.layers:
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.weights])
    batch = make_batch(schema, n=4)
    logit = (
        model.get_layer("lr_numeric").bias.numpy()[0]
        + np.concatenate([batch["item_popularity"], batch["user_activity"]], axis=1)
        @ model.get_layer("lr_numeric").kernel.numpy()[:, 0]
    )
    for f in schema:
        if f.kind == "numeric":
            continue
        table = model.get_layer(f"emb_{f.vocab_name}").get_weights()[0][:, 0]
        ids = batch[f.name]
        if f.kind == "categorical":
            logit = logit + table[ids[:, 0]]
        else:
            mask = ids != 0
            logit = logit + (table[ids] * mask).sum(1) / np.maximum(mask.sum(1), 1)
    expected = 1.0 / (1.0 + np.exp(-logit))
    np.testing.assert_allclose(model(batch).numpy()[:, 0], expected, rtol=1e-5)
    assert model.get_layer("emb_item_id").output_dim == 1


def test_use_sequence_false_drops_sequence_inputs():
    schema = ctr_schema()
    for builder in (models.logistic_regression, models.wide_deep, models.dcn):
        with_seq = builder(schema)
        without = builder(schema, use_sequence=False)
        assert len(with_seq.inputs) == len(schema)
        assert sorted(t.name for t in without.inputs) == sorted(
            f.name for f in schema if f.kind != "sequence"
        )
        assert without.count_params() <= with_seq.count_params()


def test_cross_layer_full_and_low_rank_formula():
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=(3, 5)).astype(np.float32)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    full = Cross(bias_initializer="ones")
    out = full([x0, x]).numpy()
    np.testing.assert_allclose(out, x0 * (x @ full.kernel.numpy() + 1.0) + x, rtol=1e-5)
    low = Cross(projection_dim=2)
    out = low([x0, x]).numpy()
    u, v = low.kernel.numpy(), low.kernel_v.numpy()
    assert u.shape == (5, 2) and v.shape == (2, 5)
    np.testing.assert_allclose(out, x0 * (x @ u @ v) + x, rtol=1e-5, atol=1e-6)
    assert len(low.get_prunable_weights()) == 2
    with pytest.raises(ValueError, match="projection_dim"):
        Cross(projection_dim=0)
    restored = Cross.from_config(low.get_config())
    assert restored.projection_dim == 2


def test_dcn_size_overrides_and_low_rank_cross():
    schema = ctr_schema()
    model = models.dcn(
        schema, size={"base": "tiny", "cross_layers": 2, "cross_rank": 3, "mlp_units": [6, 5]}
    )
    width = model.get_layer("dcn_input").output_shape[-1]
    # 11 id features x 4 + 2 numeric
    assert width == 11 * 4 + 2
    assert model.get_layer("cross_1").kernel.shape == (width, 3)
    assert model.get_layer("mlp_1").units == 5
    stacked = models.dcn(schema, size="tiny", structure="stacked")
    assert stacked.get_layer("mlp_0").input_shape == (None, width)
    with pytest.raises(ValueError, match="structure"):
        models.dcn(schema, size="tiny", structure="sideways")


def test_two_tower_logits_are_scaled_cosines_over_the_catalogue():
    schema = retrieval_schema()
    cat = catalog()
    model = models.two_tower(schema, cat, size="tiny", temperature=0.1)
    # the item features come from the catalogue, not from the inputs
    assert sorted(t.name for t in model.inputs) == sorted(
        f.name for f in schema if f.group != "item"
    )
    batch = inputs_of(model, make_batch(schema))
    query = model.get_layer("query_tower")(batch).numpy()
    items = model.get_layer("candidate_tower")(cat).numpy()
    np.testing.assert_allclose(np.linalg.norm(query, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    logits = model(batch).numpy()
    expected = query @ items.T / 0.1
    np.testing.assert_allclose(logits[:, 1:], expected[:, 1:], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits[:, 0], -20.0)  # padding item: -2 / temperature
    stored = model.get_layer("catalog").get_weights()
    assert sorted(w.dtype.name for w in stored) == ["int32", "int32"]


def test_catalog_layers_validate():
    with pytest.raises(ValueError, match="dtype"):
        Catalog([("item_id", "int64", 1)], 3)
    layer = Catalog([("item_id", "int32", 1)], 3)
    with pytest.raises(ValueError, match="lack feature 'item_id'"):
        layer.set_values({"other": [1, 2, 3]})
    with pytest.raises(ValueError, match="temperature"):
        CatalogLogits(temperature=0.0)
    out = CatalogLogits(temperature=0.5)(
        [tf.constant([[1.0, 0.0]]), tf.constant([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])]
    )
    np.testing.assert_allclose(out.numpy(), [[-4.0, 2.0, 0.0]])


def test_two_tower_rejects_bad_catalogues():
    schema = retrieval_schema()
    with pytest.raises(TypeError, match="catalog"):
        models.two_tower(schema, [1, 2, 3], size="tiny")
    with pytest.raises(ValueError, match="lacks the item features \\['item_category'\\]"):
        models.two_tower(schema, {"item_id": np.arange(N_ITEMS)}, size="tiny")
    short = {k: v[:-1] for k, v in catalog().items()}
    with pytest.raises(ValueError, match=f"shape \\({N_ITEMS}, length\\)"):
        models.two_tower(schema, short, size="tiny")
    bad_ids = dict(catalog(), item_category=np.full((N_ITEMS, 1), 99))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        models.two_tower(schema, bad_ids, size="tiny")
    with pytest.raises(ValueError, match="group"):
        models.two_tower(schema, dict(catalog(), user_id=np.ones((N_ITEMS, 1))), size="tiny")
    with pytest.raises(ValueError, match="temperature"):
        models.two_tower(schema, catalog(), size="tiny", temperature=-1.0)


# --------------------------------------------------------------------------- build / compile


def test_build_dispatches_by_name():
    schema = ctr_schema()
    assert models.build("lr", schema).name == "logistic_regression"
    assert models.build("logistic_regression", schema, size="teacher").count_params() == (
        models.build("lr", schema).count_params()
    )
    assert models.build("wide_deep", schema, size="tiny").name == "wide_deep"
    assert models.build("dcn", schema, size="tiny").name == "dcn"
    transformer = models.build("sequence_transformer", schema, size="tiny")
    assert transformer.name == "sequence_transformer"
    assert models.build("transformer", schema, size="tiny").count_params() == (
        transformer.count_params()
    )
    # default sizes: transformer -> teacher, dcn -> student
    assert models.build("dcn", schema).get_layer("emb_item_id").output_dim == 8
    assert models.build("transformer", schema).get_layer("emb_item_id").output_dim == 32
    tt = models.build("two_tower", retrieval_schema(), size="tiny", catalog=catalog())
    assert tt.name == "two_tower"


def test_build_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown model name 'xgboost'.*'dcn'"):
        models.build("xgboost", ctr_schema())
    with pytest.raises(ValueError, match="needs a schema with task in \\('retrieval',\\)"):
        models.build("two_tower", ctr_schema(), catalog=catalog())
    with pytest.raises(ValueError, match="task in \\('binary', 'multiclass'\\).*retrieval"):
        models.build("dcn", retrieval_schema())
    with pytest.raises(ValueError, match="catalog="):
        models.build("two_tower", retrieval_schema())
    with pytest.raises(TypeError, match="Schema"):
        models.build("dcn", {"features": []})


@pytest.mark.parametrize(
    "builder",
    [
        models.logistic_regression,
        models.wide_deep,
        models.dcn,
        models.sequence_transformer,
        lambda s: models.two_tower(s, catalog()),
    ],
    ids=["lr", "wide_deep", "dcn", "transformer", "two_tower"],
)
def test_builders_reject_non_schema(builder):
    with pytest.raises(TypeError, match="must be a tfcompress.data.Schema, received dict"):
        builder({"features": ["item_id"]})


def test_sizes_and_size_validation():
    assert {"tiny", "student", "teacher"} <= set(models.SIZES)
    keys = set(models.SIZES["student"])
    assert all(set(hp) == keys for hp in models.SIZES.values())
    schema = ctr_schema()
    with pytest.raises(ValueError, match="unknown size 'huge'.*'student'"):
        models.dcn(schema, size="huge")
    with pytest.raises(ValueError, match="unknown size keys \\['depth'\\].*embedding_dim"):
        models.wide_deep(schema, size={"depth": 3})
    with pytest.raises(ValueError, match="'embedding_dim' must be an int >= 1, received 0"):
        models.dcn(schema, size={"embedding_dim": 0})
    with pytest.raises(ValueError, match="dropout"):
        models.sequence_transformer(schema, size={"dropout": 1.5})
    with pytest.raises(ValueError, match="ff_activation"):
        models.sequence_transformer(schema, size={"ff_activation": "wiggle"})
    with pytest.raises(TypeError, match="size"):
        models.dcn(schema, size=3)
    with pytest.raises(TypeError, match="use_sequence"):
        models.dcn(schema, use_sequence="yes")
    # the SIZES entries are not mutated by overrides
    models.dcn(schema, size={"embedding_dim": 3})
    assert models.SIZES["student"]["embedding_dim"] == 8


def test_transformer_needs_a_sequence_and_a_classification_task():
    no_seq = Schema(_user_context() + _items(), label="click")
    with pytest.raises(ValueError, match="needs at least one sequence feature.*user_id"):
        models.sequence_transformer(no_seq, size="tiny")
    with pytest.raises(ValueError, match="use two_tower"):
        models.sequence_transformer(retrieval_schema(), size="tiny")
    only_seq = Schema(_history(), label="click")
    with pytest.raises(ValueError, match="no usable feature"):
        models.dcn(only_seq, use_sequence=False)


def test_compile_for_task_binary_metrics_match_numpy():
    schema = ctr_schema()
    model = models.compile_for_task(models.dcn(schema, size="tiny"), schema, learning_rate=0.01)
    assert model.loss == "binary_crossentropy"
    assert model.optimizer.learning_rate.numpy() == pytest.approx(0.01)
    batch, labels = make_batch(schema, n=32), make_labels(schema, n=32)
    result = model.evaluate(batch, labels, batch_size=32, verbose=0, return_dict=True)
    assert set(result) == {"loss", "auc", "logloss", "accuracy"}
    p = np.clip(model.predict(batch, verbose=0), 1e-7, 1 - 1e-7)
    logloss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert result["logloss"] == pytest.approx(logloss, rel=1e-4)
    assert result["accuracy"] == pytest.approx(np.mean((p > 0.5) == (labels > 0.5)))
    assert 0.0 <= result["auc"] <= 1.0


def test_compile_for_task_retrieval_recall_at_k_matches_numpy():
    schema = retrieval_schema()
    model = models.compile_for_task(
        build_tiny("two_tower", schema), schema, optimizer=keras.optimizers.SGD(0.1)
    )
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    full = make_batch(schema, n=64)
    batch, labels = inputs_of(model, full), make_labels(schema, n=64)
    result = model.evaluate(batch, labels, batch_size=64, verbose=0, return_dict=True)
    logits = model.predict(batch, verbose=0)
    rank = (logits > logits[np.arange(64), labels][:, None]).sum(axis=1)
    assert result["recall@10"] == pytest.approx(np.mean(rank < 10))
    assert result["recall@50"] == pytest.approx(np.mean(rank < 50))
    loss = np.mean(
        -logits[np.arange(64), labels]
        + np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))
        + logits.max(1)
    )
    assert result["loss"] == pytest.approx(loss, rel=1e-4)


def test_compile_for_task_multiclass_and_bad_input():
    schema = profile_schema()
    model = models.compile_for_task(models.dcn(schema, size="tiny"), schema, jit_compile=False)
    batch, labels = make_batch(schema, n=32), make_labels(schema, n=32)
    result = model.evaluate(batch, labels, batch_size=32, verbose=0, return_dict=True)
    probs = model.predict(batch, verbose=0)
    assert result["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels))

    with pytest.raises(TypeError, match="`model` must be a tf_keras.Model"):
        models.compile_for_task("dcn", schema)
    with pytest.raises(TypeError, match="schema"):
        models.compile_for_task(model, "profile")
    with pytest.raises(ValueError, match="learning_rate"):
        models.compile_for_task(model, schema, learning_rate=0.0)
    binary = models.dcn(ctr_schema(), size="tiny")
    with pytest.raises(ValueError, match="outputs shape \\(None, 1\\).*needs \\(None, 5\\)"):
        models.compile_for_task(binary, schema)


# --------------------------------------------------------------------------- TFMOT compatibility


def test_l2_normalize_layer():
    out = L2Normalize()(tf.constant([[3.0, 4.0], [0.0, 0.0]])).numpy()
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    assert L2Normalize.from_config(L2Normalize(epsilon=1e-6).get_config()).epsilon == 1e-6


@pytest.mark.slow
def test_every_model_accepts_tfmot_whole_model_pruning():
    import tensorflow_model_optimization as tfmot

    for name, schema_fn in CASES:
        model = build_tiny(name, schema_fn())
        pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
        assert pruned.count_params() > model.count_params()  # masks and thresholds added


@pytest.mark.slow
def test_dcn_cross_kernels_reach_target_sparsity():
    import tensorflow_model_optimization as tfmot

    schema = ctr_schema()
    model = models.dcn(schema, size="tiny")
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    models.compile_for_task(pruned, schema)
    pruned.fit(
        make_batch(schema),
        make_labels(schema),
        epochs=1,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    kernel = stripped.get_layer("cross_0").kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.01)
    assert isinstance(stripped.get_layer("cross_0"), Cross)
