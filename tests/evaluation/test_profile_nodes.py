"""Per-op profile rows mapped to TFLite nodes and layers (``group="node"`` / ``"layer"``): the
XNNPACK operators of LiteRT's profile are attributed to the nodes they run for, and the mapping
is dropped, with a note, where it cannot be established."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets the environment before TensorFlow loads)
from tfcompress._keras import keras
from tfcompress.evaluation import _xnnpack_nodes as xn
from tfcompress.evaluation._litert_profile import OP_EVENTS, ProfiledEvent, ProfileSession
from tfcompress.evaluation.profile import (
    GROUPS,
    OpProfile,
    _group,
    _tflite_slots,
    profile_variant,
    scope,
)
from tfcompress.export.tflite import export_tflite

BATCH = 256


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Embedding gather -> concat -> Dense 512 (relu) -> Dense 8 -> Dense 1, float and int8."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((4,), name="ids", dtype="int32")
    x = keras.Input((16,), name="x")
    e = keras.layers.Flatten(name="flat")(keras.layers.Embedding(100, 8, name="emb")(ids))
    h = keras.layers.Concatenate(name="cat")([e, x])
    h = keras.layers.Dense(512, activation="relu", name="wide")(h)
    h = keras.layers.Dense(8, name="narrow")(h)
    model = keras.Model([ids, x], keras.layers.Dense(1, name="head")(h))
    rng = np.random.default_rng(0)
    feats = {
        "ids": rng.integers(0, 100, (BATCH, 4)).astype("int32"),
        "x": rng.normal(size=(BATCH, 16)).astype("float32"),
    }
    root = tmp_path_factory.mktemp("nodes")
    paths = {"float": str(root / "f.tflite"), "int8": str(root / "q.tflite")}
    export_tflite(model, paths["float"], parity_data=feats)
    export_tflite(
        model, paths["int8"], "int8", representative_data=feats, parity_data=feats, drift="ignore"
    )
    return model, paths, feats


@pytest.mark.parametrize("dtype", ["float", "int8"])
def test_every_operator_maps_to_its_node(files, dtype):
    """Interpreter events carry the node index; each XNNPACK operator gets the node it runs
    for: the three GEMMs belong to the three Dense layers, in order, the gather to the
    Embedding."""
    _, paths, feats = files
    nodes = xn.graph_nodes(paths[dtype])
    with ProfileSession(paths[dtype]) as session:
        events = session.profile(feats, runs=1, warmup=1)
    run = [e for e in events if e.event_type in OP_EVENTS]
    owners, why = xn.map_xnnpack_events(run, nodes)
    assert why == "" and None not in owners
    xnn_meta = [e.metadata1 for e in run if e.event_type == 8]
    assert 0 in xnn_meta and max(xnn_meta) < len(run)  # operator indices, not node indices
    gemm_layers = [
        scope(nodes[o].names + nodes[o].const_names)
        for e, o in zip(run, owners, strict=True)
        if e.tag.startswith("Fully Connected")
    ]
    assert gemm_layers == ["model/wide", "model/narrow", "model/head"]
    (gather,) = [(e, o) for e, o in zip(run, owners, strict=True) if e.event_type == 2]
    assert gather[0].tag == "GATHER" and nodes[gather[1]].op == "GATHER"
    assert scope(nodes[gather[1]].names) == "model/emb"
    ops = {nodes[o].op for o in owners}
    assert {"FULLY_CONNECTED", "CONCATENATION", "RESHAPE"} <= ops
    assert ("QUANTIZE" in ops) == (dtype == "int8")


def test_layer_rows_name_the_dense_layers_and_totals_match(files):
    _, paths, feats = files
    p = profile_variant(paths["float"], feats, BATCH, runs=5, group="layer")
    assert p.group == "layer" and not p.notes
    rows = {r.op: r for r in p.rows}
    assert {"model/wide", "model/narrow", "model/head", "model/emb"} <= set(rows)
    assert rows["model/wide"].where == (
        "FULLY_CONNECTED",
        "Static Reshape (NC)",
        "Fully Connected (NC, F32) GEMM",
    )
    assert rows["model/emb"].kind == "tflite" and rows["model/emb"].where == ("GATHER",)
    assert rows["model/wide"].ms > rows["model/narrow"].ms  # 48x512 vs 512x8 weights
    assert sum(r.share for r in p.rows) == pytest.approx(1.0)
    assert OpProfile.from_dict(p.to_dict()) == p
    md = p.to_markdown()
    assert "| layer | kind |" in md and "| model/wide | xnnpack |" in md
    # the op rows say which layers they ran for, hottest first
    by_op = profile_variant(paths["int8"], feats, BATCH, runs=3)
    gemm = next(r for r in by_op.rows if r.op.startswith("Fully Connected"))
    assert set(gemm.where) == {"model/wide", "model/narrow", "model/head"}
    assert "| op | kind | count/run | ms/run | share |" in by_op.to_markdown()  # unchanged


def test_grouping_keeps_the_total(files):
    _, paths, feats = files
    runs = 4
    with ProfileSession(paths["int8"]) as session:
        events = session.profile(feats, runs=runs, warmup=1)
    slots, why = _tflite_slots(paths["int8"], events, runs)
    assert why == ""
    totals = {g: sum(r.ms for r in _group(slots, g)) for g in GROUPS}
    assert totals["node"] == pytest.approx(totals["op"]) == pytest.approx(totals["layer"])
    counts = {g: sum(r.count for r in _group(slots, g)) for g in GROUPS}
    assert counts["op"] == counts["node"] == counts["layer"] == len(slots)
    nodes = _group(slots, "node")
    assert len(nodes) == len(xn.graph_nodes(paths["int8"]))  # every node ran, none unmapped


def test_keras_layer_rows(files):
    model, _, feats = files
    p = profile_variant(model, feats, 64, runs=2, group="layer")
    rows = {r.op: r for r in p.rows}
    wide = [k for k in rows if k.endswith("/wide")]
    assert wide and any("MatMul" in w for w in rows[wide[0]].where)
    assert sum(r.share for r in p.rows) == pytest.approx(1.0)


def _ev(tag: str, kind: int, meta: int) -> ProfiledEvent:
    return ProfiledEvent(tag, kind, 1, 0, meta)


def _node(i: int, op: str, ins: tuple, outs: tuple) -> xn.GraphNode:
    return xn.GraphNode(i, op, ins, outs, (f"m/l{i}/{op}",), (), ())


def test_unestablished_mapping_is_dropped_with_a_reason():
    nodes = [_node(0, "MUL", (0,), (1,)), _node(1, "ADD", (1,), (2,))]
    ok = [_ev("Multiply (ND)", 8, 0), _ev("Add (ND)", 8, 1)]
    assert xn.map_xnnpack_events(ok, nodes) == ([0, 1], "")
    swapped = [_ev("Add (ND)", 8, 0), _ev("Multiply (ND)", 8, 1)]
    owners, why = xn.map_xnnpack_events(swapped, nodes)
    assert owners == [None, None] and "did not read" in why
    extra = [*ok, _ev("Copy (NC, X32)", 8, 2)]
    assert xn.map_xnnpack_events(extra, nodes)[0] == [None, None, None]
    # the interpreter ran node 1 (ADD) itself: MUL alone is delegated
    assert xn.map_xnnpack_events([ok[0], _ev("ADD", 2, 1)], nodes) == ([0, 1], "")
    # an unknown op or two ways to read a partition: no mapping
    assert xn.parse_partition(["Add (ND)"], [_node(0, "CUSTOM", (0,), (1,))]) is None
    reshape = [_node(0, "RESHAPE", (0,), (1,)), _node(1, "FULLY_CONNECTED", (1,), (2,))]
    assert xn.parse_partition(
        ["Static Reshape (NC)", "Fully Connected (NC, F32) GEMM"], reshape
    ) == [0, 1]


def test_bad_group_is_named(files):
    _, paths, feats = files
    with pytest.raises(ValueError, match=r"group.*'layer'"):
        profile_variant(paths["float"], feats, 8, group="layers")
