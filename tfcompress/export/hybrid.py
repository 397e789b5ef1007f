"""Latency-aware hybrid quantization: which op types of a full-integer TFLite model run faster
in float on this machine, measured (:func:`choose_float_ops`, ``export_tflite(float_ops="auto")``).

Full int8 is not always faster than float on a CPU. In the reference BST and a Model Garden
BERT-small, full int8 ran at 0.41-0.57x the float file's speed on one thread: LiteRT's XNNPACK
delegate leaves int8 ``BATCH_MATMUL`` between two activations and the decomposed
``LayerNormalization`` (``MEAN``, ``SQUARED_DIFFERENCE``, ``RSQRT``) to slower built-in kernels
and splits the graph into more delegate partitions, and every int8 element-wise op requantizes.
Keeping those op types in float (a ``DEQUANTIZE`` before, a ``QUANTIZE`` after:
:func:`tfcompress.export.ptq.keep_ops_in_float`) keeps the int8 matmuls and the int8 file size
but runs the rest at float speed. Which op types to keep is a property of the model, the
runtime and the CPU, so it is measured, not guessed (docs/export.md, "Latency-aware hybrid").

The search is greedy over :data:`OP_GROUPS`: starting from the full-integer file, each group
whose op types the model quantizes is tried on top of the groups kept so far, and kept when its
file is faster by more than ``margin`` (geometric mean over ``batch_sizes`` of the median
latency ratio, the candidates timed interleaved). It needs no reconversion: each candidate is a
rewrite of the converted flatbuffer, so a search costs seconds.

Example:
    >>> choice = choose_float_ops(flatbuffer, examples)  # doctest: +SKIP
    >>> choice.float_ops, round(choice.speedup, 2)  # doctest: +SKIP
    (('BATCH_MATMUL', 'SOFTMAX', 'MEAN', 'SQUARED_DIFFERENCE', 'RSQRT'), 2.2)
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfcompress._validation import check_float, check_int, must_be
from tfcompress.export.float_regions import merge_float_regions
from tfcompress.export.ptq import WEIGHT_OPS, dequantize_weights, keep_ops_in_float

__all__ = [
    "DYNAMIC_GROUPS",
    "OP_GROUPS",
    "HybridChoice",
    "apply_auto_float_ops",
    "choose_float_ops",
]

_log = logging.getLogger("tfcompress")

#: Op types tried together, in this order. ``GATHER`` is never offered: keeping it float would
#: dequantize a whole embedding table on every call. Ops with an int32 bias (``FULLY_CONNECTED``,
#: ``CONV_2D``) cannot run in float inside a full-integer file and are never offered either.
OP_GROUPS: dict[str, tuple[str, ...]] = {
    "attention": ("BATCH_MATMUL", "SOFTMAX"),
    "normalization": ("MEAN", "SQUARED_DIFFERENCE", "RSQRT"),
    "activation": ("GELU", "TANH", "LOGISTIC", "HARD_SWISH"),
    "elementwise": ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM"),
    "layout": ("TRANSPOSE", "CONCATENATION", "SUM"),
}
#: The groups of a dynamic-range file (``choose_float_ops(..., dynamic=True)``): its weight ops
#: computed in float on their int8 weights (:func:`tfcompress.export.ptq.dequantize_weights`).
#: On this project's AMD EPYC (AVX2, no VNNI) the DCN student's dynamic file ran at 0.80x float
#: at batch 256 and 0.98x with its weights computed in float (docs/export.md).
DYNAMIC_GROUPS: dict[str, tuple[str, ...]] = {"weights": WEIGHT_OPS}


@dataclass(frozen=True)
class HybridChoice:
    """The outcome of :func:`choose_float_ops`.

    Attributes:
        float_ops: the op types to keep in float (empty: full int8 was fastest).
        groups: the :data:`OP_GROUPS` names kept, in search order.
        flatbuffer: the chosen file's bytes (the input rewritten with ``float_ops``).
        latency_ms: ``{candidate: {batch size: median ms}}``; candidates are ``"int8"`` (the
            converter's file; ``"dynamic"`` for a dynamic-range file), then ``"+group"`` per
            tried group (on top of those kept before it), and ``"float"`` when a float file was
            given.
        speedup: the chosen file's speed over the converter's file (geometric mean over batch
            sizes; > 1 is faster).
        vs_float: the chosen file's speed over the float file, or None if none was given.
        skipped: ``{group: reason}`` for groups not tried.
    """

    float_ops: tuple[str, ...]
    groups: tuple[str, ...]
    flatbuffer: bytes = field(repr=False)
    latency_ms: dict[str, dict[int, float]]
    speedup: float
    vs_float: float | None
    skipped: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the flatbuffer)."""
        return {
            "float_ops": list(self.float_ops),
            "groups": list(self.groups),
            "latency_ms": {
                k: {str(b): v for b, v in t.items()} for k, t in self.latency_ms.items()
            },
            "speedup": self.speedup,
            "vs_float": self.vs_float,
            "skipped": dict(self.skipped),
        }


def _check_examples(examples: object) -> dict[str, np.ndarray]:
    if not isinstance(examples, Mapping) or not examples:
        raise TypeError(
            "`examples` must be a non-empty dict of input name -> batched numpy array (real "
            f"inputs: ids must lie in their tables), received {type(examples).__name__}."
        )
    out = {str(k): np.asarray(v) for k, v in examples.items()}
    sizes = {v.shape[0] if v.ndim else 0 for v in out.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            f"`examples` arrays must share one non-zero batch dimension, received shapes "
            f"{ {k: v.shape for k, v in out.items()} }."
        )
    return out


def _batch(examples: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    n = next(iter(examples.values())).shape[0]
    index = np.arange(size) % n
    return {k: np.ascontiguousarray(v[index]) for k, v in examples.items()}


class _Timer:
    """Loads candidate flatbuffers with LiteRT and times them interleaved, median per batch."""

    def __init__(self, num_threads: int, batch_sizes: Sequence[int], repeats: int) -> None:
        self.num_threads = num_threads
        self.batch_sizes = tuple(batch_sizes)
        self.repeats = repeats
        self._dir = tempfile.TemporaryDirectory(prefix="tfcompress-hybrid-")

    def close(self) -> None:
        self._dir.cleanup()

    def _load(self, name: str, flatbuffer: bytes) -> Any:
        from tfcompress.export.runtime import load_variant

        path = os.path.join(self._dir.name, f"{len(os.listdir(self._dir.name))}.tflite")
        with open(path, "wb") as f:
            f.write(flatbuffer)
        return load_variant(path, name=name, num_threads=self.num_threads, verify=False)

    def time(
        self, candidates: dict[str, bytes], examples: dict[str, np.ndarray]
    ) -> dict[str, dict[int, float]]:
        variants = {name: self._load(name, fb) for name, fb in candidates.items()}
        out: dict[str, dict[int, float]] = {name: {} for name in candidates}
        for size in self.batch_sizes:
            batch = _batch(examples, size)
            for variant in variants.values():
                for _ in range(3):  # warm up (and resize) outside the timed runs
                    variant(batch)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(self.repeats):
                for name, variant in variants.items():
                    start = time.perf_counter()
                    variant(batch)
                    times[name].append(time.perf_counter() - start)
            for name in variants:
                out[name][size] = float(np.median(times[name]) * 1e3)
        return out


def _speed(base: Mapping[int, float], other: Mapping[int, float]) -> float:
    """Geometric mean over batch sizes of ``base / other`` (> 1: ``other`` is faster)."""
    return math.exp(np.mean([math.log(base[b] / other[b]) for b in base]))


def choose_float_ops(
    flatbuffer: bytes,
    examples: Mapping[str, Any],
    *,
    float_flatbuffer: bytes | None = None,
    groups: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 256),
    num_threads: int = 1,
    repeats: int = 20,
    margin: float = 0.03,
    dynamic: bool = False,
) -> HybridChoice:
    """Measure which op types of a full-integer (or dynamic-range) TFLite model to keep in float.

    Args:
        flatbuffer: a full-integer (``"int8"`` / ``"int16x8"``) ``.tflite`` model's bytes.
        examples: real inputs, ``{input name: batched array}`` (tiled to each batch size).
        float_flatbuffer: the float file of the same model, timed beside the candidates so
            ``vs_float`` says whether the hybrid is faster than float (optional).
        groups: names of :data:`OP_GROUPS` to try, in order (default: all of them).
        batch_sizes: batch sizes timed; the score is the geometric mean over them.
        num_threads: LiteRT threads (as the file will be served).
        repeats: timed runs per candidate and batch size (interleaved; medians compared).
        margin: a group is kept only when it makes the file faster by more than this share
            (timing noise on a shared machine is a few percent).
        dynamic: ``flatbuffer`` is a ``"dynamic"`` file: the groups are
            :data:`DYNAMIC_GROUPS` (weight ops computed in float on their int8 weights).

    Returns:
        A :class:`HybridChoice`.

    Raises:
        TypeError: ``flatbuffer`` is not bytes or ``examples`` not a dict of arrays.
        ValueError: an unknown group, a bad batch size/thread count/margin.

    Example:
        >>> choice = choose_float_ops(fb, {"x": x}, batch_sizes=(1,))  # doctest: +SKIP
    """
    if not isinstance(flatbuffer, (bytes, bytearray)):
        raise TypeError(must_be("flatbuffer", "the bytes of a .tflite model", flatbuffer))
    if float_flatbuffer is not None and not isinstance(float_flatbuffer, (bytes, bytearray)):
        raise TypeError(
            must_be("float_flatbuffer", "None or the bytes of a .tflite model", float_flatbuffer)
        )
    data = _check_examples(examples)
    if not isinstance(dynamic, bool):
        raise TypeError(must_be("dynamic", "True or False", dynamic))
    available, rewrite = (
        (DYNAMIC_GROUPS, dequantize_weights) if dynamic else (OP_GROUPS, keep_ops_in_float)
    )
    names = list(available) if groups is None else list(groups)
    unknown = [g for g in names if g not in available]
    if unknown or isinstance(groups, str):
        raise ValueError(
            f"`groups` must be a list of names from {list(available)}, received {groups!r}."
        )
    sizes = [check_int(b, "batch_sizes", minimum=1) for b in batch_sizes]
    if not sizes:
        raise ValueError("`batch_sizes` must name at least one batch size, received [].")
    check_int(num_threads, "num_threads", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    check_float(margin, "margin", minimum=0.0)

    original = bytes(flatbuffer)
    base = "dynamic" if dynamic else "int8"
    baselines = {base: original}
    if float_flatbuffer is not None:
        baselines["float"] = bytes(float_flatbuffer)
    timer = _Timer(num_threads, sizes, repeats)
    try:
        current, kept_ops, kept_groups, rewritten = original, (), [], 0
        table = timer.time(baselines, data)
        skipped: dict[str, str] = {}
        for group in names:
            ops = tuple(dict.fromkeys(kept_ops + available[group]))
            try:
                candidate, done = rewrite(original, ops)
            except ValueError as e:
                skipped[group] = f"cannot run in float: {e}"
                continue
            if len(done) == rewritten:  # no op of this group is quantized
                skipped[group] = "the model quantizes none of " + ", ".join(available[group])
                continue
            # re-timed side by side: compare with the current file from the same round
            timed = timer.time({"current": current, f"+{group}": candidate}, data)
            gain = _speed(timed["current"], timed[f"+{group}"])
            table[f"+{group}"] = timed[f"+{group}"]
            _log.info("hybrid int8: +%s is %.2fx the current file's speed", group, gain)
            if gain > 1.0 + margin:
                current, kept_ops, rewritten = candidate, ops, len(done)
                kept_groups.append(group)
        final = timer.time({**baselines, "chosen": current}, data)
    finally:
        timer.close()
    speedup = _speed(final[base], final["chosen"])
    vs_float = _speed(final["float"], final["chosen"]) if "float" in final else None
    return HybridChoice(kept_ops, tuple(kept_groups), current, table, speedup, vs_float, skipped)


def apply_auto_float_ops(
    flatbuffer: bytes,
    examples: list[dict[str, np.ndarray]] | None,
    specs: Any,
    options: dict[str, Any],
) -> bytes:
    """``export_tflite(float_ops="auto")``: the measured hybrid of a converted file.

    ``examples`` are the calibration examples (None for a QAT model exported without data, or
    a ``"dynamic"`` file: a deterministic random batch then). Records the choice in
    ``options["float_ops_auto"]`` and adds the kept op types to ``options["float_ops"]``.

    Example:
        >>> fb = apply_auto_float_ops(fb, examples, specs, options)  # doctest: +SKIP
    """
    if examples:
        feed = {k: np.concatenate([np.asarray(e[k]) for e in examples]) for k in examples[0]}
    else:
        from tfcompress._inputs import random_batch

        feed = random_batch(specs)
    dynamic = options.get("mode") == "dynamic"
    choice = choose_float_ops(flatbuffer, feed, dynamic=dynamic)
    options["float_ops"] = list(dict.fromkeys([*options.get("float_ops", []), *choice.float_ops]))
    options["float_ops_auto"] = choice.to_dict()
    flatbuffer = choice.flatbuffer
    if not dynamic:  # (a dynamic file's weight DEQUANTIZEs must stay: they keep the int8 bytes)
        # one float region per run of kept ops: no int8 round trip between them (closer to float)
        flatbuffer, options["float_regions_merged"] = merge_float_regions(flatbuffer)
    _log.info(
        "float_ops='auto': kept %s in float (%.2fx the converter's file's speed)",
        ", ".join(choice.groups) or "nothing",
        choice.speedup,
    )
    return flatbuffer
