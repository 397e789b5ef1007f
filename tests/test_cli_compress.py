"""`tfcompress compress` through the real command (subprocess): the search on a saved .keras
model and the simulated ctr task, its output and exit status, and its bad-input errors."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfcompress.cli import build_parser, main


def _cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    # stdout and stderr are pipes, as in a CI log
    return subprocess.run(
        [sys.executable, "-m", "tfcompress.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


@pytest.fixture(scope="module")
def saved_ctr_model(tmp_path_factory) -> Path:
    from tfcompress import data, models

    task = data.load_task("ctr", n_samples=2_000, seed=0)
    model = models.compile_for_task(models.dcn(task.schema, size="tiny"), task.schema)
    model.fit(task.train, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("cli_compress") / "tiny_ctr.keras"
    model.save(path)
    return path


@pytest.mark.multiprocess
def test_compress_prints_the_table_writes_the_json_and_ends_with_the_chosen_file(
    saved_ctr_model, tmp_path
):
    out, report = tmp_path / "out", tmp_path / "result.json"
    done = _cli(
        "compress",
        str(saved_ctr_model),
        "--data",
        "ctr",
        "--samples",
        "2000",
        "--max-loss",
        "0.05",
        "--epochs",
        "1",
        "--steps",
        "1",
        "--objective",
        "size",
        "--out",
        str(out),
        "--json",
        str(report),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stdout = done.stdout
    assert "| candidate | auc | Δauc ± CI | bytes | size | verdict | note |" in stdout
    assert "| float | " in stdout and "**chosen**" in stdout
    assert "\r" not in stdout + done.stderr  # piped: no redrawn progress bar
    # confirmed on the test split, which the search never saw (2,000 samples: 10% are test)
    test_line = next(ln for ln in stdout.splitlines() if ln.startswith("On the test split"))
    assert " on 200 examples: within --max-loss 0.05" in test_line, test_line
    result = json.loads(report.read_text())
    assert result["chosen"] is not None and result["settings"]["objective"] == "size"
    assert result["settings"]["max_loss"] == 0.05 and result["settings"]["steps"] == 1
    chosen = next(c for c in result["candidates"] if c["name"] == result["chosen"])
    assert chosen["accepted"] and chosen["bytes"] < result["baseline"]["bytes"]
    last = stdout.strip().splitlines()[-1]
    assert last == result["path"] and last.endswith(".tflite")
    assert Path(last).is_file() and Path(last).is_relative_to(out)
    assert result["ratios"]["size_x"] > 1.5  # the chosen .tflite against the float one


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--objective", "speed"], "argument --objective: invalid choice: 'speed'"),
        (["--budget", "soon"], "argument --budget: expected a positive duration"),
        (["--max-loss", "5"], "argument --max-loss: expected a tolerated loss in (0, 1]"),
    ],
)
def test_bad_options_exit_2_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "model.keras", "--data", "ctr", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tfcompress compress: error: ") and message in err[-1]


def test_a_missing_model_file_is_one_line_naming_it(tmp_path, capsys):
    assert main(["compress", str(tmp_path / "nope.keras"), "--data", "ctr"]) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("tfcompress compress:")]
    assert len(errors) == 1 and "`MODEL`" in errors[0] and "nope.keras' does not exist" in errors[0]
    assert "Traceback (most recent call last)" not in err


def test_budget_accepts_what_parse_budget_accepts():
    from tfcompress.search import parse_budget

    for text in ("90", "90s", "20m", "1.5h", " 2 min "):
        args = build_parser().parse_args(["compress", "m.keras", "--data", "ctr", "--budget", text])
        assert args.budget == parse_budget(text)


def test_the_parsers_choices_are_the_searchs():
    from tfcompress import search
    from tfcompress.cli import _compress
    from tfcompress.search import space

    assert _compress.OBJECTIVES == search.OBJECTIVES and _compress.RUNTIMES == search.RUNTIMES
    assert _compress.RULES == space.RULES and _compress.METRICS == space.METRICS
    defaults = build_parser().parse_args(["compress", "m.keras", "--data", "ctr"])
    signature = inspect.signature(search.compress).parameters
    for name in ("metric", "max_loss", "rule", "objective", "runtime", "epochs", "steps", "seed"):
        assert getattr(defaults, name) == signature[name].default, name
    assert defaults.out == Path(signature["output_dir"].default)


def test_no_candidate_keeping_quality_exits_1_and_says_so(
    saved_ctr_model, tmp_path, monkeypatch, capsys
):
    """The CLI's side of "none keeps" (the search itself is tests/search/test_compress.py's)."""
    import tfcompress.search

    class NoneKeeps:
        chosen, path = None, str(tmp_path / "float.tflite")

        def to_markdown(self) -> str:
            return "chosen: none keeps quality; the float baseline is returned"

        def none_reason(self) -> str:
            return "no candidate keeps auc within 0.0001 (rule ci)"

        def save_json(self, path) -> str:
            Path(path).write_text(json.dumps({"chosen": None, "path": self.path}))
            return str(path)

    seen = {}

    def fake_compress(model, data, **kwargs):
        seen.update(kwargs, model=model)
        return NoneKeeps()

    monkeypatch.setattr(tfcompress.search, "compress", fake_compress)
    report = tmp_path / "r.json"
    argv = ["compress", str(saved_ctr_model), "--data", "ctr", "--samples", "300"]
    assert main([*argv, "--max-loss", "0.0001", "--budget", "2m", "--json", str(report)]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == NoneKeeps.path
    assert "no candidate keeps auc within 0.0001 (rule ci)" in captured.err
    assert "the path below is the float baseline" in captured.err
    assert json.loads(report.read_text())["chosen"] is None
    assert seen["max_loss"] == 0.0001 and seen["budget"] == 120.0 and seen["teacher"] is None
    assert seen["validation_data"] is not None and seen["model"].name
