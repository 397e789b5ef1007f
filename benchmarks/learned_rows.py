"""Benchmark learned row pruning against the frequency threshold at the same row budget
(issue 18, "rare-id and learned pruning").

Builds the simulated ``ctr`` task on a world of ``--users`` users and ``--items`` items (Zipf
popularity), trains the DCN of benchmarks/embeddings_scale.py (embedding dim 16, MLP 64-32) for
one epoch, then, for each ``--strength``:

- ``learned``: :func:`tfcompress.embeddings.learned.learned_row_pruning` fine-tunes one epoch
  with the group-lasso proximal step and prunes the rows that reached zero; that sets each
  table's row budget K;
- ``frequency``: :func:`tfcompress.embeddings.prune_vocabulary` keeps each table's K most
  frequent ids (``max_ids=K``), then fine-tunes one epoch the same way without the penalty;
- ``control``: the float model fine-tuned one epoch, nothing pruned (every variant trained
  the same number of epochs, so the comparison is of the criterion alone).

It prints table bytes (kept rows + OOV + the id mapping, as ``prune_vocabulary`` counts them)
and their ratio to float, and ΔAUC against the control with the paired DeLong 95% CI on
``--eval`` test impressions, plus learned − frequency directly.

Usage:
    python benchmarks/learned_rows.py [--users 200000] [--items 100000] [--train 400000]
        [--eval 200000] [--strength 3e-4,1e-3] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

from tfcompress import data, models
from tfcompress._keras import keras
from tfcompress.embeddings import count_ids, prune_vocabulary
from tfcompress.embeddings.learned import learned_row_pruning
from tfcompress.evaluation.statistics import delong_auc_difference


def _parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--train", type=int, default=400_000)
    parser.add_argument("--eval", type=int, default=200_000)
    parser.add_argument("--strength", default="3e-4,1e-3")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--optimizer", default="adam", help="the learned fine-tune's optimizer")
    parser.add_argument("--finetune-lr", type=float, default=None, help="its rate (--lr)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _compiled(model, schema, lr):
    return models.compile_for_task(model, schema, learning_rate=lr)


def _copy(model, schema, lr):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return _compiled(copy, schema, lr)


def _bytes(report) -> tuple[int, int]:
    tables = report.settings["tables"].values()
    return sum(t["bytes_before"] for t in tables), sum(t["bytes_after"] for t in tables)


def main(argv=None) -> int:
    args = _parse(argv)
    keras.utils.set_random_seed(args.seed)
    total = args.train + args.eval
    task = data.load_task(
        "ctr",
        n_samples=total,
        seed=args.seed,
        batch_size=1024,
        split=(args.train / total, 0.0, args.eval / total),
        n_users=args.users,
        n_items=args.items,
    )
    x_test, y_test = task.info["arrays"]["test"]
    size = {"base": "student", "embedding_dim": 16, "mlp_units": (64, 32)}
    model = _compiled(models.dcn(task.schema, size=size), task.schema, args.lr)
    start = time.time()
    model.fit(task.train, epochs=1, verbose=2)
    print(
        f"float model: {model.count_params():,} parameters, one epoch {time.time() - start:.0f} s"
    )
    counts = count_ids(model, task.train)

    def predict(m):
        return m.predict(x_test, batch_size=4096, verbose=0)[:, 0]

    control = _copy(model, task.schema, args.lr)
    control.fit(task.train, epochs=1, verbose=0)
    base = predict(control)
    rows = []
    for strength in (float(s) for s in args.strength.split(",")):
        keras.utils.set_random_seed(args.seed + 1)
        start = time.time()
        learned, report = learned_row_pruning(
            model,
            task.train,
            strength=strength,
            learning_rate=args.finetune_lr or args.lr,
            optimizer=args.optimizer,
            counts=counts,
            verbose=0,
        )
        seconds = time.time() - start
        budget = {n: t["rows_kept"] - 1 for n, t in report.settings["tables"].items()}
        freq = model
        for name, k in budget.items():
            freq, freq_report = prune_vocabulary(freq, counts, max_ids=max(k, 1), tables=name)
        freq = _compiled(freq, task.schema, args.lr)
        keras.utils.set_random_seed(args.seed + 1)
        freq.fit(task.train, epochs=1, verbose=0)
        before, after = _bytes(report)
        p_learned, p_freq = predict(learned), predict(freq)
        rows.append(
            (
                strength,
                before,
                after,
                delong_auc_difference(y_test, base, p_learned),
                delong_auc_difference(y_test, base, p_freq),
                delong_auc_difference(y_test, p_freq, p_learned),
                seconds,
                {
                    n: (k, report.settings["tables"][n]["pruned_impression_share"])
                    for n, k in budget.items()
                },
            )
        )
    auc = delong_auc_difference(y_test, base, base).baseline
    print(f"\ncontrol (float + 1 epoch) test AUC: {auc:.4f}")
    print(
        "| strength | table bytes | vs float | ΔAUC learned | ΔAUC frequency "
        "| learned − frequency | learned fit s |"
    )
    print("|---|---|---|---|---|---|---|")
    for strength, before, after, d_l, d_f, d_lf, seconds, _ in rows:
        print(
            f"| {strength:g} | {after:,} | {before / after:.2f}x | {d_l} | {d_f} | {d_lf} "
            f"| {seconds:.0f} |"
        )
    for strength, *_, kept in rows:
        detail = ", ".join(
            f"{n}: {k:,} kept ({s:.1%} of lookups pruned)" for n, (k, s) in kept.items()
        )
        print(f"strength {strength:g}: {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
