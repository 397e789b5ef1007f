"""Benchmark structured shrinking on the simulated CTR task with the reference DCN-v2 model.

Trains ``models.dcn(schema, size="student")`` (Adam 5e-3, up to ``--epochs`` epochs, keeping the
epoch with the best validation AUC), shrinks it with
``tfcompress.pruning.shrinking.shrink(ratio=0.5)``,
fine-tunes the shrunk model for ``--finetune-epochs`` epochs, exports float TFLite files of both
and dynamic-range int8 TFLite files of both into ``savedmodels/bench_shrink/``, and benchmarks
them side by side on the test split (baseline: the float TFLite model; batch sizes 1 and 256).

Target (issue 4): shrink-50% + dynamic int8 at least 2x faster at batch 256 than the float
TFLite model, with an AUC loss of at most 0.005.

Usage:
    python benchmarks/shrink_ctr.py [--samples 60000] [--epochs 8] [--finetune-epochs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from _common import fit_best, trained_dcn_student

from tfcompress import data, models
from tfcompress._keras import keras
from tfcompress.evaluation.benchmarking import benchmark
from tfcompress.export import export_tflite
from tfcompress.export.runtime import collect_examples, load_variant, model_input_specs
from tfcompress.pruning.shrinking import shrink

BASELINE = "tflite float"
TARGET = "shrink50 tflite dynamic"


def _median_ms(path: Path, features: dict[str, np.ndarray], repeats: int) -> float:
    """Median latency of one TFLite call on ``features`` (1 thread, after a warm-up)."""
    variant = load_variant(str(path))
    for _ in range(10):
        variant(features)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        variant(features)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _where_time_goes(
    models_by_name: dict[str, keras.Model], task: data.TaskData, out: Path, repeats: int
) -> None:
    """Batch-256 float TFLite latency of the embedding front end (everything up to the DCN
    input concat: lookups, sequence pooling, reshapes) against the whole model."""
    structure, specs = model_input_specs(next(iter(models_by_name.values())))
    features, _ = collect_examples(task.test, structure, specs, 256)
    print("\nWhere the batch-256 float TFLite time goes:")
    print("| model | front end (up to dcn_input) ms | whole model ms | front-end share |")
    print("|---|---|---|---|")
    for name, model in models_by_name.items():
        front = keras.Model(model.input, model.get_layer("dcn_input").output)
        front_path = out / f"{name}_front_end.tflite"
        export_tflite(front, front_path)
        whole_path = out / f"{name}_whole_float.tflite"
        export_tflite(model, whole_path)
        f_ms, w_ms = (
            _median_ms(front_path, features, repeats),
            _median_ms(whole_path, features, repeats),
        )
        print(f"| {name} | {f_ms:.3f} | {w_ms:.3f} | {f_ms / w_ms:.0%} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("savedmodels/bench_shrink"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    task, model = trained_dcn_student(args.samples, args.seed, args.lr, args.epochs)

    small = shrink(model, args.ratio)
    print(small.compression_report.to_markdown())
    models.compile_for_task(small, task.schema, learning_rate=args.lr)
    before = small.evaluate(task.test, verbose=0, return_dict=True)["auc"]
    print(
        f"Shrunk to {small.count_params():,} parameters (test AUC before fine-tuning "
        f"{before:.4f}); fine-tuning {args.finetune_epochs} epoch(s)"
    )
    fit_best(small, task, args.finetune_epochs)

    out: Path = args.out
    exports = {
        BASELINE: (model, None, "dcn_float.tflite"),
        "tflite dynamic": (model, "dynamic", "dcn_dynamic.tflite"),
        "shrink50 tflite float": (small, None, "dcn_shrink50_float.tflite"),
        TARGET: (small, "dynamic", "dcn_shrink50_dynamic.tflite"),
    }
    variants: dict[str, str] = {}
    for name, (keras_model, mode, filename) in exports.items():
        result = export_tflite(
            keras_model, out / filename, quantization=mode, parity_data=task.test
        )
        variants[name] = str(result.path)
        print(f"Exported {name}: {result.path} ({result.bytes:,} bytes)")

    report = benchmark(
        variants,
        task.test,
        baseline=BASELINE,
        batch_sizes=(1, 256),
        repeats=args.repeats,
        max_examples=None,
    )
    print()
    print(report.to_markdown())
    ratios = report.ratios(BASELINE)
    auc_loss = -ratios[TARGET]["quality_delta"]["auc"]
    speed = ratios[TARGET]["speed_x"][256]
    met = speed >= 2.0 and auc_loss <= 0.005
    summary = {
        "speed_x_b256": round(speed, 3),
        "auc_loss": round(auc_loss, 5),
        "target_met": met,
        "params": {"float": model.count_params(), "shrunk": small.count_params()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    print()
    print(
        f"{TARGET} vs {BASELINE}: {speed:.2f}x faster at batch 256, AUC loss {auc_loss:.4f} "
        f"-> target (>= 2x, <= 0.005) {'MET' if met else 'NOT met'}"
    )
    print(json.dumps(summary))
    report.save_json(out / "report.json")
    _where_time_goes({"float": model, "shrink50": small}, task, out, args.repeats * 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
