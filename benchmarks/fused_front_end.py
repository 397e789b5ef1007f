"""Benchmark the fused embedding front end (issue 19) on the simulated CTR task's DCN student.

Trains ``models.dcn(schema, size="student")`` for ``--epochs`` (Adam ``--lr``), then exports it
to TFLite today's way (``fuse_embeddings=False``: one GATHER per feature, a BATCH_MATMUL per
pooled sequence) and fused (``fuse_embeddings=True``: one GATHER, a SUM per run of pooled
sequences), in float32, dynamic-range (converter tables) and float32 with int8 row tables
(``embeddings="int8"``), plus the fused float file with ``pooling="matmul"`` (masked weights
and a BATCH_MATMUL per run) for the choice of method, and the model after ``shrink(model,
0.5)`` (a smaller tower: the front end's share grows) and the front end alone (the model cut
at ``dcn_input``, where the towers start: what the fusion rewrites, without the towers). Each
file runs in LiteRT (the ``Interpreter`` that ``tfcompress.export.load_variant`` uses), 1
thread, at batch 1 and 256: the timed runs interleave (A, B, A, B, ...: ``--rounds`` rounds
of ``--repeats`` invokes each) and the table gives the median times and the median of the
rounds' speed-ups of each fused file over its unfused twin. Parity: max |diff| of each file
against its Keras model on ``--parity`` test examples (through LiteRT).

``--int8`` also exports full-integer int8 and int16x8, fused (``fuse_embeddings=True``: the rows
computed in int32) and not, calibrated on the training split, times them and compares their
test AUC (to decide whether ``fuse_embeddings=None`` fuses there).

Target (issue 19): fused float >= 1.5x faster than today's at batch 256, parity <= 1e-5.

Usage:
    python benchmarks/fused_front_end.py [--samples 20000] [--epochs 2] [--int8]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import trained_dcn_student

from tfcompress._keras import keras
from tfcompress.export import export_tflite
from tfcompress.export.fuse import fuse_embeddings
from tfcompress.export.metrics import auc
from tfcompress.pruning.shrinking import shrink


def _runner(path: Path, batch: dict[str, np.ndarray]):
    """An ``invoke`` of the file with ``batch`` set (1 thread) and its output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path), num_threads=1)
    runner = interpreter.get_signature_runner()
    out = runner(**batch)
    return interpreter.invoke, next(iter(out.values()))


def _time(invoke, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        invoke()
    return (time.perf_counter() - start) / repeats * 1e3


def _inputs(features: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[:n]) for k, v in features.items()}


def _export_pairs(model, task, args) -> dict[str, tuple]:
    """Each variant exported today's way and fused: ``{name: (today, fused, keras model)}``."""
    other, _ = fuse_embeddings(model, pooling="matmul")
    small = shrink(model, 0.5)  # a smaller tower: the front end is a larger share
    # the front end alone: the model cut where the towers start (the embedded features)
    front = keras.Model(model.inputs, model.get_layer("dcn_input").output, name="front_end")
    pairs = {  # name: (unfused export kwargs, fused export kwargs, fused model)
        "float32": ({}, {}, model),
        "float32, shrink(0.5)": ({}, {}, small),
        "float32, front end alone": ({}, {}, front),
        "dynamic": ({"quantization": "dynamic", "embeddings": "float"}, None, model),
        "float32 + int8 rows": ({"embeddings": "int8"}, None, model),
        "float32 (matmul pooling)": ({}, {}, other),
    }
    files: dict[str, tuple] = {}
    for name, (options, fused_options, fused_model) in pairs.items():
        stem = name.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "")
        fused_options = options if fused_options is None else fused_options
        source = fused_model if fused_model is small or fused_model is front else model
        plain = export_tflite(source, args.out / f"{stem}.tflite", fuse_embeddings=False, **options)
        fused = export_tflite(
            fused_model,
            args.out / f"{stem}_fused.tflite",
            fuse_embeddings=fused_model is not other,
            **fused_options,
        )
        files[name] = (plain.path, fused.path, source)
    for mode in ("int8", "int16x8") if args.int8 else ():
        paths = []
        for fuse in (False, True):
            r = export_tflite(
                model,
                args.out / f"{mode}_{'fused' if fuse else 'today'}.tflite",
                mode,
                representative_data=task.train,
                num_calibration_steps=200,
                fuse_embeddings=fuse,
                drift="ignore",
            )
            paths.append(r.path)
        files[mode] = (paths[0], paths[1], model)
    return files


def _measure(files, feats, n_parity, args) -> list:
    """Bytes, parity against Keras and interleaved median times of each pair."""
    rows = []
    reference = {}
    for name, (plain, fused, source) in files.items():
        if id(source) not in reference:
            batch = _inputs(feats, n_parity)
            reference[id(source)] = source.predict(batch, batch_size=512, verbose=0).reshape(-1)
        keras_out = reference[id(source)]
        parity = {}
        for label, path in (("today", plain), ("fused", fused)):
            _, out = _runner(path, _inputs(feats, n_parity))
            parity[label] = float(np.abs(out.reshape(-1) - keras_out).max())
        times = {}
        for b in (1, 256):
            runs = {"today": _runner(plain, _inputs(feats, b))[0]}
            runs["fused"] = _runner(fused, _inputs(feats, b))[0]
            samples: dict[str, list[float]] = {"today": [], "fused": []}
            for k in runs:
                _time(runs[k], 5)  # warm-up
            for _ in range(args.rounds):
                for k in ("today", "fused"):
                    samples[k].append(_time(runs[k], args.repeats))
            times[b] = {k: statistics.median(v) for k, v in samples.items()}
            # the speed-up: the median of each round's ratio (robust to load shifts between rounds)
            times[b]["x"] = statistics.median(
                a / f for a, f in zip(samples["today"], samples["fused"], strict=True)
            )
        rows.append((name, plain.stat().st_size, fused.stat().st_size, parity, times))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--parity", type=int, default=2048)
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("savedmodels/bench_fused"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    task, model = trained_dcn_student(args.samples, args.seed, args.lr, args.epochs)
    feats, labels = {}, []
    for x, y in task.test:
        for k, v in x.items():
            feats.setdefault(k, []).append(v.numpy())
        labels.append(y.numpy())
    feats = {k: np.concatenate(v) for k, v in feats.items()}
    labels = np.concatenate(labels).reshape(-1)
    n_parity = min(args.parity, len(labels))

    files = _export_pairs(model, task, args)
    rows = _measure(files, feats, n_parity, args)

    print(
        "\n| variant | bytes today | bytes fused | max abs diff today / fused (LiteRT vs Keras) "
        "| b1 ms today | b1 ms fused | b1 speed-up | b256 ms today | b256 ms fused "
        "| b256 speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for name, size_a, size_b, parity, t in rows:
        s1, s256 = t[1]["x"], t[256]["x"]
        summary[name] = {"b1_x": round(s1, 3), "b256_x": round(s256, 3), "parity": parity}
        print(
            f"| {name} | {size_a:,} | {size_b:,} | {parity['today']:.2g} / {parity['fused']:.2g} "
            f"| {t[1]['today']:.4f} | {t[1]['fused']:.4f} | {s1:.2f}x | {t[256]['today']:.3f} "
            f"| {t[256]['fused']:.3f} | {s256:.2f}x |"
        )

    if args.int8:
        print("\n| mode | AUC today | AUC fused | max abs diff fused vs today (LiteRT) |")
        print("|---|---|---|---|")
        for mode, (plain, fused, _) in files.items():
            if mode not in ("int8", "int16x8"):
                continue
            outs = {k: _runner(p, feats)[1].reshape(-1) for k, p in (("a", plain), ("b", fused))}
            a, b = auc(labels, outs["a"]), auc(labels, outs["b"])
            diff = float(np.abs(outs["b"] - outs["a"]).max())
            summary[mode] = {
                **summary[mode],
                "auc_today": round(a, 5),
                "auc_fused": round(b, 5),
                "diff": diff,
            }
            print(f"| {mode} | {a:.4f} | {b:.4f} | {diff:.3g} |")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
