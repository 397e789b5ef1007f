"""tfcompress.run: a small recipe end to end, stage caching, resume after an interruption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import tfcompress
from tfcompress._keras import keras
from tfcompress.callbacks.tensorboard import read_hparams, read_scalars
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
from tfcompress.recipe.report import RunReport, load_report
from tfcompress.recipe.runner import load_data, run


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
    assert set(report.exports) == {
        "teacher_float",
        "distill_float",
        "prune_float",
        "quantize_int8",
        "quantize_xla",
    }
    for path in report.exports.values():
        assert (run_dir / path).exists()
    assert tfcompress.export.verify_manifest(run_dir / "exports") is not None
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
        if epoch == 1 and tfcompress.pruning.is_pruned(self.model):
            raise KeyboardInterrupt("interrupted in the prune stage")


@pytest.mark.slow
def test_rerun_reuses_stages_a_change_reruns_from_there_and_resumes_when_interrupted(finished):
    out, first = finished
    events = sorted((out / "tiny" / "logs").rglob("events.*"))
    same = run(_recipe(), out_dir=out, verbose=0)
    assert all(s.cached for s in same.stages)
    assert same.benchmark.to_dict() == first.benchmark.to_dict()  # measurements reused too
    assert sorted((out / "tiny" / "logs").rglob("events.*")) == events  # nothing logged twice
    assert first.benchmark.settings["timing"] == "invoke"
    # the timing is part of the benchmark's key: Python-call latencies are measured anew
    call = dataclasses.replace(
        _recipe(), benchmark=dataclasses.replace(_recipe().benchmark, timing="call")
    )
    timed = run(call, out_dir=out, verbose=0)
    assert all(s.cached for s in timed.stages)
    assert timed.benchmark.settings["timing"] == "call"
    assert "the Python call, inputs and outputs copied" in timed.benchmark.to_markdown()
    assert run(_recipe(), out_dir=out, verbose=0).benchmark.settings["timing"] == "invoke"

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
    from tfcompress.recipe._cache import cached_record, finish_stage, sha256_file

    stage = tmp_path / "00_model"
    stage.mkdir()
    (stage / "model.keras").write_bytes(b"weights")
    finish_stage(stage, {"key": "k", "files": {"model.keras": sha256_file(stage / "model.keras")}})
    assert cached_record(stage, "k") is not None
    assert cached_record(stage, "other") is None
    (stage / "model.keras").write_bytes(b"tampered")
    assert cached_record(stage, "k") is None


def test_begin_stage_keeps_an_interrupted_run_of_the_same_key_only(tmp_path):
    from tfcompress.recipe._cache import begin_stage

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
    lines = ["user,price,click"] + [
        f"u{rng.integers(5)},{rng.random():.3f},{i % 2}" for i in range(200)
    ]
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


# --- honest numbers: exact quality with its counts, drift marks, leak check, file modes -------


def _narrow_model_and_data():
    """A model whose scores all lie in 0.500-0.502: Keras' 200-bucket AUC sees one bucket."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 1)).astype("float32")
    y = (x[:, 0] + rng.normal(scale=0.8, size=600) > 0).astype("float32")[:, None]
    inp = keras.Input((1,), name="x")
    tiny = keras.initializers.Constant(1e-3)
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=tiny)(inp)
    model = keras.Model(inp, out)
    return model, tf.data.Dataset.from_tensor_slices(({"x": x}, y)).batch(64), y


def test_stage_quality_is_the_exact_auc_with_its_counts_not_keras_buckets():
    from tfcompress.export import metrics
    from tfcompress.recipe._quality import exact_quality

    model, data, y = _narrow_model_and_data()
    approx = keras.metrics.AUC()
    approx.update_state(y, model.predict(data, verbose=0))
    measured = exact_quality(model, data)
    exact = metrics.auc(y, model.predict(data, verbose=0))
    assert float(approx.result()) == pytest.approx(0.5, abs=0.02)  # one bucket: no ranking
    assert exact > 0.75
    assert measured["auc"] == pytest.approx(exact, abs=1e-4)  # float32 ties in the narrow band
    assert measured["n_examples"] == 600 and measured["n_positives"] == int(y.sum())
    assert set(measured) == {"auc", "logloss", "accuracy", "n_examples", "n_positives"}


def _report_with_drift(tmp_path) -> RunReport:
    from tfcompress.evaluation.report import BenchmarkReport, BenchmarkRow
    from tfcompress.recipe.report import StageResult

    stage = StageResult(
        "quantize",
        "quantize",
        cached=False,
        seconds=3.0,
        quality={"auc": 0.7123, "logloss": 0.45},
        params=100,
        sparsity=0.5,
        path="02_quantize/model.keras",
        n_examples=6000,
        n_positives=1187,
    )
    rows = tuple(
        BenchmarkRow(
            n,
            "tflite",
            f"{n}.tflite",
            "binary",
            {"auc": a},
            b,
            b // 2,
            100,
            {1: {"median": 1.0, "p90": 1.1}},
            {1: 1000.0},
            None,
            4096,
        )
        for n, a, b in (("teacher_float", 0.73, 4000), ("quantize_int8", 0.55, 1000))
    )
    parity = {
        "teacher_float": {
            "max_abs_diff": 2e-7,
            "metric": "auc",
            "quality_delta": 0.0,
            "examples": 6000,
            "drift_flag": None,
        },
        "quantize_int8": {
            "max_abs_diff": 0.31,
            "metric": "auc",
            "quality_delta": -0.16,
            "examples": 6000,
            "drift_flag": "ΔAUC -0.160 > tolerance 0.005",
        },
    }
    return RunReport(
        "drifty",
        str(tmp_path),
        (stage,),
        BenchmarkReport(rows),
        exports={
            "teacher_float": "exports/teacher_float.tflite",
            "quantize_int8": "exports/quantize_int8.tflite",
        },
        parity=parity,
        benchmark_positives=801,
        warnings=("⚠ the test split has only 27 positive example(s)",),
    )


def test_report_marks_drifted_exports_and_shows_counts_beside_quality(tmp_path):
    from tfcompress.recipe.report import render_report

    report = render_report(_report_with_drift(tmp_path))
    md = (tmp_path / "report.md").read_text()
    assert "| auc | logloss | n examples | n positives |" in md
    assert "| 0.7123 | 0.4500 | 6,000 | 1,187 |" in md
    assert "| quantize_int8 | 3.10e-01 | auc -0.1600 | 6,000 | ⚠ drift [1] |" in md
    assert "[1] `quantize_int8`: ΔAUC -0.160 > tolerance 0.005" in md
    assert "| teacher_float | 2.00e-07 | auc +0.0000 | 6,000 |  |" in md
    assert "on the first 4,096 test examples (4,096 examples, 801 positives)" in md
    assert "⚠ drift: quantize_int8" in md
    assert "## Warnings" in md and "only 27 positive" in md
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["drifted"] == {"quantize_int8": "ΔAUC -0.160 > tolerance 0.005"}
    assert saved["stages"][0]["n_positives"] == 1187
    assert load_report(tmp_path).to_dict() == report.to_dict()
    whole = dataclasses.replace(
        report, stages=(dataclasses.replace(report.stages[0], n_examples=4096),)
    )
    assert "on the whole test split (4,096 examples, 801 positives)" in whole.to_markdown()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_report_files_and_plot_get_the_users_umask(tmp_path, umask, mode):
    import os
    import stat

    from tfcompress.recipe.report import render_report

    old = os.umask(umask)
    try:
        render_report(_report_with_drift(tmp_path))
    finally:
        os.umask(old)
    for name in ("report.md", "report.json", "tradeoff.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_fit_check_names_the_leak_and_strict_data_makes_it_an_error():
    from types import SimpleNamespace

    from tfcompress.recipe import _quality as q

    assert q.fit_check("teacher", {"train_auc": 0.998, "val_auc": 0.74}) is None  # generalises
    assert q.fit_check("teacher", {"train_auc": 0.97, "val_auc": 0.5}) is None  # not memorised
    message = q.fit_check("teacher", {"train_auc": 0.995, "val_auc": 0.52}, ["row_id"])
    assert "train AUC 0.995 but validation AUC 0.520" in message
    assert "leaky or id-like column" in message and "['row_id']" in message
    assert '[data] drop = ["row_id"]' in message and "strict = true" in message

    from tfcompress.data.schema import Feature

    schema = SimpleNamespace(
        features=(
            Feature("row_id", "categorical", vocab_size=801),
            Feature("city", "categorical", vocab_size=12),
        )
    )
    assert q.id_like_columns(schema, {"columns": {"row id": "row_id"}}, 800) == ["row id"]
    csv_info = {"columns": {"row id": {"feature": "row_id", "kind": "categorical"}}}
    assert q.id_like_columns(schema, csv_info, 800) == ["row id"]  # load_csv's info

    import tensorflow as tf

    train = tf.data.Dataset.from_tensor_slices(({"x": np.zeros((10, 1))}, np.zeros(10))).batch(5)
    record = {"fit_check": {"train_auc": 1.0, "val_auc": 0.5}}
    r = SimpleNamespace(
        task=SimpleNamespace(train=train, schema=schema, info={}),
        recipe=SimpleNamespace(data=SimpleNamespace(strict=True)),
    )
    with pytest.raises(ValueError, match=r"train AUC 1.000 but validation AUC 0.500.*strict"):
        q.fit_warning(r, "teacher", record)
    r.recipe.data.strict = False
    assert "memorised" in q.fit_warning(r, "teacher", record)
    assert q.fit_warning(r, "teacher", {"fit_check": {}}) is None


@pytest.mark.slow
def test_an_id_like_column_is_named_after_the_first_stage(tmp_path):
    # every row has its own id: the model memorises the training rows (train AUC 1.0) and
    # learns nothing for new rows (their id is unknown), so validation AUC stays near 0.5
    rng = np.random.default_rng(0)
    lines = ["row_id,price,click"] + [
        f"r{i},{rng.random():.3f},{int(rng.random() < 0.3)}" for i in range(800)
    ]
    (tmp_path / "clicks.csv").write_text("\n".join(lines))
    recipe = Recipe(
        name="leak",
        data=DataSpec(task=None, path=str(tmp_path / "clicks.csv"), label="click", batch_size=64),
        model=ModelSpec(name="dcn", size="tiny", epochs=6, learning_rate=0.05, patience=0),
        stages=(PruneStage(sparsity=0.5, epochs=1),),
        export=ExportSpec(tflite=("float",), saved_model=False),
        benchmark=BenchmarkSpec(enabled=False),
    )
    report = run(recipe, out_dir=tmp_path, verbose=0)
    check = json.loads((tmp_path / "leak" / "00_model" / "stage.json").read_text())["fit_check"]
    assert check["train_auc"] >= 0.99 and check["val_auc"] <= 0.55
    leak = [w for w in report.warnings if "memorised" in w]
    assert len(leak) == 1 and "['row_id']" in leak[0] and '[data] drop = ["row_id"]' in leak[0]
    assert any("positives among 80 examples" in w for w in report.warnings)  # noise
    assert "## Warnings" in (tmp_path / "leak" / "report.md").read_text()
    again = run(recipe, out_dir=tmp_path, verbose=0)  # reused stages still warn
    assert all(s.cached for s in again.stages) and again.warnings == report.warnings
