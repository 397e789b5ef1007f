"""What the real ``tensorboard`` server shows for what tfcompress writes.

The server is started as a subprocess with its default loader (the Rust
``tensorboard-data-server``, the "fast" loader of ``--load_fast=auto``) and queried through the
HTTP API its dashboards use: the Scalars dashboard, the HParams dashboard (the POST requests its
query pane sends), the Text dashboard. ``read_scalars``/``read_hparams``/``read_text`` must
return what the server shows. (A whole run shown by the server: ``test_a_run_shows_in_tensorboard``
in tests/test_cli_output.py, on the logdir of the piped ``tfcompress demo`` tested there.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tensorboard_server import Server, tensorboard_servers

import tfcompress
from tfcompress._keras import keras
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

pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module")
def serve(tmp_path_factory) -> Iterator[Callable[[Path], Server]]:
    """``serve(logdir)`` starts ``tensorboard --logdir logdir``; every server is stopped at the
    end of the module, also when a test fails."""
    with tensorboard_servers(tmp_path_factory) as start:
        yield start


# --------------------------------------------------------------------------- what we write


def _row(name, fmt, auc, nbytes, b1, logloss=0.5):
    return BenchmarkRow(
        name,
        fmt,
        None if fmt == "keras" else f"/m/{name}",
        "binary",
        {"auc": auc, "logloss": logloss},
        nbytes,
        nbytes // 2,
        nbytes // 4,
        {1: {"median": b1, "p90": b1 * 1.2}},
        {1: 1000.0 / b1},
        None,
        512,
    )


REPORT = BenchmarkReport(
    (
        _row("keras", "keras", 0.75, 400_000, 2.0),
        _row("int8", "tflite", 0.74, 100_000, 0.5, logloss=None),
        _row("pruned int8", "tflite", 0.73, 50_000, 0.4),
    ),
    baseline="keras",
)
STAGE = {
    "test/auc": 0.71,
    "test/recall@10": 0.25,
    "params": 12_345,
    "sparsity": 0.5,
    "seconds": 3.5,
}
MARKDOWN = "| variant | auc |\n|---|---|\n| int8 | 0.74 |"


def _arrays(n: int = 256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, :1] - 0.5 * x[:, 1:2] > 0).astype("float32")
    return x, y


def _mlp(name: str) -> keras.Model:
    inputs = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="logits")(hidden)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict[str, dict[str, list[float]]]]:
    """A logdir with every kind of summary tfcompress writes; the Keras histories of the fits."""
    logdir = tmp_path_factory.mktemp("logs")
    log_hparams(logdir / "hparams", REPORT, {"int8": {"bits": 8}, "pruned int8": {"bits": 8}})
    log_stage_summary(logdir, "prune", STAGE)
    log_text(logdir, "report", MARKDOWN)
    log_text(logdir, "notes @ stage 1", "**bold**", step=2)
    x, y = _arrays()
    keras.utils.set_random_seed(0)
    pruned = tfcompress.prune(_mlp("pruned"), 0.5)
    pruned.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    histories = {
        "prune": pruned.fit(  # per-layer sparsity comes from CompressionTensorBoard
            x,
            y,
            batch_size=64,
            epochs=2,
            verbose=0,
            callbacks=[
                tfcompress.PruningCallback(log_layers=False),
                CompressionTensorBoard(logdir / "prune"),
            ],
        ).history
    }
    qat = tfcompress.quantize(_mlp("qat"))
    qat.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    histories["qat"] = qat.fit(
        x, y, batch_size=64, epochs=2, verbose=0, callbacks=[CompressionTensorBoard(logdir / "qat")]
    ).history
    return logdir, histories


@pytest.fixture(scope="module")
def server(written, serve) -> Server:
    return serve(written[0])


# --------------------------------------------------------------------------- the tests


def test_server_uses_its_default_fast_loader(server):
    # the Rust data server, the loader that ignored our float64 scalars (issue 13)
    assert "fast data loading" in server.log()


def test_scalars_dashboard_shows_stage_summaries(server):
    tags = server.eventually(server.scalar_tags, lambda t: "prune/summary" in t)
    assert tags.get("prune/summary") == sorted(STAGE)  # '@' kept in the tag
    for tag, value in STAGE.items():
        assert server.scalars("prune/summary", tag) == [(0, pytest.approx(value, rel=1e-6))]


def test_scalars_dashboard_shows_compression_callback_scalars(server, written):
    _, histories = written
    tags = server.eventually(server.scalar_tags, lambda t: "prune/train" in t and "qat/train" in t)
    history = histories["prune"]
    assert {
        "epoch_loss",
        "epoch_sparsity",
        "epoch_sparsity/hidden",
        "epoch_sparsity/logits",
    } <= set(tags["prune/train"])
    for key in ("sparsity", "sparsity/hidden", "sparsity/logits", "loss"):
        shown = server.scalars("prune/train", f"epoch_{key}")
        assert shown == [
            (0, pytest.approx(history[key][0], rel=1e-6)),
            (1, pytest.approx(history[key][1], rel=1e-6)),
        ]
    assert server.scalars("prune/train", "epoch_sparsity")[-1][1] == pytest.approx(0.5, abs=0.01)
    quant = [t for t in tags["qat/train"] if t.startswith("epoch_quant/")]
    assert {
        "epoch_quant/hidden/min",
        "epoch_quant/hidden/max",
        "epoch_quant/hidden/kernel/min",
        "epoch_quant/hidden/kernel/max",
    } <= set(quant)
    for tag in quant:
        assert server.scalars("qat/train", tag)[-1][1] == pytest.approx(
            histories["qat"][tag[len("epoch_") :]][-1], rel=1e-6
        )


def test_hparams_dashboard_lists_sessions_with_metric_values(server):
    experiment = server.eventually(server.experiment, lambda e: e.get("metricInfos"))
    assert {h["name"] for h in experiment["hparamInfos"]} == {"variant", "format", "bits"}
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {
        "quality/auc",
        "quality/logloss",
        "size/bytes",
        "latency/b1_ms",
        "ratio/size_x",
        "ratio/speed_x_b1",
    } <= metrics
    groups = server.eventually(
        lambda: server.session_groups(experiment),
        lambda g: len(g) == 3 and all(v["metrics"] for v in g.values()),
    )
    assert sorted(groups) == ["int8", "keras", "pruned int8"]
    assert groups["pruned int8"]["sessions"] == ["hparams/pruned_int8"]
    assert groups["int8"]["hparams"] == {"variant": "int8", "format": "tflite", "bits": 8.0}
    expected = {
        "keras": {
            "quality/auc": 0.75,
            "quality/logloss": 0.5,
            "size/bytes": 400_000,
            "latency/b1_ms": 2.0,
            "ratio/size_x": 1.0,
            "ratio/speed_x_b1": 1.0,
        },
        "int8": {
            "quality/auc": 0.74,
            "size/bytes": 100_000,
            "size/gzip_bytes": 50_000,
            "ratio/size_x": 4.0,
            "ratio/speed_x_b1": 4.0,
        },
        "pruned int8": {
            "quality/auc": 0.73,
            "ratio/size_x": 8.0,
            "latency/b1_ms": 0.4,
            "ratio/speed_x_b1": 5.0,
        },
    }
    for name, values in expected.items():
        shown = groups[name]["metrics"]
        assert shown == {**shown, **{k: pytest.approx(v, rel=1e-6) for k, v in values.items()}}
    assert "quality/logloss" not in groups["int8"]["metrics"]  # None is not written


def test_text_dashboard_shows_log_text(server):
    tags = server.eventually(lambda: server.get("/data/plugin/text/tags"), lambda t: "." in t)
    assert sorted(tags["."]) == ["notes @ stage 1", "report"]
    ((step, html),) = server.text(".", "report")
    assert step == 0 and "<table>" in html and "<td>0.74</td>" in html
    assert server.text(".", "notes @ stage 1") == [(2, "<p><strong>bold</strong></p>")]


def test_readers_return_what_the_server_shows(server, written):
    logdir, _ = written
    tags = server.eventually(server.scalar_tags, lambda t: {"prune/summary", "qat/train"} <= set(t))
    shown = {
        run: {tag: server.scalars(run, tag) for tag in run_tags} for run, run_tags in tags.items()
    }
    read = read_scalars(logdir)
    assert set(read) == set(shown)
    for run, run_tags in shown.items():
        assert set(read[run]) == set(run_tags), run
        for tag, series in run_tags.items():
            assert read[run][tag] == [(s, pytest.approx(v, rel=1e-7)) for s, v in series]
    hparams = read_hparams(logdir)
    groups = server.session_groups(server.experiment())
    assert {f"hparams/{run}" for run in read_hparams(logdir / "hparams")} == {
        s for g in groups.values() for s in g["sessions"]
    }
    for group in groups.values():
        (session,) = group["sessions"]
        assert hparams[session] == group["hparams"]
    assert read_text(logdir)["."]["report"] == [(0, MARKDOWN)]
