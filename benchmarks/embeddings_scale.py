"""Benchmark embedding-table compression on a simulated CTR world with >= 2M ids (issue 18).

Builds the simulated ``ctr`` task on a world of ``--users`` users and ``--items`` items (Zipf
item popularity, Zipf-like user activity with ``--user-zipf``), trains a DCN (embedding dim
16, MLP 64-32, 2 cross layers; Adam ``--lr`` 3e-3, batch 1024) for one epoch on ``--train``
impressions, and exports each variant of :data:`VARIANTS` to TFLite. Then, on ``--eval`` test
impressions, side by side in one run:

- ``table bytes``: bytes of every constant a ``GATHER`` reads in the .tflite file (the tables,
  and the per-row scales/offsets of quantized ones), and the ratio to the float tables;
- ``file bytes``: the .tflite file and its ratio to the float tables' file;
- ``ΔAUC ± CI``: test AUC of the variant minus that of the float-table file, paired DeLong 95%
  CI (:func:`tfcompress.evaluation.statistics.delong_auc_difference`);
- ``b256 ms`` and ``vs int8``: median LiteRT time of a batch of 256 (1 thread), measured in one
  fresh process that cycles through the files round after round, and its ratio to the
  int8-table file (< 1 is faster);
- ``train RSS``: peak RSS of the process that built the data and trained the weights the file
  holds (one subprocess per training run: the data, the model, the optimizer);
- ``serve RSS``: peak RSS of a fresh process that loads the file with ``ai_edge_litert`` alone
  (no TensorFlow) and scores the test split in batches of 256.

A variant is one :class:`Variant` entry: a name, ``transform(model, task) -> model`` (None: the
trained float model as it is; a transform may fine-tune on ``task.train``, and then runs in
its own subprocess, which regenerates the same data, loads the float weights and records its
own training RSS) and the keyword arguments of ``tfcompress.export_tflite``.

Defaults (1.5M users + 600k items = 2.1M ids, 1M training and 150k test impressions) ran in
530 s on the shared 2-core machine (data 86 s, one epoch 400 s, the three exports 24 s,
serving and latency ~20 s; 33.7M parameters, training peak RSS 3.1 GiB);
``--smoke`` runs tiny sizes in seconds (tests/benchmarks/test_embeddings_scale_smoke.py).

Usage:
    python benchmarks/embeddings_scale.py [--users 1500000] [--items 600000]
        [--train 1000000] [--eval 150000] [--user-zipf 0.8] [--out savedmodels/bench_embeddings]
        [--variants "int4 tables,int4 compact tables,rare ids + int4"] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 256  # serving batch
ROUNDS = 5  # latency: rounds through all files, each timing LATENCY_BATCHES batches per file
LATENCY_BATCHES = 20
_STATISTICS = "tfcompress.evaluation.statistics"  # delong_auc_difference


@dataclass(frozen=True)
class Variant:
    """One row of the table: how the trained float model becomes the exported file."""

    name: str
    transform: Callable[[Any, Any], Any] | None = None  # (model, task) -> model; None: as is
    export: dict[str, Any] = field(default_factory=dict)  # tfcompress.export_tflite kwargs


def _counts(model: Any, task: Any) -> dict[str, np.ndarray]:
    from tfcompress.embeddings import count_ids

    return count_ids(model, task.train)


#: id(model) -> {input name: map} of the transforms that detached their maps
_DETACHED_MAPS: dict[int, dict[str, np.ndarray]] = {}


def rare_ids(
    min_count: int, compact_map: bool = False, detach: bool = False
) -> Callable[[Any, Any], Any]:
    """A transform: ids seen fewer than ``min_count`` times in training share one OOV row
    (``min_count=1``: the ids never seen, whose rows were never trained); ``compact_map``: the
    id map takes ~1 byte an id instead of 4; ``detach``: the maps leave the model
    (``detach_vocabulary``) and the serving side maps the test ids before the model (not
    timed: a serving stack folds the map into the vocabulary lookup it already does)."""

    def transform(model: Any, task: Any) -> Any:
        from tfcompress.embeddings import detach_vocabulary, prune_vocabulary

        counts = _counts(model, task)
        small = prune_vocabulary(model, counts, min_count=min_count, compact_map=compact_map)[0]
        if not detach:
            return small
        detached, maps = detach_vocabulary(small)
        _DETACHED_MAPS[id(detached)] = maps  # saved beside the file by _train_worker
        return detached

    return transform


def mixed_dims(model: Any, task: Any) -> Any:
    """Widths 16 / 4 / 1 for the popular 1% / next 9% / other 90% of ids (SVD start)."""
    from tfcompress.embeddings import mixed_dimension_embeddings

    return mixed_dimension_embeddings(model, _counts(model, task), dims=(16, 4, 1))[0]


#: The rows; the first is the float baseline of ΔAUC and table/file ratios, and the row named
#: "int8 tables" is the latency baseline.
VARIANTS: list[Variant] = [
    Variant("float tables", None, {"embeddings": "float"}),
    Variant("int8 tables", None, {"embeddings": "int8"}),
    Variant("int4 tables", None, {"embeddings": "int4"}),
    # int4 with one byte of per-row parameters (a scale codebook code): 9 bytes a 16-wide row
    Variant("int4 compact tables", None, {"embeddings": "int4_compact"}),
    Variant("rare ids + int8", rare_ids(1), {"embeddings": "int8"}),
    Variant("rare ids + int4", rare_ids(1), {"embeddings": "int4"}),
    Variant("mixed dims 16-4-1", mixed_dims, {"embeddings": "float"}),
    Variant("ids seen >= 2 + int8", rare_ids(2), {"embeddings": "int8"}),
    Variant("ids seen >= 2 + int4", rare_ids(2), {"embeddings": "int4"}),
    Variant("ids seen >= 2 + int4 compact", rare_ids(2), {"embeddings": "int4_compact"}),
    # the id map as uint8 offsets + an int32 base per 255 ids (embeddings.remap.BlockedIdRemap)
    Variant(
        "ids seen >= 2 (1-byte map) + int8", rare_ids(2, compact_map=True), {"embeddings": "int8"}
    ),
    Variant(
        "ids seen >= 2 (1-byte map) + int4 compact",
        rare_ids(2, compact_map=True),
        {"embeddings": "int4_compact"},
    ),
    # the maps beside the model (the "vocabulary mapping exported beside the model")
    Variant("ids seen >= 2 (map beside) + int8", rare_ids(2, detach=True), {"embeddings": "int8"}),
    Variant(
        "ids seen >= 2 (map beside) + int4 compact",
        rare_ids(2, detach=True),
        {"embeddings": "int4_compact"},
    ),
]
LATENCY_BASELINE = "int8 tables"


def _peak_rss() -> int:
    """Peak resident bytes of this process: ``VmHWM`` of /proc/self/status where there is one
    (Linux: the high-water mark of this program's own memory, which starts afresh at exec),
    else ``ru_maxrss`` (which on Linux keeps the forking parent's peak across exec: a child of
    a parent that has loaded TensorFlow would report the parent's ~600 MiB)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


# ----------------------------------------------------------------------------- arguments
def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1_500_000)
    parser.add_argument("--items", type=int, default=600_000)
    parser.add_argument("--train", type=int, default=1_000_000, help="training impressions")
    parser.add_argument(
        "--eval",
        type=int,
        default=150_000,
        help="test impressions (a paired DeLong half-width of ~0.001 AUC needs ~100k-150k)",
    )
    parser.add_argument("--validation", type=int, default=20_000)
    parser.add_argument("--user-zipf", type=float, default=0.8, help="user activity exponent")
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="training batch (Adam updates its moments of the whole tables every step: a "
        "larger batch means fewer of those dense passes)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="savedmodels/bench_embeddings")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a test runs it)")
    parser.add_argument(
        "--variants",
        default="all",
        help="comma-separated variant names to run (default all; the float baseline and the "
        "int8-table latency baseline always run)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variants != "all":
        names = {n.strip() for n in args.variants.split(",")} | {"float tables", LATENCY_BASELINE}
        unknown = names - {v.name for v in VARIANTS}
        if unknown:
            parser.error(
                f"--variants: unknown {sorted(unknown)}; known {[v.name for v in VARIANTS]}"
            )
        VARIANTS[:] = [v for v in VARIANTS if v.name in names]  # workers parse the same list
    if args.smoke:
        args.users, args.items, args.train, args.eval, args.validation = (
            3_000,
            2_000,
            4_000,
            2_000,
            500,
        )
        args.seq_len = 5
    return args


def _world_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"n_users": args.users, "n_items": args.items, "user_zipf_exponent": args.user_zipf}


# ----------------------------------------------------------------------------- workers
def _task(args: argparse.Namespace):
    from tfcompress import data

    total = args.train + args.validation + args.eval
    return data.load_task(
        "ctr",
        n_samples=total,
        seq_len=args.seq_len,
        seed=args.seed,
        batch_size=args.batch_size,
        split=(args.train / total, args.validation / total, args.eval / total),
        **_world_args(args),
    )


def _model(schema):
    from tfcompress import models

    size = {"base": "student", "embedding_dim": 16, "mlp_units": (64, 32)}
    return models.dcn(schema, size=size)


def _export(model, variant: Variant, task, out: Path, maps: dict | None = None) -> str:
    import tfcompress
    from tfcompress._keras import tf

    path = out / (variant.name.replace(" ", "_") + ".tflite")
    kwargs = {"drift": "warn", **variant.export}
    test = task.test
    if maps:  # a file that takes rows: its parity data too
        tables = {k: tf.constant(v) for k, v in maps.items()}

        def rows(x, y):
            return {k: tf.gather(tables[k], v) if k in tables else v for k, v in x.items()}, y

        test = test.map(rows)
    result = tfcompress.export_tflite(model, path, parity_data=test, **kwargs)
    return str(result.path)


def _train_worker(args: argparse.Namespace, out: Path, which: str) -> None:
    """``which == "base"``: build the data, train the float model one epoch, save its weights
    and the test split, export every variant without a transform. ``which == "<i>"``: build
    the same data, load the float weights, apply variant i's transform, export it."""
    from tfcompress import models
    from tfcompress._keras import keras

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    task = _task(args)
    data_s = time.time() - start
    model = models.compile_for_task(_model(task.schema), task.schema, learning_rate=args.lr)
    results: dict[str, Any] = {"data_s": data_s}
    maps = None
    if which == "base":
        x, y = task.info["arrays"]["test"]
        np.savez(out / "test.npz", __label__=y, **x)
        start = time.time()
        model.fit(task.train, epochs=1, verbose=2)
        results["train_s"] = time.time() - start
        results["train_rss"] = _peak_rss()
        model.save_weights(str(out / "float.weights.h5"))
        results["params"] = int(model.count_params())
        chosen = [(i, v) for i, v in enumerate(VARIANTS) if v.transform is None]
    else:
        variant = VARIANTS[int(which)]
        model.load_weights(str(out / "float.weights.h5"))
        start = time.time()
        model = variant.transform(model, task)
        maps = _DETACHED_MAPS.pop(id(model), None)
        if maps:  # this file takes rows: the test ids are mapped before it (_test_for)
            np.savez(out / f"maps_{which}.npz", **maps)
        results["train_s"] = time.time() - start
        results["train_rss"] = _peak_rss()
        chosen = [(int(which), variant)]
    for i, variant in chosen:
        start = time.time()
        results[str(i)] = {
            "path": _export(model, variant, task, out, maps),
            "export_s": time.time() - start,
        }
    (out / f"train_{which}.json").write_text(json.dumps(results))


def _batches(test: dict[str, np.ndarray], inputs: dict[str, Any]):
    n = len(test["__label__"])
    for lo in range(0, n, BATCH):
        feeds = {}
        for name, detail in inputs.items():
            block = test[name][lo : lo + BATCH]
            if len(block) < BATCH:  # pad the last batch: one shape, no re-allocation
                pad = np.zeros((BATCH - len(block), *block.shape[1:]), block.dtype)
                block = np.concatenate([block, pad])
            feeds[name] = block.astype(detail["dtype"])
        yield lo, min(n, lo + BATCH) - lo, feeds


def _test_for(path: str, out: Path) -> dict[str, np.ndarray]:
    """The test split as ``path`` takes it: ids mapped to rows where its maps were detached."""
    test = dict(np.load(out / "test.npz"))
    names = [v.name.replace(" ", "_") + ".tflite" for v in VARIANTS]
    maps = out / f"maps_{names.index(Path(path).name)}.npz"
    if maps.exists():
        with np.load(maps) as loaded:
            for name in loaded.files:
                test[name] = loaded[name][test[name]]
    return test


def _serve_worker(path: str, out: Path, tag: str) -> None:
    """Load ``path`` with ai_edge_litert only and score the test split (peak RSS, scores)."""
    from ai_edge_litert.interpreter import Interpreter

    test = _test_for(path, out)
    runner = Interpreter(path, num_threads=1).get_signature_runner()
    inputs = runner.get_input_details()
    scores = np.empty(len(test["__label__"]), np.float32)
    for lo, n, feeds in _batches(test, inputs):
        result = runner(**feeds)
        scores[lo : lo + n] = next(iter(result.values())).reshape(BATCH, -1)[:n, -1]
    np.save(out / f"scores_{tag}.npy", scores)
    (out / f"serve_{tag}.json").write_text(json.dumps({"serve_rss": _peak_rss()}))


def _latency_worker(paths: list[str], out: Path) -> None:
    """Median batch-256 time of each file, cycling through the files round after round."""
    from ai_edge_litert.interpreter import Interpreter

    runners = [Interpreter(p, num_threads=1).get_signature_runner() for p in paths]
    feeds = [
        [
            f
            for _, _, f in itertools.islice(
                _batches(_test_for(p, out), r.get_input_details()), LATENCY_BATCHES
            )
        ]
        for p, r in zip(paths, runners, strict=True)
    ]
    for runner, fs in zip(runners, feeds, strict=True):
        runner(**fs[0])  # warm up
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(ROUNDS):
        for k, runner in enumerate(runners):
            for f in feeds[k]:
                start = time.perf_counter()
                runner(**f)
                times[k].append(time.perf_counter() - start)
    (out / "latency.json").write_text(json.dumps([float(np.median(t)) for t in times]))


# ----------------------------------------------------------------------------- file bytes
def gathered_bytes(path: str | Path) -> int:
    """Bytes of every constant tensor a ``GATHER`` reads its rows from (tables, row scales)."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    total, seen = 0, set()
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for o in range(sub.OperatorsLength()):
            op = sub.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
            if kind not in ("GATHER", "EMBEDDING_LOOKUP") or op.InputsLength() < 1:
                continue
            index = int(op.Inputs(0) if kind == "GATHER" else op.Inputs(1))
            if (g, index) in seen:
                continue
            seen.add((g, index))
            buffer = model.Buffers(sub.Tensors(index).Buffer())
            total += int(buffer.DataLength() or buffer.Size())  # Size: data past 2 GB
    return total


# ----------------------------------------------------------------------------- main
def _run(args: argparse.Namespace, worker: str) -> None:
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()]
    argv = [a for a in argv if not a.startswith(("--smoke=", "--worker="))]
    command = [sys.executable, __file__, *argv, "--worker", worker]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    subprocess.run(command, check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.worker is not None:
        kind, _, which = args.worker.partition(":")
        if kind == "train":
            _train_worker(args, out, which)
        elif kind == "serve":
            _serve_worker(
                str(out / (VARIANTS[int(which)].name.replace(" ", "_") + ".tflite")), out, which
            )
        else:
            _latency_worker(json.loads(which), out)
        return 0

    start = time.time()
    # the statistics import loads TensorFlow (seconds): overlap it with the workers
    importer = threading.Thread(target=importlib.import_module, args=(_STATISTICS,))
    importer.start()
    ids = args.users + args.items
    print(
        f"World: {args.users:,} users + {args.items:,} items = {ids:,} ids (user Zipf "
        f"{args.user_zipf}); {args.train:,} training / {args.eval:,} test impressions"
    )
    _run(args, "train:base")
    base = json.loads((out / "train_base.json").read_text())
    print(
        f"data {base['data_s']:.0f} s, one epoch {base['train_s']:.0f} s "
        f"({base['params']:,} parameters)"
    )
    runs = {str(i): base for i, v in enumerate(VARIANTS) if v.transform is None}
    for i, v in enumerate(VARIANTS):
        if v.transform is not None:
            _run(args, f"train:{i}")
            runs[str(i)] = json.loads((out / f"train_{i}.json").read_text())
    paths = [runs[str(i)][str(i)]["path"] for i in range(len(VARIANTS))]
    serve = []
    for i in range(len(VARIANTS)):
        _run(args, f"serve:{i}")
        serve.append(json.loads((out / f"serve_{i}.json").read_text())["serve_rss"])
    _run(args, "latency:" + json.dumps(paths))
    latency = json.loads((out / "latency.json").read_text())

    importer.join()
    delong_auc_difference = importlib.import_module(_STATISTICS).delong_auc_difference
    labels = np.load(out / "test.npz")["__label__"]
    scores = [np.load(out / f"scores_{i}.npy") for i in range(len(VARIANTS))]
    tables = [gathered_bytes(p) for p in paths]
    files = [Path(p).stat().st_size for p in paths]
    lat_base = latency[[v.name for v in VARIANTS].index(LATENCY_BASELINE)]
    print(
        "\n| variant | table bytes | table x | file bytes | file x | test AUC | ΔAUC ± 95% CI "
        "| CI low | b256 ms | vs int8 | train RSS | serve RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, v in enumerate(VARIANTS):
        d = delong_auc_difference(labels, scores[0], scores[i])
        half = (d.high - d.low) / 2
        print(
            f"| {v.name} | {tables[i]:,} | {tables[0] / tables[i]:.2f} | {files[i]:,} "
            f"| {files[0] / files[i]:.2f} | {d.variant:.4f} | {d.delta:+.5f} ± {half:.5f} "
            f"| {d.low:+.5f} | {latency[i] * 1e3:.2f} | {latency[i] / lat_base:.2f} "
            f"| {_mib(runs[str(i)]['train_rss'])} | {_mib(serve[i])} |"
        )
    print(f"\nwall {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
