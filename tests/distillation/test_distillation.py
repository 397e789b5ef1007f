"""Tests of tfcompress.distillation (Distiller), distillation_heads and flops."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

from tfcompress import data, models
from tfcompress._keras import keras, tf
from tfcompress.distillation import Distiller
from tfcompress.distillation.heads import detect_output_kind
from tfcompress.distillation.losses import (
    BinaryDistillationLoss,
    FeatureDistillation,
    ListwiseDistillationLoss,
    MSEDistillationLoss,
    SoftmaxDistillationLoss,
)
from tfcompress.evaluation.flops import count_flops
from tfcompress.export import export_tflite

N = 512


def _arrays(n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, :1] + 0.5 * x[:, 1:2] - 0.3 * x[:, 2:3] ** 2 > 0).astype("float32")
    return x, y


def _mlp(width: int, name: str, head: str = "activation", n_out: int = 1) -> keras.Model:
    """Dense model; head: 'activation' (logits -> Activation), 'dense_sigmoid', 'logits'."""
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    if head == "dense_sigmoid":
        return keras.Model(
            inputs, keras.layers.Dense(1, activation="sigmoid", name="output")(hidden), name=name
        )
    logits = keras.layers.Dense(n_out, name="logits")(hidden)
    if head == "logits":
        return keras.Model(inputs, logits, name=name)
    activation = "sigmoid" if n_out == 1 else "softmax"
    return keras.Model(
        inputs, keras.layers.Activation(activation, name="output")(logits), name=name
    )


def _train_teacher(x, y, width: int = 32, epochs: int = 15) -> keras.Model:
    teacher = _mlp(width, "teacher")
    teacher.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    teacher.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    return teacher


@pytest.fixture(scope="module")
def teacher_weights():
    """Weights of a width-32 teacher trained once on ``_arrays()``."""
    keras.utils.set_random_seed(0)
    weights = _train_teacher(*_arrays()).get_weights()
    keras.backend.clear_session()
    return weights


def _teacher(weights) -> keras.Model:
    teacher = _mlp(32, "teacher")
    teacher.set_weights(weights)
    return teacher


def _distiller(student, teacher, **kwargs) -> Distiller:
    distiller = Distiller(student, teacher, **kwargs)
    distiller.compile(
        keras.optimizers.Adam(1e-2),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return distiller


# --------------------------------------------------------------------------- training


def test_fit_lowers_distillation_loss_and_tracks_every_part(teacher_weights):
    x, y = _arrays()
    teacher = _teacher(teacher_weights)
    student = _mlp(8, "student")
    before = np.abs(student.predict(x, verbose=0) - teacher.predict(x, verbose=0)).mean()
    distiller = _distiller(student, teacher, student_loss_weight=0.2)
    history = distiller.fit(x, y, batch_size=64, epochs=4, validation_split=0.25, verbose=0)
    h = history.history
    assert set(h) == {
        "loss",
        "student_loss",
        "distillation_loss",
        "auc",
        "val_loss",
        "val_student_loss",
        "val_distillation_loss",
        "val_auc",
    }
    assert h["distillation_loss"][-1] < 0.9 * h["distillation_loss"][0]
    assert h["val_distillation_loss"][-1] < h["val_distillation_loss"][0]
    after = np.abs(student.predict(x, verbose=0) - teacher.predict(x, verbose=0)).mean()
    assert after < 0.7 * before
    # total = w * student + (1 - w) * distillation, w = student_loss_weight (no regularizer)
    result = distiller.evaluate(x, y, verbose=0, return_dict=True)
    combined = 0.2 * result["student_loss"] + 0.8 * result["distillation_loss"]
    assert result["loss"] == pytest.approx(combined, rel=1e-5)


def test_distillation_loss_is_binary_kd_of_the_logit_layers(teacher_weights):
    x, y = _arrays(128)
    teacher = _teacher(teacher_weights)
    student = _mlp(8, "student")
    distiller = _distiller(student, teacher, student_loss_weight=0.5, temperature=2.0)
    assert isinstance(distiller.distillation_loss, BinaryDistillationLoss)
    got = distiller.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    s_logits = keras.Model(student.input, student.get_layer("logits").output)(x)
    t_logits = keras.Model(teacher.input, teacher.get_layer("logits").output)(x)
    expected = float(BinaryDistillationLoss(2.0)(t_logits, s_logits))
    assert got["distillation_loss"] == pytest.approx(expected, rel=1e-5)
    bce = float(keras.losses.binary_crossentropy(y[:, 0], student(x)[:, 0]))
    assert got["student_loss"] == pytest.approx(bce, rel=1e-5)


def test_predict_returns_student_output_and_student_reloads_identically(tmp_path):
    task = data.load_task("ctr", n_samples=800, seed=0, batch_size=128)
    teacher = models.sequence_transformer(task.schema, size="tiny")
    student = models.dcn(task.schema, size="tiny")
    distiller = Distiller(student, teacher, student_loss_weight=0.5)
    assert isinstance(distiller.distillation_loss, BinaryDistillationLoss)
    distiller.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    distiller.fit(task.train, epochs=1, verbose=0)
    predicted = distiller.predict(task.test, verbose=0)
    np.testing.assert_array_equal(predicted, student.predict(task.test, verbose=0))
    path = tmp_path / "student.keras"
    distiller.student.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(task.test, verbose=0), predicted, atol=1e-6)
    assert reloaded.count_params() == student.count_params()
    # the distilled student is a plain model: the next stages (here TFLite export) take it
    result = export_tflite(distiller.student, tmp_path / "student.tflite", parity_data=task.test)
    assert result.parity["max_abs_diff"] < 1e-4 and result.bytes > 0


def test_teacher_is_frozen_and_unchanged_by_fit(teacher_weights):
    x, y = _arrays()
    teacher = _teacher(teacher_weights)
    before = [w.copy() for w in teacher.get_weights()]
    student = _mlp(8, "student")
    distiller = _distiller(student, teacher)
    assert teacher.trainable is False
    assert {id(v) for v in distiller.trainable_variables} == {
        id(v) for v in student.trainable_variables
    }
    distiller.fit(x, y, batch_size=64, epochs=2, verbose=0)
    for old, new in zip(before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_distiller_saves_and_loads_as_keras_file(tmp_path, teacher_weights):
    x, y = _arrays(256)
    teacher = _teacher(teacher_weights)
    distiller = _distiller(_mlp(8, "student"), teacher, student_loss_weight=0.7, temperature=2.0)
    distiller.fit(x, y, batch_size=64, epochs=1, verbose=0)
    distiller.save(tmp_path / "distiller.keras")
    loaded = keras.models.load_model(tmp_path / "distiller.keras", safe_mode=True)
    assert isinstance(loaded, Distiller) and loaded.student_loss_weight == 0.7
    assert loaded.distillation_loss.temperature == 2.0
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), distiller.predict(x, verbose=0), atol=1e-6
    )
    expected = distiller.evaluate(x, y, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)  # compiled from the saved config
    assert got == pytest.approx(expected, rel=1e-5)


def test_mirrored_strategy_matches_single_device(mirrored, teacher_weights):
    x, y = _arrays(500)

    def run(strategy):
        keras.utils.set_random_seed(7)
        with strategy.scope():
            teacher = _mlp(32, "teacher")
            teacher.set_weights(teacher_weights)
            student = _mlp(8, "student")
            distiller = Distiller(student, teacher, student_loss_weight=0.4)
            distiller.compile(keras.optimizers.SGD(0.2), loss="binary_crossentropy")
        # 500 = 7 * 63 + 59: the last global batch splits 30/29 over the two replicas
        history = distiller.fit(x, y, batch_size=63, epochs=2, shuffle=False, verbose=0)
        return student.get_weights(), history.history

    single_weights, single = run(tf.distribute.get_strategy())
    mirrored_weights, multi = run(mirrored)
    assert mirrored.num_replicas_in_sync == 2
    for a, b in zip(single_weights, mirrored_weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for key in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(single[key], multi[key], rtol=1e-5)
    assert single["distillation_loss"][1] < single["distillation_loss"][0]


def test_strategies_train_reference_models(strategy):
    task = data.load_task("profile", n_samples=400, seed=0, batch_size=64)
    with strategy.scope():
        teacher = models.dcn(task.schema, size="tiny")
        student = models.logistic_regression(task.schema)
        distiller = Distiller(student, teacher, student_loss_weight=0.0)
        distiller.compile(keras.optimizers.Adam(5e-2), loss=None)
    assert isinstance(distiller.distillation_loss, SoftmaxDistillationLoss)
    history = distiller.fit(task.train, epochs=2, verbose=0).history
    assert "student_loss" not in history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]


def test_pure_distillation_on_unlabelled_data(teacher_weights):
    x, y = _arrays()
    teacher = _teacher(teacher_weights)
    distiller = Distiller(_mlp(8, "student"), teacher, student_loss_weight=0.0)
    distiller.compile(keras.optimizers.Adam(1e-2))
    history = distiller.fit(x, batch_size=64, epochs=4, verbose=0).history
    assert set(history) == {"loss", "distillation_loss"}
    assert history["loss"][-1] < history["loss"][0]


def test_sample_weights_scale_every_loss_part(teacher_weights):
    x, y = _arrays(128)
    teacher = _teacher(teacher_weights)
    distiller = _distiller(_mlp(8, "student"), teacher, student_loss_weight=0.5)
    plain = distiller.evaluate(x, y, verbose=0, return_dict=True)
    doubled = distiller.evaluate(x, y, sample_weight=np.full(128, 2.0), verbose=0, return_dict=True)
    for key in ("loss", "student_loss", "distillation_loss"):
        assert doubled[key] == pytest.approx(2 * plain[key], rel=1e-5)


def test_callbacks_see_the_loss_parts(tmp_path, teacher_weights):
    x, y = _arrays()
    teacher = _teacher(teacher_weights)
    distiller = _distiller(_mlp(8, "student"), teacher)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_distillation_loss", patience=1, restore_best_weights=True
    )
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"))
    distiller.fit(
        x, y, batch_size=64, epochs=3, validation_split=0.25, verbose=0, callbacks=[stopper, board]
    )
    tags = set()
    for path in (tmp_path / "tb").rglob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags |= {value.tag for value in event.summary.value}
    assert {"epoch_loss", "epoch_student_loss", "epoch_distillation_loss"} <= tags


# --------------------------------------------------------------------------- TFMOT students


def test_pruned_student_trains_inside_distiller_and_reaches_sparsity(teacher_weights):
    x, y = _arrays()
    teacher = _teacher(teacher_weights)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        0.0, 0.5, begin_step=0, end_step=16, frequency=1
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        _mlp(16, "student"), pruning_schedule=schedule
    )
    distiller = _distiller(
        pruned, teacher, student_loss_weight=0.3, feature_distillation=("hidden", "hidden")
    )
    history = distiller.fit(
        x,
        y,
        batch_size=64,
        epochs=4,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    ).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
    wrapper = pruned.get_layer("prune_low_magnitude_hidden")
    assert int(wrapper.pruning_step.numpy()) == 4 * 8  # the student ran once per step
    assert float(np.mean(wrapper.layer.kernel.numpy() == 0)) == pytest.approx(0.5, abs=0.02)
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    np.testing.assert_allclose(
        stripped.predict(x, verbose=0), distiller.predict(x, verbose=0), atol=1e-6
    )


def test_qat_student_trains_inside_distiller(teacher_weights):
    x, y = _arrays()
    teacher = _teacher(teacher_weights)
    quantized = tfmot.quantization.keras.quantize_model(_mlp(8, "student"))
    assert detect_output_kind(quantized) == "sigmoid"
    distiller = _distiller(quantized, teacher, student_loss_weight=0.3)
    history = distiller.fit(x, y, batch_size=64, epochs=3, verbose=0).history
    assert history["distillation_loss"][-1] < 0.9 * history["distillation_loss"][0]


# --------------------------------------------------------------------------- feature hints


def test_feature_distillation_projection_belongs_to_the_distiller_and_trains(teacher_weights):
    x, y = _arrays()
    teacher = _teacher(teacher_weights)
    student = _mlp(8, "student")
    distiller = _distiller(
        student,
        teacher,
        student_loss_weight=0.5,
        feature_distillation=FeatureDistillation("hidden", "hidden", weight=0.5),
    )
    (projection,) = distiller.hint_projections
    assert projection.kernel.shape == (8, 32)
    assert {id(v) for v in projection.trainable_variables} <= {
        id(v) for v in distiller.trainable_variables
    }
    assert not {id(v) for v in projection.weights} & {id(v) for v in student.weights}
    kernel = projection.kernel.numpy().copy()
    history = distiller.fit(x, y, batch_size=64, epochs=4, verbose=0).history
    assert history["feature_loss"][-1] < 0.7 * history["feature_loss"][0]
    assert not np.allclose(kernel, projection.kernel.numpy())
    result = distiller.evaluate(x, y, verbose=0, return_dict=True)
    total = 0.5 * result["student_loss"] + 0.5 * result["distillation_loss"]
    assert result["loss"] == pytest.approx(total + result["feature_loss"], rel=1e-5)


def test_feature_projection_only_when_needed_or_asked():
    x, y = _arrays(64)
    teacher = _mlp(8, "teacher")
    same = Distiller(_mlp(8, "s1"), teacher, feature_distillation={"hidden": "hidden"})
    assert same.hint_projections == []
    forced = Distiller(
        _mlp(8, "s2"),
        teacher,
        feature_distillation=[FeatureDistillation("hidden", "hidden", projection=True)],
    )
    assert len(forced.hint_projections) == 1
    with pytest.raises(ValueError, match=r"width 4 differs from teacher layer 'hidden' width 8"):
        Distiller(
            _mlp(4, "s3"),
            teacher,
            feature_distillation=FeatureDistillation("hidden", "hidden", projection=False),
        )


# --------------------------------------------------------------------------- output kinds


def test_detect_output_kind_of_reference_and_plain_models():
    ctr = data.load_task("ctr", n_samples=300, seed=0).schema
    assert detect_output_kind(models.dcn(ctr, size="tiny")) == "sigmoid"
    assert detect_output_kind(_mlp(4, "m", n_out=3)) == "softmax"
    assert detect_output_kind(_mlp(4, "m", head="logits")) == "logits"
    assert detect_output_kind(_mlp(4, "m", head="dense_sigmoid")) == "sigmoid"
    relu = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="relu")])
    assert detect_output_kind(relu) is None


def test_logit_models_and_declared_probabilities():
    x, y = _arrays(256)
    teacher = _mlp(16, "teacher", head="logits")
    distiller = Distiller(_mlp(8, "student", head="logits"), teacher, distillation_loss="binary")
    distiller.compile("adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    assert distiller.evaluate(x, y, verbose=0, return_dict=True)["distillation_loss"] > 0
    with pytest.raises(ValueError, match=r"cannot choose for models with one logit output"):
        Distiller(_mlp(8, "student", head="logits"), teacher)
    # Dense(sigmoid) output: its logits are not in the graph, so they come from log-odds.
    student = _mlp(8, "student", head="dense_sigmoid")
    converted = Distiller(student, _mlp(16, "t2"), student_outputs="probabilities")
    converted.compile("adam", loss="binary_crossentropy")
    got = converted.evaluate(x[:64], y[:64], batch_size=64, verbose=0, return_dict=True)
    p = np.clip(student(x[:64]).numpy(), 1e-7, 1 - 1e-7)
    t_logits = keras.Model(converted.teacher.input, converted.teacher.get_layer("logits").output)(
        x[:64]
    )
    expected = float(BinaryDistillationLoss()(t_logits, np.log(p) - np.log1p(-p)))
    assert got["distillation_loss"] == pytest.approx(expected, rel=1e-4)


def test_subclassed_student_with_declared_outputs(teacher_weights):
    class Small(keras.Model):
        def __init__(self):
            super().__init__(name="small")
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(1)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    x, y = _arrays()
    teacher = _teacher(teacher_weights)
    with pytest.raises(ValueError, match=r"student_outputs`='auto' cannot inspect model 'small'"):
        Distiller(Small(), teacher)
    distiller = Distiller(Small(), teacher, student_outputs="logits", student_loss_weight=0.0)
    distiller.compile(keras.optimizers.Adam(1e-2))
    history = distiller.fit(x, y, batch_size=64, epochs=3, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]


def test_two_tower_teacher_gets_listwise_distillation():
    task = data.load_task("retrieval", n_samples=600, seed=0, batch_size=64)
    catalog = task.info["catalog"]
    teacher = models.two_tower(task.schema, catalog, size="tiny")
    student = models.two_tower(task.schema, catalog, size="tiny")
    distiller = Distiller(student, teacher, student_loss_weight=0.0)
    assert isinstance(distiller.distillation_loss, ListwiseDistillationLoss)
    distiller.compile(keras.optimizers.Adam(5e-2))
    history = distiller.fit(task.train, epochs=3, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]


# --------------------------------------------------------------------------- bad input


def _keras3_model():
    import keras as keras3

    return keras3.Sequential([keras3.Input((6,)), keras3.layers.Dense(1)])


def test_keras3_models_rejected():
    with pytest.raises(TypeError, match=r"`student` is a Keras 3 model"):
        Distiller(_keras3_model(), _mlp(4, "t"))
    with pytest.raises(TypeError, match=r"`teacher` is a Keras 3 model"):
        Distiller(_mlp(4, "s"), _keras3_model())
    with pytest.raises(TypeError, match=r"`model` is a Keras 3 model"):
        count_flops(_keras3_model())


def test_output_shape_mismatch_names_both_shapes():
    with pytest.raises(
        ValueError,
        match=r"student's output shape \(None, 1\).*teacher's output "
        r"shape \(None, 3\)",
    ):
        Distiller(_mlp(4, "s"), _mlp(4, "t", n_out=3))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_temperature_must_be_positive(bad):
    with pytest.raises(ValueError, match=r"Distiller: `temperature` must be a finite float > 0"):
        Distiller(_mlp(4, "s"), _mlp(4, "t"), temperature=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_student_loss_weight_must_be_in_unit_interval(bad):
    with pytest.raises(
        ValueError, match=r"`student_loss_weight` must be a finite float in \[0, 1\], received"
    ):
        Distiller(_mlp(4, "s"), _mlp(4, "t"), student_loss_weight=bad)
    with pytest.raises(TypeError, match=r"`student_loss_weight` must be a float in \[0, 1\]"):
        Distiller(_mlp(4, "s"), _mlp(4, "t"), student_loss_weight="0.5")


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_deprecated_alpha_must_be_in_unit_interval(bad):
    with pytest.raises(ValueError, match=r"`alpha` must be a finite float in \[0, 1\], received"):
        Distiller(_mlp(4, "s"), _mlp(4, "t"), alpha=bad)
    with pytest.raises(TypeError, match=r"`alpha` must be a float in \[0, 1\]"):
        Distiller(_mlp(4, "s"), _mlp(4, "t"), alpha="0.5")


def test_unknown_feature_layer_lists_available_layers():
    teacher = _mlp(4, "teacher")
    with pytest.raises(
        ValueError,
        match=r"model 'teacher' has no layer named 'mlp_9'. "
        r"Available layers: hidden, logits, output",
    ):
        Distiller(_mlp(4, "s"), teacher, feature_distillation=("hidden", "mlp_9"))
    assert teacher.trainable  # a rejected Distiller leaves the teacher untouched
    with pytest.raises(TypeError, match=r"`feature_distillation` must be None"):
        Distiller(_mlp(4, "s"), _mlp(4, "t"), feature_distillation=3)


def test_undetectable_or_contradicting_outputs_ask_for_a_declaration():
    relu = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(1, activation="relu")], name="relu_model"
    )
    with pytest.raises(
        ValueError,
        match=r"Cannot tell whether model 'relu_model' outputs "
        r"probabilities or logits.*declare teacher_outputs",
    ):
        Distiller(_mlp(4, "s"), relu)
    with pytest.raises(ValueError, match=r"`student_outputs`='logits' contradicts model 's'"):
        Distiller(_mlp(4, "s"), _mlp(4, "t"), student_outputs="logits")
    with pytest.raises(ValueError, match=r"`teacher_outputs`='probabilities' contradicts"):
        Distiller(
            _mlp(4, "s", head="logits"),
            _mlp(4, "t", head="logits"),
            teacher_outputs="probabilities",
            distillation_loss=MSEDistillationLoss(),
        )
    with pytest.raises(ValueError, match=r"`student_outputs` must be one of"):
        Distiller(_mlp(4, "s"), _mlp(4, "t"), student_outputs="probs")


def test_same_or_weight_sharing_models_rejected():
    model = _mlp(4, "m")
    with pytest.raises(ValueError, match=r"`student` and `teacher` are the same model"):
        Distiller(model, model)
    twin = keras.Model(model.input, model.output, name="twin")
    with pytest.raises(ValueError, match=r"share weights \(hidden/kernel"):
        Distiller(twin, model)


def test_compile_validates_the_student_loss():
    distiller = Distiller(_mlp(4, "s"), _mlp(4, "t"), student_loss_weight=0.5)
    with pytest.raises(
        ValueError,
        match=r"`loss` .* is required when student_loss_weight > 0 "
        r"\(student_loss_weight=0.5\)",
    ):
        distiller.compile("adam")
    with pytest.raises(ValueError, match=r"`loss_weights` is not supported"):
        distiller.compile("adam", loss="binary_crossentropy", loss_weights=[1.0])


# --------------------------------------------------------------------------- flops


def test_count_flops_of_dense_and_attention_layers():
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    total, by_op = count_flops(dense, by_op=True)
    assert (total, by_op) == (27, {"BiasAdd": 3, "MatMul": 24})
    assert count_flops(dense, batch_size=1) == 27
    inputs = keras.Input((5, 8))
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, use_bias=False)
    mha = keras.Model(inputs, attention(inputs, inputs))
    _, ops = count_flops(mha, by_op=True)
    # q, k, v and output projections: 4 * 2 * 5*8*8; scores and weighted sum: 2 * 2 * 2*5*5*4
    assert ops["Einsum"] == 4 * 2 * 5 * 8 * 8 + 2 * 2 * 2 * 5 * 5 * 4


def test_count_flops_teacher_vs_students():
    schema = data.load_task("ctr", n_samples=300, seed=0).schema
    teacher = count_flops(models.sequence_transformer(schema, size="teacher"))
    student = count_flops(models.sequence_transformer(schema, size="student"))
    assert 4 * student <= teacher


def test_count_flops_bad_inputs():
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"`batch_size` must be an int >= 1, received 0"):
        count_flops(dense, batch_size=0)

    class Sub(keras.Model):
        def call(self, inputs):
            return inputs * 2.0

    with pytest.raises(ValueError, match=r"has no known inputs.*pass `input_signature=`"):
        count_flops(Sub())
    assert count_flops(Sub(), input_signature=tf.TensorSpec([None, 5])) == 5
    with pytest.raises(TypeError, match=r"`input_signature` must hold tf.TensorSpec"):
        count_flops(Sub(), input_signature=[5])


def test_a_frozen_student_is_rejected_not_silently_left_unchanged():
    """A copy of a model an earlier Distiller froze as its teacher is frozen too: fitting it
    would run and change nothing (found by compress: every second shrink stayed untrained)."""
    teacher = _mlp(8, "t")
    Distiller(_mlp(4, "s1"), teacher)  # freezes the teacher
    frozen_copy = keras.models.clone_model(teacher)
    assert not frozen_copy.trainable_weights
    with pytest.raises(ValueError, match=r"student 't' has no trainable weights.*unfreeze"):
        Distiller(frozen_copy, _mlp(8, "t2"))
    teacher.trainable = True
    assert Distiller(keras.models.clone_model(teacher), _mlp(8, "t3")).student.trainable_weights


class _PoolerHead(keras.layers.Layer):
    """Model Garden's ClassificationHead shape: a tanh pooler dense, a linear out_proj."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get("tanh")
        self.dense = keras.layers.Dense(4, activation=self.activation)
        self.out_proj = keras.layers.Dense(3)

    def call(self, x):
        return self.out_proj(self.dense(x))


class _SigmoidHead(keras.layers.Layer):
    """A user's own head that applies its activation to its output."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.get("sigmoid")
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.activation(self.dense(x))


def test_a_custom_head_is_read_from_its_output_sublayer():
    inp = keras.Input((5,))
    pooler = keras.Model(inp, _PoolerHead(name="cls")(inp))
    assert detect_output_kind(pooler) == "logits"  # not "activation tanh"
    own = keras.Model(inp, _SigmoidHead(name="head")(inp))
    assert detect_output_kind(own) == "sigmoid"
