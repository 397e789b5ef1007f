"""Drift of quantized exports (issue 13 item 5), a quiet converter and calibration progress."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfcompress import export
from tfcompress._keras import keras
from tfcompress.export import converter as export_convert
from tfcompress.export import parity as export_parity


def _scorer() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """A tiny untrained model with labels it ranks well (its own scores, 10% of labels flipped)."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((8,), name="x")
    h = keras.layers.Dense(16, activation="relu")(inp)
    model = keras.Model(
        inp, keras.layers.Dense(1, activation="sigmoid", name="p")(h), name="scorer"
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    scores = model(x).numpy()
    y = (scores > np.median(scores)).astype("float32")
    flip = rng.random(y.shape) < 0.1
    return model, x, np.where(flip, 1 - y, y)


@pytest.fixture(scope="module")
def scorer():
    return _scorer()


def test_drift_flag_and_tolerances():
    p = {
        "max_abs_diff": 0.3,
        "p99_abs_diff": 0.18,
        "mean_abs_diff": 0.01,
        "quality_delta": {"auc": -0.16},
    }
    assert export_parity.drift_flag(p) == (
        "ΔAUC -0.160 > tolerance 0.005; p99 |diff| 0.18 > tolerance 0.1"
    )
    assert (
        export_parity.drift_flag({**p, "quality_delta": {"auc": 0.01}, "p99_abs_diff": 0.09})
        is None
    )
    # one outlier among thousands is not drift: the demo's int8 student (ΔAUC -0.002)
    assert (
        export_parity.drift_flag(
            {
                "max_abs_diff": 0.114,
                "p99_abs_diff": 0.04,
                "mean_abs_diff": 0.0099,
                "quality_delta": {"auc": -0.002},
            }
        )
        is None
    )
    # figures recorded without the percentile fall back on the maximum
    assert export_parity.drift_flag({"max_abs_diff": 0.18, "mean_abs_diff": 0.01}) == (
        "p99 |diff| 0.18 > tolerance 0.1"
    )
    # outputs above 1 (logits, ratings): the |diff| tolerances scale with the largest output
    assert (
        export_parity.drift_flag({"p99_abs_diff": 0.4, "mean_abs_diff": 0.05, "output_scale": 5.0})
        is None
    )
    assert "mean |diff| 0.15 > tolerance 0.1" in export_parity.drift_flag(
        {"p99_abs_diff": 0.4, "mean_abs_diff": 0.15, "output_scale": 5.0}
    )
    assert export_parity.drift_flag({"p99_abs_diff": float("nan"), "mean_abs_diff": 0.0}) == (
        "p99 |diff| nan > tolerance 0.1"
    )
    assert export_parity.drift_flag({**p, "quality_delta": {"auc": -0.0053}}).startswith(
        "ΔAUC -0.0053 > tolerance 0.005"
    )  # small losses keep a 4th decimal
    assert export_parity.drift_flag({**p, "quality_delta": {"auc": None}}) == (
        "p99 |diff| 0.18 > tolerance 0.1"
    )
    assert export_parity.check_drift_tolerances({"auc": 0.002})["auc"] == 0.002
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['logloss'\]"):
        export_parity.check_drift_tolerances({"logloss": 0.1})
    with pytest.raises(ValueError, match=r"drift_tolerances\['auc'\]` must be a number >= 0"):
        export_parity.check_drift_tolerances({"auc": -1})
    with pytest.raises(TypeError, match="drift_tolerances"):
        export_parity.check_drift_tolerances(0.1)


def test_bad_drift_arguments_write_nothing(scorer, tmp_path):
    model, x, _ = scorer
    with pytest.raises(
        ValueError,
        match=r"`drift` must be one of \['warn', 'error', 'ignore'\].*"
        r"'loud'",
    ):
        export.export_tflite(model, tmp_path / "m.tflite", "dynamic", drift="loud")
    with pytest.raises(TypeError, match="`progress` must be a bool, received 'yes'"):
        export.export_tflite(model, tmp_path / "m.tflite", progress="yes")
    assert list(tmp_path.iterdir()) == []


def test_badly_calibrated_int8_warns_with_figures(scorer, tmp_path, caplog):
    """Calibrating on inputs 100x smaller than the real ones saturates every activation."""
    model, x, y = scorer
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        r = export.export_tflite(
            model,
            tmp_path / "bad.tflite",
            "int8",
            representative_data=x * 0.01,
            parity_data=x,
            parity_labels=y,
        )
    p = r.parity
    assert p["keras_quality"] > 0.85 and p["quality_delta"]["auc"] < -0.1, p
    assert p["p99_abs_diff"] > 0.1 and p["mean_abs_diff"] > 0.02, p
    assert p["max_abs_diff"] >= p["p99_abs_diff"] >= 0
    assert p["drift_flag"].startswith(f"ΔAUC {p['quality_delta']['auc']:+.3f} > tolerance 0.005")
    assert "p99 |diff|" in p["drift_flag"]
    warning = [rec.getMessage() for rec in caplog.records if "drifts from" in rec.getMessage()]
    assert len(warning) == 1, caplog.text
    text = warning[0]
    for expected in (
        "bad.tflite",
        "(int8)",
        p["drift_flag"],
        f"{p['max_abs_diff']:.3g}",
        "over 256 examples (parity_data)",
        "quantization-aware training",
        "representative_data",
        "float_ops=",
        "drift='error'",
    ):
        assert expected in text, (expected, text)
    assert r.path.exists()  # drift="warn" still writes the file
    entry = json.loads(r.manifest_path.read_text())["artifacts"]["bad.tflite"]
    assert entry["parity"]["drift_flag"] == p["drift_flag"]
    assert entry["parity"]["quality_delta"] == {"auc": pytest.approx(p["quality_delta"]["auc"])}


def test_drift_error_writes_nothing_and_ignore_is_silent(scorer, tmp_path, caplog):
    model, x, y = scorer
    with pytest.raises(
        export.DriftError,
        match=r"bad\.tflite.*ΔAUC -0\.\d{3} > tolerance 0\.005"
        r".*Nothing was written",
    ):
        export.export_tflite(
            model,
            tmp_path / "bad.tflite",
            "int8",
            drift="error",
            representative_data=x * 0.01,
            parity_data=x,
            parity_labels=y,
        )
    assert list(tmp_path.iterdir()) == []
    assert issubclass(export.DriftError, export.ParityError)
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        r = export.export_tflite(
            model,
            tmp_path / "bad.tflite",
            "int8",
            drift="ignore",
            representative_data=x * 0.01,
            parity_data=x,
            parity_labels=y,
        )
    assert r.parity["drift_flag"] is not None and "drifts from" not in caplog.text


def test_well_calibrated_int8_is_not_flagged(scorer, tmp_path, caplog):
    model, x, y = scorer
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        r = export.export_tflite(
            model,
            tmp_path / "good.tflite",
            "int8",
            drift="error",
            representative_data=x,
            parity_data=x,
            parity_labels=y,
        )
    p = r.parity
    assert p["drift_flag"] is None and abs(p["quality_delta"]["auc"]) < 0.005, p
    assert p["max_abs_diff"] < 0.05 and "drifts from" not in caplog.text
    # tighter tolerances flag the same export; embedding-free models get no embeddings hint
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        r = export.export_tflite(
            model,
            tmp_path / "tight.tflite",
            "int8",
            representative_data=x,
            parity_data=x,
            drift_tolerances={"p99_abs_diff": 0.0},
        )
    assert r.parity["drift_flag"].startswith("p99 |diff|")
    assert "> tolerance 0." in caplog.text and 'embeddings="float"' not in caplog.text
    assert r.options["drift_tolerances"]["p99_abs_diff"] == 0.0


def test_int8_tables_drift_hint_names_embeddings_float(tmp_path, caplog):
    keras.utils.set_random_seed(6)
    ids = keras.Input((2,), dtype="int32", name="ids")
    h = keras.layers.Flatten()(keras.layers.Embedding(200, 8, name="emb")(ids))
    model = keras.Model(ids, keras.layers.Dense(1, activation="sigmoid")(h))
    data = np.random.default_rng(1).integers(0, 200, (64, 2)).astype("int32")
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        r = export.export_tflite(
            model,
            tmp_path / "t.tflite",
            "dynamic",
            parity_data=data,
            drift_tolerances={"mean_abs_diff": 0.0},
        )
    assert r.options["embedding_tables"] and r.parity["drift_flag"].startswith("mean |diff|")
    assert 'embeddings="float"' in caplog.text and "(dynamic)" in caplog.text


def test_float_exports_carry_no_drift_flag(scorer, tmp_path):
    model, x, y = scorer
    r = export.export_tflite(model, tmp_path / "f.tflite", parity_data=x, parity_labels=y)
    assert r.parity["drift_flag"] is None
    assert r.parity["quality_delta"] == {"auc": pytest.approx(0.0, abs=1e-6)}


def test_captured_output_restores_the_descriptors_and_notes_failures(capfd):
    with export_convert.captured_output() as out:
        os.write(2, b"from C++\n")
        os.write(1, b"to stdout\n")
        out.terminal.write("to the real stderr\n")
    assert out.active and out.text == "from C++\nto stdout\n"
    with pytest.raises(RuntimeError) as info, export_convert.captured_output():
        os.write(1, b"converter said no\n")
        raise RuntimeError("boom")
    if hasattr(info.value, "add_note"):  # Python >= 3.11
        assert "converter said no" in info.value.__notes__[0]
    os.write(2, b"after\n")
    captured = capfd.readouterr()
    assert captured.err == "to the real stderr\nafter\n" and captured.out == ""


def test_calibration_progress_bar_only_when_asked(scorer, tmp_path, capfd, caplog):
    model, x, _ = scorer
    with caplog.at_level(logging.DEBUG, logger="tfcompress"):
        export.export_tflite(model, tmp_path / "quiet.tflite", "int8", representative_data=x[:16])
    err = capfd.readouterr().err
    assert "calibrating" not in err and "fully_quantize" not in err, err
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(
        "TFLite converter output for model 'scorer'" in m and "fully_quantize" in m for m in debug
    ), debug
    export.export_tflite(
        model, tmp_path / "shown.tflite", "int8", representative_data=x[:16], progress=True
    )
    err = capfd.readouterr().err
    assert "calibrating shown.tflite (int8)" in err and "16/16" in err, err
    assert "fully_quantize" not in err, err


_QUIET_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from tfcompress import export
    from tfcompress._keras import keras, tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(4)(inp)
    ok = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h), name="ok")
    det = keras.layers.Lambda(lambda t: tf.reshape(tf.linalg.det(tf.reshape(t, (-1, 2, 2))),
                                                   (-1, 1)))
    broken = keras.Model(inp, det(h), name="broken")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    out = sys.argv[1]
    os.write(2, b"<<int8>>\\n")
    r = export.export_tflite(ok, os.path.join(out, "ok.tflite"), "int8", representative_data=x)
    os.write(2, b"<<broken>>\\n")
    try:
        export.export_tflite(broken, os.path.join(out, "broken.tflite"))
        error = None
    except export.ConversionError as e:
        error = {"message": str(e), "output": e.converter_output}
    os.write(2, b"<<end>>\\n")
    print(json.dumps({"bytes": r.bytes, "error": error}))
    """
)


@pytest.mark.multiprocess
def test_conversion_prints_nothing_but_failures_carry_the_converter_output(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-c", _QUIET_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    int8_part = err.split("<<int8>>\n")[1].split("<<broken>>")[0]
    broken_part = err.split("<<broken>>\n")[1].split("<<end>>")[0]
    assert int8_part == "", int8_part  # no "fully_quantize: 0, ...", no XNNPACK/asset lines
    assert broken_part == "", broken_part
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bytes"] > 0
    error = result["error"]
    assert error is not None
    assert "'tf.MatrixDeterminant' op is neither a custom op nor a flex op" in error["output"]
    assert "TFLite conversion of model 'broken'" in error["message"]
    assert "Converter output (last lines):" in error["message"]
    assert "TF Select ops: MatrixDeterminant" in error["message"]
    assert not (tmp_path / "broken.tflite").exists()
