"""The Distiller takes every loss and label shape that ``Model.compile`` takes (issue 13, item 1).

Each case trains a tiny student inside a Distiller for one step, then checks that the student
loss (and the compiled metric) the Distiller reports on a batch equals what plain Keras reports
for the same student, loss spec and labels (``student.compile(loss=...); student.evaluate``),
and that the distillation loss is finite and > 0 (the teacher differs from the student).
"""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress._keras import keras, tf
from tfcompress.distillation import Distiller
from tfcompress.distillation.keras_losses import match_labels, resolve_loss
from tfcompress.distillation.losses import (
    BinaryDistillationLoss,
    MSEDistillationLoss,
    SoftmaxDistillationLoss,
)

N = 64
K = 3


def _data(task: str, labels: str):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4)).astype("float32")
    if task == "binary":
        y = (x[:, 0] + 0.3 * rng.normal(size=N) > 0).astype("float32")
    elif task == "multiclass":
        y = np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5]).astype("int32")
    else:
        y = (x[:, 0] + 0.5 * x[:, 1]).astype("float32")
    if labels == "flat":
        return x, y
    if labels == "column":
        return x, y[:, None]
    if labels == "int":
        return x, y.astype("int32")
    if labels == "ids":
        return x, y
    if labels == "ids_column":
        return x, y[:, None]
    if labels == "ids_float":
        return x, y.astype("float32")
    if labels == "onehot":
        return x, np.eye(K, dtype="float32")[y]
    raise AssertionError(labels)


def _model(head: str, width: int, name: str, seed: int) -> keras.Model:
    """head: 'activation' (Dense -> Activation), 'dense' (Dense with activation), 'logits'."""
    init = keras.initializers.GlorotUniform(seed)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(8, activation="tanh", kernel_initializer=init, name="hidden")(
        inputs
    )
    activation = "sigmoid" if width == 1 else "softmax"
    if head == "dense":
        output = keras.layers.Dense(
            width, activation=activation, kernel_initializer=init, name="output"
        )(hidden)
        return keras.Model(inputs, output, name=name)
    logits = keras.layers.Dense(width, kernel_initializer=init, name="logits")(hidden)
    if head == "logits":
        return keras.Model(inputs, logits, name=name)
    output = keras.layers.Activation(activation, name="output")(logits)
    return keras.Model(inputs, output, name=name)


def _bce_logits_fn(y_true, y_pred):
    return keras.losses.binary_crossentropy(y_true, y_pred, from_logits=True)


# Each loss spec is a factory, so plain Keras and the Distiller get separate objects.
LOSSES = {
    "str_binary_crossentropy": lambda: "binary_crossentropy",
    "str_bce": lambda: "bce",
    "str_BinaryCrossentropy": lambda: "BinaryCrossentropy",
    "fn_binary_crossentropy": lambda: keras.losses.binary_crossentropy,
    "obj_BinaryCrossentropy": lambda: keras.losses.BinaryCrossentropy(),
    "obj_BinaryFocalCrossentropy": lambda: keras.losses.BinaryFocalCrossentropy(),
    "obj_BinaryCrossentropy_logits": lambda: keras.losses.BinaryCrossentropy(from_logits=True),
    "fn_custom_bce_logits": lambda: _bce_logits_fn,
    "str_categorical_crossentropy": lambda: "categorical_crossentropy",
    "obj_CategoricalCrossentropy": lambda: keras.losses.CategoricalCrossentropy(),
    "obj_CategoricalCrossentropy_logits": lambda: keras.losses.CategoricalCrossentropy(
        from_logits=True
    ),
    "str_sparse_categorical_crossentropy": lambda: "sparse_categorical_crossentropy",
    "obj_SparseCategoricalCrossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(),
    "obj_SparseCategoricalCrossentropy_logits": lambda: keras.losses.SparseCategoricalCrossentropy(
        from_logits=True
    ),
    "str_mse": lambda: "mse",
    "str_mean_absolute_error": lambda: "mean_absolute_error",
    "fn_mean_squared_error": lambda: keras.losses.mean_squared_error,
    "obj_MeanSquaredError": lambda: keras.losses.MeanSquaredError(),
    "obj_Huber": lambda: keras.losses.Huber(),
}

_BINARY_PROB = [
    "str_binary_crossentropy",
    "str_bce",
    "str_BinaryCrossentropy",
    "fn_binary_crossentropy",
    "obj_BinaryCrossentropy",
    "obj_BinaryFocalCrossentropy",
]
_REGRESSION = [
    "str_mse",
    "str_mean_absolute_error",
    "fn_mean_squared_error",
    "obj_MeanSquaredError",
    "obj_Huber",
]
CASES = (
    # binary: a (None, 1) sigmoid student, labels (n,), (n, 1) and int (n,)
    [("binary", "activation", loss, "flat") for loss in _BINARY_PROB]
    + [
        ("binary", "activation", loss, labels)
        for loss in ("str_binary_crossentropy", "fn_binary_crossentropy", "obj_BinaryCrossentropy")
        for labels in ("column", "int")
    ]
    + [
        ("binary", "dense", loss, labels)
        for loss in ("str_binary_crossentropy", "obj_BinaryCrossentropy")
        for labels in ("flat", "column")
    ]
    # binary: a (None, 1) logit student
    + [
        ("binary", "logits", loss, labels)
        for loss in ("obj_BinaryCrossentropy_logits", "fn_custom_bce_logits")
        for labels in ("flat", "column", "int")
    ]
    # multiclass: a (None, 3) softmax / logit student; one-hot labels and sparse ids
    + [
        ("multiclass", head, loss, "onehot")
        for head in ("activation", "dense")
        for loss in ("str_categorical_crossentropy", "obj_CategoricalCrossentropy")
    ]
    + [
        ("multiclass", "activation", loss, labels)
        for loss in ("str_sparse_categorical_crossentropy", "obj_SparseCategoricalCrossentropy")
        for labels in ("ids", "ids_column", "ids_float")
    ]
    + [("multiclass", "dense", "str_sparse_categorical_crossentropy", "ids")]
    + [("multiclass", "logits", "obj_CategoricalCrossentropy_logits", "onehot")]
    + [
        ("multiclass", "logits", "obj_SparseCategoricalCrossentropy_logits", labels)
        for labels in ("ids", "ids_column")
    ]
    # regression: a (None, 1) linear student
    + [("regression", "logits", loss, "flat") for loss in _REGRESSION]
    + [("regression", "logits", loss, "column") for loss in ("str_mse", "obj_Huber")]
)


def _distiller(task: str, head: str, loss: object, metrics: list, strategy=None):
    width = K if task == "multiclass" else 1
    teacher = _model(head, width, "teacher", seed=1)
    student = _model(head, width, "student", seed=2)
    if task == "regression":
        kd = "mse"
    elif head == "logits" and width == 1:
        kd = "binary"
    else:
        kd = "auto"
    distiller = Distiller(student, teacher, student_loss_weight=0.5, distillation_loss=kd)
    distiller.compile(keras.optimizers.SGD(0.01), loss=loss, metrics=metrics)
    return distiller, student


def _metrics(task: str) -> list:
    return ["mae"] if task == "regression" else ["accuracy"]


def _plain_keras(student: keras.Model, task: str, loss: str, x, y, **kwargs) -> dict:
    """What plain ``student.compile(loss=...); student.evaluate`` reports (eager: no tracing)."""
    student.compile(
        keras.optimizers.SGD(0.01), loss=LOSSES[loss](), metrics=_metrics(task), run_eagerly=True
    )
    return student.evaluate(x, y, batch_size=N, verbose=0, return_dict=True, **kwargs)


@pytest.mark.parametrize(
    ("task", "head", "loss", "labels"), CASES, ids=["-".join(case) for case in CASES]
)
def test_student_loss_equals_plain_keras_for_every_loss_and_label_shape(task, head, loss, labels):
    x, y = _data(task, labels)
    distiller, student = _distiller(task, head, LOSSES[loss](), _metrics(task))
    expected = _plain_keras(student, task, loss, x, y)
    # One training step on the whole data set: its losses and metric are those of the weights
    # before the update, on the same batch plain Keras evaluated.
    got = {
        key: values[0]
        for key, values in distiller.fit(x, y, batch_size=N, epochs=1, verbose=0).history.items()
    }
    assert got["student_loss"] == pytest.approx(expected["loss"], rel=1e-5, abs=1e-6)
    metric = _metrics(task)[0]
    assert got[metric] == pytest.approx(expected[metric], rel=1e-5, abs=1e-6)
    assert np.isfinite(got["distillation_loss"]) and got["distillation_loss"] > 1e-4
    combined = 0.5 * got["student_loss"] + 0.5 * got["distillation_loss"]
    assert got["loss"] == pytest.approx(combined, rel=1e-5)
    trained = distiller.student.get_weights()[0]
    assert not np.allclose(
        trained, _model(head, 1 if task != "multiclass" else K, "fresh", seed=2).get_weights()[0]
    )  # the step trained


EVALUATE_CASES = [
    ("binary", "activation", "str_binary_crossentropy", "flat"),
    ("binary", "dense", "obj_BinaryCrossentropy", "int"),
    ("binary", "logits", "obj_BinaryCrossentropy_logits", "column"),
    ("multiclass", "activation", "str_categorical_crossentropy", "onehot"),
    ("multiclass", "activation", "str_sparse_categorical_crossentropy", "ids"),
    ("multiclass", "logits", "obj_SparseCategoricalCrossentropy_logits", "ids_column"),
    ("regression", "logits", "str_mse", "flat"),
]


@pytest.mark.parametrize(
    ("task", "head", "loss", "labels"),
    EVALUATE_CASES,
    ids=["-".join(case) for case in EVALUATE_CASES],
)
def test_evaluate_and_metrics_equal_plain_keras(task, head, loss, labels):
    x, y = _data(task, labels)
    distiller, student = _distiller(task, head, LOSSES[loss](), _metrics(task))
    got = distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)  # 4 batches
    expected = _plain_keras(student, task, loss, x, y)
    assert got["student_loss"] == pytest.approx(expected["loss"], rel=1e-5, abs=1e-6)
    metric = _metrics(task)[0]
    assert got[metric] == pytest.approx(expected[metric], rel=1e-5, abs=1e-6)
    assert np.isfinite(got["distillation_loss"]) and got["distillation_loss"] > 1e-4


def test_sample_weights_with_flat_labels_match_plain_keras():
    x, y = _data("binary", "flat")
    weights = np.linspace(0.5, 2.0, N).astype("float32")
    distiller, student = _distiller("binary", "activation", "binary_crossentropy", ["accuracy"])
    distiller.fit(x, y, sample_weight=weights, batch_size=N, epochs=1, verbose=0)
    got = distiller.evaluate(x, y, sample_weight=weights, batch_size=N, verbose=0, return_dict=True)
    student.compile("sgd", loss="binary_crossentropy", weighted_metrics=["accuracy"])
    expected = student.evaluate(
        x, y, sample_weight=weights, batch_size=N, verbose=0, return_dict=True
    )
    assert got["student_loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_auc_metric_and_tf_data_with_flat_labels():
    x, y = _data("binary", "flat")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    distiller, student = _distiller(
        "binary", "dense", "binary_crossentropy", [keras.metrics.AUC(name="auc")]
    )
    distiller.fit(dataset, epochs=1, verbose=0)
    got = distiller.evaluate(dataset, verbose=0, return_dict=True)
    student.compile("sgd", loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    expected = student.evaluate(dataset, verbose=0, return_dict=True)
    assert got["student_loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["auc"] == pytest.approx(expected["auc"], rel=1e-5)
    assert 0.5 < got["auc"] <= 1.0


def test_mirrored_strategy_with_flat_labels_and_string_loss(mirrored):
    x, y = _data("binary", "flat")
    with mirrored.scope():
        distiller, student = _distiller("binary", "activation", "binary_crossentropy", ["accuracy"])
    assert mirrored.num_replicas_in_sync == 2
    history = distiller.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["student_loss"][0])
    got = distiller.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)
    with mirrored.scope():
        student.compile("sgd", loss="binary_crossentropy", metrics=["accuracy"])
    expected = student.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)
    assert got["student_loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(expected["accuracy"])
    assert got["distillation_loss"] > 1e-4


# --------------------------------------------------------------------------- Keras KD losses


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _logits(model: keras.Model, x) -> np.ndarray:
    if "logits" in [layer.name for layer in model.layers]:
        return keras.Model(model.input, model.get_layer("logits").output)(x).numpy()
    return model(x).numpy()


def _bce(t, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(-1).mean()


KD_CASES = {
    # name: (task, head, distillation_loss factory, reference(teacher_logits, student_logits))
    "bce_string_sigmoid": (
        "binary",
        "activation",
        lambda: "binary_crossentropy",
        lambda t, s: _bce(_sigmoid(t), _sigmoid(s)),
    ),
    "bce_logits_object_logit_head": (
        "binary",
        "logits",
        lambda: keras.losses.BinaryCrossentropy(from_logits=True),
        lambda t, s: _bce(_sigmoid(t), _sigmoid(s)),
    ),
    "bce_function_sigmoid": (
        "binary",
        "activation",
        lambda: keras.losses.binary_crossentropy,
        lambda t, s: _bce(_sigmoid(t), _sigmoid(s)),
    ),
    "cce_string_softmax": (
        "multiclass",
        "activation",
        lambda: "categorical_crossentropy",
        lambda t, s: -(_softmax(t) * np.log(_softmax(s))).sum(-1).mean(),
    ),
    "kld_string_logit_head": (
        "multiclass",
        "logits",
        lambda: "kld",
        lambda t, s: (_softmax(t) * np.log(_softmax(t) / _softmax(s))).sum(-1).mean(),
    ),
    "mse_function_regression": (
        "regression",
        "logits",
        lambda: keras.losses.mean_squared_error,
        lambda t, s: ((t - s) ** 2).mean(),
    ),
    "huber_object_regression": (
        "regression",
        "logits",
        lambda: keras.losses.Huber(),
        lambda t, s: np.where(np.abs(t - s) <= 1, 0.5 * (t - s) ** 2, np.abs(t - s) - 0.5).mean(),
    ),
}


@pytest.mark.parametrize("case", sorted(KD_CASES))
def test_keras_losses_as_distillation_loss(case):
    task, head, factory, reference = KD_CASES[case]
    width = K if task == "multiclass" else 1
    x, y = _data(task, "onehot" if task == "multiclass" else "flat")
    teacher = _model(head, width, "teacher", seed=1)
    student = _model(head, width, "student", seed=2)
    distiller = Distiller(student, teacher, student_loss_weight=0.0, distillation_loss=factory())
    distiller.compile(keras.optimizers.SGD(0.01))
    got = distiller.evaluate(x, batch_size=N, verbose=0, return_dict=True)["distillation_loss"]
    expected = reference(_logits(teacher, x).astype("float64"), _logits(student, x))
    assert got == pytest.approx(expected, rel=1e-4)
    assert got > 1e-4
    history = distiller.fit(x, batch_size=16, epochs=2, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]


def test_keras_distillation_loss_round_trips_through_save(tmp_path):
    x, _ = _data("binary", "flat")
    teacher = _model("activation", 1, "teacher", seed=1)
    distiller = Distiller(
        _model("activation", 1, "student", seed=2),
        teacher,
        student_loss_weight=0.0,
        distillation_loss="binary_crossentropy",
    )
    distiller.compile("sgd")
    distiller.save(tmp_path / "d.keras")
    loaded = keras.models.load_model(tmp_path / "d.keras")
    expected = distiller.evaluate(x, verbose=0, return_dict=True)
    assert loaded.evaluate(x, verbose=0, return_dict=True) == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------- wrong combinations


def _sigmoid_pair():
    return _model("activation", 1, "student", 2), _model("activation", 1, "teacher", 1)


@pytest.mark.parametrize(
    "loss", ["categorical_crossentropy", "sparse_categorical_crossentropy", "kl_divergence"]
)
def test_categorical_loss_on_one_unit_student_fails_at_compile(loss):
    distiller = Distiller(*_sigmoid_pair(), student_loss_weight=0.5)
    with pytest.raises(ValueError) as err:
        distiller.compile("adam", loss=loss)
    message = str(err.value)
    assert f"loss={loss!r}" in message
    assert "(None, 1)" in message  # the output shape
    assert "labels of shape (n,) or (n, 1)" in message  # the labels it was given
    assert "loss='binary_crossentropy'" in message  # the fix


def test_probability_loss_on_logit_student_and_logit_loss_on_sigmoid_student_fail():
    logit = Distiller(
        _model("logits", 1, "s", 2),
        _model("logits", 1, "t", 1),
        student_loss_weight=0.5,
        distillation_loss="binary",
    )
    with pytest.raises(
        ValueError,
        match=r"loss='binary_crossentropy'.*expects probabilities.*"
        r"outputs logits.*from_logits=True",
    ):
        logit.compile("adam", loss="binary_crossentropy")
    sigmoid = Distiller(*_sigmoid_pair(), student_loss_weight=0.5)
    with pytest.raises(
        ValueError,
        match=r"from_logits=True.*expects logits.*sigmoid "
        r"probabilities.*from_logits=False",
    ):
        sigmoid.compile("adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))


# The batch axis is static (64) when the whole data set is one batch, else None.
@pytest.mark.parametrize(
    ("task", "loss", "labels", "match"),
    [
        (
            "multiclass",
            "categorical_crossentropy",
            "ids",
            r"loss='categorical_crossentropy'.*output of shape \(\w+, 3\).*labels of shape "
            r"\(\w+,\).*class ids.*sparse_categorical_crossentropy",
        ),
        (
            "multiclass",
            "sparse_categorical_crossentropy",
            "onehot",
            r"loss='sparse_categorical_crossentropy'.*\(\w+, 3\).*labels of shape \(\w+, 3\).*"
            r"one-hot.*categorical_crossentropy",
        ),
        (
            "binary",
            "binary_crossentropy",
            "onehot",
            r"loss='binary_crossentropy'.*\(\w+, 1\).*labels of shape \(\w+, 3\).*3 output units",
        ),
        (
            "multiclass",
            "binary_crossentropy",
            "ids",
            r"loss='binary_crossentropy'.*\(\w+, 3\).*labels of shape \(\w+,\).*to_categorical",
        ),
    ],
    ids=[
        "categorical-with-ids",
        "sparse-with-onehot",
        "bce-1unit-with-onehot",
        "bce-3units-with-ids",
    ],
)
def test_label_shape_that_does_not_fit_the_loss_fails_at_the_first_batch(task, loss, labels, match):
    x, _ = _data(task, "flat")
    _, y = _data("multiclass", labels)
    width = K if task == "multiclass" else 1
    distiller = Distiller(
        _model("activation", width, "s", 2),
        _model("activation", width, "t", 1),
        student_loss_weight=0.5,
    )
    distiller.compile("adam", loss=loss)
    with pytest.raises(ValueError, match=match):
        distiller.fit(x, y, batch_size=N, epochs=1, verbose=0)


def test_keras_distillation_losses_that_cannot_take_soft_targets_fail_clearly():
    with pytest.raises(
        ValueError,
        match=r"sparse_categorical_crossentropy.*class ids.*"
        r"categorical_crossentropy",
    ):
        Distiller(
            _model("activation", K, "s", 2),
            _model("activation", K, "t", 1),
            distillation_loss="sparse_categorical_crossentropy",
        )
    with pytest.raises(ValueError, match=r"categorical_crossentropy.*\(None, 1\).*binary"):
        Distiller(*_sigmoid_pair(), distillation_loss="categorical_crossentropy")
    with pytest.raises(ValueError, match=r"Unknown distillation loss 'no_such_loss'"):
        Distiller(*_sigmoid_pair(), distillation_loss="no_such_loss")


def test_compile_rejects_what_model_compile_rejects():
    distiller = Distiller(*_sigmoid_pair(), student_loss_weight=0.5)
    with pytest.raises(ValueError, match=r"loss='no_such_loss'.*Unknown loss"):
        distiller.compile("adam", loss="no_such_loss")
    with pytest.raises(TypeError, match=r"`loss`.*42"):
        distiller.compile("adam", loss=42)
    with pytest.raises(ValueError, match=r"single-output.*2 losses"):
        distiller.compile("adam", loss=["mse", "mse"])
    distiller.compile("adam", loss=["binary_crossentropy"])  # one loss for the one output
    x, y = _data("binary", "flat")
    assert np.isfinite(distiller.evaluate(x, y, verbose=0, return_dict=True)["student_loss"])


# --------------------------------------------------------------------------- Keras hooks


def test_label_matching_mirrors_keras_compile_utils():
    """Fails when tf_keras changes how ``Model.compile`` matches labels to predictions.

    ``match_labels`` mirrors the private ``tf_keras.src.engine.compile_utils
    .match_dtype_and_rank``, and function losses are wrapped in
    ``keras.__internal__.losses.LossFunctionWrapper`` as ``LossesContainer`` does.
    """
    from tf_keras.src.engine import compile_utils  # private: pinned here on purpose

    cases = [
        (np.zeros(4, "float32"), np.zeros((4, 1), "float32"), np.ones(4, "float32")),
        (np.zeros((4, 1), "int32"), np.zeros((4, 1), "float32"), None),
        (np.zeros(4, "int64"), np.zeros((4, 3), "float32"), np.ones(4, "float64")),
        (np.zeros((4, 3), "float64"), np.zeros((4, 3), "float32"), None),
        (np.zeros((4, 2), "float32"), np.zeros((4, 2, 3), "float32"), np.ones(4, "float32")),
    ]
    for y, p, sw in cases:
        args = [tf.constant(y), tf.constant(p), None if sw is None else tf.constant(sw)]
        ours = match_labels(*args)
        theirs = compile_utils.match_dtype_and_rank(*args)
        for a, b in zip(ours, theirs, strict=True):
            if a is None or b is None:
                assert a is b
            else:
                assert (a.shape, a.dtype) == (b.shape, b.dtype)
    container = compile_utils.LossesContainer("binary_crossentropy")
    wrapped = container._get_loss_object("binary_crossentropy")
    assert type(wrapped) is keras.__internal__.losses.LossFunctionWrapper
    ours = resolve_loss("binary_crossentropy", "loss").loss
    assert type(ours) is keras.__internal__.losses.LossFunctionWrapper
    assert ours.fn is wrapped.fn and ours.reduction == "none"


def test_resolve_loss_families_and_display_names():
    assert resolve_loss("bce", "loss").family == "binary"
    assert (
        resolve_loss(keras.losses.CategoricalCrossentropy(from_logits=True), "loss").from_logits
        is True
    )
    assert resolve_loss("kld", "loss").family == "categorical"
    assert resolve_loss("SparseCategoricalCrossentropy", "loss").family == "sparse"
    assert resolve_loss(keras.losses.mean_squared_error, "loss").family == "elementwise"
    assert resolve_loss(_bce_logits_fn, "loss").family is None  # unknown: no shape checks
    assert resolve_loss("bce", "loss").display == "loss='bce'"


def test_our_kd_losses_still_take_logits():
    """Our KD classes and 'mse' keep working on logits, unchanged by the Keras loss path."""
    x, _ = _data("binary", "flat")
    teacher, student = _model("activation", 1, "t", 1), _model("activation", 1, "s", 2)
    distiller = Distiller(
        student, teacher, student_loss_weight=0.0, distillation_loss=BinaryDistillationLoss(2.0)
    )
    distiller.compile("sgd")
    got = distiller.evaluate(x, batch_size=N, verbose=0, return_dict=True)["distillation_loss"]
    expected = BinaryDistillationLoss(2.0)(_logits(teacher, x), _logits(student, x))
    assert got == pytest.approx(float(expected), rel=1e-5)
    assert isinstance(
        Distiller(
            _model("logits", 1, "s2", 2), _model("logits", 1, "t2", 1), distillation_loss="mse"
        ).distillation_loss,
        MSEDistillationLoss,
    )
    assert isinstance(
        Distiller(_model("logits", K, "s3", 2), _model("logits", K, "t3", 1)).distillation_loss,
        SoftmaxDistillationLoss,
    )


# --------------------------------------------------------------------------- docstrings


@pytest.mark.parametrize("target", ["distiller", "keras_losses_module"])
def test_docstring_examples_run(target):
    """The Distiller's example (``loss="binary_crossentropy"``, 1-D labels) runs as written."""
    import doctest

    from tfcompress.distillation import keras_losses as distillation_keras_losses

    obj = Distiller if target == "distiller" else distillation_keras_losses
    tests = doctest.DocTestFinder().find(obj, globs={"tf": tf, **vars(distillation_keras_losses)})
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for test in tests:
        if target == "distiller":
            test.globs["Distiller"] = Distiller
        runner.run(test)
        examples += len(test.examples)
    result = runner.summarize(verbose=False)
    assert examples >= 5
    assert result.failed == 0, result
