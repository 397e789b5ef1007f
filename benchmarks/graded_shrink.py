"""Benchmark sensitivity-graded shrink ratios against one global ratio (issue 16: "per-layer
allocation follows measured sensitivity").

Trains the DCN-v2 teacher of benchmarks/compress_ctr.py on the simulated ``ctr`` task (60k
training, 100k validation impressions; Adam 5e-3, up to 8 epochs, best validation AUC), then
measures each layer's sensitivity as ``compress`` does (50% magnitude pruning, no fine-tune;
layers harmed > 5x the median and > 0.002 AUC are skipped). For each ``--graded`` mean ratio it
shrinks the model with per-layer ratios ``r_l ∝ (median drop / drop_l) ** 0.5`` (capped at
0.95) whose parameter-weighted mean is that ratio, and for each ``--uniform`` ratio with one
global ratio; each shrunk model is fine-tuned 2 epochs distilling from the teacher (as a
``compress`` candidate is) and judged on the validation split: parameters and ΔAUC with the
paired DeLong 95% CI. Compare rows of equal parameter count.

Usage:
    python benchmarks/graded_shrink.py [--graded 0.875,0.9375] [--uniform 0.75,0.8,0.83,0.875]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import fit_best

from tfcompress import data, models
from tfcompress._keras import keras
from tfcompress.evaluation import sensitivity
from tfcompress.evaluation.statistics import delong_auc_difference
from tfcompress.pruning import shrink
from tfcompress.search.build import distilled_fit, fit_loss
from tfcompress.search.space import SearchSettings

CAP, BETA, EPS = 0.95, 0.5, 1e-4


def graded_ratios(drops: dict[str, float], params: dict[str, int], mean: float) -> dict:
    """Per-layer ratios ∝ (median drop / drop) ** BETA, capped at CAP (water-filling), whose
    parameter-weighted mean is ``mean``."""
    names = list(drops)
    median = float(np.median([drops[k] for k in names])) + EPS
    weight = {k: (median / (drops[k] + EPS)) ** BETA for k in names}
    total = sum(params[k] for k in names)
    fixed: dict[str, float] = {}
    ratios: dict[str, float] = {}
    for _ in range(len(names)):
        free = [k for k in names if k not in fixed]
        budget = mean * total - sum(params[k] * r for k, r in fixed.items())
        scale = budget / sum(params[k] * weight[k] for k in free)
        ratios = {k: min(CAP, scale * weight[k]) for k in free}
        over = [k for k, r in ratios.items() if r >= CAP]
        if not over:
            break
        fixed.update({k: CAP for k in over})
    return {"default": mean, **{k: round(v, 4) for k, v in {**ratios, **fixed}.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graded", default="0.875,0.9375")
    parser.add_argument("--uniform", default="0.75,0.8,0.83,0.875")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    total = 260_000
    task = data.load_task(
        "ctr", n_samples=total, seed=args.seed, batch_size=512, split=(6 / 26, 10 / 26, 10 / 26)
    )
    teacher = models.compile_for_task(
        models.build("dcn", task.schema, size="teacher"), task.schema, learning_rate=5e-3
    )
    fit_best(teacher, task, 8)
    x, y = task.info["arrays"]["validation"]
    base = teacher.predict(x, batch_size=4096, verbose=0)[:, 0]
    report = sensitivity(
        teacher, (x, y), metric="auc", technique="prune", sparsity=0.5, progress=False
    )
    drops = {r.layer: max(r.drop, 0.0) for r in report.rows}
    floor = max(5.0 * float(np.median(list(drops.values()))), 0.002)
    skip = [k for k, v in drops.items() if v > floor]
    free = {k: v for k, v in drops.items() if k not in skip}
    params = {k: teacher.get_layer(k).count_params() for k in free}
    settings = SearchSettings(max_loss=0.002, epochs=2, learning_rate=1e-3, seed=args.seed)
    print(f"teacher {teacher.count_params():,} parameters; skipped {skip}")
    print("| allocation | mean ratio | parameters | ΔAUC ± CI | CI low |")
    print("|---|---|---|---|---|")
    runs = [("uniform", float(r)) for r in args.uniform.split(",")]
    runs += [("graded", float(r)) for r in args.graded.split(",")]
    for kind, mean in runs:
        ratio = mean if kind == "uniform" else graded_ratios(free, params, mean)
        small = shrink(teacher, ratio, skip=skip or None)
        distilled_fit(small, teacher, task.train, settings, loss=fit_loss(teacher), batch_size=512)
        diff = delong_auc_difference(y, base, small.predict(x, batch_size=4096, verbose=0)[:, 0])
        print(f"| {kind} | {mean} | {small.count_params():,} | {diff} | {diff.low:+.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
