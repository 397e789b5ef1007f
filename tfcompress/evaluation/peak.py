"""This machine's achievable GEMM throughput per dtype on LiteRT (:func:`machine_peak`) and each
variant's distance to it (:func:`achieved`).

The peak is measured, not looked up: a one-op ``FULLY_CONNECTED`` model (``m x k`` input times a
``k x n`` weight) converted to ``.tflite`` in float32 and in full-integer int8 (PTQ), run through
LiteRT with XNNPACK at ``num_threads`` — the runtime and thread count the benchmark's TFLite
variants use. A variant's share of the peak is its achieved FLOP/s (its FLOPs per batch over its
median latency) over the peak of its dtype.

Example:
    >>> peak = machine_peak(num_threads=1)  # doctest: +SKIP
    >>> peak["int8"]["gops"] > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._keras import keras
from tfcompress._validation import check_int, must_be
from tfcompress.evaluation.graph_flops import GEMM_OPS as _GEMM_TF_OPS

__all__ = [
    "DTYPES",
    "INT8_ISA",
    "achieved",
    "gemm_flops",
    "machine_cpu",
    "machine_peak",
    "tflite_flops",
]

_log = logging.getLogger("tfcompress")

DTYPES = ("float32", "int8")
DEFAULT_SHAPE = (512, 1024, 1024)  # m, k, n: about 1.07 GFLOP per run, compute-bound
_CACHE: dict[tuple[int, str, tuple[int, int, int], int], dict[str, Any]] = {}


#: CPU features that decide whether int8 GEMMs beat float ones (x86: AVX2 ``vpmaddubsw`` only,
#: VNNI dot products, AMX tiles; ARM: the ``sdot`` dot product, ``i8mm`` matrix multiply). On
#: an AVX2-only AMD EPYC, XNNPACK's int8 GEMM peak was 1.25x its float one at 512x1024x1024
#: and 1.0x at 256x64x64 (docs/export.md); on an AMX machine ~20x.
INT8_ISA = (
    *("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"),  # x86
    *("asimddp", "i8mm", "sve"),  # ARM
)


def machine_cpu(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> dict[str, Any]:
    """What CPU the timings ran on: its model name, cores and the features of :data:`INT8_ISA`.

    int8 speed-ups depend on them more than on anything tfcompress does, so every benchmark
    report records them (``settings["cpu"]``).

    Args:
        cpuinfo: Linux's ``/proc/cpuinfo`` (elsewhere, or when it cannot be read, the model
            comes from :func:`platform.processor` and ``int8_isa`` is None: unknown).

    Returns:
        ``{"model": str, "arch": str, "cores": int, "int8_isa": [features present] | None}``.

    Raises:
        TypeError: ``cpuinfo`` is not a path.

    Example:
        >>> cpu = machine_cpu()
        >>> cpu["cores"] >= 1 and isinstance(cpu["model"], str)
        True
    """
    if not isinstance(cpuinfo, (str, os.PathLike)):
        raise TypeError(must_be("cpuinfo", "a path (default '/proc/cpuinfo')", cpuinfo))
    model, features = "", None
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and features is None:
            features = set(value.split())
    return {
        "model": model or platform.processor() or platform.machine() or "unknown",
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "int8_isa": None if features is None else [f for f in INT8_ISA if f in features],
    }


def gemm_flops(m: int, k: int, n: int) -> int:
    """Operations of an ``m x k`` by ``k x n`` product: one multiply and one add per term.

    Example:
        >>> gemm_flops(2, 3, 4)
        48
    """
    return 2 * m * k * n


def _gemm_file(directory: str, dtype: str, shape: tuple[int, int, int]) -> str:
    from tfcompress.export.tflite import export_tflite

    m, k, n = shape
    rng = np.random.default_rng(0)
    inp = keras.Input((k,), name="x")
    dense = keras.layers.Dense(n, use_bias=False, name="gemm")
    model = keras.Model(inp, dense(inp), name=f"gemm_{dtype}")
    dense.set_weights([rng.normal(0, 1 / np.sqrt(k), (k, n)).astype("float32")])
    path = str(Path(directory) / f"gemm_{dtype}.tflite")
    x = rng.normal(size=(min(m, 64), k)).astype("float32")
    if dtype == "float32":
        export_tflite(model, path, parity_data={"x": x})
    else:
        export_tflite(
            model,
            path,
            "int8",
            representative_data={"x": x},
            num_calibration_steps=min(m, 64),
            parity_data={"x": x},
            drift="ignore",
        )
    return path


def _time(path: str, x: np.ndarray, num_threads: int, repeats: int) -> float:
    from tfcompress.export.runtime import load_variant

    variant = load_variant(path, num_threads=num_threads, verify=False)
    batch = {"x": x}
    for _ in range(3):
        variant(batch)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        variant(batch)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def machine_peak(
    num_threads: int = 1,
    dtypes: Sequence[str] = DTYPES,
    *,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    repeats: int = 10,
) -> dict[str, dict[str, Any]]:
    """Achievable GEMM throughput of this machine per dtype, on LiteRT/XNNPACK (cached per process).

    Args:
        num_threads: LiteRT threads, as the benchmark's ``num_threads``.
        dtypes: any of ``"float32"`` and ``"int8"`` (full-integer PTQ, int8 activations and
            per-channel int8 weights).
        shape: ``(m, k, n)`` of the product: batch ``m``, ``k`` inputs, ``n`` outputs.
        repeats: timed runs (the median is used).

    Returns:
        ``dtype -> {"gflops": G(FL)OP/s, "gops": same (int8 operations are not floating
        point), "ms": median ms per run, "flops": operations per run, "shape": [m, k, n],
        "num_threads": n, "runtime": "litert-xnnpack"}``.

    Raises:
        ValueError: ``num_threads`` or ``repeats`` < 1, an unknown dtype, a bad ``shape``.

    Example:
        >>> peak = machine_peak(1, ("float32",), shape=(64, 128, 128))  # doctest: +SKIP
        >>> peak["float32"]["flops"]  # doctest: +SKIP
        2097152
    """
    check_int(num_threads, "num_threads", minimum=1)
    check_int(repeats, "repeats", minimum=1)
    if isinstance(dtypes, str) or not dtypes:
        raise ValueError(
            must_be("dtypes", f"a non-empty sequence of {DTYPES}", dtypes, 'e.g. ("float32",)')
        )
    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(must_be("dtypes", f"made of {DTYPES}", dtypes, "drop the others"))
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ValueError(must_be("shape", "three positive ints (m, k, n)", shape))
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    out: dict[str, dict[str, Any]] = {}
    missing = [d for d in dtypes if (num_threads, d, shape, repeats) not in _CACHE]
    if missing:
        x = np.random.default_rng(1).normal(size=(shape[0], shape[1])).astype("float32")
        with tempfile.TemporaryDirectory(prefix="tfcompress-peak-") as tmp:
            for d in missing:
                seconds = _time(_gemm_file(tmp, d, shape), x, num_threads, repeats)
                flops = gemm_flops(*shape)
                rate = flops / seconds / 1e9 if seconds > 0 else float("inf")
                _CACHE[(num_threads, d, shape, repeats)] = {
                    "gflops": rate,
                    "gops": rate,
                    "ms": seconds * 1e3,
                    "flops": flops,
                    "shape": list(shape),
                    "num_threads": num_threads,
                    "runtime": "litert-xnnpack",
                }
                _log.info("machine peak %s: %.1f G(FL)OP/s at %s", d, rate, shape)
    for d in dtypes:
        out[d] = dict(_CACHE[(num_threads, d, shape, repeats)])
    return out


def tflite_flops(path: str, batch_size: int) -> tuple[int, str]:
    """GEMM operations of one run of a ``.tflite`` file at ``batch_size``, and its GEMM dtype.

    Counts ``FULLY_CONNECTED`` (``2·k·n`` per input row: the weight's ``n x k`` shape, rows =
    batch × the input's fixed inner dimensions) and ``BATCH_MATMUL`` (``2·m·k·n`` per batch
    element, from both operands' shapes with the batch axis set to ``batch_size``). Other ops
    count 0, as :func:`tfcompress.evaluation.flops.count_flops` counts gathers 0. The dtype is
    ``"int8"`` when the weights of the ``FULLY_CONNECTED`` ops are int8, else ``"float32"``.

    Example:
        >>> tflite_flops("m.tflite", 256)  # doctest: +SKIP
        (33554432, 'float32')
    """
    from ai_edge_litert import schema_py_generated as schema

    check_int(batch_size, "batch_size", minimum=1)
    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    total, int8_weights, weights = 0, 0, 0
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)

        def shape(i: int, sub=sub) -> list[int]:
            t = sub.Tensors(i)
            sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
            dims = [int(d) for d in (sig if not isinstance(sig, int) else [])]
            if dims and dims[0] < 0:
                dims[0] = batch_size
            return [batch_size if d < 0 else d for d in dims]

        for o in range(sub.OperatorsLength()):
            op = sub.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
            ins = op.InputsAsNumpy()
            if kind == "FULLY_CONNECTED" and len(ins) >= 2:
                w = shape(int(ins[1]))
                x = shape(int(ins[0]))
                if len(w) == 2 and x:
                    rows = int(np.prod(x)) // max(w[1], 1)
                    total += 2 * rows * w[0] * w[1]
                    weights += 1
                    int8_weights += sub.Tensors(int(ins[1])).Type() == schema.TensorType.INT8
            elif kind == "BATCH_MATMUL" and len(ins) >= 2:
                a, b = shape(int(ins[0])), shape(int(ins[1]))
                if len(a) >= 2 and len(b) >= 2:
                    lead = int(np.prod(a[:-2])) if len(a) > 2 else 1
                    total += 2 * lead * a[-2] * a[-1] * b[-1]
    dtype = "int8" if weights and int8_weights == weights else "float32"
    return int(total), dtype


def achieved(flops: int | None, latency_ms: float | None, peak: dict[str, Any] | None) -> dict:
    """``{"gflops": achieved G(FL)OP/s, "share": of the peak}`` (None where unknown).

    Example:
        >>> achieved(2_000_000, 1.0, {"gflops": 4.0})
        {'gflops': 2.0, 'share': 0.5}
    """
    if flops is None or not latency_ms or latency_ms <= 0:
        return {"gflops": None, "share": None}
    rate = flops / (latency_ms / 1e3) / 1e9
    share = rate / peak["gflops"] if peak and peak.get("gflops") else None
    return {"gflops": rate, "share": share}


def variant_flops(variant: Any, batch_size: int) -> tuple[int | None, str]:
    """GEMM operations of one run of a :class:`~tfcompress.export.runtime.Variant` at
    ``batch_size`` and the dtype whose peak it is compared with (None: not countable).

    TFLite: :func:`tflite_flops`. Keras: the ``MatMul``/``BatchMatMul``/``Einsum``/``Conv``
    FLOPs of :func:`tfcompress.evaluation.flops.count_flops` times the batch (float32).
    SavedModels (XLA-compiled or not): the same ops of the serving function's graph at the
    batch (:func:`tfcompress.evaluation.graph_flops.saved_model_flops`; float32); None where
    a GEMM's shape is unknown at that batch or the variant has no path.

    Example:
        >>> variant_flops(load_variant("m.tflite"), 256)  # doctest: +SKIP
        (12518400, 'float32')
    """
    if variant.format == "tflite":
        return tflite_flops(variant.path, batch_size)
    if variant.format == "keras":
        from tfcompress.evaluation.flops import count_flops

        try:
            _, by_op = count_flops(variant.model, batch_size=batch_size, by_op=True)
        except (ValueError, TypeError) as e:
            _log.warning("could not count the FLOPs of %r: %s", variant.name, e)
            return None, "float32"
        per_example = sum(v for k, v in by_op.items() if k in _GEMM_TF_OPS)
        return int(per_example * batch_size), "float32"
    if variant.format == "saved_model" and getattr(variant, "path", None):
        from tfcompress.evaluation.graph_flops import saved_model_flops

        try:
            flops = saved_model_flops(variant.path, batch_size)
        except (ValueError, TypeError) as e:
            _log.warning("could not count the FLOPs of %r: %s", variant.name, e)
            return None, "float32"
        return (None if flops is None else int(flops)), "float32"
    return None, "float32"


def row_achieved(
    variant: Any, latency: dict[int, dict[str, float]], peak: dict[str, dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """Per batch size: ``{"flops", "dtype", "gflops", "share"}`` of a benchmarked variant."""
    out = {}
    for b, lat in latency.items():
        flops, dtype = variant_flops(variant, b)
        out[b] = {"flops": flops, "dtype": dtype, **achieved(flops, lat["median"], peak.get(dtype))}
    return out
