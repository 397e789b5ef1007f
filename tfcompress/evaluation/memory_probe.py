"""Peak memory of one model variant, measured in a fresh Python process over a baseline taken
after the libraries are loaded (why and how: docs/evaluation.md).

Example:
    >>> peak_memory_mb("savedmodels/ctr_int8.tflite", batch)  # doctest: +SKIP
    1.9
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_log = logging.getLogger("tfcompress")

__all__ = ["peak_memory_mb"]

PROBE_TIMEOUT_S = 600
_MARK = "tfcompress-memory-probe:"


def peak_memory_mb(
    path: str | os.PathLike,
    features: Mapping[str, np.ndarray],
    *,
    runs: int = 3,
    num_threads: int = 1,
    timeout: float = PROBE_TIMEOUT_S,
) -> float | None:
    """Peak RSS increase (MiB) of a fresh process loading ``path`` and running it on ``features``.

    Args:
        path: a ``.tflite`` file, SavedModel directory or ``.keras`` file.
        features: one batch keyed by input name (the largest batch the benchmark times).
        runs: how many times the batch is run.
        num_threads: TFLite threads and TensorFlow intra-op threads in the child.
        timeout: seconds before the child is stopped (the result is then None).

    Returns:
        The increase in MiB, or None when the child failed (logged as a warning).

    Example:
        >>> peak_memory_mb("m.tflite", {"x": np.ones((256, 4), "float32")})  # doctest: +SKIP
        0.4
    """
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="tfcompress-mem-") as d:
        batch = Path(d) / "batch.npz"
        np.savez(batch, **{k: np.asarray(v) for k, v in features.items()})
        cmd = [
            sys.executable,
            "-m",
            "tfcompress.evaluation.memory_probe",
            str(path),
            str(batch),
            str(int(num_threads)),
            str(int(runs)),
        ]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            _log.warning("memory of %s: the probe ran past %.0f s; not measured.", path, timeout)
            return None
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            return float(json.loads(line[len(_MARK) :])["increase_mb"])
    _log.warning(
        "memory of %s: the probe failed (exit %d); not measured. %s",
        path,
        done.returncode,
        done.stderr.strip()[-800:],
    )
    return None


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _main(argv: list[str]) -> int:
    """The child: ``python -m tfcompress.evaluation.memory_probe PATH BATCH.npz THREADS RUNS``."""
    import gc

    path, batch_file, threads, runs = argv[0], argv[1], int(argv[2]), int(argv[3])
    from tfcompress._keras import tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401  (library, not the model)

    from tfcompress.export.runtime import load_variant
    from tfcompress.quantization.qat import load_quantized

    with np.load(batch_file) as npz:
        batch = {k: npz[k] for k in npz.files}
    float(tf.reduce_sum(tf.constant([1.0, 2.0])))  # the TF runtime is initialised: baseline
    gc.collect()
    start = _rss()
    peak = [start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            stop.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        if path.endswith((".keras", ".h5")):  # safe_mode, QAT classes in scope
            variant = load_variant(load_quantized(path, compile=False), num_threads=threads)
        else:
            variant = load_variant(path, num_threads=threads)
        for _ in range(runs):
            variant(batch)
    finally:
        stop.set()
        sampler.join()
    peak[0] = max(peak[0], _rss())
    # the child's answer to its parent on stdout (the protocol, not a log line)
    sys.stdout.write(
        _MARK
        + json.dumps({"baseline_mb": start / 2**20, "increase_mb": (peak[0] - start) / 2**20})
        + "\n"
    )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
