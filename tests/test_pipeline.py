"""tfcompress.run: a small recipe end to end, stage caching, resume after an interruption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import tfcompress
from tfcompress.keras_compat import keras
from tfcompress.pipeline import load_data, run
from tfcompress.recipe import (
    BenchmarkSpec,
    DataSpec,
    DistillStage,
    ExportSpec,
    ModelSpec,
    PruneStage,
    QuantizeStage,
    Recipe,
    ShrinkStage,
)
from tfcompress.run_report import RunReport, load_report
from tfcompress.tensorboard import read_hparams, read_scalars


def _recipe(name: str = "tiny", sparsity: float = 0.5, prune_epochs: int = 1) -> Recipe:
    return Recipe(
        name=name,
        data=DataSpec(task="ctr", samples=1_500, batch_size=128),
        model=ModelSpec(name="dcn", size="student", epochs=1, patience=0),
        stages=(
            DistillStage(student=ModelSpec(name="dcn", size="tiny"), epochs=1),
            PruneStage(sparsity=sparsity, epochs=prune_epochs),
            QuantizeStage(epochs=1, distill=True),  # distillation-aware QAT
        ),
        export=ExportSpec(tflite=("int8",), saved_model=True, jit_compile=True),
        benchmark=BenchmarkSpec(batch_sizes=(1, 32), repeats=2, max_examples=256),
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    report = run(_recipe(), out_dir=out, verbose=0)
    return out, report


@pytest.mark.slow
def test_small_run_writes_models_exports_report_plot_and_tensorboard(finished):
    out, report = finished
    run_dir = out / "tiny"
    assert [s.name for s in report.stages] == ["teacher", "distill", "prune", "quantize"]
    assert not any(s.cached for s in report.stages)
    teacher, distill, prune, quantize = report.stages
    assert distill.params < teacher.params / 3  # the tiny student
    assert prune.sparsity == pytest.approx(0.5, abs=0.02)
    assert quantize.sparsity >= 0.48  # QAT kept the pruned zeros
    for s in report.stages:
        assert (run_dir / s.path).is_file()
        assert 0.0 < s.quality["auc"] < 1.0
    assert set(report.exports) == {"teacher_float", "distill_float", "prune_float",
                                   "quantize_int8", "quantize_xla"}
    for path in report.exports.values():
        assert (run_dir / path).exists()
    assert tfcompress.verify_manifest(run_dir / "exports") is not None
    bench = report.benchmark
    assert bench.baseline == "teacher_float" and set(bench.names) == set(report.exports)
    ratios = bench.ratios()
    assert ratios["quantize_int8"]["size_x"] > 3  # vs the teacher's float TFLite
    # the report files
    assert (run_dir / "report.md").read_text().startswith("# Run `tiny`")
    assert (run_dir / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    again = load_report(run_dir)
    assert again.to_dict() == report.to_dict()
    # TensorBoard: per-stage curves with the sparsity, quantizer ranges, distillation parts
    scalars = read_scalars(run_dir / "logs")
    prune_tags = scalars["prune/train"]
    assert prune_tags["epoch_sparsity"][-1][1] == pytest.approx(0.5, abs=0.02)
    assert any(t.startswith("epoch_sparsity/") for t in prune_tags)  # per layer
    assert any(t.startswith("epoch_quant/") for t in scalars["quantize/train"])
    assert "epoch_distillation_loss" in scalars["distill/train"]
    assert "epoch_distillation_loss" in scalars["quantize/train"]  # QAT with the teacher
    hparams = read_hparams(run_dir / "logs" / "hparams")
    assert {h["variant"] for h in hparams.values()} == set(report.exports)


class _InterruptPruning(keras.callbacks.Callback):
    """Stops the run at the start of the pruning stage's second epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1 and tfcompress.is_pruned(self.model):
            raise KeyboardInterrupt("interrupted in the prune stage")


@pytest.mark.slow
def test_rerun_reuses_stages_a_change_reruns_from_there_and_resumes_when_interrupted(finished):
    out, first = finished
    events = sorted((out / "tiny" / "logs").rglob("events.*"))
    same = run(_recipe(), out_dir=out, verbose=0)
    assert all(s.cached for s in same.stages)
    assert same.benchmark.to_dict() == first.benchmark.to_dict()  # measurements reused too
    assert sorted((out / "tiny" / "logs").rglob("events.*")) == events  # nothing logged twice

    # a changed prune stage, interrupted in its second epoch
    changed = _recipe(sparsity=0.6, prune_epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run(changed, out_dir=out, verbose=0, callbacks=[_InterruptPruning()])
    stage_dir = out / "tiny" / "02_prune"
    assert json.loads((stage_dir / "stage.json").read_text())["status"] == "running"
    assert (stage_dir / "backup").is_dir()

    report = run(changed, out_dir=out, verbose=0)
    assert [s.cached for s in report.stages] == [True, True, False, False]
    prune = report.stage("prune")
    assert prune.resumed_from_epoch == 1  # BackupAndRestore: the first epoch was not redone
    assert prune.sparsity == pytest.approx(0.6, abs=0.02)
    assert report.stage("quantize").sparsity >= 0.58
    assert report.stage("teacher").quality == first.stage("teacher").quality
    assert not (stage_dir / "backup").exists()
    assert "resumed at epoch 1" in report.to_markdown()


@pytest.mark.slow
def test_saved_model_file_shrunk_and_pruned_under_mirrored_strategy(tmp_path):
    from tfcompress import data, models

    task = data.load_task("ctr", n_samples=800, seed=0, batch_size=128)
    user_model = models.compile_for_task(models.dcn(task.schema, size="tiny"), task.schema)
    user_model.save(tmp_path / "mine.keras")
    recipe = Recipe(
        name="mirrored",
        data=DataSpec(task="ctr", samples=800, batch_size=128),
        model=ModelSpec(path=str(tmp_path / "mine.keras")),  # used as is: epochs 0
        stages=(ShrinkStage(ratio=0.5, epochs=1), PruneStage(sparsity=0.5, epochs=1)),
        export=ExportSpec(tflite=("float",), saved_model=False),
        benchmark=BenchmarkSpec(enabled=False),
        strategy="mirrored",
    )
    report = run(recipe, out_dir=tmp_path, verbose=0)
    model, shrunk, pruned = report.stages
    assert (model.name, model.seconds >= 0) == ("model", True)
    assert shrunk.params < 0.8 * model.params
    assert pruned.sparsity == pytest.approx(0.5, abs=0.02)
    assert report.benchmark is None and report.plot is None
    assert set(report.exports) == {"model_float", "shrink_float", "prune_float"}


def test_a_changed_model_file_invalidates_its_stage(tmp_path):
    from tfcompress._pipeline_io import cached_record, finish_stage, sha256_file

    stage = tmp_path / "00_model"
    stage.mkdir()
    (stage / "model.keras").write_bytes(b"weights")
    finish_stage(stage, {"key": "k", "files": {"model.keras": sha256_file(stage / "model.keras")}})
    assert cached_record(stage, "k") is not None
    assert cached_record(stage, "other") is None
    (stage / "model.keras").write_bytes(b"tampered")
    assert cached_record(stage, "k") is None


def test_begin_stage_keeps_an_interrupted_run_of_the_same_key_only(tmp_path):
    from tfcompress._pipeline_io import begin_stage

    stage = tmp_path / "01_distill"
    assert begin_stage(stage, "k") is False
    (stage / "alone.keras").write_bytes(b"finished before the interruption")
    assert begin_stage(stage, "k") is True  # resume: keep what the interrupted run finished
    assert (stage / "alone.keras").is_file()
    assert begin_stage(stage, "other") is False  # another recipe: stale, removed
    assert not (stage / "alone.keras").exists()
    assert json.loads((stage / "stage.json").read_text()) == {"status": "running", "key": "other"}


def test_load_data_reads_a_csv_file(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["user,price,click"] + [f"u{rng.integers(5)},{rng.random():.3f},{i % 2}"
                                     for i in range(200)]
    (tmp_path / "clicks.csv").write_text("\n".join(lines))
    task = load_data(DataSpec(task=None, path=str(tmp_path / "clicks.csv"), label="click"))
    assert task.schema.task == "binary"
    assert sum(int(y.shape[0]) for _, y in task.train) > 100


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="`recipe` must be a tfcompress.recipe.Recipe.*int"):
        run(3, out_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        run(tmp_path / "nope.toml", out_dir=tmp_path)
    recipe = _recipe()
    with pytest.raises(ValueError, match="`verbose` must be 0, 1 or 2, received 5"):
        run(recipe, out_dir=tmp_path, verbose=5)
    with pytest.raises(TypeError, match="`callbacks` must be a tf_keras Callback"):
        run(recipe, out_dir=tmp_path, callbacks=["csv"])
    with pytest.raises(TypeError, match="`resume` must be a bool"):
        run(recipe, out_dir=tmp_path, resume="yes")
    worker = dataclasses.replace(recipe, strategy="multi_worker")
    with pytest.raises(ValueError, match="'multi_worker' needs one process per worker"):
        run(worker, out_dir=tmp_path)
    missing = dataclasses.replace(recipe, model=ModelSpec(path=str(tmp_path / "gone.keras")))
    with pytest.raises(FileNotFoundError, match="gone.keras"):
        run(missing, out_dir=tmp_path, verbose=0)
    with pytest.raises(FileNotFoundError, match="not the directory of a finished run"):
        load_report(tmp_path)
    with pytest.raises(TypeError, match="DataSpec"):
        load_data("ctr")
    assert isinstance(RunReport("x", str(tmp_path)).to_markdown(), str)
