"""Per-op profiles: LiteRT's C profiler through ctypes (bindings pinned here), TensorFlow's
profiler for Keras models, and the per-op tables of the benchmark report."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets the environment before TensorFlow loads)
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras
from tfcompress.evaluation import _litert_profile as lp
from tfcompress.evaluation.benchmarking import benchmark
from tfcompress.evaluation.profile import OpProfile, profile_variant
from tfcompress.evaluation.report import BenchmarkReport, BenchmarkRow
from tfcompress.export.runtime import load_variant
from tfcompress.export.tflite import export_tflite

K, H, N, BATCH = 256, 512, 256, 256


@pytest.fixture(scope="module")
def dense_relu_dense(tmp_path_factory):
    """Dense -> ReLU -> Dense (two FULLY_CONNECTED nodes, the ReLU fused), float .tflite."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((K,), name="x")
    h = keras.layers.ReLU(name="relu")(keras.layers.Dense(H, name="d1")(inp))
    model = keras.Model(inp, keras.layers.Dense(N, name="d2")(h))
    path = tmp_path_factory.mktemp("profile") / "m.tflite"
    x = np.random.default_rng(0).normal(size=(BATCH, K)).astype("float32")
    export_tflite(model, path, parity_data={"x": x[:8]})
    return model, str(path), {"x": x}


def test_bindings_match_the_installed_litert(dense_relu_dense):
    """Every declared symbol exists; the event layout gives one XNNPACK event per executed
    XNNPACK operator per run, named as XNNPACK names them, in execution order."""
    _, path, feats = dense_relu_dense
    lib = lp.library()
    for name in lp._SIGNATURES:
        assert hasattr(lib, name), name
    ops = [op["op_name"] for op in interpreter_ops(load_variant(path, verify=False).interpreter)]
    # two FULLY_CONNECTED nodes (ReLU fused), both taken by one XNNPACK delegate node
    assert sorted(ops) == ["DELEGATE", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    runs = 3
    with lp.ProfileSession(path, num_threads=1) as session:
        assert session.input_names == ["x"]
        events = session.profile(feats, runs=runs, warmup=1)
    invokes = [e for e in events if e.event_type == 1 and e.tag == "Invoke"]
    assert len(invokes) == runs
    xnn = [e for e in events if e.event_type == 8]
    assert all(e.source in (0, 1, 2) for e in events)
    per_run = len(xnn) // runs
    assert len(xnn) == per_run * runs and per_run >= 2
    # the operator index restarts each run: 0..per_run-1, in order
    assert [e.metadata1 for e in xnn] == list(range(per_run)) * runs
    gemms = [e for e in xnn if e.tag == "Fully Connected (NC, F32) GEMM"]
    assert len(gemms) == 2 * runs  # the two FULLY_CONNECTED nodes
    assert all(e.elapsed_us >= 1 for e in gemms)  # 256x256x512 GEMMs take > 1 µs


def test_tflite_profile_names_fully_connected_and_shares_sum_to_one(dense_relu_dense):
    _, path, feats = dense_relu_dense
    p = profile_variant(path, feats, BATCH, runs=5, name="float")
    assert p.profiler == "litert" and p.batch_size == BATCH and p.variant == "float"
    top = p.rows[0]
    assert (top.op, top.kind, top.count) == ("Fully Connected (NC, F32) GEMM", "xnnpack", 2)
    assert top.share > 0.5
    assert sum(r.share for r in p.rows) == pytest.approx(1.0)
    assert p.run_ms is not None and p.run_ms >= p.op_ms * 0.5
    assert OpProfile.from_dict(p.to_dict()) == p
    table = p.to_markdown()
    assert table.count("\n| ") == len(p.rows) + 1  # header + one line per op (after the title)
    assert "LiteRT profiler" in table


def test_keras_profile_uses_tensorflows_profiler(dense_relu_dense):
    model, _, feats = dense_relu_dense
    p = profile_variant(model, feats, 64, runs=3)
    assert p.profiler == "tensorflow"
    kinds = {r.kind for r in p.rows}
    assert kinds == {"tf"}
    matmuls = [r for r in p.rows if "MatMul" in r.op]
    assert matmuls and sum(r.count for r in matmuls) == pytest.approx(2)
    assert sum(r.share for r in p.rows) == pytest.approx(1.0)


def test_report_shows_a_row_per_op(dense_relu_dense):
    _, path, feats = dense_relu_dense
    p = profile_variant(path, feats, BATCH, runs=2, name="m")
    row = BenchmarkRow(
        "m", "tflite", path, "binary", {"auc": 0.7}, 10, 5, 3,
        {BATCH: {"median": 1.0, "p90": 1.1}}, {BATCH: 256.0}, None, 64,
        profiles={BATCH: p.to_dict()},
        achieved={BATCH: {"flops": 2_000_000, "dtype": "float32", "gflops": 2.0, "share": 0.5}},
    )  # fmt: skip
    report = BenchmarkReport(
        (row,), settings={"peak": {"float32": {"gflops": 4.0, "shape": [8, 8, 8]}}}
    )
    md = report.to_markdown()
    section = md.split("## Per-op profiles", 1)[1]
    op_lines = [
        line for line in section.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert len(op_lines) == len(p.rows) + 1
    assert "| 2.00 | 50.0 |" in md  # GFLOP/s and % peak columns
    back = BenchmarkReport.from_dict(report.to_dict())
    assert back.rows[0].profiles == row.profiles and back.to_markdown() == md


def test_bad_input_is_named(dense_relu_dense):
    _, path, feats = dense_relu_dense
    with pytest.raises(TypeError, match="profile"):
        benchmark({"m": path}, (feats["x"], np.zeros(BATCH)), profile="yes")
    with pytest.raises(ValueError, match="num_threads"):
        profile_variant(path, feats, 8, num_threads=0)
    with pytest.raises(ValueError, match="batch_size"):
        profile_variant(path, feats, 0)
    with pytest.raises(ValueError, match=r"lacks the inputs \['x'\]"):
        profile_variant(path, {"y": feats["x"]}, 8)


def test_cli_bench_has_profile():
    from tfcompress.cli._parser import PROFILE_GROUP_CHOICES, build_parser
    from tfcompress.evaluation.profile import GROUPS

    args = build_parser().parse_args(["bench", "m.tflite", "--data", "ctr", "--profile"])
    assert args.profile is True and args.profile_group == "op"
    assert build_parser().parse_args(["bench", "m.tflite", "--data", "ctr"]).profile is False
    argv = ["bench", "m.tflite", "--data", "ctr", "--profile", "--profile-group", "layer"]
    assert build_parser().parse_args(argv).profile_group == "layer"
    assert PROFILE_GROUP_CHOICES == GROUPS  # the parser's copy (it imports no TensorFlow)


def test_benchmark_profiles_per_layer(dense_relu_dense):
    _, path, feats = dense_relu_dense
    report = benchmark(
        {"m": path},
        (feats["x"], np.zeros(BATCH)),
        batch_sizes=(BATCH,),
        repeats=3,
        progress=False,
        measure_memory=False,
        profile=True,
        peak=False,
        profile_group="layer",
    )
    (profile,) = report.rows[0].profiles.values()  # OpProfile.to_dict()
    assert profile["group"] == "layer"
    names = " ".join(r["op"] for r in profile["rows"])
    assert "d1" in names and "d2" in names  # the two Dense layers' rows
    with pytest.raises(ValueError, match="`profile_group` must be one of"):
        benchmark({"m": path}, (feats["x"], np.zeros(BATCH)), profile_group="ops")
