"""What the real ``tensorboard`` server shows for what tfcompress writes.

The server is started as a subprocess with its default loader (the Rust
``tensorboard-data-server``, the "fast" loader of ``--load_fast=auto``) and queried through the
HTTP API its dashboards use: the Scalars dashboard, the HParams dashboard (the POST requests its
query pane sends), the Text dashboard. ``read_scalars``/``read_hparams``/``read_text`` must
return what the server shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

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
from tfcompress.recipe import BenchmarkSpec, Recipe, demo_recipe

pytestmark = pytest.mark.multiprocess

TENSORBOARD = Path(sys.executable).parent / "tensorboard"
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
WAIT_S = 180.0  # TensorBoard imports TensorFlow before it serves: slow on a busy machine
LOAD_S = 30.0  # then it loads the logdir in the background


# --------------------------------------------------------------------------- the server


class Server:
    """A ``tensorboard --logdir`` subprocess and its HTTP API."""

    def __init__(self, logdir: Path, output: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = output
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        with open(output, "wb") as log:
            # the default loader: no --load_fast flag
            self.process = subprocess.Popen(
                [
                    str(TENSORBOARD),
                    "--logdir",
                    str(logdir),
                    "--port",
                    str(self.port),
                    "--host",
                    "127.0.0.1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"tensorboard exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                self.get("/data/runs")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        raise AssertionError(f"tensorboard did not answer in {WAIT_S} s:\n{self.log()[-3000:]}")

    def get(self, route: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{route}{query}", timeout=30) as response:
            return json.loads(response.read())

    def post(self, route: str, body: dict) -> Any:
        """POST ``body`` as the dashboards do (JSON as text/plain)."""
        request = urllib.request.Request(
            f"{self.url}{route}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def eventually(self, fetch: Callable[[], Any], ready: Callable[[Any], bool]) -> Any:
        """``fetch()`` until ``ready`` holds on its answer (the server loads the logdir in the
        background after it starts serving) or ``LOAD_S`` pass; returns the last answer."""
        deadline = time.monotonic() + LOAD_S
        while True:
            answer = fetch()
            if ready(answer) or time.monotonic() > deadline:
                return answer
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    # --- the dashboards' queries

    def scalar_tags(self) -> dict[str, list[str]]:
        return {run: sorted(tags) for run, tags in self.get("/data/plugin/scalars/tags").items()}

    def scalars(self, run: str, tag: str) -> list[tuple[int, float]]:
        rows = self.get("/data/plugin/scalars/scalars", run=run, tag=tag)
        return [(int(step), float(value)) for _, step, value in rows]

    def experiment(self) -> dict:
        return self.post(
            "/data/plugin/hparams/experiment", {"experimentName": "", "hparamsLimit": 1000}
        )

    def session_groups(self, experiment: dict) -> dict[str, dict]:
        """The HParams table: session group name -> {"hparams": ..., "metrics": {tag: value}},
        asked for as the dashboard's query pane does (every hparam and metric column)."""
        columns = [
            {"hparam": h["name"], "includeInResult": True} for h in experiment["hparamInfos"]
        ]
        columns += [
            {"metric": m["name"], "includeInResult": True} for m in experiment["metricInfos"]
        ]
        answer = self.post(
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": STATUSES,
                "colParams": columns,
                "startIndex": 0,
                "sliceSize": 100,
            },
        )
        return {
            group["name"]: {
                "hparams": group["hparams"],
                "sessions": [s["name"] for s in group["sessions"]],
                "metrics": {m["name"]["tag"]: m["value"] for m in group.get("metricValues", [])},
            }
            for group in answer.get("sessionGroups", [])
        }

    def text(self, run: str, tag: str) -> list[tuple[int, str]]:
        rows = self.get("/data/plugin/text/text", run=run, tag=tag)
        return [(int(r["step"]), r["text"]) for r in rows]


@pytest.fixture(scope="module")
def serve(tmp_path_factory) -> Iterator[Callable[[Path], Server]]:
    """``serve(logdir)`` starts ``tensorboard --logdir logdir``; every server is stopped at the
    end of the module, also when a test fails."""
    servers: list[Server] = []

    def start(logdir: Path) -> Server:
        server = Server(logdir, tmp_path_factory.mktemp("tb") / "tensorboard.log")
        servers.append(server)
        server.wait_until_serving()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


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


# --------------------------------------------------------------------------- a whole run


def tiny_demo(name: str = "tb") -> Recipe:
    """``demo_recipe`` at test sizes: teacher, distill (+ student alone), auto, prune, QAT."""
    return dataclasses.replace(
        demo_recipe(samples=1_500, teacher_epochs=1, epochs=1, name=name),
        benchmark=BenchmarkSpec(batch_sizes=(1, 32), repeats=2, max_examples=256),
    )


@pytest.mark.slow
def test_a_run_shows_in_tensorboard(tmp_path_factory, serve):
    out = tmp_path_factory.mktemp("runs")
    report = tfcompress.run(tiny_demo(), out_dir=out, logdir=out / "tb", verbose=0)
    server = serve(out / "tb")
    summaries = [f"{stage.name}/summary" for stage in report.stages]
    tags = server.eventually(server.scalar_tags, lambda t: set(summaries) <= set(t))
    assert summaries == [
        f"{s}/summary" for s in ("teacher", "distill", "auto", "prune", "quantize")
    ]
    for stage, run in zip(report.stages, summaries, strict=True):  # every stage's final figures
        expected = {f"test/{k}": v for k, v in stage.quality.items() if v is not None}
        expected.update(params=stage.params, sparsity=stage.sparsity, seconds=stage.seconds)
        shown = {tag: server.scalars(run, tag) for tag in tags[run]}
        assert shown == {k: [(0, pytest.approx(v, rel=1e-6))] for k, v in expected.items()}
    assert server.scalars("prune/summary", "sparsity")[0][1] == pytest.approx(0.7, abs=0.02)
    assert server.scalars("prune/train", "epoch_sparsity")[-1][1] == pytest.approx(0.7, abs=0.02)
    assert any(t.startswith("epoch_quant/") for t in tags["quantize/train"])
    assert "epoch_distillation_loss" in tags["distill/train"]

    bench = report.benchmark
    ratios = bench.ratios()
    experiment = server.experiment()
    assert {"variant", "stage", "kind", "format", "mode"} <= {
        h["name"] for h in experiment["hparamInfos"]
    }
    groups = server.eventually(
        lambda: server.session_groups(experiment), lambda g: all(v["metrics"] for v in g.values())
    )
    assert set(groups) == set(bench.names) == set(report.exports)
    for name, group in groups.items():  # the HParams table: one row per variant, with values
        row, metrics = bench.row(name), group["metrics"]
        assert group["hparams"]["variant"] == name
        assert metrics["quality/auc"] == pytest.approx(row.quality["auc"], rel=1e-6)
        assert metrics["size/bytes"] == pytest.approx(row.bytes, rel=1e-7)
        assert metrics["ratio/size_x"] == pytest.approx(ratios[name]["size_x"], rel=1e-6)
        assert metrics["latency/b1_ms"] == pytest.approx(row.latency_ms[1]["median"], rel=1e-6)
    assert groups["quantize_int8"]["metrics"]["ratio/size_x"] > 3
    ((step, html),) = server.text(".", "report")
    assert step == 0 and "<table>" in html and "quantize_int8" in html
