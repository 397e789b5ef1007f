"""Tests of tfcompress.quantization (QAT with an annotation policy) and its callbacks."""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import (
    QuantizeLayer,
)
from tflite_tensors import constant_matrices

from tfcompress import data, export, models
from tfcompress._keras import keras, tf
from tfcompress.evaluation.layer_sensitivity import SensitivityReport, SensitivityRow
from tfcompress.export.runtime import collect_examples, load_variant, model_input_specs
from tfcompress.models.layers import Cross, MaskedMean
from tfcompress.quantization import (
    SCHEMES,
    QuantizationScheme,
    is_quantized,
    load_quantized,
    quantize,
    strip_quantization,
)
from tfcompress.quantization.callbacks import (
    QuantizationLogger,
    fit_then_quantize,
    quantizer_ranges,
)


@pytest.fixture(scope="module")
def task():
    return data.load_task("ctr", n_samples=800, seed=0, batch_size=64)


def _qat(model, task, epochs=2, steps=6, lr=5e-3):
    qat = quantize(model)
    models.compile_for_task(qat, task.schema, learning_rate=lr)
    history = qat.fit(task.train.take(steps), epochs=epochs, verbose=0)
    return qat, history


@pytest.fixture(scope="module")
def dcn_qat(task):
    keras.utils.set_random_seed(0)
    model = models.dcn(task.schema, size="tiny")
    qat, history = _qat(model, task, epochs=3)
    return model, qat, history


def _features(model, task, n=128):
    structure, specs = model_input_specs(model)
    return collect_examples(task.test, structure, specs, n)


# --- quantize(): policy and report -------------------------------------------------------------


def test_dcn_report_covers_every_layer_with_reasons(dcn_qat):
    model, qat, _ = dcn_qat
    report = qat.compression_report
    assert report.technique == "quantize"
    assert report.settings["scheme"]["name"] == "int8"
    layer_names = [lyr.name for lyr in model.layers if not isinstance(lyr, keras.layers.InputLayer)]
    assert [d.layer for d in report.decisions] == layer_names
    emb = report["emb_user_id"]
    assert emb.applied and "int8 table" in emb.detail and "ids not quantized" in emb.detail
    assert report["cross_0"].applied and "kernel" in report["cross_0"].detail
    assert report["mlp_0"].applied and "activation" in report["mlp_0"].detail
    pool = report["pool_hist_item_ids"]
    assert not pool.applied and pool.reason.startswith("pass-through")
    assert "| emb_user_id | Embedding | yes |" in report.to_markdown()


def test_quantize_leaves_the_users_model_untouched(task):
    model = models.dcn(task.schema, size="tiny")
    nodes = {lyr.name: len(lyr._inbound_nodes) for lyr in model.layers}
    weights = [w.numpy().copy() for w in model.weights]
    quantize(model)
    assert {lyr.name: len(lyr._inbound_nodes) for lyr in model.layers} == nodes
    assert model.get_layer("dcn_input").output is not None  # still unambiguous
    for w, before in zip(model.weights, weights, strict=True):
        np.testing.assert_array_equal(w.numpy(), before)


def test_dcn_integer_inputs_get_no_quantizer_and_float_inputs_do(dcn_qat):
    _, qat, _ = dcn_qat
    quantize_layers = [lyr for lyr in qat.layers if isinstance(lyr, QuantizeLayer)]
    fed = {node.inbound_layers.name for lyr in quantize_layers for node in lyr._inbound_nodes}
    assert fed == {"item_popularity", "user_activity"}  # the float inputs, never the ids
    assert is_quantized(qat)


def test_qat_trains_and_learns_ranges(dcn_qat):
    _, qat, history = dcn_qat
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    ranges = quantizer_ranges(qat)
    lo, hi = ranges["quant/emb_user_id/min"], ranges["quant/emb_user_id/max"]
    assert lo <= 0.0 <= hi and hi - lo < 1.0  # first-batch range, not TFMOT's [-6, 6]
    table = ranges["quant/emb_user_id/embeddings/max"]
    assert table == pytest.approx(
        float(np.abs(qat.get_layer("emb_user_id")._weight_vars[0][0].numpy()).max())
    )


def test_qat_dcn_exports_int8_without_calibration_data(dcn_qat, task, tmp_path, caplog):
    """No representative data: QAT ranges, the rest calibrated on a random batch (with a
    warning that says to pass data); int I/O."""
    _, qat, _ = dcn_qat
    with caplog.at_level("WARNING", logger="tfcompress"):
        result = export.export_tflite(
            qat,
            tmp_path / "dcn_qat.tflite",
            "int8",
            integer_io=True,
            parity_data=task.test,
            parity_max_examples=256,
        )
    assert "calibrated on a random batch" in caplog.text and "representative_data" in caplog.text
    assert result.options["qat"] is True
    assert set(result.options["embedding_tables"]) == {
        "emb_user_id",
        "emb_item_id",
        "emb_item_brand",
    }  # >= 64 rows
    matrices, interpreter = constant_matrices(result.path)
    assert matrices and set(matrices.values()) == {"int8"}, matrices
    shapes = {
        tuple(int(x) for x in d["shape"]): np.dtype(d["dtype"]).name
        for d in interpreter.get_tensor_details()
        if d["name"] in matrices
    }
    assert shapes[(2001, 4)] == shapes[(1001, 4)] == "int8"  # user and item tables
    inputs = {d["name"]: np.dtype(d["dtype"]).name for d in interpreter.get_input_details()}
    assert inputs["serving_default_user_id:0"] == "int32"  # ids stay ids
    assert inputs["serving_default_user_activity:0"] == "int8"
    assert np.dtype(interpreter.get_output_details()[0]["dtype"]).name == "int8"
    assert result.parity["mean_abs_diff"] < 0.02
    delta = result.parity["quality_delta"]  # a number, or {metric: delta} per export_parity
    assert all(abs(d) < 0.05 for d in (delta.values() if isinstance(delta, dict) else [delta]))


def test_transformer_attention_quantized_layernorm_float(task, tmp_path):
    keras.utils.set_random_seed(1)
    model = models.sequence_transformer(task.schema, size="tiny")
    qat, history = _qat(model, task, epochs=1, steps=2)
    report = qat.compression_report
    mha = report["block_0_mha"]
    assert mha.applied and "query/key/value/output kernels" in mha.detail
    ln = report["block_0_ln_1"]
    assert not ln.applied and "LayerNormalization" in ln.reason
    assert report["position_embedding"].applied
    assert np.isfinite(history.history["loss"]).all()
    result = export.export_tflite(
        qat, tmp_path / "bst.tflite", "int8", parity_data=task.test, parity_max_examples=128
    )
    matrices, _ = constant_matrices(result.path)
    assert set(matrices.values()) == {"int8"}, matrices
    assert result.parity["max_abs_diff"] < 0.1


class Gate(keras.layers.Layer):
    """A user layer tfcompress knows nothing about: a learned per-feature gate."""

    def build(self, input_shape):
        self.gate = self.add_weight("gate", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * tf.sigmoid(self.gate)


def _custom_model(task):
    ids = keras.Input((1,), dtype="int32", name="item_id")
    price = keras.Input((1,), name="user_activity")
    emb = keras.layers.Flatten(name="flat")(keras.layers.Embedding(1001, 8, name="emb")(ids))
    x = keras.layers.Concatenate(name="concat")([emb, price])
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    x = Gate(name="gate")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="output")(x)
    return keras.Model({"item_id": ids, "user_activity": price}, out, name="custom")


def test_unknown_custom_layer_stays_float_trains_and_exports(task, tmp_path):
    model = _custom_model(task)
    qat = quantize(model)
    gate = qat.compression_report["gate"]
    assert not gate.applied and "unknown layer class" in gate.reason
    assert qat.compression_report["hidden"].applied
    qat.compile("adam", "binary_crossentropy")
    train = task.train.map(
        lambda f, y: ({"item_id": f["item_id"], "user_activity": f["user_activity"]}, y)
    )
    losses = qat.fit(train.take(6), epochs=3, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    result = export.export_tflite(
        qat, tmp_path / "custom.tflite", "int8", representative_data=train, num_calibration_steps=32
    )
    matrices, _ = constant_matrices(result.path)
    assert set(matrices.values()) == {"int8"}, matrices


def test_strict_raises_naming_the_float_layers(task):
    with pytest.raises(ValueError, match=r"strict=True.*gate \(Gate\): kept float: unknown"):
        quantize(_custom_model(task), strict=True)
    qat = quantize(_custom_model(task), strict=True, skip="gate")  # acknowledged: no error
    assert qat.compression_report["gate"].reason == "in `skip`"

    class Sub(keras.Model):  # a nested subclassed model: TFMOT cannot rebuild it
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(4)

        def call(self, x):
            return self.dense(x)

    x = keras.Input((3,), name="x")
    sub = Sub(name="sub")
    nested = keras.Model(x, keras.layers.Dense(1, name="out")(sub(x)))
    assert "nested subclassed" in quantize(nested).compression_report["sub"].reason
    with pytest.raises(ValueError, match=r"sub \(Sub\): nested subclassed \(or unbuilt\) model"):
        quantize(nested, strict=True)


def test_nested_functional_and_sequential_towers_are_quantized_layer_by_layer(tmp_path):
    x = keras.Input((3,), name="x")
    tower = keras.Sequential([keras.layers.Dense(4, input_shape=(3,), name="d")], name="tower")
    inner_in = keras.Input((4,), name="inner_in")
    head = keras.Model(inner_in, keras.layers.Dense(1, name="logit")(inner_in), name="head")
    model = keras.Model(x, head(keras.layers.Dense(4, name="mid")(tower(x))), name="outer")
    qat = quantize(model, strict=True)
    report = qat.compression_report
    assert [d.layer for d in report.applied] == ["tower", "tower/d", "mid", "head", "head/logit"]
    assert "quantized layer by layer (1 of its layers" in report["tower"].detail
    kernels = {k for k in quantizer_ranges(qat) if k.endswith("/kernel/max")}
    assert kernels == {"quant/d/kernel/max", "quant/mid/kernel/max", "quant/logit/kernel/max"}
    only_tower = quantize(model, layers="tower/d").compression_report
    assert [d.layer for d in only_tower.applied] == ["tower", "tower/d"]
    assert only_tower["mid"].reason == "not in `layers`"
    assert "none of its layers" in only_tower["head"].reason
    values = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    weights_only = quantize(model, scheme="int8_weights")
    plain = strip_quantization(weights_only)  # the towers are stripped too
    assert not is_quantized(plain) and is_quantized(weights_only.get_layer("tower"))
    np.testing.assert_allclose(plain(values), weights_only(values), atol=1e-6)
    qat.save(tmp_path / "nested.keras")
    again = load_quantized(tmp_path / "nested.keras")
    np.testing.assert_allclose(again(values), qat(values), atol=1e-6)


def test_layers_filter_and_sensitivity_report_skip(task):
    model = models.dcn(task.schema, size="tiny")
    only_dense = quantize(model, layers=keras.layers.Dense).compression_report
    assert {d.layer for d in only_dense.applied} == {"mlp_0", "logits"}
    assert only_dense["emb_user_id"].reason == "not in `layers`"
    rows = tuple(
        SensitivityRow(name, "X", (), 0.7, 0.7 - drop, drop)
        for name, drop in (("cross_0", 0.01), ("emb_item_id", 0.005), ("logits", 0.0))
    )
    sens = SensitivityReport("quantize", "auc", True, 0.7, rows, threshold=1e-3)
    skipped = quantize(model, skip=sens).compression_report
    assert {d.layer for d in skipped.skipped if d.reason == "in `skip`"} == {
        "cross_0",
        "emb_item_id",
    }
    one = quantize(model, skip=sens.most_sensitive(1)).compression_report
    assert one["cross_0"].reason == "in `skip`" and one["emb_item_id"].applied


def test_weights_only_scheme_strips_exactly_and_exports_dynamic(task, tmp_path):
    model = models.dcn(task.schema, size="tiny")
    qat = quantize(model, scheme="int8_weights")
    assert not any(isinstance(lyr, QuantizeLayer) for lyr in qat.layers)
    ranges = quantizer_ranges(qat)
    assert ranges and all(key.count("/") == 3 for key in ranges)  # quant/<layer>/<weight>/..
    features, _ = _features(model, task)
    plain = strip_quantization(qat)
    assert not is_quantized(plain)
    got = load_variant(plain).predict(features)["output"]
    want = load_variant(qat).predict(features)["output"]
    np.testing.assert_allclose(got, want, atol=1e-6)
    float_out = load_variant(model).predict(features)["output"]
    assert 0 < np.abs(float_out - want).max() < 0.02  # only the int8 weight rounding
    result = export.export_tflite(qat, tmp_path / "w.tflite", "dynamic", parity_data=task.test)
    matrices, _ = constant_matrices(result.path)
    assert [dtype for name, dtype in matrices.items() if "cross_0" in name] == ["int8"]
    assert result.parity["max_abs_diff"] < 0.01  # dynamic-range kernels quantize activations


def test_masking_embedding_into_flatten_quantizes_and_runs():
    ids = keras.Input((1,), dtype="int32", name="item")
    x = keras.layers.Embedding(10, 4, mask_zero=True, name="emb")(ids)
    x = keras.layers.Flatten(name="flat")(x)  # its call takes no mask
    out = keras.layers.Dense(1, name="out")(x)
    model = keras.Model(ids, out)
    qat = quantize(model)
    x = np.array([[1], [0], [7]], "int32")
    np.testing.assert_allclose(qat(x).numpy(), model(x).numpy(), atol=0.05)


def test_embedding_mask_survives_quantization(tmp_path):
    ids = keras.Input((5,), dtype="int32", name="ids")
    emb = keras.layers.Embedding(100, 8, mask_zero=True, name="emb")(ids)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(emb)  # averages unmasked steps
    model = keras.Model(ids, keras.layers.Dense(1, name="out")(pooled))
    qat = quantize(model, scheme="int8_weights")
    x = np.array([[3, 4, 0, 0, 0], [5, 0, 0, 0, 0]], "int32")
    np.testing.assert_allclose(qat(x).numpy(), model(x).numpy(), atol=2e-3)
    qat.save(tmp_path / "masked.keras")
    np.testing.assert_allclose(
        load_quantized(tmp_path / "masked.keras")(x).numpy(), qat(x).numpy(), atol=1e-6
    )


@pytest.mark.slow
def test_qat_under_mirrored_strategy_matches_single_device(task, mirrored):
    start = models.dcn(task.schema, size="tiny")
    weights = start.get_weights()
    features, _ = _features(start, task, 64)
    x, y = _features(start, task, 128)  # fixed batches (task.train reshuffles)
    results = {}
    for name, strategy in (("single", tf.distribute.get_strategy()), ("mirrored", mirrored)):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = models.dcn(task.schema, size="tiny")
            model.set_weights(weights)
            qat = quantize(model)
            models.compile_for_task(qat, task.schema, learning_rate=5e-3)
        losses = qat.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0).history["loss"]
        results[name] = (losses, qat(features, training=False).numpy())
        if name == "mirrored":
            table = qat.get_layer("emb_user_id").trainable_weights[0]
            assert isinstance(table, tf.distribute.DistributedValues)
    # replicas see half batches, so activation ranges (batch min/max) differ slightly
    np.testing.assert_allclose(results["mirrored"][0], results["single"][0], rtol=0.01)
    gap = np.abs(results["mirrored"][1] - results["single"][1])
    assert gap.mean() < 0.02 and gap.max() < 0.1


def test_save_and_load_quantized_roundtrip(dcn_qat, task, tmp_path):
    _, qat, _ = dcn_qat
    path = tmp_path / "qat.keras"
    qat.save(path)
    again = load_quantized(path)
    features, _ = _features(qat, task)
    np.testing.assert_allclose(
        load_variant(again).predict(features)["output"],
        load_variant(qat).predict(features)["output"],
        atol=1e-6,
    )
    assert is_quantized(again)


def test_logger_and_two_phase_fit(task):
    model = models.compile_for_task(
        models.dcn(task.schema, size="tiny"), task.schema, learning_rate=5e-3
    )
    qat, histories = fit_then_quantize(
        model, task.train.take(2), float_epochs=1, qat_epochs=2, verbose=0
    )
    assert histories["float"].epoch == [0]
    assert histories["qat"].epoch == [1, 2]  # epochs continue after the float phase
    assert qat.compression_report.technique == "quantize"
    logged = histories["qat"].history
    for key in ("quant/logits/kernel/min", "quant/logits/kernel/max", "quant/dcn_input/max"):
        assert len(logged[key]) == 2
    assert all(
        lo <= 0 <= hi
        for lo, hi in zip(logged["quant/dcn_input/min"], logged["quant/dcn_input/max"], strict=True)
    )
    assert "quant/logits/kernel/max" not in histories["float"].history


# --- bad input ---------------------------------------------------------------------------------


def _keras3_model():
    import keras as keras3

    return keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)])


def test_bad_inputs_raise_clear_errors(task, tmp_path):
    model = models.dcn(task.schema, size="tiny")
    with pytest.raises(ValueError, match=r"`scheme` must be one of \['int8', 'int8_weights'\]"):
        quantize(model, scheme="int4")
    with pytest.raises(TypeError, match="`scheme` must be a string"):
        quantize(model, scheme=8)
    with pytest.raises(TypeError, match="is a Keras 3 model"):
        quantize(_keras3_model())
    with pytest.raises(ValueError, match=r"`skip` entry 'no_such_layer' matches no layer"):
        quantize(model, skip="no_such_layer")
    with pytest.raises(TypeError, match="`strict` must be a bool"):
        quantize(model, strict="yes")
    with pytest.raises(ValueError, match="no layer of model 'dcn' can be quantized"):
        quantize(model, layers=MaskedMean)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed model"):
        quantize(Sub())
    with pytest.raises(ValueError, match="has no quantization layers"):
        strip_quantization(model)
    with pytest.raises(ValueError, match="does not exist"):
        load_quantized(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="is not compiled"):
        fit_then_quantize(model, task.train, float_epochs=1, qat_epochs=1)
    compiled = models.compile_for_task(models.dcn(task.schema, size="tiny"), task.schema)
    with pytest.raises(ValueError, match="`qat_epochs` must be an int >= 1"):
        fit_then_quantize(compiled, task.train, float_epochs=1, qat_epochs=0)
    with pytest.raises(ValueError, match="`prefix` must be a non-empty string"):
        QuantizationLogger(prefix="")


def test_custom_scheme_instance_sets_table_granularity(task):
    assert set(SCHEMES) == {"int8", "int8_weights"}
    scheme = QuantizationScheme("rows", activations=False, embedding_granularity="row")
    assert scheme.get_config()["embedding_granularity"] == "row"
    qat = quantize(models.dcn(task.schema, size="tiny"), scheme=scheme)
    assert "per row" in qat.compression_report["emb_user_id"].detail
    assert qat.get_layer("emb_user_id").quantize_config.granularity == "row"
    assert Cross in {type(lyr.layer) for lyr in qat.layers if hasattr(lyr, "quantize_config")}


# --- pruning-preserving QAT ----------------------------------------------------------------------


def _half_zero_dcn(task):
    """A tiny DCN whose Dense kernels are exactly 50% zeros (as tfcompress.pruning.strip makes)."""
    model = models.dcn(task.schema, size="tiny")
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel, *rest = layer.get_weights()
            flat = kernel.reshape(-1).copy()
            flat[np.argsort(np.abs(flat))[: flat.size // 2]] = 0.0
            layer.set_weights([flat.reshape(kernel.shape), *rest])
    return model


def _dense_zero_shares(qat):
    dense = [
        layer.name
        for layer in qat.layers
        if isinstance(getattr(layer, "layer", layer), keras.layers.Dense)
    ]
    return {
        w.name: float(np.mean(w.numpy() == 0))
        for w in qat.trainable_weights
        if w.shape.rank == 2 and "kernel" in w.name and w.name.split("/")[0] in dense
    }


@pytest.mark.parametrize("use_mirrored", [False, True])
def test_qat_keeps_the_zeros_of_pruned_weights(task, mirrored, use_mirrored):
    scope = mirrored.scope() if use_mirrored else tf.distribute.get_strategy().scope()
    with scope:
        model = _half_zero_dcn(task)
        qat = quantize(model)  # preserve_sparsity=None: auto, the kernels are 50% zeros
        models.compile_for_task(qat, task.schema, learning_rate=1e-2)
    kept = qat.compression_report.settings["sparsity_preserved"]
    assert kept and all(share >= 0.5 for share in kept.values())
    before = {w.name: w.numpy().copy() for w in qat.trainable_weights}
    qat.fit(task.train.take(4), epochs=1, verbose=0)
    shares = _dense_zero_shares(qat)
    assert shares and all(s >= 0.5 for s in shares.values()), shares
    changed = [
        w.name
        for w in qat.trainable_weights
        if w.shape.rank == 2 and not np.array_equal(before[w.name], w.numpy())
    ]
    assert changed  # the non-zero weights still train


def test_qat_fills_in_zeros_when_not_preserving(task):
    model = _half_zero_dcn(task)
    qat = quantize(model, preserve_sparsity=False)
    models.compile_for_task(qat, task.schema, learning_rate=1e-2)
    assert qat.compression_report.settings["sparsity_preserved"] == {}
    qat.fit(task.train.take(4), epochs=1, verbose=0)
    assert min(_dense_zero_shares(qat).values()) < 0.5


def test_preserve_sparsity_rejects_non_bool(task):
    with pytest.raises(TypeError, match="preserve_sparsity.*received 'yes'"):
        quantize(models.dcn(task.schema, size="tiny"), preserve_sparsity="yes")
