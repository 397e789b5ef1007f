"""Tests of tfcompress.callbacks.tensorboard: compression summaries in TensorBoard, HParams,
text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, types_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

import tfcompress
from tfcompress._keras import keras, tf
from tfcompress.callbacks.tensorboard import (
    CompressionTensorBoard,
    log_hparams,
    log_stage_summary,
    log_text,
    read_hparams,
    read_scalars,
    read_text,
)
from tfcompress.evaluation.report import BenchmarkReport, BenchmarkRow
from tfcompress.pruning.report import find_wrappers

N = 256


def _arrays(n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, :1] - 0.5 * x[:, 1:2] > 0).astype("float32")
    return x, y


def _mlp(width: int, name: str) -> keras.Model:
    inputs = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    logits = keras.layers.Dense(1, name="logits")(hidden)
    outputs = keras.layers.Activation("sigmoid", name="output")(logits)
    return keras.Model(inputs, outputs, name=name)


def _events(directory) -> list[event_pb2.Event]:
    """Every event of every event file below ``directory`` (read without the module)."""
    events = []
    for path in sorted(Path(directory).rglob("*tfevents*")):
        events += [
            event_pb2.Event.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))
        ]
    return events


def _last(series: list[tuple[int, float]]) -> float:
    return series[-1][1]


# --------------------------------------------------------------------------- the callback


def test_pruned_fit_writes_sparsity_scalars(tmp_path, strategy):
    x, y = _arrays()
    with strategy.scope():
        pruned = tfcompress.prune(_mlp(16, "m"), 0.5)
        pruned.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    history = pruned.fit(
        x,
        y,
        batch_size=64,
        epochs=2,
        verbose=0,
        validation_data=(x, y),
        callbacks=[tfcompress.PruningCallback(), CompressionTensorBoard(tmp_path)],
    ).history
    scalars = read_scalars(tmp_path)
    train = scalars["train"]
    assert [step for step, _ in train["epoch_sparsity"]] == [0, 1]  # written once per epoch
    assert _last(train["epoch_sparsity"]) == pytest.approx(0.5, abs=0.01)
    assert _last(train["epoch_sparsity"]) == pytest.approx(history["sparsity"][-1], abs=1e-6)
    assert _last(train["epoch_sparsity/hidden"]) == pytest.approx(0.5, abs=0.01)
    assert _last(train["epoch_sparsity/logits"]) == pytest.approx(0.5, abs=0.07)
    assert [v for _, v in train["epoch_loss"]] == pytest.approx(history["loss"], rel=1e-6)
    assert "epoch_sparsity" not in scalars["validation"]
    assert _last(scalars["validation"]["epoch_loss"]) == pytest.approx(history["val_loss"][-1])


@pytest.mark.parametrize("first", ["pruning_callback", "tensorboard"])
def test_adds_per_layer_sparsity_missing_from_the_logs(tmp_path, first):
    x, y = _arrays()
    pruned = tfcompress.prune(_mlp(16, "m"), 0.5)
    pruned.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    callbacks = [tfcompress.PruningCallback(log_layers=False), CompressionTensorBoard(tmp_path)]
    if first == "tensorboard":  # it measures weight * mask, so the order does not matter
        callbacks.reverse()
    history = pruned.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=callbacks).history
    train = read_scalars(tmp_path)["train"]
    # the masks reached at the last epoch end, measured independently on the wrappers
    wrappers = dict(find_wrappers(pruned))
    assert sorted(wrappers) == ["hidden", "logits"]
    for layer, wrapper in wrappers.items():
        masks = [np.asarray(m) for _, m, _ in wrapper.pruning_vars]
        expected = sum(int((m == 0).sum()) for m in masks) / sum(m.size for m in masks)
        assert _last(train[f"epoch_sparsity/{layer}"]) == pytest.approx(expected, abs=1e-6)
        assert history[f"sparsity/{layer}"][-1] == pytest.approx(expected, abs=1e-6)
    assert len(train["epoch_sparsity"]) == 2
    assert _last(train["epoch_sparsity"]) == pytest.approx(0.5, abs=0.01)


def test_flags_switch_the_summaries_off(tmp_path):
    x, y = _arrays()
    pruned = tfcompress.prune(_mlp(16, "m"), 0.5)
    pruned.compile("adam", "binary_crossentropy")
    pruned.fit(
        x,
        y,
        batch_size=64,
        epochs=1,
        verbose=0,
        callbacks=[
            tfcompress.PruningCallback(log_layers=False),
            CompressionTensorBoard(tmp_path, sparsity=False, quantizer_ranges=False),
        ],
    )
    tags = set(read_scalars(tmp_path)["train"])
    assert tags == {"epoch_loss", "epoch_sparsity"}  # only what PruningCallback published


def test_plain_model_gets_only_keras_scalars(tmp_path):
    x, y = _arrays()
    model = _mlp(8, "plain")
    model.compile("adam", "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    history = model.fit(
        x,
        y,
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[CompressionTensorBoard(tmp_path, weight_histograms=True)],
    )
    train = read_scalars(tmp_path)["train"]
    assert set(train) == {"epoch_loss", "epoch_auc"}
    assert [v for _, v in train["epoch_auc"]] == pytest.approx(history.history["auc"], rel=1e-6)
    histograms = [
        v.tag for e in _events(tmp_path) for v in e.summary.value if v.tag.startswith("weights/")
    ]
    assert histograms == []


def test_quantized_fit_writes_quantizer_ranges_and_histograms(tmp_path):
    x, y = _arrays()
    qat = tfcompress.quantize(_mlp(16, "q"))
    qat.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    qat.fit(
        x,
        y,
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[CompressionTensorBoard(tmp_path, weight_histograms=True)],
    )
    train = read_scalars(tmp_path)["train"]
    expected = tfcompress.quantization.quantizer_ranges(qat)
    assert {"quant/hidden/min", "quant/hidden/max", "quant/hidden/kernel/min"} <= set(expected)
    for key, value in expected.items():
        assert _last(train[f"epoch_{key}"]) == pytest.approx(value, rel=1e-5, abs=1e-6)
    for layer in ("hidden", "logits", "hidden/kernel"):
        lo, hi = _last(train[f"epoch_quant/{layer}/min"]), _last(train[f"epoch_quant/{layer}/max"])
        assert lo < hi
    counts = {}
    for event in _events(tmp_path / "train"):
        for value in event.summary.value:
            if value.tag.startswith("weights/"):
                buckets = tf.make_ndarray(value.tensor)  # (k, 3): left, right, count
                counts[(value.tag, event.step)] = int(round(buckets[:, 2].sum()))
    assert counts[("weights/hidden/kernel", 1)] == 8 * 16
    assert counts[("weights/logits/kernel", 0)] == 16


def test_pruned_histograms_are_masked(tmp_path):
    x, y = _arrays()
    pruned = tfcompress.prune(_mlp(16, "m"), 0.5)
    pruned.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    pruned.fit(
        x,
        y,
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[
            tfcompress.PruningCallback(),
            CompressionTensorBoard(tmp_path, weight_histograms=True),
        ],
    )
    hist = {}
    for event in _events(tmp_path / "train"):
        for value in event.summary.value:
            if value.tag == "weights/hidden/kernel" and event.step == 1:
                hist = tf.make_ndarray(value.tensor)
    assert hist[:, 2].sum() == pytest.approx(8 * 16)
    # half the kernel is exactly zero: the bucket holding 0 has at least 64 entries
    zero_bucket = [row for row in hist if row[0] <= 0.0 <= row[1]]
    assert sum(row[2] for row in zero_bucket) >= 64


def test_distiller_writes_loss_parts_and_student_sparsity(tmp_path):
    x, y = _arrays()
    teacher = _mlp(32, "teacher")
    teacher.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    teacher.fit(x, y, batch_size=64, epochs=3, verbose=0)
    student = tfcompress.prune(_mlp(8, "student"), 0.5)
    distiller = tfcompress.Distiller(student, teacher, student_loss_weight=0.5)
    distiller.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    history = distiller.fit(
        x,
        y,
        batch_size=64,
        epochs=2,
        verbose=0,
        callbacks=[tfcompress.PruningCallback(log_layers=False), CompressionTensorBoard(tmp_path)],
    ).history
    train = read_scalars(tmp_path)["train"]
    for key in ("student_loss", "distillation_loss", "loss"):
        assert [v for _, v in train[f"epoch_{key}"]] == pytest.approx(history[key], rel=1e-6)
    assert _last(train["epoch_sparsity/student/hidden"]) == pytest.approx(0.5, abs=0.01)
    assert _last(train["epoch_sparsity"]) == pytest.approx(0.5, abs=0.01)
    assert not any("teacher" in tag for tag in train)


def test_distiller_with_quantized_student_logs_student_ranges(tmp_path):
    x, y = _arrays()
    teacher = _mlp(16, "teacher")
    student = tfcompress.quantize(_mlp(8, "student"))
    distiller = tfcompress.Distiller(student, teacher, student_loss_weight=0.5)
    distiller.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    distiller.fit(
        x, y, batch_size=64, epochs=1, verbose=0, callbacks=[CompressionTensorBoard(tmp_path)]
    )
    train = read_scalars(tmp_path)["train"]
    assert _last(train["epoch_quant/logits/min"]) < _last(train["epoch_quant/logits/max"])
    assert _last(train["epoch_quant/hidden/kernel/max"]) == pytest.approx(
        tfcompress.quantization.quantizer_ranges(student)["quant/hidden/kernel/max"], rel=1e-5
    )
    assert "epoch_distillation_loss" in train


def test_callback_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="`log_dir` must be a directory path.*int"):
        CompressionTensorBoard(123)
    with pytest.raises(TypeError, match="`sparsity` must be True or False, received 'yes'"):
        CompressionTensorBoard(tmp_path, sparsity="yes")
    with pytest.raises(TypeError, match="`weight_histograms` must be True or False"):
        CompressionTensorBoard(tmp_path, weight_histograms=1)
    with pytest.raises(TypeError, match="`quantizer_ranges` must be True or False"):
        CompressionTensorBoard(tmp_path, quantizer_ranges=None)
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(ValueError, match="exists and is a file"):
        CompressionTensorBoard(file)
    callback = CompressionTensorBoard(tmp_path, histogram_freq=1)  # keras kwargs pass through
    assert callback.histogram_freq == 1 and callback.log_dir == str(tmp_path)


# --------------------------------------------------------------------------- HParams


def _row(name, fmt, auc, nbytes, b1, b256, logloss=0.5):
    return BenchmarkRow(
        name,
        fmt,
        None if fmt == "keras" else f"/m/{name}",
        "binary",
        {"auc": auc, "logloss": logloss},
        nbytes,
        nbytes // 2,
        nbytes // 4,
        {1: {"median": b1, "p90": b1 * 1.2}, 256: {"median": b256, "p90": b256 * 1.2}},
        {1: 1000.0 / b1, 256: 256_000.0 / b256},
        None,
        512,
    )


def _report() -> BenchmarkReport:
    rows = (
        _row("keras", "keras", 0.75, 40_000_123, 2.0, 8.0),
        _row("int8", "tflite", 0.74, 10_000_000, 0.5, 4.0, logloss=None),
        _row("pruned int8", "tflite", 0.73, 5_000_000, 0.4, 2.0),
    )
    return BenchmarkReport(rows, baseline="keras")


def test_log_hparams_writes_every_variant(tmp_path):
    report = _report()
    runs = log_hparams(
        tmp_path,
        report,
        {"int8": {"bits": 8, "sparsity": 0.0}, "pruned int8": {"bits": 8, "sparsity": 0.5}},
    )
    assert runs == [str(tmp_path / "keras"), str(tmp_path / "int8"), str(tmp_path / "pruned_int8")]
    hparams = read_hparams(tmp_path)
    assert hparams == {
        "keras": {"format": "keras", "variant": "keras"},
        "int8": {"bits": 8.0, "format": "tflite", "sparsity": 0.0, "variant": "int8"},
        "pruned_int8": {"bits": 8.0, "format": "tflite", "sparsity": 0.5, "variant": "pruned int8"},
    }
    scalars = read_scalars(tmp_path)
    assert set(scalars) == {"keras", "int8", "pruned_int8"}
    assert scalars["keras"]["ratio/size_x"] == [(0, 1.0)]
    assert scalars["keras"]["ratio/speed_x_b256"] == [(0, 1.0)]
    # float32, the scalars TensorBoard's default loader reads: 7 significant digits
    assert scalars["keras"]["size/bytes"] == [(0, 40_000_124.0)]
    assert scalars["int8"]["quality/auc"] == [(0, pytest.approx(0.74))]
    assert "quality/logloss" not in scalars["int8"]  # None is skipped
    assert scalars["int8"]["ratio/size_x"] == [(0, pytest.approx(4.0000123))]
    assert scalars["int8"]["ratio/speed_x_b1"] == [(0, pytest.approx(4.0))]
    assert scalars["pruned_int8"]["latency/b256_ms"] == [(0, pytest.approx(2.0))]
    assert scalars["pruned_int8"]["size/gzip_bytes"] == [(0, 2_500_000.0)]
    # the experiment config: discrete domains of the seen values, every metric
    experiment = None
    for event in _events(tmp_path):
        for value in event.summary.value:
            if value.tag == hp_metadata.EXPERIMENT_TAG:
                experiment = hp_metadata.parse_experiment_plugin_data(
                    value.metadata.plugin_data.content
                )
    assert experiment is not None
    domains = {
        info.name: sorted(
            v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
            for v in info.domain_discrete.values
        )
        for info in experiment.hparam_infos
    }
    assert domains == {
        "variant": ["int8", "keras", "pruned int8"],
        "format": ["keras", "tflite"],
        "bits": [8.0],
        "sparsity": [0.0, 0.5],
    }
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {
        "quality/auc",
        "quality/logloss",
        "size/bytes",
        "latency/b1_ms",
        "ratio/size_x",
        "ratio/speed_x_b1",
    } <= metrics


def _experiment_domains(log_dir) -> dict[str, list]:
    for event in _events(log_dir):
        for value in event.summary.value:
            if value.tag == hp_metadata.EXPERIMENT_TAG:
                experiment = hp_metadata.parse_experiment_plugin_data(
                    value.metadata.plugin_data.content
                )
                return {
                    info.name: [
                        getattr(v, v.WhichOneof("kind")) for v in info.domain_discrete.values
                    ]
                    for info in experiment.hparam_infos
                }
    raise AssertionError("no HParams experiment config written")


def test_log_hparams_domains_of_mixed_values(tmp_path, caplog):
    hparams = {
        "keras": {"note": "fp32", "lr": 1},
        "int8": {"note": 8, "lr": 0.5},
        "pruned int8": {"note": True, "lr": np.float32(0.25)},
    }
    with caplog.at_level("WARNING", logger="tfcompress"):
        log_hparams(tmp_path, _report(), hparams)
    assert "hparam 'note' mixes value types" in caplog.text
    domains = _experiment_domains(tmp_path)
    assert domains["note"] == []  # no domain: the values still show per session
    assert domains["lr"] == [0.25, 0.5, 1.0]  # ints and floats share one float domain
    sessions = read_hparams(tmp_path)
    assert [sessions[r]["note"] for r in ("keras", "int8", "pruned_int8")] == ["fp32", 8.0, True]
    assert sessions["pruned_int8"]["lr"] == 0.25


def test_log_hparams_against_another_baseline(tmp_path):
    log_hparams(tmp_path, _report(), baseline="int8")
    scalars = read_scalars(tmp_path)
    assert scalars["int8"]["ratio/size_x"] == [(0, 1.0)]
    assert scalars["pruned_int8"]["ratio/size_x"] == [(0, pytest.approx(2.0))]
    assert scalars["keras"]["ratio/speed_x_b1"] == [(0, pytest.approx(0.25))]
    assert read_hparams(tmp_path)["keras"] == {"format": "keras", "variant": "keras"}


def test_log_hparams_rejects_bad_inputs(tmp_path):
    report = _report()
    with pytest.raises(TypeError, match="`log_dir` must be a directory path"):
        log_hparams(None, report)
    with pytest.raises(TypeError, match="`report` must be a tfcompress.evaluation.BenchmarkReport"):
        log_hparams(tmp_path, {"keras": 1})
    with pytest.raises(ValueError, match=r"\['nope'\].*not in the report.*'keras', 'int8'"):
        log_hparams(tmp_path, report, {"nope": {"bits": 8}})
    with pytest.raises(
        TypeError,
        match=r"`hparams\['int8'\]\['bits'\]` must be a str, int, "
        r"float or bool.*list",
    ):
        log_hparams(tmp_path, report, {"int8": {"bits": [8, 16]}})
    with pytest.raises(TypeError, match=r"`hparams\['int8'\]` must be a mapping"):
        log_hparams(tmp_path, report, {"int8": 8})
    with pytest.raises(ValueError, match="no variant 'float16' in the report"):
        log_hparams(tmp_path, report, baseline="float16")
    assert not list(tmp_path.iterdir())  # nothing written before the arguments were checked


# --------------------------------------------------------------------------- text, stages


def test_log_text_writes_markdown_that_reads_back(tmp_path):
    markdown = _report().to_markdown()
    directory = log_text(tmp_path / "run", "report/benchmark", markdown, step=3)
    assert directory == str(tmp_path / "run")
    log_text(tmp_path / "run", "notes @ stage 1", "**bold**")  # the tag is kept as given
    assert read_text(tmp_path) == {
        "run": {"report/benchmark": [(3, markdown)], "notes @ stage 1": [(0, "**bold**")]}
    }
    plugins = {
        v.tag: v.metadata.plugin_data.plugin_name
        for e in _events(tmp_path / "run")
        for v in e.summary.value
    }
    assert plugins == {"report/benchmark": "text", "notes @ stage 1": "text"}
    assert read_scalars(tmp_path) == {}  # text is not a scalar


def test_log_stage_summary_writes_scalars_per_stage(tmp_path):
    log_stage_summary(
        tmp_path,
        "distill",
        {
            "test/auc": 0.71,
            "params": 12_345,
            "seconds": 3.5,
            "test/recall@10": 0.25,
            "test/logloss": None,
        },
    )
    log_stage_summary(tmp_path, "prune", {"sparsity": np.float32(0.5)}, step=1)
    scalars = read_scalars(tmp_path)
    assert scalars == {
        "distill/summary": {
            "test/auc": [(0, pytest.approx(0.71, rel=1e-7))],
            "params": [(0, 12_345.0)],
            "seconds": [(0, 3.5)],
            "test/recall@10": [(0, 0.25)],
        },
        "prune/summary": {"sparsity": [(1, 0.5)]},
    }
    dtypes = {v.tag: v.tensor.dtype for e in _events(tmp_path) for v in e.summary.value}
    assert set(dtypes.values()) == {types_pb2.DT_FLOAT}  # not float64: TensorBoard skips those
    log_stage_summary(tmp_path, "prune", {"sparsity": 0.75}, step=1)  # a stage run again
    assert read_scalars(tmp_path)["prune/summary"] == {"sparsity": [(1, 0.75)]}


def test_text_and_stage_reject_bad_inputs(tmp_path):
    for tag in ("", " padded", "/lead", "a//b", "trail/", "new\nline"):
        with pytest.raises(ValueError, match="not a valid TensorBoard tag"):
            log_text(tmp_path, tag, "x")
    with pytest.raises(TypeError, match="`tag` must be a str, received int"):
        log_text(tmp_path, 5, "x")
    with pytest.raises(TypeError, match="`markdown` must be a str"):
        log_text(tmp_path, "t", b"x")
    with pytest.raises(ValueError, match="`step` must be an int >= 0, received -1"):
        log_text(tmp_path, "t", "x", step=-1)
    with pytest.raises(TypeError, match=r"`step` must be an int >= 0, received '1' \(str\)"):
        log_text(tmp_path, "t", "x", step="1")
    with pytest.raises(TypeError, match="`log_dir` must be a directory path"):
        log_text(3.5, "t", "x")
    with pytest.raises(ValueError, match="`stage` must be a name.*'a/b'"):
        log_stage_summary(tmp_path, "a/b", {"x": 1.0})
    with pytest.raises(ValueError, match="`stage` must be a name.*'..'"):
        log_stage_summary(tmp_path, "..", {"x": 1.0})
    with pytest.raises(TypeError, match=r"`scalars\['auc'\]` must be a real number.*str"):
        log_stage_summary(tmp_path, "prune", {"auc": "0.7"})
    with pytest.raises(TypeError, match="`scalars` must be a mapping"):
        log_stage_summary(tmp_path, "prune", [("auc", 0.7)])
    with pytest.raises(ValueError, match="not a valid TensorBoard tag"):
        log_stage_summary(tmp_path, "prune", {"test/": 0.7})
    assert not list(tmp_path.iterdir())


def test_readers_reject_bad_log_dirs(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_scalars(tmp_path / "missing")
    with pytest.raises(TypeError, match="`log_dir` must be a directory path"):
        read_hparams(["runs"])
    with pytest.raises(ValueError, match="does not exist"):
        read_text(tmp_path / "missing")
    assert read_scalars(tmp_path) == {} and read_hparams(tmp_path) == {}


# --------------------------------------------------------------------------- the readers


def _float32_and_float64_scalars(directory) -> None:
    """A float32 scalar and a float64 one (what tfcompress wrote before issue 13)."""
    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default():
        for tag, dtype, value in (("f32", tf.float32, 0.25), ("f64", tf.float64, 0.5)):
            tf.summary.write(
                tag,
                tf.constant(value, dtype),
                step=0,
                metadata=scalar_metadata.create_summary_metadata(tag, ""),
            )
    writer.close()


def test_readers_see_what_tensorboards_default_loader_sees(tmp_path):
    _float32_and_float64_scalars(tmp_path)
    # TensorBoard's default loader (the Rust data server) skips float64 scalars, so do we
    assert read_scalars(tmp_path) == {".": {"f32": [(0, 0.25)]}}


def test_readers_fall_back_to_tensorboards_python_loader(tmp_path, monkeypatch):
    _float32_and_float64_scalars(tmp_path / "raw")
    log_hparams(tmp_path / "hparams", _report(), {"int8": {"bits": 8}})
    log_stage_summary(tmp_path, "prune", {"test/auc": 0.71, "test/recall@10": 0.25})
    log_text(tmp_path, "notes @ stage 1", "**bold**", step=2)
    fast = read_scalars(tmp_path), read_hparams(tmp_path), read_text(tmp_path)
    # no data server for this platform: TensorBoard (--load_fast=auto) loads with Python
    monkeypatch.setenv("TENSORBOARD_DATA_SERVER_BINARY", str(tmp_path / "missing"))
    scalars = read_scalars(tmp_path)
    assert scalars.pop("raw") == {"f32": [(0, 0.25)], "f64": [(0, 0.5)]}  # it reads float64
    assert fast[0].pop("raw") == {"f32": [(0, 0.25)]}
    assert scalars == fast[0]  # everything tfcompress writes: the same with either loader
    assert scalars["hparams/int8"]["ratio/size_x"] == [(0, pytest.approx(4.0000123))]
    assert (read_hparams(tmp_path), read_text(tmp_path)) == fast[1:]
    assert fast[1]["hparams/int8"] == {"bits": 8.0, "format": "tflite", "variant": "int8"}
    assert fast[2] == {".": {"notes @ stage 1": [(2, "**bold**")]}}


def test_readers_report_a_data_server_that_fails(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.write_text("#!/bin/sh\necho 'cannot read this logdir' >&2\nexit 8\n")
    server.chmod(0o755)
    monkeypatch.setenv("TENSORBOARD_DATA_SERVER_BINARY", str(server))
    log_text(tmp_path / "logs", "t", "x")
    with pytest.raises(
        RuntimeError,
        match=r"data server \(.*server\) did not load '.*logs': "
        r"it exited with status 8; cannot read this logdir",
    ):
        read_text(tmp_path / "logs")


def test_log_stage_summary_warns_of_float32_overflow(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="tfcompress"):
        log_stage_summary(tmp_path, "prune", {"flops": 1e39, "auc": 0.5})
    assert "scalar 'flops': 1e+39 is out of float32 range; TensorBoard shows inf" in caplog.text
    assert read_scalars(tmp_path)["prune/summary"] == {
        "flops": [(0, float("inf"))],
        "auc": [(0, 0.5)],
    }
