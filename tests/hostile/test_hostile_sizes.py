"""Hostile sizes are rejected before anything is allocated; multi-line CLI errors stay readable.

Issue 14: ``samples = 1000000000000`` is refused when the recipe loads (and by
``data.load_task``) with the estimated memory, the machine's memory and the largest size that
fits, instead of a ``MemoryError`` from deep inside numpy after the run folder was made; an
error message with several lines prints every line under ``tfcompress <cmd>: error:``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc

import pytest

from tfcompress import cli, data
from tfcompress.data import _common, simulated
from tfcompress.recipe import DataSpec, RecipeError, load_recipe
from tfcompress.recipe import report as run_report

GIB = 2**30
HUGE = 10**12


# --------------------------------------------------------------------------- load_task


@pytest.mark.parametrize("task", data.TASK_NAMES)
@pytest.mark.parametrize("n_samples", [HUGE, 2**70, 10**9 * 10**9])
def test_load_task_refuses_sizes_that_cannot_fit_before_allocating(task, n_samples):
    world = data.World.create(0)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as caught:
            data.load_task(task, n_samples=n_samples, world=world)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(caught.value)
    assert f"n_samples={n_samples}" in msg
    assert "memory" in msg and "this machine" in msg
    assert "use at most" in msg and "load your own file" in msg
    assert peak < 16 * 2**20  # refused before the samples were drawn


_WRONG_N_SAMPLES = [
    (True, TypeError),
    (1e12, TypeError),
    (float("inf"), TypeError),
    ("1000", TypeError),
    (0, ValueError),
    (-5, ValueError),
]


def test_every_size_argument_is_checked():
    with pytest.raises(ValueError, match=r"seq_len=1000000000.*use at most"):
        data.load_task("profile", n_samples=1_000, seq_len=10**9)
    for bad, error in _WRONG_N_SAMPLES:
        with pytest.raises(error, match="n_samples"):
            data.load_task("ctr", n_samples=bad)


def test_the_limit_follows_the_machines_memory(monkeypatch):
    monkeypatch.setattr(_common, "physical_memory", lambda: GIB)
    per = simulated.task_memory_bytes("ctr", 1)
    most = (GIB - simulated.task_memory_bytes("ctr", 0)) // per
    with pytest.raises(ValueError) as caught:
        data.load_task("ctr", n_samples=2_000_000)
    msg = str(caught.value)
    assert f"use at most {most:,} samples" in msg and "1.0 GiB" in msg
    assert (
        simulated.task_memory_bytes("ctr", most)
        <= GIB
        < simulated.task_memory_bytes("ctr", most + 1)
    )
    assert data.load_task("ctr", n_samples=2_000).info["rows"]["train"] == 1_600


def test_an_unknown_machine_memory_falls_back_to_a_stated_limit(monkeypatch):
    monkeypatch.setattr(_common, "physical_memory", lambda: None)
    with pytest.raises(ValueError, match="memory is unknown"):
        data.load_task("retrieval", n_samples=HUGE)


def test_physical_memory_reads_sysconf_and_falls_back(monkeypatch):
    total = _common.physical_memory()
    assert total is None or total > 2**26

    def unavailable(name):
        raise ValueError(f"unknown configuration name {name}")

    monkeypatch.setattr(os, "sysconf", unavailable)
    assert _common.physical_memory() is None


@pytest.mark.parametrize("task", data.TASK_NAMES)
def test_the_estimate_is_honest(task):
    """The estimate covers the measured peak of the numpy work and is within 2x of it."""
    world = data.World.create(0)
    n = 20_000
    tracemalloc.start()
    try:
        data.load_task(task, n_samples=n, world=world, batch_size=512)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = simulated.task_memory_bytes(task, n, world=world)
    assert peak <= estimate <= 2 * peak, (peak, estimate)


# --------------------------------------------------------------------------- recipes


def test_dataspec_refuses_samples_that_cannot_fit():
    with pytest.raises(RecipeError) as caught:
        DataSpec(task="retrieval", samples=HUGE)
    err = caught.value
    assert err.key == "samples"
    assert f"samples = {HUGE}" in err.message and "this machine" in err.message
    assert "use at most" in err.message and "load your own file" in err.message
    # samples does not apply to a data file: it is not checked there
    assert DataSpec(path="clicks.csv", label="click", samples=HUGE).samples == HUGE


def test_a_recipe_file_with_absurd_samples_names_the_line(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text(
        f'name = "big"\n[model]\nname = "dcn"\n[data]\ntask = "ctr"\nsamples = {HUGE}\n'
    )
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert "line 6" in str(caught.value) and "data.samples" in str(caught.value)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_tfcompress_run_refuses_absurd_samples_in_one_line(tmp_path):
    recipe = tmp_path / "big.toml"
    recipe.write_text(
        f'name = "big"\n[model]\nname = "dcn"\nepochs = 1\n[data]\ntask = "ctr"\nsamples = {HUGE}\n'
    )
    out = tmp_path / "out"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tfcompress.cli", "run", str(recipe), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert line.startswith("tfcompress run: error: ") and "line 7, data.samples" in line
    assert "use at most" in line and "MemoryError" not in line
    assert "Traceback (most recent call last)" not in result.stderr
    assert not out.exists()  # refused at recipe load: no run folder
    assert elapsed < 120  # importing TensorFlow, not drawing 10**12 samples


# --------------------------------------------------------------------------- CLI messages


def _report_fails(monkeypatch, error):
    def fail(run_dir):
        raise error

    monkeypatch.setattr(run_report, "load_report", fail)


def test_a_multi_line_error_prints_every_line_indented(tmp_path, capsys, monkeypatch):
    message = (
        "the recipe has 3 problems:\n- stages[0].sparsity: expected a number in (0, 1)\n"
        "\n- stages[1].epochs: expected an integer >= 1\n- export.tflite: unknown mode"
    )
    _report_fails(monkeypatch, RecipeError(message, source="r.toml"))
    assert cli.main(["report", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[:4] == [
        "tfcompress report: error: r.toml: the recipe has 3 problems:",
        "    - stages[0].sparsity: expected a number in (0, 1)",
        "    - stages[1].epochs: expected an integer >= 1",
        "    - export.tflite: unknown mode",
    ]
    assert lines[4].startswith("  at ")

    _report_fails(monkeypatch, ValueError("RUN_DIR has no report.json; run the recipe first."))
    assert cli.main(["report", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.splitlines()  # a one-line message stays one line
    assert lines[0] == (
        "tfcompress report: error: RUN_DIR has no report.json; run the recipe first."
    )
    assert lines[1].startswith("  at ")


def test_a_multi_line_runtime_error_is_not_collapsed(tmp_path, capsys, monkeypatch):
    _report_fails(monkeypatch, RuntimeError("worker 1 failed (exit 1):\n  last lines:\n  boom"))
    assert cli.main(["report", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == [
        "tfcompress report: error: RuntimeError: worker 1 failed (exit 1):",
        "      last lines:",
        "      boom",
    ]


def test_a_very_long_error_is_bounded(tmp_path, capsys, monkeypatch):
    _report_fails(monkeypatch, ValueError("\n".join(f"problem {i}" for i in range(5_000))))
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "tfcompress report: error: problem 0"
    assert "    problem 1" in lines and "    problem 4999" not in lines
    assert any("more lines" in ln and "--traceback" in ln for ln in lines)
    assert len(lines) < 60
