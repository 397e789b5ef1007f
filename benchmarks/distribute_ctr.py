"""Throughput of a CTR fit: no strategy vs MultiWorkerMirroredStrategy on 1 and 2 loopback
workers, each with and without XLA (issue 7).

Every configuration runs in fresh processes started by
:func:`tfcompress.distribute.launch.launch_local` (so none inherits another's TensorFlow state),
fits the
reference DCN-v2 (``models.dcn(schema, size="student")``, Adam 5e-3) on the simulated ``ctr``
task with the same global batch and the same number of steps, and times every epoch. The first
epoch includes tracing and, with XLA, compilation; throughput (examples/s, global) is measured
over the later epochs. Ratios are against the no-strategy run without XLA, all from one run of
this script.

Run (about 5 minutes on 2 CPU cores):

    python benchmarks/distribute_ctr.py --out benchmarks/results/distribute_ctr.json
    python benchmarks/distribute_ctr.py --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfcompress.distribute.launch import launch_local  # noqa: E402
from tfcompress.export.manifest import atomic_write_text, library_versions  # noqa: E402

_log = logging.getLogger("tfcompress")

#: name -> (workers, strategy for launch_local, jit_compile)
CONFIGS: dict[str, tuple[int, str | None, bool]] = {
    "no strategy": (1, None, False),
    "no strategy + XLA": (1, None, True),
    "MWMS 1 worker": (1, "multi_worker", False),
    "MWMS 1 worker + XLA": (1, "multi_worker", True),
    "MWMS 2 workers": (2, "multi_worker", False),
    "MWMS 2 workers + XLA": (2, "multi_worker", True),
}


def fit_worker(
    strategy: Any, samples: int, batch_size: int, epochs: int, steps: int | None, jit: bool
) -> dict[str, Any]:
    """One process of one configuration: fit dcn-student, time each epoch (module level, so
    the worker processes can import it)."""
    from tfcompress import data, distribute, models
    from tfcompress._keras import keras, tf
    from tfcompress.distribute.acceleration import set_jit_compile

    task = data.load_task("ctr", n_samples=samples, seed=0, batch_size=batch_size)
    steps = steps or task.info["rows"]["train"] // batch_size
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # full batches only: one input shape, one trace (and one XLA compilation)
    train = task.train.unbatch().batch(batch_size, drop_remainder=True).repeat()
    train = train.with_options(options)
    strategy = strategy or distribute.get_strategy("default")
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.compile_for_task(
            models.dcn(task.schema, size="student"), task.schema, learning_rate=5e-3
        )
        model.compile(optimizer=model.optimizer, loss=model.loss)  # loss only: no metrics
    try:
        set_jit_compile(model, jit)
    except ValueError as err:  # e.g. XLA with several replicas on CPUs
        return {
            "chief": distribute.is_chief(strategy),
            "unsupported": str(err),
            "replicas": strategy.num_replicas_in_sync,
        }

    class Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    history = model.fit(train, epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    steady = timer.times[1:] or timer.times
    examples = steps * batch_size  # global examples per epoch
    return {
        "chief": distribute.is_chief(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "epoch_s": timer.times,
        "first_epoch_s": timer.times[0],
        # best later epoch: the least disturbed by other processes on a shared machine
        "examples_per_s": examples / min(steady),
        "median_examples_per_s": examples / sorted(steady)[len(steady) // 2],
        "loss": history.history["loss"],
        "steps_per_epoch": steps,
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


def run(
    samples: int, batch_size: int, epochs: int, steps: int | None, configs: list[str]
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name in configs:
        workers, strategy, jit = CONFIGS[name]
        start = time.perf_counter()
        results = launch_local(
            fit_worker,
            workers,
            strategy=strategy,
            args=(samples, batch_size, epochs, steps, jit),
            timeout=1800,
        )
        chief = next(r for r in results if r["chief"])
        rows[name] = {
            **chief,
            "workers": workers,
            "xla": jit,
            "wall_s": time.perf_counter() - start,
        }
        if "unsupported" in chief:
            _log.warning("%-22s not supported: %s", name, chief["unsupported"])
        else:
            _log.warning(
                "%-22s %8.0f examples/s (first epoch %.1f s)",
                name,
                chief["examples_per_s"],
                chief["first_epoch_s"],
            )
    base = rows[configs[0]].get("examples_per_s")
    for row in rows.values():
        row["speed_x"] = row["examples_per_s"] / base if base and "examples_per_s" in row else None
    return {
        "settings": {
            "samples": samples,
            "global_batch": batch_size,
            "epochs": epochs,
            "model": "dcn student",
            "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "baseline": configs[0],
            "versions": library_versions(),
        },
        "rows": rows,
    }


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| configuration | workers | XLA | replicas | examples/s | speed x | first epoch s |"
        " final loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        if "unsupported" in r:
            lines.append(
                f"| {name} | {r['workers']} | {'yes' if r['xla'] else 'no'} | "
                f"{r['replicas']} | not supported (see note) | — | — | — |"
            )
            continue
        lines.append(
            f"| {name} | {r['workers']} | {'yes' if r['xla'] else 'no'} | {r['replicas']} | "
            f"{r['examples_per_s']:,.0f} | {r['speed_x']:.2f} | {r['first_epoch_s']:.1f} | "
            f"{r['loss'][-1]:.4f} |"
        )
    s = result["settings"]
    lines.append("")
    lines.append(
        f"dcn student, ctr {s['samples']:,} samples, global batch {s['global_batch']}, "
        f"{s['epochs']} epochs (throughput: fastest of epochs 2..{s['epochs']}); "
        f"{s['cpu_count']} CPU cores, load average at the end "
        f"{', '.join(f'{x:.1f}' for x in s['load_avg'])}."
    )
    notes = {
        r["unsupported"].split(": ", 2)[-1] for r in result["rows"].values() if "unsupported" in r
    }
    lines += [f"Not supported: {n}" for n in sorted(notes)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per epoch (default: one pass over the training split)",
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON")
    parser.add_argument("--quick", action="store_true", help="smoke run: 6000 samples, 2 epochs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.quick:
        args.samples, args.epochs = 6_000, 2
    result = run(args.samples, args.batch_size, args.epochs, args.steps, args.configs)
    table = to_markdown(result)
    sys.stdout.write(table + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps({**result, "markdown": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
