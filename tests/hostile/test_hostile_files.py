"""Hostile files (issue 14): nothing served unchecked, corrupt artifacts named, exports with the
user's umask, and CLI errors as one line with exit status 2.

One test per hostile-input class; each failed on the code before the fix.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from tfcompress import cli, export
from tfcompress._keras import keras
from tfcompress.evaluation import benchmarking as benchmarking
from tfcompress.recipe import report as run_report


def _dense_model(seed: int = 1, name: str = "dense") -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="prob")(h), name=name)


def _data(n: int = 64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, :1] > 0).astype("float32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A directory with m.tflite, other.tflite and the SavedModel sm, and their manifest."""
    out = tmp_path_factory.mktemp("hostile")
    export.export_tflite(_dense_model(1), out / "m.tflite")
    export.export_tflite(_dense_model(2, "other"), out / "other.tflite")
    export.export_saved_model(_dense_model(1), out / "sm", jit_compile=False)
    return out


@pytest.fixture
def copy(exported, tmp_path):
    dst = tmp_path / "exports"
    shutil.copytree(exported, dst)
    return dst


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_changed_artifact_is_refused_on_load_and_bench_unless_verify_false(copy, caplog):
    # a bit-flipped .tflite (it still parses: the flip is in the last byte of the buffer)
    tfl = copy / "m.tflite"
    recorded = json.loads((copy / "manifest.json").read_text())["artifacts"]["m.tflite"]["sha256"]
    blob = bytearray(tfl.read_bytes())
    blob[-1] ^= 0x01
    tfl.write_bytes(bytes(blob))
    flipped = _sha(tfl)
    with pytest.raises(ValueError) as info:
        export.load_variant(tfl)
    msg = str(info.value)
    assert str(tfl) in msg and flipped in msg and recorded in msg
    assert "re-export" in msg and "verify=False" in msg
    x, y = _data()
    with pytest.raises(ValueError, match=r"m\.tflite.*does not match.*manifest\.json"):
        benchmarking.benchmark(
            {"m": str(tfl)},
            (x, y),
            batch_sizes=(8,),
            warmup=0,
            repeats=1,
            measure_memory=False,
            progress=False,
        )
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        variant = export.load_variant(tfl, verify=False)
    assert variant({"x": x[:2]})["prob"].shape == (2, 1)
    assert "not checked" in caplog.text and "verify=False" in caplog.text
    report = benchmarking.benchmark(
        {"m": str(tfl)},
        (x, y),
        batch_sizes=(8,),
        warmup=0,
        repeats=1,
        measure_memory=False,
        progress=False,
        verify=False,
    )
    assert report.rows[0].examples == len(y)
    with pytest.raises(TypeError, match="`verify` must be True or False, received 'no'"):
        benchmarking.benchmark({"m": str(tfl)}, (x, y), verify="no")

    # a file replaced after the manifest (another model's bytes, a valid model)
    shutil.copyfile(copy / "other.tflite", tfl)
    with pytest.raises(ValueError, match=rf"{_sha(tfl)}.*{recorded}"):
        export.load_variant(tfl)

    # a SavedModel whose variables changed
    var = next((copy / "sm" / "variables").glob("*.data-*"))
    blob = bytearray(var.read_bytes())
    blob[0] ^= 0x01
    var.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"sm/variables/variables\.data.*sha256 [0-9a-f]{64}"):
        export.load_variant(copy / "sm")
    # untouched artifacts still load (and an unlisted one loads unchecked)
    assert export.load_variant(copy / "other.tflite").format == "tflite"
    shutil.copyfile(copy / "other.tflite", copy / "unlisted.tflite")
    assert export.load_variant(copy / "unlisted.tflite").format == "tflite"


def test_verify_manifest_reports_unlisted_artifacts_and_malformed_entries(copy):
    shutil.copyfile(copy / "m.tflite", copy / "stray.tflite")
    shutil.copytree(copy / "sm", copy / "sm_copy")
    (copy / ".m.abc.tmp.tflite").write_bytes(b"x")  # a hidden temp file: not an artifact
    (copy / "notes.json").write_text("{}")  # not an artifact either
    problems = export.verify_manifest(copy, strict=False)
    assert problems["stray.tflite"] == [
        "stray.tflite is not listed in the manifest (export it again, or remove it)"
    ]
    assert problems["sm_copy"] and "not listed" in problems["sm_copy"][0]
    assert problems["m.tflite"] == [] and problems["sm"] == []
    assert set(problems) == {"m.tflite", "other.tflite", "sm", "stray.tflite", "sm_copy"}
    with pytest.raises(ValueError, match="stray.tflite is not listed"):
        export.verify_manifest(copy)

    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"]["m.tflite"] = "oops"
    manifest["artifacts"]["other.tflite"]["files"] = ["other.tflite"]
    manifest["artifacts"]["sm"]["files"]["sm/saved_model.pb"] = 7
    (copy / "manifest.json").write_text(json.dumps(manifest))
    problems = export.verify_manifest(copy, strict=False)
    assert problems["m.tflite"] == ["malformed entry: expected an object, found str"]
    assert problems["other.tflite"][0].startswith("malformed entry: 'files' must be a non-empty")
    assert problems["sm"] == [
        "malformed entry for file sm/saved_model.pb: expected {bytes, sha256}, found 7"
    ]
    with pytest.raises(ValueError, match="malformed entry"):  # and load refuses it too
        export.load_variant(copy / "m.tflite")


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_a_corrupt_tflite_error_names_the_file(exported, tmp_path, damage):
    good = (exported / "m.tflite").read_bytes()
    bad = {
        "truncated": good[: len(good) // 2],
        "random": np.random.default_rng(0).bytes(len(good)),
        "empty": b"",
    }[damage]
    path = tmp_path / "broken.tflite"  # no manifest beside it: the parser must say it
    path.write_bytes(bad)
    with pytest.raises(ValueError) as info:
        export.load_variant(path)
    msg = str(info.value)
    assert str(path) in msg and f"({len(bad)} bytes)" in msg
    assert "not a valid TFLite model" in msg and "export it again" in msg


def test_exports_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        export.export_tflite(_dense_model(1), tmp_path / "m.tflite")
        export.export_saved_model(_dense_model(1), tmp_path / "sm", jit_compile=False)
        export.export_saved_model(_dense_model(1), tmp_path / "sm", jit_compile=False)  # replace
    finally:
        os.umask(old)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert oct(mode(tmp_path / "m.tflite")) == oct(0o640)
    assert oct(mode(tmp_path / "manifest.json")) == oct(0o640)
    assert oct(mode(tmp_path / "sm")) == oct(0o750)
    assert oct(mode(tmp_path / "sm" / "saved_model.pb")) == oct(0o640)
    assert oct(mode(tmp_path / "sm" / "variables")) == oct(0o750)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "manifest.json", "sm"]


def test_cli_os_errors_are_one_line_with_status_2(tmp_path, capsys):
    model = tmp_path / "tiny.keras"
    _dense_model(1).save(model)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = cli.main(["export", str(model), "-o", str(blocker / "m.tflite")])
    err = capsys.readouterr().err
    assert code == 2
    first = err.splitlines()[0]
    assert first.startswith("tfcompress export: error: ") and str(blocker) in first
    assert "check the path exists" in first
    assert "Traceback (most recent call last)" not in err


@pytest.mark.parametrize(
    "error, hint",
    [
        (MemoryError(), "MemoryError (out of memory: reduce the sizes"),
        (
            OverflowError("int too large to convert to float"),
            "OverflowError: int too large to convert to float (a number is too large",
        ),
        (
            RecursionError("maximum recursion depth exceeded"),
            "RecursionError: maximum recursion depth exceeded (the input is nested too deeply",
        ),
        (
            PermissionError(13, "Permission denied", "/out/report.md"),
            "PermissionError: [Errno 13] Permission denied: '/out/report.md' (check the path",
        ),
    ],
)
def test_cli_resource_errors_are_one_line_with_status_2(tmp_path, capsys, monkeypatch, error, hint):
    def fail(run_dir):
        raise error

    monkeypatch.setattr(run_report, "load_report", fail)
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(f"tfcompress report: error: {hint}")
    assert "Traceback (most recent call last)" not in err and "--traceback" in err
    assert cli.main(["report", str(tmp_path), "--traceback"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
