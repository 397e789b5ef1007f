"""Tests of tfcompress.sensitivity: one layer perturbed at a time, ranked by harm."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress import data, models
from tfcompress._keras import keras
from tfcompress.evaluation.layer_sensitivity import SensitivityReport, sensitivity
from tfcompress.export.metrics import quality
from tfcompress.export.runtime import collect_examples, load_variant, model_input_specs


@pytest.fixture(scope="module")
def trained():
    task = data.load_task("ctr", n_samples=1500, seed=0, batch_size=128)
    keras.utils.set_random_seed(0)
    model = models.compile_for_task(
        models.dcn(task.schema, size="tiny"), task.schema, learning_rate=1e-2
    )
    model.fit(task.train, epochs=3, verbose=0)
    return task, model


def _weighted_layers(model):
    return {
        lyr.name
        for lyr in model.layers
        if any(w.dtype.is_floating and len(w.shape) >= 2 for w in lyr.trainable_weights)
    }


def test_quantize_sensitivity_one_row_per_layer_with_sane_values(trained):
    task, model = trained
    before = [w.numpy().copy() for w in model.weights]
    report = sensitivity(model, task.validation, metric="auc", progress=False)
    assert isinstance(report, SensitivityReport)
    assert {r.layer for r in report.rows} == _weighted_layers(model)
    assert len(report) == 12  # 9 tables, cross_0, mlp_0, logits
    structure, specs = model_input_specs(model)
    feats, labels = collect_examples(task.validation, structure, specs, 2048)
    auc = quality(load_variant(model).predict(feats)["output"], labels, ["auc"])["auc"]
    assert report.baseline == pytest.approx(auc, abs=1e-9)
    assert all(r.baseline == report.baseline for r in report.rows)
    drops = [r.drop for r in report.rows]
    assert drops == sorted(drops, reverse=True)
    assert all(np.isfinite(drops)) and max(abs(d) for d in drops) < 0.02  # int8 is gentle
    assert all(r.drop == pytest.approx(r.baseline - r.value) for r in report.rows)
    assert report["emb_user_id"].weights == ("emb_user_id/embeddings",)
    for w, b in zip(model.weights, before, strict=True):  # weights restored
        np.testing.assert_array_equal(w.numpy(), b)
    md = report.to_markdown()
    assert "| layer | class | auc | drop | weights |" in md and "cross_0" in md


def test_prune_sensitivity_ranks_the_output_layer_high(trained):
    task, model = trained
    report = sensitivity(
        model, task.validation, metric="logloss", technique="prune", sparsity=0.9, progress=False
    )
    assert report.metric == "logloss" and not report.higher_is_better
    assert all(r.drop == pytest.approx(r.value - r.baseline) for r in report.rows)
    assert report.rows[0].drop > 0.001  # zeroing 90% of some layer hurts
    assert report.settings["sparsity"] == 0.9
    top = report.most_sensitive(2)
    assert len(top) <= 2 and top == [r.layer for r in report.rows if r.drop > 1e-3][:2]
    assert report.most_sensitive(min_drop=1e9) == []


def test_callable_metric_layer_filter_and_progress_bar(trained, capsys):
    task, model = trained

    def mean_score(labels, outputs):
        return float(np.mean(outputs))

    report = sensitivity(
        model, task.validation, metric=mean_score, layers=["logits", "cross_0"], max_examples=100
    )
    assert report.metric == "mean_score" and report.settings["examples"] == 100
    assert {r.layer for r in report.rows} == {"logits", "cross_0"}
    assert "2/2" in capsys.readouterr().out  # Keras progress bar, one step per layer


def test_bad_inputs(trained):
    task, model = trained
    with pytest.raises(ValueError, match=r"`metric` must be one of \['accuracy', 'auc'"):
        sensitivity(model, task.validation, metric="f1")
    with pytest.raises(ValueError, match=r"`technique` must be one of \['quantize', 'prune'\]"):
        sensitivity(model, task.validation, technique="distill")
    with pytest.raises(ValueError, match=r"`sparsity` must be a float in \(0, 1\)"):
        sensitivity(model, task.validation, technique="prune", sparsity=1.0)
    with pytest.raises(ValueError, match="has no labels"):
        sensitivity(model, task.validation.map(lambda f, y: f))
    with pytest.raises(ValueError, match="`layers` entry 'nope' matches no layer"):
        sensitivity(model, task.validation, layers="nope")
    with pytest.raises(TypeError, match="is a Keras 3 model"):
        import keras as keras3

        sensitivity(keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)]), None)
    with pytest.raises(ValueError, match="`max_examples` must be None or an int >= 1"):
        sensitivity(model, task.validation, max_examples=0)
    with pytest.raises(ValueError, match="contradicts metric 'auc'"):
        sensitivity(model, task.validation, higher_is_better=False)
