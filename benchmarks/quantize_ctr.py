"""Benchmark post-training quantization against QAT on the simulated CTR task (DCN-v2 student).

Trains ``models.dcn(schema, size="student")`` (Adam ``--lr``, up to ``--epochs`` epochs, keeping
the epoch with the best validation AUC), then gives every variant the same extra budget of
``--extra-epochs`` epochs (Adam ``--finetune-lr``, best validation AUC kept):

- float fine-tuned -> float TFLite (the baseline), PTQ dynamic-range, PTQ full int8 (calibrated
  on the training split), PTQ int16x8; the PTQ files with int8 embedding tables (tfcompress's
  default) and with the converter's own tables (``embeddings="float"``) to show the bytes saved;
- QAT: ``tfcompress.quantize(float model)`` trained for the same extra epochs -> int8 TFLite.

Every file goes into ``savedmodels/bench_quantize/`` and is benchmarked side by side on the test
split (baseline: float TFLite; batch sizes 1 and 256; one thread).

Targets (issue 5): QAT int8 >= 3.8x smaller than float TFLite, AUC loss <= 0.002, and an AUC no
worse than PTQ int8.

Usage:
    python benchmarks/quantize_ctr.py [--samples 60000] [--epochs 8] [--extra-epochs 2]
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

from tfcompress import models
from tfcompress.evaluation.benchmarking import benchmark
from tfcompress.export import export_tflite
from tfcompress.quantization import quantize

BASELINE = "float"
QAT = "QAT int8"
PTQ_INT8 = "PTQ int8"


def _table_bytes(path: Path, vocab_sizes: set[int]) -> tuple[int, list[str]]:
    """Bytes and dtypes of the constant tensors shaped like an embedding table (or its scales)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    total, kinds = 0, set()
    for d in interpreter.get_tensor_details():
        shape = tuple(int(s) for s in d["shape"])
        if not shape or shape[0] not in vocab_sizes or shape[0] < 64:
            continue
        try:
            value = interpreter.get_tensor(d["index"])
        except ValueError:  # not a constant
            continue
        if "dequantize" in d["name"]:  # a run-time float copy, not stored in the file
            continue
        total += value.nbytes
        kinds.add(f"{np.dtype(d['dtype']).name}{list(shape[1:]) or ''}")
    return total, sorted(kinds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--extra-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("savedmodels/bench_quantize"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    task, model = trained_dcn_student(args.samples, args.seed, args.lr, args.epochs)
    trained = model.get_weights()

    print(f"\nExtra budget for every variant: {args.extra_epochs} epoch(s), lr {args.finetune_lr}")
    print("QAT: tfcompress.quantize(model)")
    qat = quantize(model)
    print(qat.compression_report.to_markdown())
    models.compile_for_task(qat, task.schema, learning_rate=args.finetune_lr)
    fit_best(qat, task, args.extra_epochs)

    print("Float fine-tuning")
    tuned = models.dcn(task.schema, size="student")
    tuned.set_weights(trained)
    models.compile_for_task(tuned, task.schema, learning_rate=args.finetune_lr)
    fit_best(tuned, task, args.extra_epochs)

    out: Path = args.out
    exports = {
        BASELINE: (tuned, None, {}),
        "PTQ dynamic (converter tables)": (tuned, "dynamic", {"embeddings": "float"}),
        "PTQ dynamic": (tuned, "dynamic", {}),
        "PTQ int8 (converter tables)": (tuned, "int8", {"embeddings": "float"}),
        PTQ_INT8: (tuned, "int8", {}),
        "PTQ int16x8 (converter tables)": (tuned, "int16x8", {"embeddings": "float"}),
        "PTQ int16x8": (tuned, "int16x8", {}),
        QAT: (qat, "int8", {}),
    }
    variants: dict[str, str] = {}
    vocab = set(task.schema.vocab_sizes().values())
    tables = {}
    for name, (keras_model, mode, options) in exports.items():
        filename = name.lower().replace(" ", "_").replace("(", "").replace(")", "") + ".tflite"
        calibrate = task.train if mode in ("int8", "int16x8") else None
        result = export_tflite(
            keras_model,
            out / filename,
            quantization=mode,
            representative_data=calibrate,
            num_calibration_steps=200,
            parity_data=task.test,
            **options,
        )
        variants[name] = str(result.path)
        tables[name] = _table_bytes(result.path, vocab)
        print(
            f"Exported {name}: {result.bytes:,} bytes, max |diff| vs its Keras model "
            f"{result.parity['max_abs_diff']:.4f}"
        )

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
    print("\nEmbedding tables in each file (constant tensors shaped (vocab, ...)):")
    print("| variant | table bytes | dtypes |")
    print("|---|---|---|")
    for name, (nbytes, kinds) in tables.items():
        print(f"| {name} | {nbytes:,} | {', '.join(kinds)} |")

    ratios = report.ratios(BASELINE)
    size_x = ratios[QAT]["size_x"]
    auc = {r.name: r.quality["auc"] for r in report.rows}
    auc_loss = auc[BASELINE] - auc[QAT]
    met = {
        "size >= 3.8x": size_x >= 3.8,
        "auc loss <= 0.002": auc_loss <= 0.002,
        "auc >= PTQ int8": auc[QAT] >= auc[PTQ_INT8],
    }
    summary = {
        "qat_size_x": round(size_x, 3),
        "qat_auc_loss": round(auc_loss, 5),
        "auc": {k: round(v, 5) for k, v in auc.items()},
        "size_x": {k: round(v["size_x"], 3) for k, v in ratios.items()},
        "speed_x_b1": {k: round(v["speed_x"][1], 3) for k, v in ratios.items()},
        "speed_x_b256": {k: round(v["speed_x"][256], 3) for k, v in ratios.items()},
        "targets": met,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print()
    print(
        f"{QAT} vs {BASELINE}: {size_x:.2f}x smaller, AUC loss {auc_loss:+.4f}, AUC "
        f"{auc[QAT]:.4f} vs PTQ int8 {auc[PTQ_INT8]:.4f} -> "
        + ", ".join(f"{k}: {'MET' if v else 'NOT met'}" for k, v in met.items())
    )
    print(json.dumps(summary))
    report.save_json(out / "report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
