"""Where a variant's time goes, per op, measured by a real profiler: :func:`profile_variant`.

* ``.tflite``: LiteRT's own profiler (its C API, :mod:`tfcompress.evaluation._litert_profile`),
  on the CPU accelerator with XNNPACK at ``num_threads``. Ops XNNPACK runs are timed by
  XNNPACK's per-operator profile (``kind="xnnpack"``, XNNPACK operator names such as
  ``"Fully Connected (NC, QS8, QC8W) GEMM"``; one TFLite op may become several, and a fused
  activation is part of its GEMM); ops left to LiteRT's built-in kernels are timed by the
  interpreter (``kind="tflite"``, TFLite op names such as ``"GATHER"``). The installed
  libLiteRt cannot run without the delegate, so there is no delegate-free table.
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
from typing import Any

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress._text import markdown_table
from tfcompress._validation import check_int
from tfcompress.export.runtime import Variant, load_variant

__all__ = ["OpProfile", "OpRow", "profile_variant"]

_log = logging.getLogger("tfcompress")

PROFILERS = {
    "litert": "LiteRT profiler (C API, enable_profiling) on CPU/XNNPACK: XNNPACK's per-operator "
    "profile for delegated ops, the interpreter's op events for the rest",
    "tensorflow": "TensorFlow profiler (tf.profiler.experimental trace, host tracer level 3): "
    "CPU time of each TF op kernel",
}


@dataclass(frozen=True)
class OpRow:
    """One op type of a profile: ``count`` executions and ``ms`` milliseconds per run, its
    ``share`` of the profiled op time; ``kind``: ``"xnnpack"``, ``"tflite"`` or ``"tf"``."""

    op: str
    kind: str
    count: float
    ms: float
    share: float


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
    """

    variant: str
    profiler: str
    batch_size: int
    runs: int
    rows: tuple[OpRow, ...]
    run_ms: float | None = None
    num_threads: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def op_ms(self) -> float:
        """Milliseconds per run summed over the ops."""
        return float(sum(r.ms for r in self.rows))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OpProfile:
        d = dict(d)
        d["rows"] = tuple(OpRow(**r) for r in d["rows"])
        d["notes"] = tuple(d.get("notes", ()))
        return cls(**d)

    def to_markdown(self) -> str:
        """A table: op, kind, count per run, ms per run, share; then what measured it."""
        head = ["op", "kind", "count/run", "ms/run", "share"]
        body = [
            [r.op, r.kind, f"{r.count:g}", f"{r.ms:.4f}", f"{100 * r.share:.1f}%"]
            for r in self.rows
        ]
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


def _rows(per_run: Mapping[tuple[str, str], list[list[float]]], runs: int) -> tuple[OpRow, ...]:
    """``(op, kind) -> per run [count, microseconds]`` -> rows, slowest first.

    ``ms`` is the median over runs of the op's time in a run (robust to a stalled run on a
    shared machine); ``count`` its mean number of executions per run.
    """
    stats = {
        key: (
            sum(c for c, _ in v) / runs,
            float(np.median([us for _, us in v] + [0.0] * (runs - len(v)))) / 1e3,
        )
        for key, v in per_run.items()
    }
    total = sum(ms for _, ms in stats.values())
    rows = [
        OpRow(op, kind, count, ms, ms / total if total > 0 else 0.0)
        for (op, kind), (count, ms) in stats.items()
    ]
    return tuple(sorted(rows, key=lambda r: (-r.ms, r.op)))


def _accumulate(
    events: list[tuple[int, str, str, float]],
) -> dict[tuple[str, str], list[list[float]]]:
    """``(run, op, kind, us)`` events -> ``(op, kind) -> [[count, us] per run it ran in]``."""
    by_run: dict[tuple[str, str], dict[int, list[float]]] = {}
    for run, op, kind, us in events:
        acc = by_run.setdefault((op, kind), {}).setdefault(run, [0, 0.0])
        acc[0] += 1
        acc[1] += us
    return {key: list(v.values()) for key, v in by_run.items()}


def _profile_tflite(
    name: str, path: str, batch: Mapping[str, np.ndarray], runs: int, warmup: int, threads: int
) -> OpProfile:
    from tfcompress.evaluation._litert_profile import OP_EVENTS, ProfileSession

    with ProfileSession(path, num_threads=threads) as session:
        events = session.profile(batch, runs=runs, warmup=warmup)
    invoke_us = [e.elapsed_us for e in events if e.event_type == 1 and e.tag == "Invoke"]
    ops, run = [], -1
    for e in events:
        if e.event_type == 1 and e.tag == "Invoke":  # LiteRT's Invoke opens each run
            run += 1
        elif e.event_type in OP_EVENTS:
            ops.append(
                (max(run, 0), e.tag, "xnnpack" if e.event_type == 8 else "tflite", e.elapsed_us)
            )
    totals = _accumulate(ops)
    notes = []
    if ops and all(us == 0 for *_, us in ops):
        notes.append(
            "note: every op took under the profiler's 1 µs resolution; profile a larger batch."
        )
    return OpProfile(
        variant=name,
        profiler="litert",
        batch_size=len(next(iter(batch.values()))),
        runs=runs,
        rows=_rows(totals, runs),
        run_ms=float(np.median(invoke_us)) / 1e3 if invoke_us else None,
        num_threads=threads,
        notes=tuple(notes),
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
    name: str, variant: Variant, batch: Mapping[str, np.ndarray], runs: int, warmup: int, threads
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
    totals = _accumulate([(0, op_type, "tf", us / runs) for _, op_type, us in events])
    totals = {k: [[c / runs, us] for c, us in v] for k, v in totals.items()}
    notes = () if events else ("note: the trace held no TF op events.",)
    return OpProfile(
        variant=name,
        profiler="tensorflow",
        batch_size=len(next(iter(batch.values()))),
        runs=runs,
        rows=_rows(totals, 1),
        num_threads=threads,
        notes=notes,
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

    Returns:
        An :class:`OpProfile`.

    Raises:
        ValueError: ``batch_size``, ``runs`` or ``num_threads`` < 1, ``warmup`` < 0, missing
            inputs in ``features``.
        RuntimeError: LiteRT's C API refused a call (it names the call and the file).

    Example:
        >>> p = profile_variant("m.tflite", {"x": x}, 256)  # doctest: +SKIP
        >>> [r.op for r in p.rows][:1]  # doctest: +SKIP
        ['Fully Connected (NC, F32) GEMM']
    """
    check_int(batch_size, "batch_size", minimum=1)
    check_int(runs, "runs", minimum=1)
    check_int(warmup, "warmup", minimum=0)
    check_int(num_threads, "num_threads", minimum=1)
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
        return _profile_tflite(shown, variant.path, batch, runs, warmup, num_threads)
    return _profile_tensorflow(shown, variant, batch, runs, warmup, num_threads)
