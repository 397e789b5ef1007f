"""Interrupted exports and runs leave no litter (issue 14): the next export or run into the
folder removes what a killed writer left (hidden temp files, SavedModel temp and moved-aside
directories, stage records marked "running" that the recipe no longer has) and says so in one
WARNING line; a user's own hidden files, fresh temporaries and held ones stay.

Each test failed on the code before the fix (nothing was ever removed).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tfcompress import export
from tfcompress._keras import keras
from tfcompress.export import manifest
from tfcompress.recipe import _cache as _pipeline_io

OLD = time.time() - 3600  # an hour ago: well past the grace period


def _dense_model(seed: int = 1, name: str = "dense") -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="prob")(h), name=name)


def _age(path: Path, when: float = OLD) -> None:
    """Set the mtime of ``path`` and everything under it to ``when``."""
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (when, when))


def _temp_file(directory: Path, prefix: str, suffix: str, old: bool = True) -> Path:
    """A temp file named exactly as the writer names it (same mkstemp call)."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.write(fd, b"partial")
    os.close(fd)
    if old:
        _age(Path(name))
    return Path(name)


def _user_files(d: Path) -> list[Path]:
    """Hidden and visible files of the user's that look a bit like ours: all must stay."""
    files = [
        d / ".keep",
        d / ".notes.tmp",
        d / "model.tmp.keras",
        d / ".cache" / "x",
        d / ".m.tflite.swp",
        d / ".ab.toolong12.tmp",
    ]
    for f in files:
        f.parent.mkdir(exist_ok=True)
        f.write_text("mine")
    _age(d / ".cache")
    for f in files:
        _age(f)
    return files


def _litter(d: Path) -> list[Path]:
    """What killed writers leave: every writer's temporary, aged past the grace period."""
    d.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".sm.", suffix=".tmp", dir=d))
    (tmp_dir / "variables").mkdir()
    (tmp_dir / "saved_model.pb").write_bytes(b"half")
    old_empty = Path(tempfile.mkdtemp(prefix=".sm2.", suffix=".old", dir=d))
    keras_tmp = d / ".model.tmp.keras"
    keras_tmp.write_bytes(b"zip")
    litter = [
        _temp_file(d, ".m.", ".tmp.tflite"),  # export_tflite
        _temp_file(d, ".manifest.json.", ".tmp"),  # atomic_write_text
        tmp_dir,  # export_saved_model
        old_empty,
        keras_tmp,  # run's save_model
    ]
    for p in litter:
        _age(p)
    return litter


def test_clean_stale_temps_removes_only_old_unheld_writer_temps(tmp_path, caplog):
    d = tmp_path / "out"
    litter = _litter(d)
    mine = _user_files(d)
    fresh = _temp_file(d, ".fresh.", ".tmp.tflite", old=False)  # a live export's, just begun
    held_tmp = _temp_file(d, ".busy.", ".tmp.tflite")  # old, but a writer holds its lock
    with manifest.held(held_tmp), caplog.at_level(logging.WARNING, logger="tfcompress"):
        removed = manifest.clean_stale_temps(d)
    assert sorted(removed) == sorted(litter)
    assert not any(p.exists() for p in litter)
    assert all(f.read_text() == "mine" for f in mine)
    assert fresh.exists() and held_tmp.exists()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1
    assert f"removed 5 temporary file(s) left by an interrupted export in {d}" in lines[0]
    assert all(p.name in lines[0] for p in litter)
    # the lock released, the grace period overridden: the rest goes, nothing is said twice
    assert sorted(manifest.clean_stale_temps(d, min_age=0)) == sorted([fresh, held_tmp])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        assert manifest.clean_stale_temps(d, min_age=0) == []
        assert manifest.clean_stale_temps(tmp_path / "missing") == []
    assert not caplog.records


def test_clean_stale_temps_restores_a_savedmodel_moved_aside(tmp_path, caplog):
    # killed between "move the old export aside" and "move the new one in": the user's last
    # good SavedModel sits in .sm.XXXXXXXX.old/x and sm/ is missing; it is moved back.
    d = tmp_path / "out"
    d.mkdir()
    old = Path(tempfile.mkdtemp(prefix=".sm.", suffix=".old", dir=d))
    (old / "x").mkdir()
    (old / "x" / "saved_model.pb").write_bytes(b"good")
    _age(old)
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        assert manifest.clean_stale_temps(d) == [old]
    assert (d / "sm" / "saved_model.pb").read_bytes() == b"good"
    assert not old.exists()
    assert "moving the previous export back to sm" in caplog.text
    # when sm/ exists (the new export landed), the moved-aside copy is only removed
    old2 = Path(tempfile.mkdtemp(prefix=".sm.", suffix=".old", dir=d))
    (old2 / "x").mkdir()
    (old2 / "x" / "saved_model.pb").write_bytes(b"older")
    _age(old2)
    assert manifest.clean_stale_temps(d) == [old2]
    assert (d / "sm" / "saved_model.pb").read_bytes() == b"good"


@pytest.mark.parametrize("bad", [-1, float("nan"), "60", True])
def test_clean_stale_temps_bad_arguments(tmp_path, bad):
    with pytest.raises(ValueError, match="`min_age` must be a number of seconds >= 0"):
        manifest.clean_stale_temps(tmp_path, min_age=bad)
    with pytest.raises(TypeError, match="`directory` must be a folder path"):
        manifest.clean_stale_temps(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["tflite", "saved_model"])
def test_export_into_a_littered_folder_cleans_it_and_says_so(tmp_path, caplog, fmt):
    d = tmp_path / "exports"
    litter = _litter(d)
    mine = _user_files(d)
    fresh = _temp_file(d, ".fresh.", ".tmp", old=False)
    model = _dense_model()
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        if fmt == "tflite":
            result = export.export_tflite(model, d / "m.tflite")
        else:
            result = export.export_saved_model(model, d / "sm", jit_compile=False)
    assert not any(p.exists() for p in litter)
    assert all(f.read_text() == "mine" for f in mine) and fresh.exists()
    lines = [r.getMessage() for r in caplog.records if "interrupted export" in r.getMessage()]
    assert len(lines) == 1 and "removed 5 temporary file(s)" in lines[0]
    # the new export is complete, recorded and runs like the model
    assert export.verify_manifest(d) == {result.path.name: []}
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    got = export.load_variant(result.path).predict({"x": x})
    want = model.predict(x, verbose=0)
    got = next(iter(got.values())) if isinstance(got, dict) else got
    np.testing.assert_allclose(np.asarray(got).reshape(want.shape), want, atol=1e-4)
    leftovers = sorted(p.name for p in d.iterdir() if p.name.startswith("."))
    assert leftovers == sorted(
        [".ab.toolong12.tmp", ".cache", ".keep", ".m.tflite.swp", ".notes.tmp", fresh.name]
    )


_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tfcompress import export
    from tfcompress.export import saved_model as export_savedmodel
    from tfcompress.export import tflite as export_tflite_module
    from tfcompress._keras import keras

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, keras.layers.Dense(1, name="prob")(inp), name="dense")
    out, what = Path(sys.argv[1]), sys.argv[2]
    if what == "tflite":  # killed while checking parity: the .tmp.tflite stays
        export_tflite_module.measure_parity = die
        export.export_tflite(model, out / "m.tflite")
    else:  # killed between moving the old SavedModel aside and moving the new one in
        export.export_saved_model(model, out / "sm", jit_compile=False)
        real = os.replace
        def replace(src, dst):
            if Path(dst) == out / "sm":
                die()
            real(src, dst)
        export_savedmodel.os.replace = replace
        export.export_saved_model(model, out / "sm", jit_compile=False)
""")


@pytest.mark.slow
def test_killed_exports_leave_litter_that_the_next_export_removes(tmp_path, caplog):
    d = tmp_path / "out"
    d.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(d), what],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for what in ("tflite", "saved_model")
    ]
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == -9, out.decode()[-2000:]
    hidden = sorted(p.name for p in d.iterdir() if p.name.startswith("."))
    assert len(hidden) == 3, hidden  # .m.*.tmp.tflite, .sm.*.tmp/, .sm.*.old/
    assert not (d / "sm").exists()  # the killed export had moved the good one aside
    for p in d.iterdir():
        _age(p)
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        export.export_tflite(_dense_model(), d / "m.tflite")
    assert sorted(p.name for p in d.iterdir()) == ["m.tflite", "manifest.json", "sm"]
    assert "removed 3 temporary file(s) left by an interrupted export" in caplog.text
    assert export.verify_manifest(d) == {"m.tflite": [], "sm": []}


def _stage(run: Path, name: str, status: str, *, extra: tuple[str, ...] = ()) -> Path:
    d = run / name
    (d / "backup").mkdir(parents=True)
    (d / "backup" / "ckpt").write_text("weights")
    (d / "stage.json").write_text(json.dumps({"status": status, "key": "k"}))
    for rel in extra:
        (d / rel).write_text("x")
    _age(d)
    return d


def test_clean_run_dir_removes_crashed_stages_the_recipe_dropped_and_temps(tmp_path, caplog):
    run = tmp_path / "runs" / "ctr"
    _stage(run, "00_model", "done", extra=("model.keras", ".model.tmp.keras"))
    resumed = _stage(run, "01_prune", "running", extra=(".model.tmp.keras",))
    dropped = _stage(run, "02_quantise", "running")  # renamed to 02_quantize after it crashed
    old_done = _stage(run, "03_shrink", "done", extra=("model.keras",))  # a finished stage
    fresh = _stage(run, "04_embed", "running")
    os.utime(fresh / "stage.json")  # another run is writing it right now
    odd = run / "05_notes"  # no stage record: not ours to judge
    odd.mkdir()
    (run / "exports").mkdir()
    stale_export = _temp_file(run / "exports", ".quantize_int8.", ".tmp.tflite")
    stale_report = _temp_file(run, ".report.md.", ".tmp")
    stage_tmp = _temp_file(old_done, ".stage.json.", ".tmp")
    keep = run / ".keep"
    keep.write_text("mine")
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        removed = _pipeline_io.clean_run_dir(
            run, ["00_model", "01_prune", "02_quantize", "03_embed"]
        )
    assert sorted(removed) == sorted(
        [
            "02_quantise",
            "00_model/.model.tmp.keras",
            "01_prune/.model.tmp.keras",
            f"exports/{stale_export.name}",
            stale_report.name,
            f"03_shrink/{stage_tmp.name}",
        ]
    )
    assert not dropped.exists()
    # the stage the recipe resumes keeps its record and backup; the others stay as they are
    assert json.loads((resumed / "stage.json").read_text())["status"] == "running"
    assert (resumed / "backup" / "ckpt").is_file()
    assert (old_done / "model.keras").is_file() and (run / "00_model" / "model.keras").is_file()
    assert fresh.is_dir() and odd.is_dir() and keep.read_text() == "mine"
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1
    assert f"removed 6 leftover(s) of an interrupted run in {run}" in lines[0]
    assert "02_quantise/ (an interrupted stage the recipe no longer has)" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        assert _pipeline_io.clean_run_dir(run, ["00_model"], min_age=3600 * 2) == []
        assert _pipeline_io.clean_run_dir(tmp_path / "nothing", []) == []
    assert not caplog.records
    with pytest.raises(TypeError, match="`stage_dirs` must be a list"):
        _pipeline_io.clean_run_dir(run, "00_model")
    with pytest.raises(TypeError, match="`run_dir` must be a folder path"):
        _pipeline_io.clean_run_dir(3, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`min_age`"):
        _pipeline_io.clean_run_dir(run, [], min_age=-1)
