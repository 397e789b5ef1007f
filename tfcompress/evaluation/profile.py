"""Where a variant's time goes, per op, measured by a real profiler: :func:`profile_variant`.

* ``.tflite``: LiteRT's own profiler (its C API, :mod:`tfcompress.evaluation._litert_profile`),
  on the CPU accelerator with XNNPACK at ``num_threads``. Ops XNNPACK runs are timed by
  XNNPACK's per-operator profile (``kind="xnnpack"``, XNNPACK operator names such as
  ``"Fully Connected (NC, QS8, QC8W) GEMM"``; one TFLite op may become several, and a fused
  activation is part of its GEMM); ops left to LiteRT's built-in kernels are timed by the
  interpreter (``kind="tflite"``, TFLite op names such as ``"GATHER"``). The installed
  libLiteRt cannot run without the delegate, so there is no delegate-free table.
* ``group="node"`` / ``"layer"`` sums the same executions per TFLite node or per name scope
  (``model/dense_1``) instead of per op; XNNPACK operators are attributed to their nodes by
  :mod:`tfcompress.evaluation._xnnpack_nodes`, which says when it cannot.
* Keras models and SavedModels: TensorFlow's profiler (``tf.profiler.experimental`` trace, host
  tracer level 3, which also traces inexpensive ops): the CPU time of every TF op kernel
  (``kind="tf"``), grouped by op type.

Example:
    >>> p = profile_variant("m_int8.tflite", {"x": x}, batch_size=256)  # doctest: +SKIP
    >>> print(p.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._text import markdown_table
from tfcompress._validation import check_choice, check_int
from tfcompress.export.runtime import Variant, load_variant

__all__ = ["GROUPS", "OpProfile", "OpRow", "profile_variant"]

_log = logging.getLogger("tfcompress")

PROFILERS = {
    "litert": "LiteRT profiler (C API, enable_profiling) on CPU/XNNPACK: XNNPACK's per-operator "
    "profile for delegated ops, the interpreter's op events for the rest",
    "tensorflow": "TensorFlow profiler (tf.profiler.experimental trace, host tracer level 3): "
    "CPU time of each TF op kernel",
}


@dataclass(frozen=True)
class OpRow:
    """One row of a profile: ``count`` executions and ``ms`` milliseconds per run, its
    ``share`` of the profiled op time; ``kind``: ``"xnnpack"``, ``"tflite"`` or ``"tf"``.

    ``op`` is what the row groups (see ``group`` of :func:`profile_variant`): an op name
    (``group="op"``), a TFLite node / TF op (``"node"``) or a layer's name scope
    (``"layer"``). ``where`` is the other side: for an op row the layers it ran for, slowest
    first; for a node or layer row the ops that ran for it (TFLite op, then XNNPACK
    operators). Empty where the profile could not tell (see the profile's notes).
    """

    op: str
    kind: str
    count: float
    ms: float
    share: float
    where: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpProfile:
    """Per-op time of one variant at one batch size.

    Attributes:
        variant: the variant's name.
        profiler: ``"litert"`` or ``"tensorflow"`` (see :data:`PROFILERS`).
        batch_size: the batch profiled.
        runs: runs averaged.
        rows: one :class:`OpRow` per op type, slowest first.
        run_ms: the runtime's own time per run when it records one (LiteRT's ``Invoke``), else
            None; ``run_ms`` minus the op total is time outside the ops.
        num_threads: threads the profile ran with.
        notes: lines printed under the table.
        group: what a row is: ``"op"`` (an op type), ``"node"`` or ``"layer"``.
    """

    variant: str
    profiler: str
    batch_size: int
    runs: int
    rows: tuple[OpRow, ...]
    run_ms: float | None = None
    num_threads: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    group: str = "op"

    @property
    def op_ms(self) -> float:
        """Milliseconds per run summed over the ops."""
        return float(sum(r.ms for r in self.rows))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpProfile:
        d = dict(d)
        d["rows"] = tuple(OpRow(**{**r, "where": tuple(r.get("where", ()))}) for r in d["rows"])
        d["notes"] = tuple(d.get("notes", ()))
        return cls(**d)

    def to_markdown(self) -> str:
        """A table: op (node, layer), kind, count per run, ms per run, share (and for node or
        layer rows the ops that ran); then what measured it."""
        head = [self.group, "kind", "count/run", "ms/run", "share"]
        body = [
            [r.op, r.kind, f"{r.count:g}", f"{r.ms:.4f}", f"{100 * r.share:.1f}%"]
            for r in self.rows
        ]
        if self.group != "op":
            head.append("ops")
            for line, r in zip(body, self.rows, strict=True):
                shown = ", ".join(r.where[:4]) + (", ..." if len(r.where) > 4 else "")
                line.append(shown.replace("|", "/"))
        run = f", runtime Invoke {self.run_ms:.3f} ms/run" if self.run_ms is not None else ""
        lines = [
            f"**{self.variant}**, batch {self.batch_size}, {self.runs} runs, "
            f"{self.num_threads} thread(s): ops {self.op_ms:.3f} ms/run{run}",
            "",
            markdown_table(head, body),
            "",
            f"profiler: {PROFILERS.get(self.profiler, self.profiler)}.",
            *self.notes,
        ]
        return "\n".join(lines)


GROUPS = ("op", "node", "layer")


class _Slot(NamedTuple):
    """One op execution of a run (or, where runs differ, one op type): its op name, kind,
    TFLite op / TF op type, node label and layer scope ("" when unknown), executions and
    milliseconds per run."""

    op: str
    kind: str
    node_op: str
    node: str
    layer: str
    count: float
    ms: float


def scope(names: tuple[str, ...] | list[str]) -> str:
    """The name scope of a node from its tensor names: the first ``/``-path among the
    ``;``-joined names, less its last part (``"model/dense_1/MatMul;model/dense_1/Relu"``
    -> ``"model/dense_1"``); the first name as is when none has a ``/``."""
    for name in names:
        for part in name.split(";"):
            if "/" in part:
                return part.rsplit("/", 1)[0]
    return names[0].split(";", 1)[0] if names else ""


def _group(slots: list[_Slot], group: str) -> tuple[OpRow, ...]:
    """Slots -> rows keyed by ``group``, slowest first; a row's ms is the sum of its slots'."""
    acc: dict[tuple[str, str], list] = {}
    for s in slots:
        if group == "op":
            key, other = s.op, ((s.layer, s.ms),) if s.layer else ()
        else:
            label = s.node if group == "node" else s.layer
            key = label or "(not mapped to a node)"
            other = tuple((o, 0.0) for o in (s.node_op, s.op) if o)
        entry = acc.setdefault((key, s.kind), [0.0, 0.0, {}])
        entry[0] += s.count
        entry[1] += s.ms
        for name, ms in other:
            entry[2][name] = entry[2].get(name, 0.0) + ms
    total = sum(v[1] for v in acc.values())
    rows = []
    for (key, kind), (count, ms, other) in acc.items():
        names = list(other)  # insertion order: the ops of a node in execution order
        if group == "op":
            names.sort(key=lambda n, o=other: -o[n])
        rows.append(OpRow(key, kind, count, ms, ms / total if total > 0 else 0.0, tuple(names)))
    return tuple(sorted(rows, key=lambda r: (-r.ms, r.op)))


def _tflite_slots(path: str, events: list, runs: int) -> tuple[list[_Slot], str]:
    """LiteRT events -> one slot per op execution of a run (each slot's median over the runs),
    each mapped to its TFLite node where the mapping holds; and why it does not ("" if it
    does)."""
    from tfcompress.evaluation._litert_profile import OP_EVENTS
    from tfcompress.evaluation._xnnpack_nodes import graph_nodes, map_xnnpack_events

    per_run: list[list] = [[] for _ in range(runs)]
    run = -1
    for e in events:
        if e.event_type == 1 and e.tag == "Invoke":  # LiteRT's Invoke opens each run
            run += 1
        elif e.event_type in OP_EVENTS:
            per_run[min(max(run, 0), runs - 1)].append(e)
    kind = {8: "xnnpack"}
    sequence = [(e.tag, e.event_type) for e in per_run[0]]
    if any([(e.tag, e.event_type) for e in r] != sequence for r in per_run):
        # runs differ (should not happen): today's per op type medians, no nodes
        by_op: dict[tuple[str, int], list[float]] = {}
        counts: dict[tuple[str, int], int] = {}
        for i, r in enumerate(per_run):
            for e in r:
                by_op.setdefault((e.tag, e.event_type), [0.0] * runs)[i] += e.elapsed_us
                counts[(e.tag, e.event_type)] = counts.get((e.tag, e.event_type), 0) + 1
        slots = [
            _Slot(
                tag,
                kind.get(t, "tflite"),
                "",
                "",
                "",
                counts[(tag, t)] / runs,
                float(np.median(us)) / 1e3,
            )
            for (tag, t), us in by_op.items()
        ]
        return slots, "the runs did not execute the same ops"
    nodes = graph_nodes(path)
    owners, why = map_xnnpack_events(per_run[0], nodes)
    slots = []
    for k, e in enumerate(per_run[0]):
        us = float(np.median([r[k].elapsed_us for r in per_run]))
        o = owners[k]
        n = nodes[o] if o is not None and 0 <= o < len(nodes) else None
        slots.append(
            _Slot(
                op=e.tag,
                kind=kind.get(e.event_type, "tflite"),
                node_op=n.op if n else "",
                node=f"#{n.index} {n.names[0].split(';', 1)[0]}" if n and n.names else "",
                layer=scope(n.names + n.const_names) if n else "",
                count=1.0,
                ms=us / 1e3,
            )
        )
    return slots, why


def _profile_tflite(
    name: str,
    path: str,
    batch: Mapping[str, np.ndarray],
    runs: int,
    warmup: int,
    threads: int,
    group: str,
) -> OpProfile:
    from tfcompress.evaluation._litert_profile import ProfileSession

    with ProfileSession(path, num_threads=threads) as session:
        events = session.profile(batch, runs=runs, warmup=warmup)
    invoke_us = [e.elapsed_us for e in events if e.event_type == 1 and e.tag == "Invoke"]
    slots, why = _tflite_slots(path, events, runs)
    notes = []
    if slots and all(s.ms == 0 for s in slots):
        notes.append(
            "note: every op took under the profiler's 1 µs resolution; profile a larger batch."
        )
    if why:
        notes.append(f"note: the XNNPACK operators are not mapped to TFLite nodes: {why}.")
    return OpProfile(
        variant=name,
        profiler="litert",
        batch_size=len(next(iter(batch.values()))),
        runs=runs,
        rows=_group(slots, group),
        run_ms=float(np.median(invoke_us)) / 1e3 if invoke_us else None,
        num_threads=threads,
        notes=tuple(notes),
        group=group,
    )


_TF_OP = re.compile(r"^(?P<name>[^#:]+):(?P<type>_?[A-Z][A-Za-z0-9_]*)(?:#.*)?$")


def _xspace_op_events(logdir: str) -> list[tuple[str, str, float]]:
    """``(op name, op type, microseconds)`` of every TF op kernel in the trace under ``logdir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    out = []
    for f in Path(logdir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(f.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                for ev in line.events:
                    m = _TF_OP.match(plane.event_metadata[ev.metadata_id].name)
                    if m:
                        out.append((m["name"], m["type"], ev.duration_ps / 1e6))
    return out


def _profile_tensorflow(
    name: str,
    variant: Variant,
    batch: Mapping[str, np.ndarray],
    runs: int,
    warmup: int,
    threads: int,
    group: str,
) -> OpProfile:
    for _ in range(max(1, warmup)):
        variant(batch)
    with tempfile.TemporaryDirectory(prefix="tfcompress-profile-") as logdir:
        options = tf.profiler.experimental.ProfilerOptions(
            host_tracer_level=3, python_tracer_level=0, device_tracer_level=0
        )
        tf.profiler.experimental.start(logdir, options=options)
        try:
            for _ in range(runs):
                variant(batch)
        finally:
            tf.profiler.experimental.stop()
        events = _xspace_op_events(logdir)
    # the trace does not split runs: the tf rows are means over the runs
    slots = [
        _Slot(op_type, "tf", op_type, op, scope([op]), 1.0 / runs, us / runs / 1e3)
        for op, op_type, us in events
    ]
    notes = () if events else ("note: the trace held no TF op events.",)
    return OpProfile(
        variant=name,
        profiler="tensorflow",
        batch_size=len(next(iter(batch.values()))),
        runs=runs,
        rows=_group(slots, group),
        num_threads=threads,
        notes=notes,
        group=group,
    )


def profile_variant(
    variant: Variant | keras.Model | str | os.PathLike,
    features: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    runs: int = 20,
    warmup: int = 3,
    num_threads: int = 1,
    name: str | None = None,
    group: str = "op",
) -> OpProfile:
    """Profile one variant per op at ``batch_size`` with a real profiler (see the module).

    Args:
        variant: a :class:`~tfcompress.export.runtime.Variant`, a tf_keras model, a SavedModel
            directory or a ``.tflite`` file.
        features: examples keyed by input name (repeated or cut to ``batch_size``).
        batch_size: the batch profiled.
        runs: profiled runs (the table is per run).
        warmup: unprofiled runs first.
        num_threads: TFLite/XNNPACK threads (TensorFlow's pool is process-wide, see
            :func:`~tfcompress.evaluation.benchmarking.configure_threads`).
        name: the name shown (default: the variant's).
        group: what a row sums: ``"op"`` (an op type, the default), ``"node"`` (one TFLite
            node / TF op) or ``"layer"`` (the name scope of the node's tensors, e.g.
            ``"model/dense_1"``). For ``.tflite`` files each XNNPACK operator is mapped to the
            TFLite node it runs for (:func:`~tfcompress.evaluation._xnnpack_nodes.
            map_xnnpack_events`); where that mapping cannot be established, its rows say
            ``"(not mapped to a node)"`` and a note says why. The total is the same whatever
            the grouping.

    Returns:
        An :class:`OpProfile`.

    Raises:
        ValueError: ``batch_size``, ``runs`` or ``num_threads`` < 1, ``warmup`` < 0, missing
            inputs in ``features``, ``group`` not one of :data:`GROUPS`.
        RuntimeError: LiteRT's C API refused a call (it names the call and the file).

    Example:
        >>> p = profile_variant("m.tflite", {"x": x}, 256)  # doctest: +SKIP
        >>> [r.op for r in p.rows][:1]  # doctest: +SKIP
        ['Fully Connected (NC, F32) GEMM']
        >>> p.rows[0].where  # doctest: +SKIP
        ('model/dense_1', 'model/dense')
        >>> by_layer = profile_variant("m.tflite", {"x": x}, 256, group="layer")  # doctest: +SKIP
        >>> (by_layer.rows[0].op, by_layer.rows[0].where[:2])  # doctest: +SKIP
        ('model/dense_1', ('FULLY_CONNECTED', 'Fully Connected (NC, F32) GEMM'))
    """
    check_int(batch_size, "batch_size", minimum=1)
    check_int(runs, "runs", minimum=1)
    check_int(warmup, "warmup", minimum=0)
    check_int(num_threads, "num_threads", minimum=1)
    check_choice(
        group,
        "group",
        GROUPS,
        fix='Pass group="op" (per op type), "node" (per TFLite node) or "layer" (per name scope).',
        where="profile_variant",
    )
    if not isinstance(variant, Variant):
        variant = load_variant(variant, num_threads=num_threads, verify=False)
    missing = [s.name for s in variant.input_specs if s.name not in features]
    if missing:
        raise ValueError(
            f"`features` lacks the inputs {missing} of variant {variant.name!r} (it has "
            f"{sorted(features)}); pass a dict keyed by the model's input names."
        )
    n = len(next(iter(features.values())))
    idx = np.arange(batch_size) % n
    batch = {
        s.name: np.ascontiguousarray(np.asarray(features[s.name])[idx]).astype(s.dtype, copy=False)
        for s in variant.input_specs
    }
    shown = name or variant.name or "model"
    if variant.format == "tflite":
        return _profile_tflite(shown, variant.path, batch, runs, warmup, num_threads, group)
    return _profile_tensorflow(shown, variant, batch, runs, warmup, num_threads, group)
