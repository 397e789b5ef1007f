"""Where batch-1 time goes in a small recommender's ``.tflite`` (issue 16), one run.

Reads a ``compress`` search folder (default: the MovieLens-layout ``latency_b1`` run of
``benchmarks/compress_ctr.py --data movielens --no-singles --objective latency_b1 --out
savedmodels/bench_compress_ml``) and, for the float baseline, the chosen file and variants of
the chosen model rebuilt at the Keras level, prints: op count, ops XNNPACK takes, XNNPACK
partitions, nodes LiteRT executes, and the median batch-1 time (1 thread) of

- ``invoke``: ``Interpreter.invoke()`` alone (inputs set once): what a native server pays;
- ``call``: tfcompress' ``Variant.__call__`` (``set_tensor`` per input, ``invoke``,
  ``get_tensor``, numpy conversion): what ``benchmark``/``compress`` time at batch 1;

all interleaved (``--rounds`` rounds of ``--calls`` calls each, ratios of medians). Variants:

- ``floor``: one ``Dense(12 -> 1)`` (one XNNPACK node): the fixed cost of an invoke;
- ``chosen, front end``/``back end``: the chosen model cut at the gather (ids -> rows and
  ``present``; pooled pieces -> probability);
- ``chosen reconverted``: the fused chosen model converted here (the control for the rest);
- ``int32 rows``: the fused front end's ``integer_rows`` (row arithmetic on LiteRT's int32
  kernels, no first XNNPACK partition);
- ``mask column``: the padding mask read from a 5th table column (0 on the pooled table's
  row 0), so the front end before the gather is only clip + offset (3 float ops instead of 13);
  ``, int32 clip``: the clip + offset on LiteRT's int32 kernels (no first partition);
  ``, no clip (unsafe)``: offsets only (4 nodes run; a bound: out-of-range ids fail the GATHER);
- ``logits split``: the DCN's ``logits(concat([cross, mlp]))`` as ``FC(cross) + FC(mlp)``.

``max |diff|``: against the fused Keras model on 512 ids (30% padding, 2% negative, ids past
the tables), one example per call. ``--profile`` adds LiteRT's op profile of the float and
chosen files at batch 1 and 8 (its 1 µs resolution and its own cost, ~50 µs an invoke, cannot
resolve ops of a 1.6 µs invoke: the table's cuts and variants do).

Measured (one run, 31 x 2000 calls, shared 2-core machine): ``invoke`` chosen/float 2.61-2.86x,
``set+invoke+get`` 1.86-1.98x, ``call`` 1.52-1.62x; no variant is faster than the chosen file
(logits split 1.01x, the rest 0.71-0.94x).

Usage:
    python benchmarks/b1_floor.py [--search savedmodels/bench_compress_ml/search/<hash>]
        [--chosen shrink0.88] [--rounds 21] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import tfcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras, tf
from tfcompress.evaluation.profile import profile_variant
from tfcompress.export.fuse import fuse_embeddings
from tfcompress.export.runtime import load_variant


def _convert(model: keras.Model, path: Path) -> str:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path.write_bytes(converter.convert())
    return str(path)


def _structure(path: str) -> dict:
    """Ops, ops inside XNNPACK partitions, partitions and executed nodes of one file."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    ops = interpreter_ops(it)
    graph = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {int(t): o["index"] for o in graph for t in o["outputs"]}
    by_index = {o["index"]: o for o in graph}
    delegated: set[int] = set()
    partitions = [o for o in ops if o["op_name"] == "DELEGATE"]
    for d in partitions:  # walk back from the partition's outputs to its inputs
        stop, todo = {int(t) for t in d["inputs"]}, [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            if t in stop or t not in producer or producer[t] in delegated:
                continue
            delegated.add(producer[t])
            todo += [int(x) for x in by_index[producer[t]]["inputs"] if x >= 0]
    left = [o["op_name"] for o in graph if o["index"] not in delegated]
    return {
        "ops": len(graph),
        "delegated": len(delegated),
        "partitions": len(partitions),
        "nodes run": len(left) + len(partitions),
        "left to LiteRT": " ".join(left),
    }


class MaskColumnFrontEnd(keras.layers.Layer):
    """Ids -> ``[flat user|item rows, masked mean of history rows]`` with the mask in a column."""

    def __init__(self, table: np.ndarray, offsets, limits, items, rows="float", **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows = rows  # "float" (XNNPACK), "int32" (LiteRT kernels), "unclipped" (int32)
        self.table = tf.constant(table)
        self.offsets = tf.constant(np.asarray(offsets, np.float32))
        self.limits = tf.constant(np.asarray(limits, np.float32))
        self.items = items

    def call(self, ids):
        raw = tf.concat(ids, axis=1)
        if self.rows == "float":
            clipped = tf.minimum(tf.maximum(tf.cast(raw, tf.float32), 0.0), self.limits)
            rows = tf.cast(clipped + self.offsets, tf.int32)
        else:
            if self.rows == "int32":
                raw = tf.minimum(tf.maximum(raw, 0), tf.cast(self.limits, tf.int32))
            rows = raw + tf.cast(self.offsets, tf.int32)
        values = tf.gather(self.table, rows)
        dim = int(self.table.shape[1]) - 1
        outs, flat = [], [it for it in self.items if it[0] == "flat"]
        stop = flat[-1][1] + flat[-1][2]
        outs.append(tf.reshape(values[:, :stop, :dim], [-1, stop * dim]))
        for _, start, length in [it for it in self.items if it[0] == "mean"]:
            span = values[:, start : start + length, :]
            mask = span[:, :, dim:]
            total = tf.reduce_sum(span[:, :, :dim] * mask, axis=1)
            outs.append(total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0))
        return outs


def _logits_split(fused: keras.Model, layers: dict) -> keras.Model:
    """The fused model with ``logits(concat([cross, mlp]))`` as ``FC(cross) + FC(mlp)``."""
    x0 = layers["dcn_input"].output
    x, h, i = x0, x0, 0
    while f"cross_{i}" in layers:
        x, i = layers[f"cross_{i}"]([x0, x]), i + 1
    i = 0
    while f"mlp_{i}" in layers:
        h, i = layers[f"mlp_{i}"](h), i + 1
    kernel, bias = layers["logits"].get_weights()
    cross, mlp = keras.layers.Dense(1, use_bias=False), keras.layers.Dense(1)
    logit = keras.layers.Add()([cross(x), mlp(h)])
    cross.set_weights([kernel[: x.shape[-1]]])
    mlp.set_weights([kernel[x.shape[-1] :], bias])
    return keras.Model(fused.inputs, keras.layers.Activation("sigmoid")(logit))


def _variants(keras_path: Path, out: Path) -> tuple[keras.Model, dict[str, str]]:
    model = keras.models.load_model(keras_path)
    fused, _ = fuse_embeddings(model)
    layers = {layer.name: layer for layer in fused.layers}
    ids_layer, pooling = layers["fused_ids"], layers["fused_pooling"]
    files = {"chosen reconverted": _convert(fused, out / "reconverted.tflite")}
    gathered = layers["fused_embedding"].output
    front = keras.Model(fused.inputs, [gathered, ids_layer.output[0]])
    files["chosen, front end"] = _convert(front, out / "front.tflite")
    back = keras.Model(pooling.output, fused.output)
    files["chosen, back end"] = _convert(back, out / "back.tflite")
    ids_layer.integer_rows = True
    files["int32 rows"] = _convert(fused, out / "int32_rows.tflite")
    ids_layer.integer_rows = False
    # the mask column: 1 on every row but the pooled table's row 0 (id 0 = padding)
    table = layers["fused_embedding"].get_weights()[0]
    mask = np.ones((len(table), 1), np.float32)
    for off, pooled in zip(ids_layer.offsets, ids_layer.pooled, strict=True):
        if pooled:
            mask[off] = 0.0
    inputs = [
        keras.Input(x.shape[1:], dtype=x.dtype, name=x.name.split(":")[0]) for x in fused.inputs
    ]
    by_name = {x.name: x for x in inputs}  # in the order FusedGatherIds concatenates them
    ordered = [by_name[x.name.split(":")[0]] for x in ids_layer.input]
    names = {
        "float": "mask column",
        "int32": "mask column, int32 clip",
        "unclipped": "mask column, no clip (unsafe)",
    }
    for rows, label in names.items():
        front_end = MaskColumnFrontEnd(
            np.concatenate([table, mask], axis=1),
            ids_layer.offsets,
            ids_layer.limits,
            [list(it) for it in pooling.items],
            rows=rows,
        )
        model = keras.Model(inputs, back(front_end(ordered)))
        files[label] = _convert(model, out / f"mask_column_{rows}.tflite")
    files["logits split"] = _convert(_logits_split(fused, layers), out / "logits_split.tflite")
    floor = keras.Sequential([keras.Input((12,)), keras.layers.Dense(1)])
    files["floor: Dense(12->1)"] = _convert(floor, out / "floor.tflite")
    return fused, files


def _features(variant, rng, n: int, hostile: bool = True) -> dict[str, np.ndarray]:
    feats = {}
    for s in variant.input_specs:
        shape = (n, *(d or 1 for d in s.shape))
        if "int" in s.dtype:  # ids, some padding; hostile: some out of range or negative
            x = rng.integers(0, 4000 if hostile else 2500, shape)
            x[rng.random(shape) < 0.3] = 0
            if hostile:
                x[rng.random(shape) < 0.02] = -3
            feats[s.name] = x.astype(s.dtype)
        else:
            feats[s.name] = rng.random(shape).astype(s.dtype)
    return feats


def _parity(variant, ids: dict[str, np.ndarray], reference: np.ndarray) -> float | str:
    """Max |diff| of ``variant`` (one example per call) against the fused Keras model."""
    outs = []
    try:
        for i in range(len(reference)):
            outs.append(variant({k: x[i : i + 1] for k, x in ids.items()}))
    except RuntimeError as e:  # an unclipped GATHER on out-of-range ids
        why = "GATHER index out of bounds" if "out of bounds" in str(e) else str(e)[:60]
        return f"fails on out-of-range ids ({why})"
    if len(outs[0]) != 1 or next(iter(outs[0].values())).size != 1:
        return ""  # a cut of the model, not a probability
    got = np.array([float(next(iter(o.values())).reshape(-1)[0]) for o in outs])
    return float(np.max(np.abs(got - reference)))


def _runners(variant, batch: dict[str, np.ndarray]) -> dict:
    """The three ways of timing one batch-1 call (inputs set by the first call)."""
    it = variant.interpreter
    runner = it.get_signature_runner()
    ins = [(d["index"], batch[k]) for k, d in runner.get_input_details().items()]
    outs = [d["index"] for d in runner.get_output_details().values()]
    del runner  # it holds a reference that blocks allocate_tensors()
    variant(batch)

    def lean() -> None:  # the interpreter's own API, no wrapper
        for index, value in ins:
            it.set_tensor(index, value)
        it.invoke()
        for index in outs:
            it.get_tensor(index)

    return {"invoke": it.invoke, "set+invoke+get": lean, "call": lambda: variant(batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--search", default=None, help="a compress search folder")
    parser.add_argument("--chosen", default="shrink0.88")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", default="savedmodels/b1_floor")
    parser.add_argument("--profile", action="store_true", help="also LiteRT's op profile")
    args = parser.parse_args()
    search = Path(args.search) if args.search else None
    if search is None:  # the latest latency_b1 search of the MovieLens run
        root = Path("savedmodels/bench_compress_ml/search")
        runs = [d for d in root.iterdir() if "latency_b1" in (d / "result.md").read_text()]
        search = max(runs, key=lambda d: d.stat().st_mtime)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fused_model, built = _variants(search / f"{args.chosen}@keras" / "model.keras", out)
    files = {"float": str(search / "float" / "model.tflite")}
    plain = search.parent.parent / "plain_float.tflite"
    if plain.exists():
        files["float, unfused"] = str(plain)
    files["chosen"] = str(search / args.chosen / "model.tflite")
    files.update(built)
    rng = np.random.default_rng(0)
    variants = {k: load_variant(p, num_threads=1, verify=False) for k, p in files.items()}
    ids = _features(variants["chosen"], rng, 512)
    reference = fused_model.predict(ids, batch_size=512, verbose=0).reshape(-1)
    rows, batches = {}, {}
    for name, v in variants.items():
        rows[name] = {"bytes": Path(files[name]).stat().st_size, **_structure(files[name])}
        if set(ids) == {s.name for s in v.input_specs} and "float" not in name:
            rows[name]["max |diff|"] = _parity(v, ids, reference)
        batches[name] = {
            k: x[:1] for k, x in _features(v, np.random.default_rng(1), 1, False).items()
        }
    times = {(k, m): [] for k in variants for m in ("invoke", "set+invoke+get", "call")}
    for _ in range(args.rounds):
        for name, v in variants.items():
            for mode, fn in _runners(v, batches[name]).items():
                t = time.perf_counter()
                for _ in range(args.calls):
                    fn()
                times[name, mode].append((time.perf_counter() - t) / args.calls * 1e6)
    med = {k: float(np.median(x)) for k, x in times.items()}

    def ratio(a: str, b: str, mode: str) -> str:  # median over rounds of a / b (load drifts)
        return f"{np.median(np.array(times[a, mode]) / np.array(times[b, mode])):.2f}x"

    head = [
        "variant",
        "bytes",
        "ops",
        "XNNPACK ops",
        "partitions",
        "nodes run",
        "left to LiteRT",
        "invoke µs",
        "vs chosen",
        "vs float",
        "set+invoke+get µs",
        "vs float",
        "call µs",
        "vs float",
        "max |diff|",
    ]
    print(f"search: {search}; {args.rounds} rounds x {args.calls} calls, batch 1, 1 thread")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, r in rows.items():
        inv, lean, call = (med[name, m] for m in ("invoke", "set+invoke+get", "call"))
        diff = r.get("max |diff|", "")
        cells = [
            name,
            f"{r['bytes']:,}",
            r["ops"],
            r["delegated"],
            r["partitions"],
            r["nodes run"],
            r["left to LiteRT"],
            f"{inv:.2f}",
            ratio("chosen", name, "invoke"),
            ratio("float", name, "invoke"),
            f"{lean:.2f}",
            ratio("float", name, "set+invoke+get"),
            f"{call:.2f}",
            ratio("float", name, "call"),
            diff if isinstance(diff, str) else f"{diff:.1e}",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    for name in ("float", "chosen") if args.profile else ():
        for size in (1, 8):  # the profiler's 1 µs resolution: most ops read 0 at batch 1
            p = profile_variant(files[name], ids, size, runs=2000, warmup=50)
            shown = ", ".join(f"{r.op} {r.ms * 1e3:.2f}" for r in p.rows if r.ms > 0) or "-"
            print(f"profile {name} b{size}: Invoke {p.run_ms * 1e3:.1f} µs; ops > 0 µs: {shown}")
    (out / "b1_floor.json").write_text(
        json.dumps(
            {"rows": rows, "median_us": {f"{k}|{m}": v for (k, m), v in med.items()}}, indent=1
        )
    )


if __name__ == "__main__":
    main()
