"""Tests of tfcompress.distillation.losses: each loss against a hand-computed numpy value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfcompress._keras import keras, tf
from tfcompress.distillation.losses import (
    BinaryDistillationLoss,
    FeatureDistillation,
    FunctionLoss,
    ListwiseDistillationLoss,
    MSEDistillationLoss,
    SoftmaxDistillationLoss,
    feature_mse,
    get_distillation_loss,
    with_reduction_none,
)

TEACHER = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4], [-3.0, 1.0, 2.5, 0.0]], "float32")
STUDENT = np.array([[1.0, 1.0, 0.0, -0.5], [0.0, 0.0, 1.0, 0.0], [-1.0, 0.5, 1.0, 1.0]], "float32")


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_softmax_kd_matches_numpy_kl_times_t_squared(temperature):
    p_t = _softmax(TEACHER / temperature)
    p_s = _softmax(STUDENT / temperature)
    expected = (p_t * (np.log(p_t) - np.log(p_s))).sum(-1) * temperature**2
    per_example = SoftmaxDistillationLoss(temperature, reduction="none")(TEACHER, STUDENT).numpy()
    np.testing.assert_allclose(per_example, expected, rtol=1e-4)
    mean = float(SoftmaxDistillationLoss(temperature)(TEACHER, STUDENT))
    assert mean == pytest.approx(expected.mean(), rel=1e-4)


def test_softmax_kd_is_zero_for_equal_logits_and_invariant_to_shift():
    loss = SoftmaxDistillationLoss(2.0, reduction="none")
    np.testing.assert_allclose(loss(TEACHER, TEACHER).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(loss(TEACHER, TEACHER + 3.0).numpy(), 0.0, atol=1e-5)


def test_softmax_kd_from_probabilities_equals_from_logits():
    logits = SoftmaxDistillationLoss(3.0, reduction="none")(TEACHER, STUDENT).numpy()
    probs = SoftmaxDistillationLoss(3.0, from_logits=False, reduction="none")(
        _softmax(TEACHER), _softmax(STUDENT)
    ).numpy()
    np.testing.assert_allclose(probs, logits, rtol=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_binary_kd_matches_numpy_bce_times_t_squared(temperature):
    t = np.array([[2.0], [-1.0], [0.3], [-4.0]], "float32")
    s = np.array([[0.5], [0.0], [1.5], [-2.0]], "float32")
    q, p = _sigmoid(t / temperature), _sigmoid(s / temperature)
    expected = -(q * np.log(p) + (1 - q) * np.log(1 - p))[:, 0] * temperature**2
    per_example = BinaryDistillationLoss(temperature, reduction="none")(t, s).numpy()
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)
    loss = BinaryDistillationLoss(temperature, from_logits=False, reduction="none")
    probs = loss(_sigmoid(t), _sigmoid(s))
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-4)


def test_binary_kd_gradient_vanishes_where_student_equals_teacher():
    t = tf.constant([[1.2], [-0.7]])
    s = tf.Variable([[1.2], [-0.7]])
    with tf.GradientTape() as tape:
        value = BinaryDistillationLoss(2.0)(t, s)
    np.testing.assert_allclose(tape.gradient(value, s).numpy(), 0.0, atol=1e-7)
    q = _sigmoid(np.array([1.2, -0.7]) / 2.0)
    entropy = -(q * np.log(q) + (1 - q) * np.log(1 - q))  # the minimum: the teacher's entropy
    assert float(value) == pytest.approx(entropy.mean() * 4.0, rel=1e-5)


def test_mse_kd_matches_numpy():
    expected = ((STUDENT - TEACHER) ** 2).mean(-1)
    per_example = MSEDistillationLoss(reduction="none")(TEACHER, STUDENT).numpy()
    np.testing.assert_allclose(per_example, expected, rtol=1e-6)
    mean = float(MSEDistillationLoss()(TEACHER, STUDENT))
    assert mean == pytest.approx(expected.mean(), rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_listwise_kd_matches_numpy_cross_entropy(temperature):
    q = _softmax(TEACHER / temperature)
    log_p = np.log(_softmax(STUDENT / temperature))
    expected = -(q * log_p).sum(-1) * temperature**2
    got = ListwiseDistillationLoss(temperature, reduction="none")(TEACHER, STUDENT).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_listwise_kd_top_k_targets_only_the_teachers_best_items():
    k = 2
    expected = []
    for t_row, s_row in zip(TEACHER, STUDENT, strict=True):
        top = np.argsort(-t_row)[:k]
        q = np.zeros_like(t_row)
        q[top] = _softmax(t_row[top][None])[0]
        expected.append(-(q * np.log(_softmax(s_row[None])[0])).sum())
    got = ListwiseDistillationLoss(top_k=k, reduction="none")(TEACHER, STUDENT).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_listwise_kd_ignores_masked_items_without_nan():
    teacher = np.array([[-np.inf, 1.0, 0.0], [-1e9, 0.0, 0.0]], "float32")
    student = np.array([[5.0, 1.0, 0.0], [0.0, 2.0, 0.0]], "float32")
    got = ListwiseDistillationLoss(reduction="none")(teacher, student).numpy()
    assert np.all(np.isfinite(got))
    q = np.array([[0.0, *_softmax(np.array([[1.0, 0.0]]))[0]], [0.0, 0.5, 0.5]])
    expected = -(q * np.log(_softmax(student))).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_feature_mse_averages_over_every_non_batch_axis():
    s = np.arange(12, dtype="float32").reshape(2, 3, 2)
    t = np.zeros_like(s)
    np.testing.assert_allclose(feature_mse(s, t).numpy(), (s**2).reshape(2, -1).mean(-1))


def test_function_loss_and_reduction_none_copy():
    loss = FunctionLoss(lambda t, p: tf.reduce_sum(tf.abs(t - p), -1))
    np.testing.assert_allclose(loss(TEACHER, STUDENT).numpy(), np.abs(TEACHER - STUDENT).sum(-1))
    copy = with_reduction_none(SoftmaxDistillationLoss(3.0))
    assert copy.reduction == "none" and copy.temperature == 3.0
    builtin = with_reduction_none(keras.losses.BinaryCrossentropy(from_logits=True))
    assert builtin(np.ones((3, 1)), np.zeros((3, 1))).numpy() == pytest.approx([math.log(2)] * 3)


# --------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "loss",
    [
        SoftmaxDistillationLoss(3.0),
        BinaryDistillationLoss(2.0, from_logits=False),
        MSEDistillationLoss(),
        ListwiseDistillationLoss(1.5, top_k=3),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_losses_round_trip_through_config_and_keras_serialization(loss):
    clone = type(loss).from_config(loss.get_config())
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is type(loss)
    assert clone.get_config() == loss.get_config() == again.get_config()
    assert keras.saving.get_registered_name(type(loss)) == f"tfcompress>{type(loss).__name__}"
    np.testing.assert_allclose(float(again(TEACHER, STUDENT)), float(loss(TEACHER, STUDENT)))


def test_feature_distillation_spec_round_trips():
    spec = FeatureDistillation("mlp_0", "mlp_1", weight=0.25, projection=True)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(spec))
    assert again == spec and hash(again) == hash(spec)
    assert again.weight == 0.25 and again.projection is True


def test_get_distillation_loss_by_name_and_object():
    assert isinstance(get_distillation_loss("softmax"), SoftmaxDistillationLoss)
    assert get_distillation_loss("softmax").temperature == 2.0
    assert get_distillation_loss("Binary", temperature=3.0).temperature == 3.0
    assert isinstance(get_distillation_loss("mse"), MSEDistillationLoss)
    assert get_distillation_loss("listwise").temperature == 1.0
    loss = BinaryDistillationLoss(2.0)
    assert get_distillation_loss(loss, temperature=2.0) is loss
    serialized = keras.saving.serialize_keras_object(ListwiseDistillationLoss(top_k=5))
    assert get_distillation_loss(serialized).top_k == 5


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "cls", [SoftmaxDistillationLoss, BinaryDistillationLoss, ListwiseDistillationLoss]
)
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_positive(cls, bad):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: `temperature` must be a finite float"):
        cls(bad)


@pytest.mark.parametrize("bad", ["2", True, [1.0]])
def test_temperature_must_be_a_number(bad):
    with pytest.raises(
        TypeError, match=r"SoftmaxDistillationLoss: `temperature` must be a float > 0"
    ):
        SoftmaxDistillationLoss(bad)


def test_from_logits_must_be_bool():
    with pytest.raises(
        TypeError, match=r"BinaryDistillationLoss: `from_logits` must be True or False"
    ):
        BinaryDistillationLoss(from_logits="yes")


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_listwise_top_k_validated(bad):
    with pytest.raises(
        ValueError, match=r"ListwiseDistillationLoss: `top_k` must be None .* or an int >= 1"
    ):
        ListwiseDistillationLoss(top_k=bad)


def test_listwise_top_k_larger_than_list_fails_clearly():
    with pytest.raises(ValueError, match=r"`top_k`=9 is larger than the list length 4"):
        ListwiseDistillationLoss(top_k=9)(TEACHER, STUDENT)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(
        ValueError, match=r"SoftmaxDistillationLoss: teacher values .*\(3, 4\).*\(3, 2\)"
    ):
        SoftmaxDistillationLoss()(TEACHER, STUDENT[:, :2])


def test_get_distillation_loss_bad_inputs():
    with pytest.raises(ValueError, match=r"Unknown distillation loss 'kl'; valid names are"):
        get_distillation_loss("kl")
    with pytest.raises(ValueError, match=r"'mse' distillation loss has no temperature"):
        get_distillation_loss("mse", temperature=2.0)
    with pytest.raises(
        ValueError, match=r"`temperature`=3.0 conflicts with .* BinaryDistillationLoss"
    ):
        get_distillation_loss(BinaryDistillationLoss(2.0), temperature=3.0)
    with pytest.raises(TypeError, match=r"`distillation_loss` must be 'auto', a name"):
        get_distillation_loss(42)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"student_layer": "", "teacher_layer": "t"}, TypeError, r"`student_layer` must be"),
        ({"student_layer": "s", "teacher_layer": 3}, TypeError, r"`teacher_layer` must be"),
        ({"student_layer": "s", "teacher_layer": "t", "weight": -1}, ValueError, r"`weight`"),
        (
            {"student_layer": "s", "teacher_layer": "t", "projection": "yes"},
            ValueError,
            r"`projection` must be 'auto', True or False",
        ),
        (
            {"student_layer": "s", "teacher_layer": "t", "projection": 1},
            ValueError,
            r"`projection` must be",
        ),
    ],
)
def test_feature_distillation_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        FeatureDistillation(**kwargs)
