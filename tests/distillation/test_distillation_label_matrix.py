"""The Distiller takes every loss and label shape that ``Model.compile`` takes (issue 13, item 1).

Each case trains a tiny student inside a Distiller for one step, then checks that the student
loss (and the compiled metric) the Distiller reports on a batch equals what plain Keras reports
for the same student, loss spec and labels (``student.compile(loss=...); student.evaluate``),
and that the distillation loss is finite and > 0 (the teacher differs from the student).
The other label tests (evaluate, sample weights, strategies, KD losses, errors) are in
test_distillation_labels.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from distillation_label_cases import (
    CASES,
    LOSSES,
    K,
    N,
    _data,
    _distiller,
    _metrics,
    _model,
    _plain_keras,
)


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
