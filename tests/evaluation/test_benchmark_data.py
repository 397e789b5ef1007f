"""`benchmark` takes what model.fit / model.evaluate take, for Keras, SavedModel and TFLite.

Also: exact quality on all the data by default, n / positives in every table, `.keras` files
checked before Keras reads them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfcompress import export
from tfcompress._keras import keras, tf
from tfcompress.evaluation import benchmarking as bm
from tfcompress.evaluation.report import BenchmarkReport
from tfcompress.export.metrics import auc

FAST = {"batch_sizes": (8,), "warmup": 0, "repeats": 1, "progress": False, "measure_memory": False}


def _one_input(n: int = 400, seed: int = 0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((3,))  # unnamed, as in the issue: 'input_1'-like name
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x[:, :1] + 0.5 * rng.normal(size=(n, 1)) > 0).astype("float32")
    return model, x, y


def _two_inputs():
    """Inputs declared 'zeta' then 'alpha': a name-sorted signature puts them the other way."""
    keras.utils.set_random_seed(1)
    zeta = keras.Input((2,), name="zeta")
    alpha = keras.Input((2,), name="alpha")
    h = keras.layers.Concatenate()([zeta, keras.layers.Rescaling(-3.0)(alpha)])
    model = keras.Model([zeta, alpha], keras.layers.Dense(1, activation="sigmoid")(h))
    rng = np.random.default_rng(2)
    z = rng.normal(size=(300, 2)).astype("float32")
    a = rng.normal(size=(300, 2)).astype("float32")
    score = model.predict([z, a], verbose=0)
    y = (score + 0.1 * rng.normal(size=score.shape) > np.median(score)).astype("float32")
    return model, z, a, y


@pytest.fixture(scope="module")
def one_input(tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    model, x, y = _one_input()
    export.export_tflite(model, out / "f.tflite")
    export.export_saved_model(model, out / "sm")
    model.save(out / "m.keras")
    return model, x, y, out


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    model, z, a, y = _two_inputs()
    export.export_tflite(model, out / "m.tflite")
    export.export_saved_model(model, out / "sm")
    return model, z, a, y, out


def test_single_input_tflite_takes_a_dataset_of_array_tuples(one_input):
    """The issue's call: {"float": "f.tflite"} with Dataset.from_tensor_slices((X, y)).batch."""
    model, x, y, out = one_input
    expected = auc(y, model.predict(x, verbose=0))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(256)
    report = bm.benchmark({"float": str(out / "f.tflite")}, ds, **FAST)
    assert report.rows[0].examples == 400
    assert report.rows[0].quality["auc"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "form",
    ["arrays", "dataset", "unbatched", "list_of_batches", "weighted", "one_item_list", "1d_labels"],
)
def test_every_variant_kind_takes_every_fit_form(one_input, form):
    model, x, y, out = one_input
    expected = auc(y, model.predict(x, verbose=0))
    data = {
        "arrays": (x, y),
        "dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(64),
        "unbatched": tf.data.Dataset.from_tensor_slices((x, y)),
        "list_of_batches": [(x[:150], y[:150]), (x[150:], y[150:])],
        "weighted": tf.data.Dataset.from_tensor_slices((x, y, np.ones(400))).batch(100),
        "one_item_list": ([x], y),
        "1d_labels": (x, y[:, 0]),
    }[form]
    report = bm.benchmark(
        {
            "keras": model,
            "file": str(out / "m.keras"),
            "saved": str(out / "sm"),
            "tflite": str(out / "f.tflite"),
        },
        data,
        **FAST,
    )
    assert [r.format for r in report.rows] == ["keras", "keras", "saved_model", "tflite"]
    for row in report.rows:
        assert row.examples == 400 and row.positives == int(y.sum())
        assert row.quality["auc"] == pytest.approx(expected, abs=1e-6)


def _positional_auc(model, z, a, y):
    right = auc(y, model.predict([z, a], verbose=0))
    swapped = auc(y, model.predict([a, z], verbose=0))
    assert abs(right - swapped) > 0.2  # swapping the inputs would show
    return right


def test_two_input_artifacts_map_positional_data_in_the_keras_order(two_inputs):
    model, z, a, y, out = two_inputs
    right = _positional_auc(model, z, a, y)
    data = tf.data.Dataset.from_tensor_slices(((z, a), y)).batch(64)
    # the Keras model among the variants gives the order to the artifacts
    report = bm.benchmark(
        {"keras": model, "tflite": str(out / "m.tflite"), "saved": str(out / "sm")}, data, **FAST
    )
    for row in report.rows:
        assert row.quality["auc"] == pytest.approx(right, abs=1e-6), row.name
    # a dict needs no order
    named = bm.benchmark({"tflite": str(out / "m.tflite")}, ({"alpha": a, "zeta": z}, y), **FAST)
    assert named.rows[0].quality["auc"] == pytest.approx(right, abs=1e-6)


def test_two_input_artifacts_read_the_order_recorded_in_the_manifest(two_inputs, tmp_path):
    model, z, a, y, out = two_inputs
    right = _positional_auc(model, z, a, y)
    export.export_tflite(model, tmp_path / "m.tflite")
    export.export_saved_model(model, tmp_path / "sm")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for entry in manifest["artifacts"].values():  # the exports record the Keras order
        assert entry["inputs"] == ["zeta", "alpha"]
    for name in ("m.tflite", "sm"):
        variant = bm.load_variant(tmp_path / name)
        assert variant.input_order == ("zeta", "alpha")
        report = bm.benchmark({name: str(tmp_path / name)}, ([z, a], y), **FAST)
        assert report.rows[0].quality["auc"] == pytest.approx(right, abs=1e-6)


def test_two_input_artifact_without_a_known_order_asks_for_a_dict(two_inputs, tmp_path):
    model, z, a, y, out = two_inputs
    export.export_tflite(model, tmp_path / "m.tflite")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["artifacts"]["m.tflite"].pop("inputs", None)  # an export that did not record it
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert bm.load_variant(tmp_path / "m.tflite").input_order is None
    with pytest.raises(
        ValueError,
        match=r"keyed by the model's input names \['alpha', 'zeta'\]: "
        r"received a list of 2 arrays.*does not record the order",
    ):
        bm.benchmark({"t": str(tmp_path / "m.tflite")}, ([z, a], y), **FAST)


def test_real_mismatches_name_the_input_the_shapes_and_the_fix(one_input, two_inputs):
    model, x, y, out = one_input
    with pytest.raises(
        ValueError,
        match=r"input '\w+' expects shape \(None, 3\), received shape "
        r"\(400, 4\)\. Pass '\w+' with that width",
    ):
        bm.benchmark({"t": str(out / "f.tflite")}, (np.zeros((400, 4), "float32"), y), **FAST)
    two, z, a, y2, _ = two_inputs
    with pytest.raises(
        ValueError,
        match=r"the model takes 2 inputs \('zeta' \(None, 2\), "
        r"'alpha' \(None, 2\)\), received one ndarray \(\(300, "
        r"2\)\)\. Pass x as a list of 2 arrays",
    ):
        bm.benchmark({"k": two}, (z, y2), **FAST)
    with pytest.raises(
        ValueError,
        match=r"takes 2 inputs .* received a list of 3 arrays with "
        r"shapes \[\(300, 2\), \(300, 2\), \(300, 2\)\]",
    ):
        bm.benchmark({"k": two}, ([z, a, a], y2), **FAST)
    with pytest.raises(ValueError, match=r"`data` holds 400 examples but 399 labels"):
        bm.benchmark({"k": model}, (x, y[:-1]), **FAST)
    with pytest.raises(ValueError, match=r"a tuple of 4 items.*\(\[x1, x2\], y\)"):
        bm.benchmark({"k": two}, (z, a, y2, y2), **FAST)


def test_quality_uses_all_the_data_by_default():
    model, x, y = _one_input(n=10_050, seed=3)
    report = bm.benchmark({"m": model}, (x, y), **FAST)
    assert report.rows[0].examples == 10_050
    assert report.rows[0].quality["auc"] == pytest.approx(auc(y, model.predict(x, verbose=0)))
    capped = bm.benchmark({"m": model}, (x, y), max_examples=1000, **FAST)
    assert capped.rows[0].examples == 1000 and capped.settings["max_examples"] == 1000


def test_few_positives_warn_in_the_log_the_tables_and_the_json(one_input, tmp_path, caplog):
    model, x, y, _ = one_input
    rare = np.zeros_like(y)
    rare[:30] = 1.0
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        report = bm.benchmark({"m": model}, (x, rare), **FAST)
    note = (
        "only 30 positives among 400 examples: quality differences are noise (an AUC's "
        "standard error is ~0.06 here)"
    )
    assert note in caplog.text
    assert report.notes() == [note]
    assert f"warning: {note}." in report.to_markdown()
    assert f"warning: {note}." in report.to_text()
    raw = json.loads(Path(report.save_json(tmp_path / "r.json")).read_text())
    assert raw["rows"][0]["examples"] == 400 and raw["rows"][0]["positives"] == 30
    assert BenchmarkReport.from_json(tmp_path / "r.json").notes() == [note]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        plenty = bm.benchmark({"m": model}, (x, y), **FAST)
    assert plenty.notes() == [] and "positives" not in caplog.text


@pytest.mark.parametrize(
    "damage, error, message",
    [
        ("empty", ValueError, r"`variants\['m'\]` '.*m\.keras' is empty \(0 bytes\)"),
        (
            "truncated",
            ValueError,
            r"`variants\['m'\]` '.*m\.keras' .*not a Keras archive: it is "
            r"truncated",
        ),
    ],
)
def test_damaged_keras_files_are_named(one_input, tmp_path, damage, error, message):
    model, x, y, out = one_input
    path = tmp_path / "m.keras"
    data = (out / "m.keras").read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(error, match=message):
        bm.benchmark({"m": str(path)}, (x, y), **FAST)
    with pytest.raises(error, match=r"`path_or_model`"):
        bm.load_variant(path)


@pytest.mark.multiprocess
def test_keras3_file_is_a_type_error_with_the_fix(one_input, tmp_path):
    _, x, y, _ = one_input
    path = tmp_path / "k3.keras"
    code = (
        "import keras, sys\n"
        "keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(sys.argv[1])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with pytest.raises(TypeError, match=r"`variants\['k3'\]` '.*k3\.keras' was saved by Keras 3"):
        bm.benchmark({"k3": path}, (x, y), **FAST)
    with pytest.raises(TypeError, match=r"`path_or_model` '.*k3\.keras' was saved by Keras 3"):
        bm.load_variant(path)
