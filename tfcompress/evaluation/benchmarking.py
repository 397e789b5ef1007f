"""Measure quality, size, latency and memory of model variants side by side, in one run:
:func:`benchmark`. Threads, delegate, quality and memory rules: docs/evaluation.md.

Example:
    >>> from tfcompress.evaluation.benchmarking import benchmark
    >>> report = benchmark({"keras": model, "int8": "savedmodels/ctr_int8.tflite"},
    ...                    task.test)  # doctest: +SKIP
    >>> print(report.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import gzip
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._compat import interpreter_ops
from tfcompress._keras import check_keras_file, check_model, keras, tf
from tfcompress._validation import check_bool, check_choice, check_int
from tfcompress.evaluation.peak import machine_cpu, machine_peak, row_achieved
from tfcompress.evaluation.profile import GROUPS, profile_variant
from tfcompress.evaluation.report import BenchmarkReport, BenchmarkRow
from tfcompress.evaluation.statistics import PairedDifference, paired_difference
from tfcompress.export.manifest import library_versions
from tfcompress.export.metrics import (
    TASKS,
    check_metric_names,
    count_positives,
    default_metrics,
    few_positives_note,
    infer_task,
    quality,
)
from tfcompress.export.runtime import Variant, load_variant, model_input_specs

_log = logging.getLogger("tfcompress")

__all__ = [
    "TIMINGS",
    "BenchmarkReport",
    "BenchmarkRow",
    "benchmark",
    "configure_threads",
    "tflite_runtime",
]

#: what a latency measures: ``"invoke"``: the model's own run (a ``.tflite`` file's
#: ``invoke()`` with its inputs set, as a native server pays it; Keras/SavedModel: their call);
#: ``"call"``: the Python call of the variant (inputs copied in, outputs copied out)
TIMINGS = ("invoke", "call")


def tflite_runtime(variant: Variant, num_threads: int | None = None) -> dict[str, Any]:
    """How a TFLite variant runs: its delegate and thread count, as recorded in reports.

    ``ai_edge_litert`` interpreters built with the default op resolver apply the XNNPACK
    delegate on CPU; it replaces the ops it supports by ``DELEGATE`` nodes in the interpreter's
    graph. Those nodes are counted after the tensors are allocated, so ``"delegate"`` says what
    the interpreter actually does: ``"xnnpack"`` (at least one partition delegated) or
    ``"none"`` (every op runs on the built-in kernels, e.g. int16x8 models).

    Args:
        variant: a TFLite :class:`~tfcompress.export.runtime.Variant`.
        num_threads: the thread count it was loaded with, recorded as given.

    Returns:
        ``{"delegate": "xnnpack" | "none" | "unknown", "delegate_partitions": int | None,
        "ops": int | None, "num_threads": int | None}``.

    Example:
        >>> tflite_runtime(load_variant("m.tflite", num_threads=2), 2)  # doctest: +SKIP
        {'delegate': 'xnnpack', 'delegate_partitions': 1, 'ops': 12, 'num_threads': 2}
    """
    if not isinstance(variant, Variant) or variant.format != "tflite":
        raise TypeError(
            "`variant` must be a TFLite Variant from tfcompress.export.runtime.load_variant(path), "
            f"received {variant!r:.80}."
        )
    if num_threads is not None:
        check_int(num_threads, "num_threads", minimum=1)
    threads = num_threads
    try:
        ops = interpreter_ops(variant.interpreter)
    except Exception as e:  # pragma: no cover - interpreter API drift
        _log.warning("could not inspect the delegates of %r: %s", variant.name, e)
        return {
            "delegate": "unknown",
            "delegate_partitions": None,
            "ops": None,
            "num_threads": threads,
        }
    partitions = sum(1 for op in ops if op.get("op_name") == "DELEGATE")
    return {
        "delegate": "xnnpack" if partitions else "none",
        "delegate_partitions": partitions,
        "ops": len(ops) - partitions,
        "num_threads": threads,
    }


def configure_threads(num_threads: int, *, warn: bool = True) -> dict[str, int]:
    """Set TensorFlow's intra-op threads to ``num_threads`` (inter-op to 1) if still possible.

    The setting is process-wide and fixed once TensorFlow has run an op; afterwards this only
    logs a warning (``warn=False``: at INFO, for callers that report the counts themselves).
    Returns the thread counts in effect (0 means TensorFlow's default: all cores).

    Example:
        >>> configure_threads(1)["intra_op"] in (0, 1)  # doctest: +SKIP
        True
    """
    check_int(num_threads, "num_threads", minimum=1)
    check_bool(warn, "warn")
    threading_cfg = tf.config.threading
    if threading_cfg.get_intra_op_parallelism_threads() != num_threads:
        try:
            threading_cfg.set_intra_op_parallelism_threads(num_threads)
            threading_cfg.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            _log.log(
                logging.WARNING if warn else logging.INFO,
                "TensorFlow is already initialised: its intra-op threads stay at %d (0 = all "
                "cores); only TFLite uses num_threads=%d. Set "
                "tf.config.threading.set_intra_op_parallelism_threads(%d) before TensorFlow runs.",
                threading_cfg.get_intra_op_parallelism_threads(),
                num_threads,
                num_threads,
            )
    return {
        "intra_op": threading_cfg.get_intra_op_parallelism_threads(),
        "inter_op": threading_cfg.get_inter_op_parallelism_threads(),
    }


def _gzip_size(paths: Sequence[Path]) -> int:
    total = 0
    for p in paths:
        total += len(gzip.compress(p.read_bytes(), compresslevel=6))
    return total


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def _artifact(variant: Variant, directory: str) -> Path | None:
    """The variant's file or directory; an in-memory Keras model is saved as ``.keras`` first."""
    if variant.path is not None:
        return Path(variant.path)
    f = Path(directory) / f"{variant.name or 'model'}.keras".replace(os.sep, "_")
    try:
        variant.model.save(str(f))
    except Exception as e:  # e.g. custom layers without get_config
        _log.warning(
            "could not save %r to .keras to measure its size and memory: %s", variant.name, e
        )
        return None
    return f


def _size(artifact: Path | None) -> tuple[int | None, int | None]:
    if artifact is None:
        return None, None
    files = _files(artifact)
    return sum(p.stat().st_size for p in files), _gzip_size(files)


def _params(variant: Variant) -> int | None:
    if variant.format == "keras":
        return int(variant.model.count_params())
    if variant.format == "saved_model":
        prefix = os.path.join(variant.path, "variables", "variables")
        try:
            shapes = tf.train.list_variables(prefix)
        except Exception:  # no variables file
            return None
        return int(sum(int(np.prod(s)) for name, s in shapes if "OBJECT_GRAPH" not in name))
    try:
        from ai_edge_litert import schema_py_generated as schema

        buf = Path(variant.path).read_bytes()
        model = schema.Model.GetRootAs(buf, 0)
        total = 0
        for g in range(model.SubgraphsLength()):
            sub = model.Subgraphs(g)
            for t in range(sub.TensorsLength()):
                tensor = sub.Tensors(t)
                b = tensor.Buffer()
                if b <= 0 or b >= model.BuffersLength():
                    continue
                buffer = model.Buffers(b)
                if buffer.DataLength() > 0 or buffer.Size() > 0:
                    total += int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
        return total
    except Exception as e:  # pragma: no cover - schema API drift
        _log.warning("could not count TFLite parameters of %r: %s", variant.name, e)
        return None


def _take(features: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    n = len(next(iter(features.values())))
    idx = np.arange(batch_size) % n
    return {k: np.ascontiguousarray(v[idx]) for k, v in features.items()}


def _latency(
    variant: Variant,
    features: Mapping[str, np.ndarray],
    batch_size: int,
    warmup: int,
    repeats: int,
    timing: str = "invoke",
) -> dict[str, float]:
    batch = _take(features, batch_size)
    run = variant.invoker(batch) if timing == "invoke" else functools.partial(variant, batch)
    for _ in range(warmup):
        run()
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        run()
        times[i] = (time.perf_counter() - t0) * 1e3
    return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90))}


def _resolve_variant_inputs(variants: Any) -> list[tuple[str, Any]]:
    if not isinstance(variants, Mapping):
        raise TypeError(
            "`variants` must be a dict of name -> tf_keras model / SavedModel dir / .tflite path, "
            f"received {type(variants).__name__}."
        )
    if not variants:
        raise ValueError("`variants` is empty; pass at least one name -> model/path.")
    out = []
    for name, v in variants.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"`variants` keys must be non-empty strings, received {name!r}.")
        if isinstance(v, (str, os.PathLike)):
            p = Path(v)
            if not p.exists():
                raise ValueError(f"variant {name!r}: path {str(p)!r} does not exist.")
            if p.is_file() and p.suffix.lower() not in (".tflite", ".keras", ".h5"):
                raise ValueError(
                    f"variant {name!r}: unknown file type {p.suffix!r} for {str(p)!r}; expected "
                    "a SavedModel directory, '.tflite', '.keras' or '.h5'."
                )
            if p.is_dir() and not (p / "saved_model.pb").exists():
                raise ValueError(
                    f"variant {name!r}: directory {str(p)!r} is not a SavedModel (no "
                    "saved_model.pb)."
                )
            if p.is_file() and p.suffix.lower() in (".keras", ".h5"):
                check_keras_file(p, argument=f"variants[{name!r}]")
        else:
            check_model(v, f"variants[{name!r}]")
        out.append((name, v))
    return out


def _input_order_hint(items: list[tuple[str, Any]]) -> tuple[str, ...] | None:
    """The positional input order of the first in-memory Keras variant that has one."""
    for _, source in items:
        if isinstance(source, keras.Model):
            structure, specs = model_input_specs(source)
            if structure != "dict":
                return tuple(s.name for s in specs)
    return None


def benchmark(
    variants: Mapping[str, keras.Model | str | os.PathLike],
    data: Any,
    *,
    task: str | None = None,
    metrics: Sequence[str] | None = None,
    baseline: str | None = None,
    batch_sizes: Sequence[int] = (1, 256),
    warmup: int = 5,
    repeats: int = 50,
    num_threads: int = 1,
    max_examples: int | None = None,
    measure_memory: bool = True,
    progress: bool = True,
    verify: bool = True,
    profile: bool = False,
    peak: bool | None = None,
    timing: str = "invoke",
    profile_group: str = "op",
) -> BenchmarkReport:
    """Measure every variant on the same data with the same settings.

    Args:
        variants: name -> tf_keras model, SavedModel directory, ``.tflite`` or ``.keras`` file
            (str/Path).
        data: labelled data in any form ``model.evaluate`` takes: a ``tf.data.Dataset`` (batched
            or not) of ``(x, y)`` / ``(x, y, sample_weight)``, one ``(x, y)`` tuple of numpy
            arrays, or an iterable of ``(x, y)`` batches; ``x`` is an array (one-input model), a
            list of arrays in the model's input order, or a dict keyed by input name. For a
            multi-input SavedModel/TFLite variant, positional ``x`` needs the input order: the
            one recorded by the export in ``manifest.json``, or that of a Keras model among
            ``variants``; else pass a dict. Sample weights are ignored.
        task: ``"binary"``, ``"multiclass"`` or ``"retrieval"``; default inferred from the first
            variant's output width (1: binary; <= 100 classes: multiclass; else retrieval).
        metrics: metric names (``auc``, ``logloss``, ``accuracy``, ``topK_accuracy``,
            ``recall@K``); default by task: binary AUC/logloss/accuracy, multiclass accuracy and
            top-5 accuracy, retrieval recall@10 and recall@50.
        baseline: the variant ratios are computed against; default the first.
        batch_sizes: batch sizes timed (per batch; batch 1 gives per-example latency).
        warmup: untimed runs before timing each batch size.
        repeats: timed runs per batch size (median and p90 reported).
        num_threads: TFLite threads and (when still possible) TensorFlow intra-op threads.
        timing: ``"invoke"`` (default): a ``.tflite`` file's latency is its interpreter's
            ``invoke()`` with the inputs already set, what a native (C++) server pays;
            ``"call"``: the Python call (``set_tensor`` per input, checks, ``get_tensor``:
            about 3 µs a call on this machine, the same for every model, so batch-1 ratios of
            small models shrink toward 1). Keras and SavedModel variants are timed by their
            call either way. Recorded in ``settings["timing"]``.
        profile_group: the rows of the per-op profiles (``profile=True``): ``"op"`` (one row
            per op type, the default), ``"node"`` (per TFLite node / TF op) or ``"layer"`` (per
            Keras layer scope; XNNPACK's operators mapped to the nodes they run,
            :func:`~tfcompress.evaluation.profile.profile_variant`).
        max_examples: examples taken from ``data`` for quality (default None: all of them, so
            the figures match :func:`tfcompress.export.metrics.evaluate_exact` on the same data).
        measure_memory: measure each variant's peak memory in a fresh process
            (:mod:`tfcompress.evaluation.memory_probe`; a few seconds per variant).
        progress: show a progress bar over the variants.
        verify: check each ``.tflite``/SavedModel against the sha256 in the ``manifest.json``
            beside it, refusing a changed file (see :func:`tfcompress.load_variant`); False
            loads it anyway with a WARNING.
        profile: also profile each variant per op at every batch size with a real profiler
            (LiteRT's for ``.tflite``, TensorFlow's otherwise; see
            :mod:`tfcompress.evaluation.profile`); the tables are in the report.
        peak: measure this machine's GEMM peak per dtype
            (:func:`tfcompress.evaluation.peak.machine_peak`, ~10 s) and report each variant's
            achieved G(FL)OP/s and its share of the peak; default: as ``profile``.

    Returns:
        A :class:`~tfcompress.evaluation.report.BenchmarkReport`.

    Raises:
        ValueError: empty ``variants``, a missing path, an unknown file type, an empty or
            truncated ``.keras`` file, ``baseline`` not among the variants, ``data`` without
            labels or not matching the model's inputs, bad settings.
        TypeError: a variant is neither a path nor a tf_keras model; a Keras 3 ``.keras`` file.

    Example:
        >>> report = benchmark({"float": "m.tflite", "int8": "m_int8.tflite"}, (x_test, y_test),
        ...                    repeats=20)  # doctest: +SKIP
        >>> report.ratios()["int8"]["size_x"]  # doctest: +SKIP
        3.9
    """
    items = _resolve_variant_inputs(variants)
    names = [n for n, _ in items]
    if baseline is not None and baseline not in names:
        raise ValueError(f"`baseline` {baseline!r} is not among the variants {names}.")
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS} or None, received {task!r}.")
    if isinstance(batch_sizes, int) or not batch_sizes:
        raise ValueError(
            f"`batch_sizes` must be a non-empty sequence of ints, received {batch_sizes!r}."
        )
    for b in batch_sizes:
        check_int(b, "batch_sizes", minimum=1)
    check_int(warmup, "warmup", minimum=0)
    check_int(repeats, "repeats", minimum=1)
    check_int(num_threads, "num_threads", minimum=1)
    check_bool(verify, "verify")
    check_bool(profile, "profile")
    check_choice(timing, "timing", TIMINGS, where="benchmark")
    check_choice(profile_group, "profile_group", GROUPS, where="benchmark")
    peak = profile if peak is None else check_bool(peak, "peak")
    if max_examples is not None:
        check_int(max_examples, "max_examples", minimum=1)
    check_metric_names(metrics)
    # the report states TensorFlow's pool under its table when it differs (see _footer)
    threads = configure_threads(num_threads, warn=False)
    order = _input_order_hint(items)

    iterate: Any = items
    if progress:  # tqdm.auto warns in notebooks without ipywidgets: only import it when used
        from tqdm.auto import tqdm

        iterate = tqdm(items, desc="benchmark", unit="variant")
    peaks = machine_peak(num_threads) if peak else {}
    rows = []
    kept: dict[str, np.ndarray] = {}  # each variant's outputs, for the paired differences
    runtimes: dict[str, dict[str, Any]] = {}
    examples: tuple[dict[str, np.ndarray], np.ndarray] | None = None
    with tempfile.TemporaryDirectory(prefix="tfcompress-bench-") as tmp:
        for name, source in iterate:
            variant = load_variant(source, name=name, num_threads=num_threads, verify=verify)
            if order is not None and variant.input_order is None:
                variant.adopt_input_order(order)
            if variant.format == "tflite":
                runtimes[name] = tflite_runtime(variant, num_threads)
            if examples is None:
                examples = _examples(variant, data, max_examples)
            features, labels = examples
            feats = _for_variant(variant, features)
            outputs = variant.predict(feats, batch_size=max(batch_sizes))
            out = outputs[sorted(outputs)[0]] if len(outputs) > 1 else next(iter(outputs.values()))
            width = out.shape[-1] if out.ndim > 1 else 1
            row_task = task or infer_task(out, labels)
            q = quality(out, labels, list(metrics) if metrics else default_metrics(row_task, width))
            kept[name] = out
            latency = {b: _latency(variant, feats, b, warmup, repeats, timing) for b in batch_sizes}
            profiles = {
                b: profile_variant(
                    variant,
                    feats,
                    b,
                    runs=min(repeats, 20),
                    num_threads=num_threads,
                    group=profile_group,
                )
                for b in (batch_sizes if profile else ())
            }
            artifact = _artifact(variant, tmp)
            size, gz = _size(artifact)
            memory = None
            if measure_memory and artifact is not None:
                from tfcompress.evaluation.memory_probe import peak_memory_mb

                memory = peak_memory_mb(
                    artifact,
                    _take(feats, max(batch_sizes)),
                    runs=max(1, warmup),
                    num_threads=num_threads,
                )
            rows.append(
                BenchmarkRow(
                    name=name,
                    format=variant.format,
                    path=variant.path,
                    task=row_task,
                    quality=q,
                    bytes=size,
                    gzip_bytes=gz,
                    params=_params(variant),
                    latency_ms=latency,
                    throughput={
                        b: b / (lat["median"] / 1e3) if lat["median"] > 0 else float("inf")
                        for b, lat in latency.items()
                    },
                    peak_memory_mb=memory,
                    examples=int(len(labels)),
                    positives=count_positives(labels, row_task),
                    profiles={b: p.to_dict() for b, p in profiles.items()},
                    achieved=row_achieved(variant, latency, peaks) if peak else {},
                )
            )
            _log.info("benchmarked %s: %s", name, q)
            del variant
    base_name = baseline or names[0]
    rows = [
        dataclasses.replace(r, deltas=_paired(r, kept, base_name, examples[1]))
        if r.name != base_name
        else r
        for r in rows
    ]
    notes = {n for r in rows if (n := few_positives_note(r.examples, r.positives))}
    for note in sorted(notes):
        _log.warning("benchmark: %s.", note)
    settings = {
        "batch_sizes": list(batch_sizes),
        "warmup": warmup,
        "repeats": repeats,
        "timing": timing,
        "num_threads": num_threads,
        "tf_threads": threads,
        "tflite_delegate": _summary_delegate(runtimes),
        "tflite_runtime": runtimes,
        "max_examples": max_examples,
        "quality": "exact (tfcompress.export.metrics), unweighted, on every example taken",
        "paired": {"level": PAIRED_LEVEL, "n_boot": PAIRED_BOOT, "seed": 0},
        "memory": (
            "peak RSS increase of a fresh process loading the variant and running a batch "
            f"of {max(batch_sizes)} (psutil)"
        )
        if measure_memory
        else None,
        "peak": peaks or None,
        "profiler": sorted({p["profiler"] for r in rows for p in r.profiles.values()}) or None,
        "versions": library_versions(),
        "cpu": machine_cpu(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return BenchmarkReport(tuple(rows), base_name, settings)


PAIRED_LEVEL = 0.95
PAIRED_BOOT = 1000


def _paired(
    row: BenchmarkRow, outputs: Mapping[str, np.ndarray], baseline: str, labels: np.ndarray
) -> dict[str, PairedDifference]:
    """Each metric's paired CI of ``row`` minus the baseline (DeLong for AUC, else bootstrap)."""
    base_out, out = outputs[baseline], outputs[row.name]
    if base_out.shape != out.shape:
        _log.warning(
            "benchmark: %r and the baseline %r have different output shapes %s, %s: no paired "
            "intervals.",
            row.name,
            baseline,
            out.shape,
            base_out.shape,
        )
        return {}
    deltas = {}
    for m, value in row.quality.items():
        if value is None:
            continue
        try:
            deltas[m] = paired_difference(
                m, labels, base_out, out, level=PAIRED_LEVEL, n_boot=PAIRED_BOOT, seed=0
            )
        except ValueError as e:  # e.g. non-finite outputs: the row keeps its figures
            _log.warning("benchmark: no paired interval for %r, %s: %s", row.name, m, e)
    return deltas


def _examples(
    variant: Variant, data: Any, max_examples: int | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    features, labels = variant.collect(data, max_examples, "data")
    if labels is None:
        raise ValueError(
            "`data` has no labels; pass (x, y) pairs (a tf.data.Dataset of (features, label), or "
            "an (x, y) tuple of arrays) so quality can be measured."
        )
    if len(labels) != len(next(iter(features.values()))):
        raise ValueError(
            f"`data` holds {len(next(iter(features.values())))} examples but {len(labels)} "
            "labels; pass one label per example."
        )
    return features, labels


def _summary_delegate(runtimes: Mapping[str, Mapping[str, Any]]) -> str | None:
    """One word for the report: the delegate every TFLite row used, or "mixed"; None: no row."""
    kinds = {r["delegate"] for r in runtimes.values()}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _for_variant(variant: Variant, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The features a variant needs, validated (variants may name/type inputs differently)."""
    missing = [s.name for s in variant.input_specs if s.name not in features]
    if missing:
        raise ValueError(
            f"variant {variant.name!r} needs inputs {missing} that `data` does not provide "
            f"(data has {sorted(features)}); benchmark variants of the same model, whose inputs "
            "have the same names."
        )
    return {s.name: features[s.name].astype(s.dtype, copy=False) for s in variant.input_specs}
