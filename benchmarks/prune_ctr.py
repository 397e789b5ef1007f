"""Issue-4 benchmark: float vs prune-80% vs 2:4 vs shrink-50% on the simulated CTR task.

Trains the reference ``models.dcn(schema, size="student")`` (Adam 5e-3, up to ``--epochs``
epochs, best validation AUC kept), then gives every variant the SAME fine-tuning budget
(``--finetune-epochs`` epochs from the trained float weights):

- ``float``: the float model trained on for the budget;
- ``prune80``: ``tfcompress.prune(model, 0.8)`` + :class:`tfcompress.PruningCallback`, stripped;
- ``2:4``: ``tfcompress.prune(model, structure="2:4")``, stripped;
- ``shrink50``: ``tfcompress.shrink(model, 0.5)`` (half the units and embedding dimensions);
- ``shrink50 distilled``: the same shrunk model fine-tuned as the student of a
  :class:`tfcompress.Distiller` whose teacher is the trained float model.

Each is exported to float TFLite (and shrink50 also to dynamic-range int8) under
``savedmodels/bench_prune/`` and measured in ONE :func:`tfcompress.benchmark` run on the test split
against the float TFLite model: AUC delta, bytes and gzip bytes ratios, batch-1/256 latency ratios.

Usage:
    python benchmarks/prune_ctr.py [--samples 60000] [--epochs 8] [--finetune-epochs 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from _common import fit_best, trained_dcn_student

import tfcompress
from tfcompress import models
from tfcompress._keras import keras

BASELINE = "float tflite"


def _copy(model: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--finetune-lr", type=float, default=5e-3)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("savedmodels/bench_prune"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    started = time.perf_counter()
    task, trained = trained_dcn_student(args.samples, args.seed, args.lr, args.epochs)
    schema, budget, lr = task.schema, args.finetune_epochs, args.finetune_lr

    variants: dict[str, keras.Model] = {}
    print(f"\n== float: {budget} more epoch(s)")
    float_model = models.compile_for_task(_copy(trained), schema, learning_rate=lr)
    fit_best(float_model, task, budget)
    variants["float"] = float_model

    for name, kwargs in (("prune80", {"sparsity": 0.8}), ("2:4", {"structure": "2:4"})):
        print(f"\n== {name}: prune {kwargs} + {budget} epoch(s)")
        pruned = models.compile_for_task(
            tfcompress.prune(trained, **kwargs), schema, learning_rate=lr
        )
        fit_best(pruned, task, budget, callbacks=[tfcompress.PruningCallback()])
        stripped = tfcompress.pruning.strip(pruned)
        print(tfcompress.pruning.sparsity_report(stripped).to_markdown())
        variants[name] = stripped

    print(f"\n== shrink50: shrink(0.5) + {budget} epoch(s)")
    small = tfcompress.shrink(trained, 0.5)
    init = small.get_weights()
    models.compile_for_task(small, schema, learning_rate=lr)
    fit_best(small, task, budget)
    variants["shrink50"] = small
    print(f"   {trained.count_params():,} -> {small.count_params():,} parameters")

    print(f"\n== shrink50 distilled from the float model: {budget} epoch(s)")
    student = keras.models.clone_model(small)
    student.set_weights(init)
    distiller = tfcompress.Distiller(student, trained, alpha=0.5, temperature=1.0)
    distiller.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    fit_best(distiller, task, budget)
    variants["shrink50 distilled"] = distiller.student

    out: Path = args.out
    files: dict[str, str] = {}
    exports = (
        [(BASELINE, "float", None)]
        + [(f"{n} tflite", n, None) for n in variants if n != "float"]
        + [(f"{n} tflite dynamic", n, "dynamic") for n in variants if n.startswith("shrink50")]
    )
    for label, source, mode in exports:
        fname = label.replace(" ", "_").replace(":", "of") + ".tflite"
        result = tfcompress.export_tflite(
            variants[source], out / fname, quantization=mode, parity_data=task.test, overwrite=True
        )
        files[label] = str(result.path)

    report = tfcompress.benchmark(
        files,
        task.test,
        baseline=BASELINE,
        batch_sizes=(1, 256),
        repeats=args.repeats,
        max_examples=None,
    )
    print()
    print(report.to_markdown())
    report.save_json(out / "report.json")
    ratios = report.ratios(BASELINE)
    summary = {
        name: {
            "auc_delta": round(r["quality_delta"]["auc"], 4),
            "size_x": round(r["size_x"], 2),
            "gzip_size_x": round(r["gzip_size_x"], 2),
            "speed_x_b1": round(r["speed_x"][1], 2),
            "speed_x_b256": round(r["speed_x"][256], 2),
        }
        for name, r in ratios.items()
    }
    print(json.dumps(summary, indent=1))
    target = "shrink50 tflite dynamic"
    s = summary[target]
    met = s["speed_x_b256"] >= 2.0 and s["auc_delta"] >= -0.005
    print(
        f"\n{target}: {s['speed_x_b256']}x at batch 256, AUC delta {s['auc_delta']} -> target "
        f"(>= 2x, loss <= 0.005) {'MET' if met else 'NOT met'}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
