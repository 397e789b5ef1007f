"""Stages compose: a pruned student inside a Distiller, and distill -> prune -> QAT -> export."""

import numpy as np
import pytest
from tflite_tensors import constant_matrices

import tfcompress
from tfcompress import data, models


@pytest.fixture(scope="module")
def ctr():
    return data.load_task("ctr", n_samples=600, seed=3, batch_size=64)


def _teacher(task):
    teacher = models.compile_for_task(models.dcn(task.schema, size="tiny"), task.schema)
    teacher.fit(task.train, epochs=1, verbose=0)
    return teacher


def test_distiller_with_pruned_student_reaches_target_sparsity(ctr):
    teacher = _teacher(ctr)
    before = [w.copy() for w in teacher.get_weights()]
    student = tfcompress.prune(models.dcn(ctr.schema, size="tiny"), sparsity=0.7)
    distiller = tfcompress.Distiller(student, teacher, student_loss_weight=0.5)
    distiller.compile(optimizer="adam", loss="binary_crossentropy")
    history = distiller.fit(
        ctr.train, epochs=2, callbacks=[tfcompress.PruningCallback()], verbose=0
    )

    assert history.history["sparsity"][-1] == pytest.approx(0.7, abs=0.01)
    assert "distillation_loss" in history.history
    stripped = tfcompress.pruning.strip(distiller.student)
    report = tfcompress.pruning.sparsity_report(stripped)
    assert report.overall == pytest.approx(0.7, abs=0.01)
    # The teacher kept guiding but never learned.
    for w0, w1 in zip(before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)


def test_distiller_with_pruned_student_prunes_without_the_callback(ctr):
    teacher = _teacher(ctr)
    student = tfcompress.prune(models.dcn(ctr.schema, size="tiny"), sparsity=0.6)
    distiller = tfcompress.Distiller(student, teacher, student_loss_weight=0.5)
    distiller.compile(optimizer="adam", loss="binary_crossentropy")
    history = distiller.fit(ctr.train, epochs=2, verbose=0)

    assert "sparsity" not in history.history  # logs are what the callback adds
    report = tfcompress.pruning.sparsity_report(tfcompress.pruning.strip(distiller.student))
    assert report.overall == pytest.approx(0.6, abs=0.01)


def test_distill_then_prune_then_qat_exports_int8(ctr, tmp_path):
    teacher = _teacher(ctr)
    distiller = tfcompress.Distiller(models.dcn(ctr.schema, size="tiny"), teacher)
    distiller.compile(optimizer="adam", loss="binary_crossentropy")
    distiller.fit(ctr.train, epochs=1, verbose=0)

    pruned = models.compile_for_task(tfcompress.prune(distiller.student, 0.5), ctr.schema)
    pruned.fit(ctr.train, epochs=1, callbacks=[tfcompress.PruningCallback()], verbose=0)
    sparse = tfcompress.pruning.strip(pruned)
    assert tfcompress.pruning.sparsity_report(sparse).overall == pytest.approx(0.5, abs=0.01)

    qat = models.compile_for_task(tfcompress.quantize(sparse), ctr.schema)
    qat.fit(ctr.train, epochs=1, verbose=0)
    result = tfcompress.export_tflite(
        qat,
        tmp_path / "chain.tflite",
        quantization="int8",
        representative_data=ctr.validation,
        parity_data=ctr.test,
        parity_tolerance=0.05,
    )
    # Every constant matrix (Dense/Cross kernels, embedding tables) of the file is int8.
    matrices, _ = constant_matrices(result.path)
    assert matrices and set(matrices.values()) == {"int8"}, matrices
