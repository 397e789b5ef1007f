"""Benchmark `tfcompress.compress` on the simulated CTR task with a teacher-size model.

Trains ``models.build(--model, schema, size="teacher")`` (DCN-v2 or the BST transformer; Adam
5e-3, up to ``--epochs`` epochs, keeping the epoch with the best validation AUC), runs
``compress(max_loss=--max-loss)`` on the train split (candidates judged on the validation
split), then benchmarks the float TFLite model and
the chosen one side by side on the test split, which the search never saw (1 thread, batch 1
and 256; paired ΔAUC with DeLong's 95% CI).

Then each technique alone at its default settings (PTQ int8; QAT int8, shrink 0.5 and prune 0.8
each fine-tuned on the labels for --finetune-epochs) joins the same benchmark run.

Target (issue 16): >= 10x smaller, >= 2.5x faster at batch 1 and >= 4x at batch 256 than the
float TFLite model, with the CI's lower end of ΔAUC >= -max_loss.

With ``--data movielens`` the task is a MovieLens-layout ``u.data`` file generated from latent
user/item factors (``benchmarks/real_files.py``'s generator) and read by
``data.load_movielens`` (implicit feedback: ratings >= 4 are clicks, 4 sampled negatives each,
a random 40/30/30 split of the positives).

Usage:
    python benchmarks/compress_ctr.py [--model dcn|transformer] [--data ctr|movielens]
        [--samples 60000] [--eval-samples 100000] [--ratings 150000] [--epochs 8]
        [--max-loss 0.002]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from _common import fit_best
from real_files import movielens_udata

import tfcompress
from tfcompress import data, models
from tfcompress._keras import keras


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=60_000, help="training impressions")
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=100_000,
        help="validation and test impressions each (paired DeLong half-width ~0.001 AUC needs "
        "~50k-150k, see docs/evaluation.md)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model",
        default="dcn",
        choices=("dcn", "transformer"),
        help="the teacher-size reference model: DCN-v2 or the behaviour-sequence transformer (BST)",
    )
    parser.add_argument(
        "--data",
        default="ctr",
        choices=("ctr", "movielens"),
        help="the simulated CTR task, or a MovieLens-layout ratings file (u.data: user, item, "
        "rating, timestamp) generated from latent factors and read by data.load_movielens "
        "(ratings >= 4 are clicks, 4 sampled negatives each)",
    )
    parser.add_argument(
        "--ratings",
        type=int,
        default=150_000,
        help="--data movielens: rating lines in the generated file (~40%% are >= 4; with 4 "
        "negatives each, 150k lines give ~300k impressions, split 40/30/30 at random)",
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max-loss", type=float, default=0.002)
    parser.add_argument("--objective", default="latency")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--budget", default=None)
    parser.add_argument("--out", default="savedmodels/bench_compress")
    parser.add_argument(
        "--no-singles",
        action="store_true",
        help="skip the single techniques at their defaults (PTQ int8, QAT int8, shrink 0.5, "
        "prune 0.8) that compress is compared with",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    keras.utils.set_random_seed(args.seed)
    task = _load(args)
    teacher = models.compile_for_task(
        models.build(args.model, task.schema, size="teacher"), task.schema, learning_rate=5e-3
    )
    print(
        f"Training {args.model} teacher ({teacher.count_params():,} parameters), "
        f"up to {args.epochs} epochs"
    )
    fit_best(teacher, task, args.epochs)

    start = time.time()
    result = tfcompress.compress(
        teacher,
        task.train,
        validation_data=task.validation,
        max_loss=args.max_loss,
        objective=args.objective,
        epochs=args.finetune_epochs,
        steps=args.steps,
        budget=args.budget,
        output_dir=Path(args.out) / "search",
    )
    wall = time.time() - start
    print(result.to_markdown())
    print(f"\nsearch: {wall:.0f} s wall, {result.trained} candidates fine-tuned")
    if result.chosen is None:
        print("no candidate kept quality")
        return 1

    # the float file of a plain conversion (no fused front end: the user's model as the
    # converter gives it) joins the run, so the ratios against it are shown too
    plain = tfcompress.export_tflite(
        teacher, Path(args.out) / "plain_float.tflite", fuse_embeddings=False, drift="ignore"
    )
    variants = {
        "float tflite": result.baseline.path,
        "compressed": result.path,
        "plain float tflite": plain.path,
    }
    if not args.no_singles:
        variants.update(_single_techniques(teacher, task, Path(args.out), args.finetune_epochs))
    print("\nOn the test split (never seen by the search):")
    report = tfcompress.benchmark(
        variants, task.test, baseline="float tflite", metrics=["auc"], measure_memory=False
    )
    print(report.to_markdown())
    ratios = report.ratios("float tflite")
    print("\n| variant | size x | speed x b1 | speed x b256 | ΔAUC ± CI | CI low | keeps |")
    print("|---|---|---|---|---|---|---|")
    for name in report.names[1:]:
        ratio, delta = ratios[name], report.row(name).deltas["auc"]
        speed = ratio["speed_x"]
        print(
            f"| {name} | {ratio['size_x']:.2f} | {speed.get(1, 0):.2f} | {speed.get(256, 0):.2f} "
            f"| {delta} | {delta.low:+.4f} | {delta.low >= -args.max_loss} |"
        )
    plain_ratio = report.ratios("plain float tflite")["compressed"]
    print(
        f"\ncompressed against the plain float file (no fused front end): size "
        f"{plain_ratio['size_x']:.2f}x, speed {plain_ratio['speed_x'].get(1, 0):.2f}x b1, "
        f"{plain_ratio['speed_x'].get(256, 0):.2f}x b256"
    )
    ratio, delta = ratios["compressed"], report.row("compressed").deltas["auc"]
    speed = ratio["speed_x"]
    met = (
        ratio["size_x"] >= 10
        and speed.get(1, 0) >= 2.5
        and speed.get(256, 0) >= 4
        and delta.low >= -args.max_loss
    )
    print(
        f"\ncompressed = {result.chosen.name}; target (>=10x, >=2.5x b1, >=4x b256, "
        f"CI low >= -{args.max_loss}): {met}"
    )
    return 0


def _load(args) -> data.TaskData:
    if args.data == "movielens":
        path = Path(args.out) / "u.data"
        path.parent.mkdir(parents=True, exist_ok=True)
        movielens_udata(path, args.ratings, np.random.default_rng(args.seed))
        task = data.load_movielens(
            path,
            task="ctr",
            negatives=4,
            batch_size=512,
            split=(0.4, 0.3, 0.3),
            split_mode="random",
            seed=args.seed,
        )
        sizes = {k: len(v) for k, v in task.info["split_rows"].items()}
        print(f"MovieLens-layout file {path}: {args.ratings:,} ratings, impressions {sizes}")
        return task
    total = args.samples + 2 * args.eval_samples
    part = args.eval_samples / total
    return data.load_task(
        "ctr",
        n_samples=total,
        seed=args.seed,
        batch_size=512,
        split=(1.0 - 2 * part, part, part),
    )


def _fit(model, task, epochs: int, learning_rate: float = 1e-3) -> None:
    models.compile_for_task(model, task.schema, learning_rate=learning_rate)
    model.fit(task.train, validation_data=task.validation, epochs=epochs, verbose=2)


def _single_techniques(teacher, task, out: Path, epochs: int) -> dict[str, str]:
    """Each technique alone at its default settings, fine-tuned on the labels for ``epochs``:
    PTQ int8, QAT int8, shrink 0.5 (float TFLite), prune 0.8 (stripped, float TFLite)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    ptq = tfcompress.export_tflite(
        teacher, out / "ptq_int8.tflite", "int8", representative_data=task.train, drift="ignore"
    )
    paths["PTQ int8"] = str(ptq.path)
    teacher.trainable = True  # compress's Distillers restored it; be explicit for the copies
    qat = tfcompress.quantize(teacher)
    _fit(qat, task, epochs)
    paths["QAT int8"] = str(
        tfcompress.export_tflite(qat, out / "qat_int8.tflite", "int8", drift="ignore").path
    )
    shrunk = tfcompress.shrink(teacher, 0.5)
    _fit(shrunk, task, epochs)
    paths["shrink 0.5"] = str(tfcompress.export_tflite(shrunk, out / "shrink50.tflite").path)
    pruned = tfcompress.prune(teacher, 0.8)
    _fit(pruned, task, epochs)
    stripped = tfcompress.pruning.strip(pruned)
    paths["prune 0.8"] = str(tfcompress.export_tflite(stripped, out / "prune80.tflite").path)
    return paths


if __name__ == "__main__":
    sys.exit(main())
