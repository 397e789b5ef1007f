"""Tests of tfcompress.evaluation.benchmarking (the `tfcompress.benchmark` function) and
tfcompress.evaluation.report."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tfcompress import export
from tfcompress._keras import keras, tf
from tfcompress.evaluation import benchmarking as bm
from tfcompress.evaluation.report import BenchmarkReport, BenchmarkRow

VOCAB = 2000


def _ctr_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = {
        "user_id": keras.Input((1,), dtype="int32", name="user_id"),
        "item_id": keras.Input((1,), dtype="int32", name="item_id"),
        "price": keras.Input((2,), name="price"),
    }
    parts = [
        keras.layers.Flatten()(keras.layers.Embedding(VOCAB, 16)(inputs[k]))
        for k in ("user_id", "item_id")
    ]
    h = keras.layers.Dense(16, activation="relu")(
        keras.layers.Concatenate()([*parts, inputs["price"]])
    )
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="p")(h), name="ctr")


def _data(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = {
        "user_id": rng.integers(1, VOCAB, (n, 1)).astype("int32"),
        "item_id": rng.integers(1, VOCAB, (n, 1)).astype("int32"),
        "price": rng.normal(size=(n, 2)).astype("float32"),
    }
    labels = (feats["price"][:, :1] + 0.3 * rng.normal(size=(n, 1)) > 0).astype("float32")
    return feats, labels


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    model = _ctr_model()
    model.compile("adam", "binary_crossentropy")
    feats, labels = _data()
    model.fit(feats, labels, epochs=3, batch_size=32, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((feats, labels)).batch(50)
    export.export_tflite(model, out / "float.tflite", parity_data=ds)
    export.export_tflite(
        model, out / "int8.tflite", "int8", representative_data=ds, num_calibration_steps=50
    )
    export.export_saved_model(model, out / "xla", parity_data=ds)
    variants = {
        "keras": model,
        "float": str(out / "float.tflite"),
        "int8": out / "int8.tflite",
        "xla": str(out / "xla"),
    }
    report = bm.benchmark(variants, ds, batch_sizes=(1, 32), warmup=1, repeats=3, progress=False)
    return out, model, ds, report


@pytest.mark.slow
def test_benchmark_rows(setup):
    _, model, ds, report = setup
    assert report.names == ["keras", "float", "int8", "xla"]
    assert report.baseline == "keras"
    assert [r.format for r in report.rows] == ["keras", "tflite", "tflite", "saved_model"]
    keras_row, float_row, int8_row, xla_row = report.rows
    for r in report.rows:
        assert r.task == "binary" and r.examples == 200
        assert set(r.quality) == {"auc", "logloss", "accuracy"}
        assert 0.5 < r.quality["auc"] <= 1.0 and r.quality["logloss"] > 0
        assert set(r.latency_ms) == {1, 32}
        for lat in r.latency_ms.values():
            assert 0 < lat["median"] <= lat["p90"]
        assert r.throughput[32] == pytest.approx(32 / (r.latency_ms[32]["median"] / 1e3))
        assert r.bytes > r.gzip_bytes > 0
        assert r.positives == int(np.concatenate([y for _, y in ds.as_numpy_iterator()]).sum())
        # a fresh process per variant: the weights and arena, not what another variant freed
        assert r.peak_memory_mb is not None and r.peak_memory_mb > 0
    # loading a SavedModel brings TF's function runtime; a TFLite interpreter is lighter
    assert max(float_row.peak_memory_mb, int8_row.peak_memory_mb) < xla_row.peak_memory_mb
    assert report.settings["memory"].startswith("peak RSS increase of a fresh process")
    # same predictions -> same quality for the float variants
    assert float_row.quality["auc"] == pytest.approx(keras_row.quality["auc"], abs=1e-6)
    assert xla_row.quality["logloss"] == pytest.approx(keras_row.quality["logloss"], abs=1e-5)
    feats = np.concatenate([x["price"] for x, _ in ds.as_numpy_iterator()])
    assert len(feats) == 200
    assert keras_row.params == model.count_params()
    assert xla_row.params == model.count_params()
    assert float_row.params == pytest.approx(model.count_params(), rel=0.01)
    assert int8_row.bytes * 3 < float_row.bytes
    assert report.settings["num_threads"] == 1 and report.settings["repeats"] == 3
    assert report.settings["timing"] == "invoke"
    assert "invoke() with the inputs set" in report.to_markdown()
    # the CPU the timings ran on, with its int8 features (they decide int8's speed-up)
    cpu = report.settings["cpu"]
    assert cpu["cores"] >= 1 and cpu["model"]
    assert f"CPU: {cpu['model']} ({cpu['arch']}" in report.to_markdown()
    # the delegate the interpreter really applied, per TFLite row, and one word for the report
    runtime = report.settings["tflite_runtime"]
    assert sorted(runtime) == ["float", "int8"]
    assert runtime["float"]["delegate"] == "xnnpack" and runtime["float"]["num_threads"] == 1
    assert runtime["float"]["delegate_partitions"] >= 1 and runtime["float"]["ops"] > 0
    assert report.settings["tflite_delegate"] in ("xnnpack", "mixed")


@pytest.mark.slow
def test_benchmark_ratios_from_rows(setup):
    _, _, _, report = setup
    ratios = report.ratios()
    base = report.row("keras")
    for r in report.rows:
        got = ratios[r.name]
        assert got["size_x"] == pytest.approx(base.bytes / r.bytes)
        for b in (1, 32):
            assert got["speed_x"][b] == pytest.approx(
                base.latency_ms[b]["median"] / r.latency_ms[b]["median"]
            )
        for m, v in r.quality.items():
            assert got["quality_delta"][m] == pytest.approx(v - base.quality[m])
    assert ratios["keras"]["size_x"] == 1.0
    other = report.ratios("int8")
    assert other["float"]["size_x"] == pytest.approx(
        report.row("int8").bytes / report.row("float").bytes
    )
    with pytest.raises(ValueError, match="no variant 'nope'"):
        report.ratios("nope")


@pytest.mark.slow
def test_markdown_and_json_round_trip(setup, tmp_path):
    _, _, _, report = setup
    md = report.to_markdown()
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + len(report.rows)
    header = lines[0]
    for col in (
        "variant",
        "auc",
        "gzip bytes",
        "params",
        "b1 median ms",
        "b32 p90 ms",
        "peak MB",
        "size x",
        "speed x b32",
        "Δ auc",
    ):
        assert col in header
    assert "| accuracy | n | positives | bytes |" in header
    columns = [c.strip() for c in header.split("|")[1:-1]]
    for row, line in zip(report.rows, lines[2:], strict=True):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[columns.index("n")] == "200"
        assert cells[columns.index("positives")] == str(row.positives)
    few = min(report.rows[0].positives, 200 - report.rows[0].positives) < 100
    assert ("warning: only" in md) == few and ("warning: only" in report.to_text()) == few
    for name, line in zip(report.names, lines[2:], strict=True):
        assert line.startswith(f"| {name}")
        assert line.count("|") == header.count("|")
    path = report.save_json(tmp_path / "sub" / "bench.json")
    with open(path) as f:
        raw = json.load(f)
    assert raw["ratios"]["int8"]["size_x"] == pytest.approx(report.ratios()["int8"]["size_x"])
    again = BenchmarkReport.from_json(path)
    assert again.rows == report.rows and again.baseline == report.baseline
    assert again.to_markdown() == md
    with pytest.raises(ValueError, match="must end in '.json'"):
        report.save_json(tmp_path / "bench.txt")


def _multiclass_model(classes: int) -> keras.Model:
    keras.utils.set_random_seed(4)
    inp = keras.Input((4,), name="x")
    return keras.Model(inp, keras.layers.Dense(classes, activation="softmax")(inp), name="mc")


def test_benchmark_multiclass_and_retrieval_metrics():
    model = _multiclass_model(12)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.integers(0, 12, size=(40,)).astype("int32")
    probs = model(x).numpy()
    report = bm.benchmark(
        {"mc": model},
        [(x, y)],
        batch_sizes=(8,),
        warmup=0,
        repeats=2,
        progress=False,
        measure_memory=False,
    )
    row = report.rows[0]
    assert row.task == "multiclass" and row.peak_memory_mb is None
    assert row.quality["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y))
    top5 = np.argsort(-probs, axis=1)[:, :5]
    assert row.quality["top5_accuracy"] == pytest.approx(np.mean((top5 == y[:, None]).any(1)))
    retrieval = bm.benchmark(
        {"mc": model},
        [(x, y)],
        task="retrieval",
        metrics=["recall@3"],
        batch_sizes=(1,),
        warmup=0,
        repeats=2,
        progress=False,
        measure_memory=False,
    )
    top3 = np.argsort(-probs, axis=1)[:, :3]
    assert retrieval.rows[0].task == "retrieval"
    assert retrieval.rows[0].quality == {
        "recall@3": pytest.approx(np.mean((top3 == y[:, None]).any(1)))
    }


def test_benchmark_bad_inputs(tmp_path):
    model = _multiclass_model(3)
    x = np.zeros((4, 4), "float32")
    y = np.zeros((4,), "int32")
    kw = {"batch_sizes": (1,), "warmup": 0, "repeats": 1, "progress": False}
    with pytest.raises(ValueError, match="`variants` is empty"):
        bm.benchmark({}, [(x, y)], **kw)
    with pytest.raises(ValueError, match=r"`timing` must be one of \['invoke', 'call'\]"):
        bm.benchmark({"a": model}, [(x, y)], timing="native", **kw)
    with pytest.raises(ValueError, match=r"path '.*missing\.tflite' does not exist"):
        bm.benchmark({"a": tmp_path / "missing.tflite"}, [(x, y)], **kw)
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown file type '.onnx'"):
        bm.benchmark({"a": str(tmp_path / "m.onnx")}, [(x, y)], **kw)
    with pytest.raises(ValueError, match="`baseline` 'b' is not among"):
        bm.benchmark({"a": model}, [(x, y)], baseline="b", **kw)
    with pytest.raises(ValueError, match="`data` has no labels"):
        bm.benchmark({"a": model}, [x], **kw)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        bm.benchmark({"a": model}, [(x, y)], metrics=["f1"], **kw)
    with pytest.raises(ValueError, match="`repeats`"):
        bm.benchmark({"a": model}, [(x, y)], batch_sizes=(1,), repeats=0)
    with pytest.raises(TypeError, match=r"variants\['a'\]"):
        bm.benchmark({"a": 42}, [(x, y)], **kw)
    with pytest.raises(TypeError, match="must be a dict"):
        bm.benchmark([model], [(x, y)], **kw)


_THREADS_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(message)s")
from tfcompress.evaluation import benchmarking as bm
from tfcompress._keras import tf
first = bm.configure_threads(3)
pool = tf.config.threading.get_intra_op_parallelism_threads()
float(tf.reduce_sum(tf.ones((64, 64)) @ tf.ones((64, 64))))  # TF initialises with the settings
later = bm.configure_threads(5)  # too late: stays at 3 and says so
print("RESULT " + json.dumps({"first": first, "pool": pool, "later": later,
      "inter": tf.config.threading.get_inter_op_parallelism_threads()}))
"""


@pytest.mark.multiprocess
def test_configure_threads_sets_tensorflow_before_it_initialises():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    # importing tfcompress leaves TF uninitialised, so the first call takes effect ...
    assert result["first"] == {"intra_op": 3, "inter_op": 1} and result["pool"] == 3
    # ... and once TF has run an op the setting is fixed: the call reports what is in effect
    assert result["later"] == {"intra_op": 3, "inter_op": 1} and result["inter"] == 1
    assert "LOG TensorFlow is already initialised: its intra-op threads stay at 3" in out.stdout
    with pytest.raises(ValueError, match="`num_threads` must be an int >= 1, received 0"):
        bm.configure_threads(0)


def test_report_validation():
    row = BenchmarkRow(
        "a",
        "keras",
        None,
        "binary",
        {"auc": 0.5},
        10,
        5,
        3,
        {1: {"median": 2.0, "p90": 3.0}},
        {1: 500.0},
        None,
        8,
    )
    fast = BenchmarkRow(
        "b",
        "tflite",
        "b.tflite",
        "binary",
        {"auc": 0.6},
        5,
        2,
        3,
        {1: {"median": 1.0, "p90": 1.5}},
        {1: 1000.0},
        1.0,
        8,
    )
    report = BenchmarkReport((row, fast))
    assert report.baseline == "a"
    assert report.ratios()["b"] == {
        "size_x": 2.0,
        "gzip_size_x": 2.5,
        "speed_x": {1: 2.0},
        "quality_delta": {"auc": pytest.approx(0.1)},
    }
    # n and positives sit beside the quality columns (positives unknown for these rows: —)
    assert (
        "| b | tflite | 0.6000 | 8 | — | 5 | 2 | 3 | 1.000 | 1.500 | 1.0 | 2.00 | 2.00 | "
        "+0.1000 |" in report.to_markdown()
    )
    text = report.to_text().splitlines()
    assert text[0].split() == [
        "variant",
        "format",
        "auc",
        "n",
        "positives",
        "bytes",
        "gzip",
        "bytes",
        "params",
        "b1",
        "median",
        "ms",
        "b1",
        "p90",
        "ms",
        "peak",
        "MB",
        "size",
        "x",
        "speed",
        "x",
        "b1",
        "Δ",
        "auc",
    ]
    assert text[3].split() == [
        "b",
        "tflite",
        "0.6000",
        "8",
        "—",
        "5",
        "2",
        "3",
        "1.000",
        "1.500",
        "1.0",
        "2.00",
        "2.00",
        "+0.1000",
    ]
    assert str(report) == report.to_text()
    # no memory measured anywhere: no always-empty column
    unmeasured = BenchmarkReport((row, dataclasses.replace(fast, peak_memory_mb=None)))
    assert "peak MB" not in unmeasured.to_markdown() and "peak" not in unmeasured.to_text()
    with pytest.raises(ValueError, match="at least one row"):
        BenchmarkReport(())
    with pytest.raises(ValueError, match="no variant 'z'"):
        BenchmarkReport((row,), baseline="z")


def test_tflite_runtime_reports_the_applied_delegate(tmp_path):
    model = _multiclass_model(3)
    path = tmp_path / "mc.tflite"
    export.export_tflite(model, path)
    runtime = bm.tflite_runtime(bm.load_variant(str(path), num_threads=2), 2)
    assert runtime == {
        "delegate": "xnnpack",
        "delegate_partitions": 1,
        "ops": 2,
        "num_threads": 2,
    }  # FULLY_CONNECTED + SOFTMAX, one XNNPACK partition
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    variant = bm.load_variant(str(path))
    variant._interpreter = Interpreter(  # the same file without the default delegates
        model_path=str(path),
        experimental_op_resolver_type=(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
    )
    variant._interpreter.allocate_tensors()
    assert bm.tflite_runtime(variant)["delegate"] == "none"
    assert (
        bm._summary_delegate({"a": {"delegate": "xnnpack"}, "b": {"delegate": "none"}}) == "mixed"
    )
    assert bm._summary_delegate({}) is None
    with pytest.raises(TypeError, match="must be a TFLite Variant"):
        bm.tflite_runtime(bm.load_variant(model))
    with pytest.raises(ValueError, match="`num_threads` must be an int >= 1"):
        bm.tflite_runtime(bm.load_variant(str(path)), 0)


def test_report_states_tensorflows_pool_when_it_differs_from_num_threads():
    keras_row = BenchmarkRow(
        "k",
        "keras",
        None,
        "binary",
        {"auc": 0.5},
        10,
        5,
        3,
        {1: {"median": 2.0, "p90": 3.0}},
        {1: 500.0},
        None,
        8,
    )
    tflite_row = BenchmarkRow(
        "t",
        "tflite",
        "t.tflite",
        "binary",
        {"auc": 0.5},
        10,
        5,
        3,
        {1: {"median": 1.0, "p90": 1.5}},
        {1: 1000.0},
        1.0,
        8,
    )
    fixed = {"num_threads": 1, "tf_threads": {"intra_op": 0, "inter_op": 0}}
    text = BenchmarkReport((keras_row, tflite_row), settings=fixed).to_markdown()
    assert "Keras/SavedModel variants ran on TensorFlow's pool of all intra-op thread(s)" in text
    # TFLite only, or the pool set as asked: nothing to say
    assert "TensorFlow's pool" not in BenchmarkReport((tflite_row,), settings=fixed).to_markdown()
    equal = {"num_threads": 1, "tf_threads": {"intra_op": 1, "inter_op": 1}}
    assert "TensorFlow's pool" not in BenchmarkReport((keras_row,), settings=equal).to_markdown()
    with pytest.raises(TypeError, match="`warn` must be True or False, received 'no'"):
        bm.configure_threads(1, warn="no")


@pytest.mark.slow
def test_invoker_runs_the_model_on_inputs_set_once(setup):
    """What `timing="invoke"` times: the interpreter's invoke() on inputs set once gives the
    outputs of a full call; a Keras/SavedModel variant's invoker is its call."""
    out, model, ds, _ = setup
    feats = {k: v[:4] for k, v in _data(4)[0].items()}
    for path in (out / "float.tflite", out / "int8.tflite"):
        variant = export.load_variant(path)
        expected = variant(feats)
        run = variant.invoker(feats)
        assert run == variant.interpreter.invoke  # no Python around the model's run
        variant({k: v[::-1].copy() for k, v in feats.items()})  # other inputs in between
        run = variant.invoker(feats)
        run()
        (name,) = expected
        index = next(d["index"] for d in variant.interpreter.get_output_details())
        raw = variant.interpreter.get_tensor(index)
        scale, zero = variant.interpreter.get_output_details()[0]["quantization"]
        got = (raw.astype("float32") - zero) * scale if scale else raw
        np.testing.assert_allclose(got, expected[name], atol=1e-6)
    keras_variant = export.load_variant(model)
    np.testing.assert_allclose(
        next(iter(keras_variant.invoker(feats)().values())),
        next(iter(keras_variant(feats).values())),
        atol=1e-6,
    )
