"""LiteRT latency of int4 embedding rows against int8 rows and float tables (issue 18).

A model of ``--tables`` tables of ``--rows`` x ``--dim`` rows, each read by ``[B, 1]`` ids, and
a small MLP (64-32-1) is exported with ``tfcompress.export_tflite(model, path, --mode,
embeddings=...)`` for each of :data:`EMBEDDINGS`; then one fresh process cycles through the
files (``ai_edge_litert`` Interpreter, 1 thread) round after round, timing ``--reps`` calls a
file a round, and prints the median time of a call at batch 1 and 256, and its ratio to the
``"int8 tables"`` file (``embeddings=None``: the mode's default int8 tables, one scale a table
at width < 32) and to ``"int8 rows"``.

Usage:
    python benchmarks/int4_unpack.py [--tables 10] [--rows 100000] [--dim 16] [--mode dynamic]
        [--rounds 15] [--out /tmp/int4_unpack]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: the rows of the table: name -> export_tflite(embeddings=...)
EMBEDDINGS = {
    "float tables": "float",
    "int8 tables": None,
    "int8 rows": "int8_row",
    "int4": "int4",
    "int4 compact": "int4_compact",
}


def _export(args: argparse.Namespace, out: Path) -> dict[str, str]:
    from tfcompress import export
    from tfcompress._keras import keras

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    inputs = [keras.Input((1,), dtype="int32", name=f"ids{k}") for k in range(args.tables)]
    looked_up = []
    for k, ids in enumerate(inputs):
        emb = keras.layers.Embedding(args.rows, args.dim, name=f"emb{k}")
        looked_up.append(emb(ids))
        # rows of different norms, as a trained table
        norm = rng.uniform(0.01, 1.0, (args.rows, 1))
        emb.set_weights([(rng.normal(size=(args.rows, args.dim)) * norm).astype("f4")])
    hidden = keras.layers.Flatten()(keras.layers.Concatenate()(looked_up))
    hidden = keras.layers.Dense(32, "relu")(keras.layers.Dense(64, "relu")(hidden))
    model = keras.Model(inputs, keras.layers.Dense(1, "sigmoid")(hidden))
    paths = {}
    for name, embeddings in EMBEDDINGS.items():
        path = out / (name.replace(" ", "_") + ".tflite")
        export.export_tflite(
            model, path, args.mode, embeddings=embeddings, drift="ignore", fuse_embeddings=False
        )
        paths[name] = str(path)
    return paths


def _time(paths: dict[str, str], rounds: int, reps: int) -> dict[int, dict[str, float]]:
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(1)
    result = {}
    for batch, calls in ((1, reps * 10), (256, reps)):
        runners, feeds = {}, {}
        for name, path in paths.items():
            runner = Interpreter(path, num_threads=1).get_signature_runner()
            rows = int(json.loads(os.environ["INT4_UNPACK_ROWS"]))
            feeds[name] = {
                k: rng.integers(0, rows, (batch, 1)).astype("int32")
                for k in runner.get_input_details()
            }
            runner(**feeds[name])  # warm up at this batch size
            runners[name] = runner
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, runner in runners.items():
                start = time.perf_counter()
                for _ in range(calls):
                    runner(**feeds[name])
                times[name].append((time.perf_counter() - start) / calls)
        result[batch] = {name: float(np.median(t)) for name, t in times.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--mode", default="dynamic")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reps", type=int, default=40, help="batch-256 calls a round")
    parser.add_argument("--out", default="/tmp/int4_unpack")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.worker:  # the timing process: no TensorFlow loaded
        paths = json.loads((out / "paths.json").read_text())
        (out / "times.json").write_text(json.dumps(_time(paths, args.rounds, args.reps)))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    paths = _export(args, out)
    (out / "paths.json").write_text(json.dumps(paths))
    env = {**os.environ, "INT4_UNPACK_ROWS": str(args.rows), "CUDA_VISIBLE_DEVICES": ""}
    worker = [sys.executable, __file__, "--worker=1", f"--out={out}", f"--rounds={args.rounds}"]
    subprocess.run([*worker, f"--reps={args.reps}"], check=True, env=env)
    times = {int(k): v for k, v in json.loads((out / "times.json").read_text()).items()}
    print(f"{args.tables} tables {args.rows} x {args.dim}, mode {args.mode}, 1 thread")
    print("| embeddings | file bytes | b1 us | b1 / int8 | b1 / int8 rows | b256 us | b256 / int8 "
          "| b256 / int8 rows |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, path in paths.items():
        cells = [f"{os.path.getsize(path):,}"]
        for batch in (1, 256):
            t = times[batch]
            cells += [f"{t[name] * 1e6:.1f}", f"{t[name] / t['int8 tables']:.2f}"]
            cells.append(f"{t[name] / t['int8 rows']:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
