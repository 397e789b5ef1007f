"""The Distiller takes every loss and label shape that ``Model.compile`` takes (issue 13, item 1).

Each case trains a tiny student inside a Distiller for one step, then checks that the student
loss (and the compiled metric) the Distiller reports on a batch equals what plain Keras reports
for the same student, loss spec and labels (``student.compile(loss=...); student.evaluate``),
and that the distillation loss is finite and > 0 (the teacher differs from the student).
The one-step matrix over every loss and label shape is test_distillation_label_matrix.py; the
shared data, models and cases are distillation_label_cases.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from distillation_label_cases import (
    LOSSES,
    K,
    N,
    _bce_logits_fn,
    _data,
    _distiller,
    _metrics,
    _model,
    _plain_keras,
)

from tfcompress._keras import keras, tf
from tfcompress.distillation import Distiller
from tfcompress.distillation.keras_losses import match_labels, resolve_loss
from tfcompress.distillation.losses import (
    BinaryDistillationLoss,
    MSEDistillationLoss,
    SoftmaxDistillationLoss,
)

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
