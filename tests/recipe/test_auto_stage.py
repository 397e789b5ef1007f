"""The recipe stage ``kind = "auto"`` (:class:`AutoStage`): its options, and a run with it
(the search's table in the report, its export in the benchmark, the compress cache on resume)."""

from __future__ import annotations

import json

import pytest

from tfcompress.recipe import (
    AutoStage,
    BenchmarkSpec,
    DataSpec,
    ExportSpec,
    ModelSpec,
    QuantizeStage,
    Recipe,
    RecipeError,
    loads_recipe,
    stage_from_config,
)
from tfcompress.recipe.runner import run

AUTO_TOML = """
name = "auto"
[data]
task = "ctr"
samples = 1500
[model]
name = "dcn"
size = "tiny"
epochs = 1
[[stages]]
kind = "auto"
max_loss = 0.002
objective = "size"
budget = "20m"
steps = 2
epochs = 1
"""


def test_auto_stage_defaults_and_round_trip():
    stage = AutoStage()
    assert (stage.name, stage.max_loss, stage.metric, stage.rule, stage.objective) == (
        "auto",
        0.001,
        "auc",
        "ci",
        "latency",
    )
    assert (stage.runtime, stage.budget, stage.steps, stage.epochs) == ("tflite", None, 3, 2)
    config = AutoStage(max_loss=0.002, budget="20m", steps=2, learning_rate=1e-3).get_config()
    assert list(config)[:2] == ["kind", "max_loss"] and config["kind"] == "auto"
    assert list(config)[-3:] == ["name", "epochs", "learning_rate"]
    assert stage_from_config(config) == AutoStage(
        max_loss=0.002, budget="20m", steps=2, learning_rate=1e-3
    )
    recipe = loads_recipe(AUTO_TOML)
    (auto,) = recipe.stages
    assert auto == AutoStage(max_loss=0.002, objective="size", budget="20m", steps=2, epochs=1)
    assert loads_recipe(recipe.to_toml()) == recipe  # written and read back


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_loss": 0}, r"^max_loss: expected .*received 0.*max_loss = 0.002"),
        ({"max_loss": 1.5}, r"^max_loss: .*received 1.5"),
        ({"max_loss": "0.002"}, r"^max_loss: .*received a string"),
        ({"metric": "recall"}, r'^metric: .*"recall".*metric = "auc"'),
        ({"rule": "strict"}, r'^rule: .*rule = "ci"'),
        ({"objective": "speed"}, r'^objective: .*objective = "latency"'),
        ({"runtime": "onnx"}, r'^runtime: .*runtime = "tflite"'),
        ({"budget": "soon"}, r'^budget: expected a time .*"soon".*budget = "20m"'),
        ({"budget": True}, r'^budget: .*budget = "20m"'),
        ({"steps": 0}, r"^steps: expected an integer >= 1, received 0.*steps = 3"),
        ({"student_loss_weight": 2}, r"^student_loss_weight: .*received 2"),
        ({"epochs": 0}, r"^epochs: expected an integer >= 1"),
    ],
)
def test_auto_stage_options_are_checked(options, message):
    with pytest.raises(RecipeError, match=message):
        AutoStage(**options)


def test_auto_stage_errors_in_a_recipe_name_the_stage_and_line():
    with pytest.raises(RecipeError, match=r"line 12, stages\[0\]\.max_loss: expected"):
        loads_recipe(AUTO_TOML.replace("max_loss = 0.002", "max_loss = -1"))
    with pytest.raises(RecipeError, match=r"stages\[0\]: unknown key.*tolerance|tolerance"):
        loads_recipe(AUTO_TOML.replace("max_loss = 0.002", "tolerance = 0.002"))


def test_auto_stage_cannot_follow_a_quantize_stage():
    # QAT must stay last: an auto stage after it would search a quantized model
    with pytest.raises(RecipeError, match=r"stages\[0\]: a quantize stage must be the last"):
        Recipe(
            "r",
            ModelSpec(name="dcn", epochs=1),
            stages=[QuantizeStage(), AutoStage()],
        )


def _recipe(max_loss: float = 0.5) -> Recipe:
    return Recipe(
        name="auto",
        data=DataSpec(task="ctr", samples=1_500, batch_size=128),
        model=ModelSpec(name="dcn", size="tiny", epochs=1, patience=0),
        stages=(AutoStage(max_loss=max_loss, steps=1, epochs=1, objective="size"),),
        export=ExportSpec(tflite=(), saved_model=False),
        benchmark=BenchmarkSpec(batch_sizes=(1, 32), repeats=2, max_examples=256),
    )


@pytest.mark.slow
def test_a_recipe_with_an_auto_stage_runs_reports_benchmarks_and_resumes(tmp_path):
    report = run(_recipe(), out_dir=tmp_path, verbose=0)
    run_dir = tmp_path / "auto"
    model, auto = report.stages
    assert auto.kind == "auto" and auto.params == model.params  # it hands its input on
    summary = auto.auto
    # steps=1: one global ratio (0.5), then one step of the embedding-table axis (0.75); the
    # table layouts (search/tables_axis.py) are not built: their 1-wide tables have no mixed
    # layout, and QR's estimate is not smaller than the kept file
    assert summary["chosen"] is not None and summary["trained"] == 2
    (searched,) = (run_dir / "compress").glob("*/result.json")
    skipped = json.loads(searched.read_text())["skipped"]
    assert "changes in layout 'mixed'" in skipped["mixed"]
    assert "not smaller than the best kept" in skipped["qr"]
    assert summary["path"] == "01_auto/chosen.tflite" and (run_dir / summary["path"]).is_file()
    assert summary["ratios"]["size_x"] > 1.5
    assert summary["test"]["n"] == model.n_examples and summary["keeps_quality_on_test"]
    # the search's table in report.md and report.json, its export a benchmark row
    markdown = (run_dir / "report.md").read_text()
    assert "## Accuracy-aware compression (`auto`)" in markdown
    assert f"| {summary['chosen']} |" in markdown and "**chosen**" in markdown
    saved = json.loads((run_dir / "report.json").read_text())
    assert saved["stages"][1]["auto"]["chosen"] == summary["chosen"]
    assert set(report.exports) == {"model_float", "auto_chosen"}
    bench = report.benchmark
    assert bench.baseline == "model_float" and "auc" in bench.row("auto_chosen").deltas
    assert bench.ratios()["auto_chosen"]["size_x"] == pytest.approx(
        summary["ratios"]["size_x"], rel=1e-6
    )
    # the search's HParams experiment beside the run's logs (TensorBoard shows one per logdir)
    assert (run_dir / "logs_auto" / summary["chosen"]).is_dir()
    assert not list((run_dir / "logs").glob(f"**/{summary['chosen']}"))
    # an interrupted auto stage resumes from the compress cache: nothing is fine-tuned again
    stage_file = run_dir / "01_auto" / "stage.json"
    record = json.loads(stage_file.read_text())
    stage_file.write_text(json.dumps({"status": "running", "key": record["key"]}))
    resumed = run(_recipe(), out_dir=tmp_path, verbose=0).stage("auto")
    assert not resumed.cached and resumed.auto["trained"] == 0
    assert resumed.auto["chosen"] == summary["chosen"]
    # another tolerance is a new stage, judged again from the same cache
    tighter = run(_recipe(max_loss=0.4), out_dir=tmp_path, verbose=0).stage("auto")
    assert not tighter.cached and tighter.auto["trained"] == 0
    assert run(_recipe(max_loss=0.4), out_dir=tmp_path, verbose=0).stage("auto").cached


def test_the_summary_says_why_the_float_export_is_kept():
    from tfcompress.recipe.report import auto_summary

    base = {"chosen": None, "metric": "auc", "max_loss": 0.002, "objective": "latency"}
    assert auto_summary("auto", {**base, "kept": 0}) == (
        "auto: no candidate keeps auc within 0.002; the float export is kept"
    )
    assert auto_summary("auto", {**base, "kept": 1}) == (
        "auto: 1 candidate(s) keep auc within 0.002 but none beats the float export on "
        "latency; the float export is kept"
    )
