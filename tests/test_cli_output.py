"""The CLI is quiet and quick, and its errors say where they came from (subprocess tests)."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tensorboard_server import Server, tensorboard_servers

from tfcompress.callbacks.tensorboard import read_hparams, read_scalars
from tfcompress.cli import demo_defaults, main
from tfcompress.recipe.report import RunReport, load_report


def _python(
    code: str, *, env: dict[str, str] | None = None, timeout: int = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # stdout and stderr are pipes: what a user sees in a CI log or with `| tee`
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "tfcompress.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.multiprocess
def test_help_and_version_do_not_import_tensorflow():
    result = _python("""
        import json, sys
        from tfcompress.cli import main
        for argv in (["--help"], ["--version"], ["demo", "--help"], ["run", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
        heavy = sorted(m for m in ("tensorflow", "tf_keras", "numpy") if m in sys.modules)
        print(json.dumps(heavy))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert "I0000" not in result.stderr and "absl" not in result.stderr  # no C++ log lines


def test_demo_help_shows_the_demo_recipes_defaults(capsys):
    from tfcompress.recipe import demo_recipe

    signature = inspect.signature(demo_recipe).parameters
    expected = {
        name: signature[name].default for name in ("samples", "teacher_epochs", "epochs", "seed")
    }
    assert demo_defaults() == {**expected, "name": signature["name"].default}
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split("options:")[1].split())  # unwrapped
    for name, value in expected.items():
        flag = "--" + name.replace("_", "-")
        shown = re.search(rf"{flag} [A-Z_]+ [^()]*\(default: (\S+?)\)", text)
        assert shown is not None and shown.group(1) == str(value), (flag, value)
    # the defaults are what `demo` runs with
    assert main(["demo", "--print-recipe"]) == 0
    from tfcompress.recipe import loads_recipe

    assert loads_recipe(capsys.readouterr().out) == demo_recipe()


def test_cli_sets_tf_cpp_min_log_level_unless_the_user_did(monkeypatch, capsys):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert main([]) == 2
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's choice stands
    assert main([]) == 2
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    capsys.readouterr()


_FAILING_RECIPE = """
name = "fails_in_prune"
[data]
task = "ctr"
samples = 400
[model]
name = "dcn"
size = "tiny"
epochs = 1
[[stages]]
kind = "prune"
sparsity = 0.5
epochs = 1
layers = ["no_such_layer"]
[export]
tflite = ["float"]
saved_model = false
[benchmark]
enabled = false
"""


@pytest.mark.multiprocess
def test_an_error_inside_a_stage_prints_one_line_and_where_it_was_raised(tmp_path):
    recipe = tmp_path / "fails.toml"
    recipe.write_text(_FAILING_RECIPE)
    short = _cli("run", str(recipe), "--out", str(tmp_path), "--quiet")
    assert short.returncode == 2
    lines = [ln for ln in short.stderr.splitlines() if ln.startswith(("tfcompress run", "  "))]
    assert lines[0].startswith("tfcompress run: error: ") and "no_such_layer" in lines[0]
    frames = [ln for ln in lines if ln.startswith("  at ")]
    assert 2 <= len(frames) <= 4
    assert all(re.fullmatch(r"  at \S+\.py:\d+ in \w+", f) for f in frames), frames
    assert any(f.startswith("  at tfcompress/") for f in frames)  # ours, with a short path
    assert "--traceback" in short.stderr
    assert "Traceback (most recent call last)" not in short.stderr

    full = _cli("run", str(recipe), "--out", str(tmp_path), "--quiet", "--traceback")
    assert full.returncode == 2
    assert "Traceback (most recent call last)" in full.stderr
    assert re.search(r'stages\.py", line \d+, in _prune', full.stderr)  # every frame
    assert "no_such_layer" in full.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def piped_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, RunReport]:
    """The README's demo with small sizes, piped (what a CI log shows), run once for the tests
    of its output and of its TensorBoard logs: its folder, its process, its report as the run
    wrote it (read before ``tfcompress report`` re-renders it)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    result = _cli(
        "demo",
        "--samples",
        "1500",
        "--teacher-epochs",
        "1",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--logdir",
        str(tmp_path / "tb"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path, result, load_report(tmp_path / "demo")


@pytest.mark.slow
@pytest.mark.multiprocess
def test_piped_demo_output_has_no_carriage_returns_and_a_line_per_export(piped_demo):
    """The README's demo with small sizes, piped (what a CI log shows): teacher -> distill ->
    auto -> prune -> QAT -> export -> bench; its report, TensorBoard logs and `report`
    re-rendering."""
    tmp_path, result, _ = piped_demo
    _check_demo_report(tmp_path, result.stdout)
    assert "\r" not in result.stdout and "\r" not in result.stderr  # no redrawn progress bars
    exports = re.findall(
        r"^\[export\] (\d)/(\d) (\w+) \((\w+)\): [\d.]+ KiB, parity max "
        r"\|diff\| \S+",
        result.stdout,
        re.M,
    )
    assert [e[2] for e in exports] == [
        "teacher_float",
        "distill_alone_float",
        "distill_float",
        "prune_float",
        "quantize_int8",
        "quantize_xla",
    ]
    assert "TensorFlow is already initialised" not in result.stdout + result.stderr
    # the demo split: 34% of 1,500 samples are test examples
    assert re.search(r"^\| teacher \| model \| no \| .* \| 510 \| \d+ \|$", result.stdout, re.M)
    assert "n examples | n positives" in result.stdout


def _check_demo_report(tmp_path, out: str) -> None:
    run_dir = tmp_path / "demo"
    report = json.loads((run_dir / "report.json").read_text())
    stages = [s["name"] for s in report["stages"]]
    assert stages == ["teacher", "distill", "auto", "prune", "quantize"]
    names = {r["name"] for r in report["benchmark"]["rows"]}
    assert names == {
        "teacher_float",
        "distill_float",
        "distill_alone_float",
        "auto_chosen",  # the auto stage's export; the output ends with its search and test Δ
        "prune_float",
        "quantize_int8",
        "quantize_xla",
    }
    assert report["benchmark"]["baseline"] == "teacher_float"
    for name in names:  # every variant is printed with its ratios against the teacher
        assert re.search(rf"^\| {name}( \(baseline\))? \| (tflite|saved_model) \|", out, re.M)
    ratios = report["benchmark"]["ratios"]
    assert ratios["quantize_int8"]["size_x"] > 8  # int8 student vs the float teacher
    assert ratios["prune_float"]["gzip_size_x"] > ratios["distill_float"]["gzip_size_x"]
    assert report["stages"][3]["sparsity"] == pytest.approx(0.7, abs=0.02)
    assert "## Accuracy-aware compression (`auto`)" in out
    # 510 test examples at these sizes: the chosen export's test Δ, or none within 0.002
    chosen = r"auto: .* Δauc [-+]\d\.\d{4} ± \d\.\d{4} on \d+ test examples"
    assert re.search(rf"^({chosen}|auto: no candidate keeps auc within 0.002)", out, re.M)
    assert (run_dir / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    scalars = read_scalars(tmp_path / "tb")  # --logdir: one run per stage, hparams per variant
    assert scalars["prune/train"]["epoch_sparsity"][-1][1] == pytest.approx(0.7, abs=0.02)
    assert "epoch_distillation_loss" in scalars["distill/train"]
    assert {h["variant"] for h in read_hparams(tmp_path / "tb" / "hparams").values()} == names

    (run_dir / "tradeoff.png").unlink()
    again = _cli("report", str(run_dir), "--batch-size", "1")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "| quantize_int8 | tflite |" in again.stdout
    assert (run_dir / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------- a whole run in TensorBoard


@pytest.fixture(scope="module")
def serve(tmp_path_factory) -> Iterator[Callable[[Path], Server]]:
    """``serve(logdir)`` starts the real ``tensorboard --logdir logdir`` (its default loader);
    every server is stopped at the end of the module, also when a test fails."""
    with tensorboard_servers(tmp_path_factory) as start:
        yield start


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_run_shows_in_tensorboard(piped_demo, serve):
    """Every stage's final figures, the HParams table (one row per benchmarked variant) and the
    report's text, as the TensorBoard server shows the demo run's ``--logdir`` (the run:
    teacher, distill (+ student alone), auto, prune, QAT; tests/callbacks/
    test_tensorboard_server.py tests each kind of summary on its own)."""
    tmp_path, _, report = piped_demo
    server = serve(tmp_path / "tb")
    summaries = [f"{stage.name}/summary" for stage in report.stages]
    tags = server.eventually(server.scalar_tags, lambda t: set(summaries) <= set(t))
    assert summaries == [
        f"{s}/summary" for s in ("teacher", "distill", "auto", "prune", "quantize")
    ]
    for stage, run in zip(report.stages, summaries, strict=True):  # every stage's final figures
        expected = {f"test/{k}": v for k, v in stage.quality.items() if v is not None}
        expected.update(params=stage.params, sparsity=stage.sparsity, seconds=stage.seconds)
        shown = {tag: server.scalars(run, tag) for tag in tags[run]}
        assert shown == {k: [(0, pytest.approx(v, rel=1e-6))] for k, v in expected.items()}
    assert server.scalars("prune/summary", "sparsity")[0][1] == pytest.approx(0.7, abs=0.02)
    assert server.scalars("prune/train", "epoch_sparsity")[-1][1] == pytest.approx(0.7, abs=0.02)
    assert any(t.startswith("epoch_quant/") for t in tags["quantize/train"])
    assert "epoch_distillation_loss" in tags["distill/train"]

    bench = report.benchmark
    ratios = bench.ratios()
    experiment = server.experiment()
    assert {"variant", "stage", "kind", "format", "mode"} <= {
        h["name"] for h in experiment["hparamInfos"]
    }
    groups = server.eventually(
        lambda: server.session_groups(experiment), lambda g: all(v["metrics"] for v in g.values())
    )
    assert set(groups) == set(bench.names) == set(report.exports)
    for name, group in groups.items():  # the HParams table: one row per variant, with values
        row, metrics = bench.row(name), group["metrics"]
        assert group["hparams"]["variant"] == name
        assert metrics["quality/auc"] == pytest.approx(row.quality["auc"], rel=1e-6)
        assert metrics["size/bytes"] == pytest.approx(row.bytes, rel=1e-7)
        assert metrics["ratio/size_x"] == pytest.approx(ratios[name]["size_x"], rel=1e-6)
        assert metrics["latency/b1_ms"] == pytest.approx(row.latency_ms[1]["median"], rel=1e-6)
    assert groups["quantize_int8"]["metrics"]["ratio/size_x"] > 3
    ((step, html),) = server.text(".", "report")
    assert step == 0 and "<table>" in html and "quantize_int8" in html
