"""A resumed ``tfcompress run`` equals an uninterrupted one, bit for bit (issue 14).

Interrupted at every kind of point — between stages (the later stages' folders deleted, the
earlier ones reused from disk), in the middle of a stage (after one epoch's backup), and a real
``tfcompress run`` killed with SIGKILL — the rerun's models equal the uninterrupted run's
exactly. Before: the training order depended on how often the process had iterated the data,
a resumed pruning schedule was re-sized over the remaining epochs, and dropout restarted its
random stream (test AUC 0.5134 uninterrupted vs 0.5553 resumed at the prune stage).
Tolerance: none; every weight of every stage is compared with ``==`` (TensorFlow on CPU gave
identical results in every run here).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfcompress._keras import keras
from tfcompress.recipe import (
    BenchmarkSpec,
    DataSpec,
    DistillStage,
    ExportSpec,
    ModelSpec,
    PruneStage,
    QuantizeStage,
    Recipe,
)
from tfcompress.recipe._cache import load_model
from tfcompress.recipe.runner import run

pytestmark = pytest.mark.slow

STAGES = ("00_teacher", "01_distill", "02_prune", "03_quantize")


def _recipe() -> Recipe:
    return Recipe(
        name="resume",
        seed=3,
        data=DataSpec(task="ctr", samples=800, batch_size=64),
        # dropout in the teacher: its random stream must follow the epoch, not the process
        model=ModelSpec(
            name="dcn",
            size={"base": "tiny", "dropout": 0.3, "mlp_units": [16]},
            epochs=2,
            patience=0,
        ),
        stages=(
            DistillStage(student=ModelSpec(name="dcn", size="tiny"), epochs=2),
            PruneStage(sparsity=0.5, epochs=2),
            QuantizeStage(epochs=2, distill=True),
        ),
        export=ExportSpec(tflite=(), saved_model=False),
        benchmark=BenchmarkSpec(enabled=False),
    )


class _Interrupt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the ``at``-th epoch start of the run (counting every fit)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.seen = at, 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt(f"interrupted at epoch start {self.at}")


def _weights(run_dir: Path) -> dict[str, list[np.ndarray]]:
    return {s: load_model(run_dir / s / "model.keras").get_weights() for s in STAGES}


def _assert_equal(got: dict, want: dict, how: str) -> None:
    for stage in STAGES:
        assert len(got[stage]) == len(want[stage])
        for i, (a, b) in enumerate(zip(got[stage], want[stage], strict=True)):
            diff = float(np.max(np.abs(a - b))) if a.size else 0.0
            assert np.array_equal(a, b), f"{how}: {stage} weight {i} differs by up to {diff}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    report = run(_recipe(), out_dir=out, verbose=0)
    return out / "resume", report, _weights(out / "resume")


def test_resume_at_a_stage_boundary_equals_the_uninterrupted_run(reference, tmp_path):
    """Stages 0-2 reused from disk, the quantize stage runs in this process. (A boundary before
    every other stage is crossed by the mid-stage test: each rerun starts the next stage.)"""
    kept = 3
    ref_dir, ref_report, ref_weights = reference
    run_dir = tmp_path / "resume"
    run_dir.mkdir()
    for stage in STAGES[:kept]:  # the earlier stages come from disk, the rest run here
        shutil.copytree(ref_dir / stage, run_dir / stage)
    report = run(_recipe(), out_dir=tmp_path, verbose=0)
    assert [s.cached for s in report.stages] == [i < kept for i in range(len(STAGES))]
    _assert_equal(_weights(run_dir), ref_weights, f"resumed after {kept} stage(s)")
    assert [s.quality for s in report.stages] == [s.quality for s in ref_report.stages]


def test_resume_in_the_middle_of_every_stage_equals_the_uninterrupted_run(reference, tmp_path):
    """Interrupted in the second epoch of each stage in turn (each rerun resumes that stage
    from its first epoch's backup), then run to the end."""
    _, ref_report, ref_weights = reference
    # epoch starts of the first run: teacher 1-2; of each rerun: the resumed epoch 1 of the
    # interrupted stage, then the next stage's epochs 2-3
    for at, stage in ((2, "teacher"), (3, "distill"), (3, "prune"), (3, "quantize")):
        with pytest.raises(KeyboardInterrupt):
            run(_recipe(), out_dir=tmp_path, verbose=0, callbacks=[_Interrupt(at)])
        record = (
            tmp_path / "resume" / STAGES[[s[3:] for s in STAGES].index(stage)] / "stage.json"
        ).read_text()
        assert '"running"' in record, f"not interrupted inside {stage}: {record[:200]}"
    report = run(_recipe(), out_dir=tmp_path, verbose=0)
    assert report.stages[-1].resumed_from_epoch == 1
    _assert_equal(_weights(tmp_path / "resume"), ref_weights, "resumed inside every stage")
    assert [s.quality for s in report.stages] == [s.quality for s in ref_report.stages]


def test_killed_cli_run_resumes_to_the_uninterrupted_result(reference, tmp_path):
    """``tfcompress run`` SIGKILLed once the prune stage has backed up an epoch, then run
    again: the same models as the uninterrupted run (in another process)."""
    _, ref_report, ref_weights = reference
    recipe_file = tmp_path / "resume.toml"
    recipe_file.write_text(_recipe().to_toml(), encoding="utf-8")
    out = tmp_path / "out"
    cli = Path(sys.executable).with_name("tfcompress")  # the installed command
    command = [str(cli), "run", str(recipe_file), "--out", str(out), "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    backup = out / "resume" / "02_prune" / "backup"
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(backup.rglob("checkpoint")) and proc.poll() is None:
            assert time.monotonic() < deadline, "the prune stage never backed up an epoch"
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "resume" / "report.json").exists(), "killed after the run finished"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_equal(_weights(out / "resume"), ref_weights, "killed and run again")
