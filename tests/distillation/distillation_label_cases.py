"""Data, models, loss specs and label-shape cases shared by the Distiller label tests.

Imported by name (pytest puts tests/distillation/ on sys.path): test_distillation_labels.py
and test_distillation_label_matrix.py (the one-step matrix, in a file of its own so that
``--dist loadfile`` runs it beside the rest instead of after it).
"""

from __future__ import annotations

import numpy as np

from tfcompress._keras import keras
from tfcompress.distillation import Distiller

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
