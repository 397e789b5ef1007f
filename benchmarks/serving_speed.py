"""Serving speed of int8 against float on one CPU thread (issue 19's targets), one run.

For each model, exports side by side:

- ``float``: today's float file (``fuse_embeddings=False``), the baseline;
- ``float fused``: the fused embedding front end (one gather per table width);
- ``dynamic``: dynamic-range int8 weights;
- ``dynamic, float weights``: the same int8 weights, the fully connected layers computed in
  float (``float_ops=["FULLY_CONNECTED"]``: :func:`tfcompress.export.ptq.dequantize_weights`);
- ``dynamic auto``: ``float_ops="auto"``, whichever of the two is measured faster;
- ``int8``: full int8 as the converter makes it (``float_ops=None``);
- ``int8 hybrid``: full int8 with the op types measured faster in float kept in float
  (``float_ops="auto"``: :func:`tfcompress.export.hybrid.choose_float_ops`);
- ``int8 hybrid fused``: the same on the fused front end;

and times them interleaved (medians of ``--repeats`` runs at batch 1 and 256, 1 thread, LiteRT
with XNNPACK; each file's ``invoke()`` on inputs set once, as ``benchmark(timing="invoke")``).
Quality: the max |diff| against the Keras model and, for the CTR models, the test ΔAUC against
the float file with DeLong's paired 95% CI.

Models: the DCN student and the BST (the simulated ctr task, trained ``--epochs``), a Model
Garden BERT-small (2 layers, hidden 128, the product_text task) and a DCN-v2 with 10 id fields
and a 400-400-400 MLP (a user-style functional model, 10 tables of 10k rows).

Targets (issue 19): int8 >= 1.5x faster than float at batch 1 and >= 2x at batch 256, never
slower; the fused front end >= 1.5x faster than today's on the DCN student at batch 256 with
parity <= 1e-5.

Usage:
    python benchmarks/serving_speed.py [--models dcn_student,bst,bert,dcn_wide]
        [--samples 30000] [--epochs 2] [--repeats 50] [--out savedmodels/serving_speed]
        [--before]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

import tfcompress
from tfcompress import data, models
from tfcompress._keras import keras, tf
from tfcompress.evaluation import delong_auc_difference
from tfcompress.evaluation.peak import machine_cpu
from tfcompress.export.runtime import load_variant

#: With ``--before``: the same exports without the graph rewrites of export/simplify.py and
#: export/float_regions.py (patched out for those variants only), timed in the same run.
BEFORE = {
    "float (before)": {"quantization": None, "fuse_embeddings": False},
    "int8 hybrid (before)": {"quantization": "int8", "float_ops": "auto", "fuse_embeddings": False},
}

VARIANTS = {
    "float": {"quantization": None, "fuse_embeddings": False},
    "float fused": {"quantization": None, "fuse_embeddings": True},
    "dynamic": {"quantization": "dynamic"},
    # the same int8 weights computed in float (dequantized once at load: ptq.dequantize_weights)
    "dynamic, float weights": {"quantization": "dynamic", "float_ops": ["FULLY_CONNECTED"]},
    "dynamic auto": {"quantization": "dynamic", "float_ops": "auto"},
    "int8": {"quantization": "int8", "fuse_embeddings": False},
    "int8 hybrid": {"quantization": "int8", "float_ops": "auto", "fuse_embeddings": False},
    "int8 hybrid fused": {"quantization": "int8", "float_ops": "auto", "fuse_embeddings": True},
}


def _ctr(name: str, samples: int, epochs: int, seed: int):
    keras.utils.set_random_seed(seed)
    task = data.load_task("ctr", n_samples=samples, seed=seed, batch_size=512)
    builder = "dcn" if name == "dcn_student" else "transformer"
    kwargs = {"size": "student"} if name == "dcn_student" else {}
    model = models.compile_for_task(
        models.build(builder, task.schema, **kwargs), task.schema, learning_rate=5e-3
    )
    model.fit(task.train, epochs=epochs, verbose=0)
    return model, task.train, task.test


def _bert(samples: int, epochs: int, seed: int):
    from official.nlp.modeling import models as garden
    from official.nlp.modeling import networks

    keras.utils.set_random_seed(seed)
    task = data.text.product_text(n_samples=samples, seed=seed, batch_size=128)
    encoder = networks.BertEncoder(
        vocab_size=2000,
        hidden_size=128,
        num_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_sequence_length=32,
        type_vocab_size=2,
    )
    classifier = garden.BertClassifier(encoder, num_classes=8)
    inputs = {
        k: keras.Input((32,), dtype="int32", name=k)
        for k in ("input_word_ids", "input_mask", "input_type_ids")
    }
    model = keras.Model(inputs, classifier(inputs), name="bert_small")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(task.train, epochs=epochs, verbose=0)
    return model, task.train, task.test


def _dcn_wide(samples: int, epochs: int, seed: int):
    """DCN-v2 with 10 id fields (10k ids each, dim 16) and a 400-400-400 MLP, on random clicks."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    names = [f"field_{i}" for i in range(10)]
    ids = [keras.Input((1,), dtype="int32", name=n) for n in names]
    x0 = keras.layers.Concatenate(name="embedded")(
        [
            keras.layers.Flatten(name=f"flat_{n}")(
                keras.layers.Embedding(10_000, 16, name=f"emb_{n}")(i)
            )
            for n, i in zip(names, ids, strict=True)
        ]
    )
    x = x0
    for k in range(2):
        x = models.layers.Cross(name=f"cross_{k}")([x0, x])
    h = x0
    for k, units in enumerate((400, 400, 400)):
        h = keras.layers.Dense(units, activation="relu", name=f"mlp_{k}")(h)
    out = keras.layers.Dense(1, activation="sigmoid", name="prob")(
        keras.layers.Concatenate(name="dcn_concat")([x, h])
    )
    model = keras.Model(dict(zip(names, ids, strict=True)), out, name="dcn_wide")
    model.compile(optimizer="adam", loss="binary_crossentropy")

    def split(n):
        feats = {k: (rng.zipf(1.3, (n, 1)) % 10_000).astype("int32") for k in names}
        logit = sum(np.sin(feats[k][:, 0] * (i + 1) * 0.37) for i, k in enumerate(names[:4]))
        labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float32")[:, None]
        return tf.data.Dataset.from_tensor_slices((feats, labels)).batch(512)

    train, test = split(samples), split(max(samples // 3, 2048))
    model.fit(train, epochs=epochs, verbose=0)
    return model, train, test


@contextlib.contextmanager
def _without_rewrites(active: bool):
    """Export without export/simplify.py's and export/float_regions.py's rewrites (``--before``)."""
    if not active:
        yield
        return
    from tfcompress.export import hybrid as hybrid_module
    from tfcompress.export import tflite as tflite_module

    def unchanged(flatbuffer):
        return flatbuffer, {}

    with (
        mock.patch.object(tflite_module, "simplify_flatbuffer", unchanged),
        mock.patch.object(hybrid_module, "merge_float_regions", unchanged),
    ):
        yield


def _examples(dataset, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    feats: dict[str, list[np.ndarray]] = {}
    labels = []
    for x, y in dataset:
        for k, v in x.items():
            feats.setdefault(k, []).append(np.asarray(v))
        labels.append(np.asarray(y))
        if sum(len(b) for b in labels) >= n:
            break
    return {k: np.concatenate(v)[:n] for k, v in feats.items()}, np.concatenate(labels)[:n]


def _time(files: dict[str, Path], feats: dict[str, np.ndarray], repeats: int) -> dict:
    variants = {name: load_variant(path, num_threads=1) for name, path in files.items()}
    out: dict[str, dict[int, float]] = {name: {} for name in files}
    for size in (1, 256):
        batch = {k: np.ascontiguousarray(v[np.arange(size) % len(v)]) for k, v in feats.items()}
        # invoke() on inputs set once (benchmark's timing="invoke"): what a native server pays,
        # without the ~3 µs of Python a call that would mask batch-1 differences
        runs = {name: v.invoker(batch) for name, v in variants.items()}
        for run in runs.values():
            for _ in range(5):
                run()
        times: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        for name in files:
            out[name][size] = float(np.median(times[name]) * 1e3)
    return out


def _score(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(next(iter(outputs.values()))).reshape(len(next(iter(outputs.values()))), -1)


def run_model(name: str, args: argparse.Namespace) -> list[str]:
    build = {"dcn_student": _ctr, "bst": _ctr, "bert": _bert, "dcn_wide": _dcn_wide}[name]
    start = time.time()
    if name in ("dcn_student", "bst"):
        model, train, test = build(name, args.samples, args.epochs, args.seed)
    else:
        model, train, test = build(args.samples, args.epochs, args.seed)
    feats, labels = _examples(test, args.eval_examples)
    # one fixed calibration set for every int8 file: `train` reshuffles on each pass, so two
    # exports calibrated on it would see different draws (the BST's int8 ΔAUC moved from
    # -0.0021 to +0.0002 between draws of 100: benchmarks/int8_choices.py drift)
    calibration = tf.data.Dataset.from_tensor_slices(_examples(train, 100)).batch(100)
    out = Path(args.out) / name
    files, notes = {}, {}
    variants = {**(BEFORE if args.before else {}), **VARIANTS}
    for variant, kwargs in variants.items():
        kwargs = dict(kwargs)
        mode = kwargs.pop("quantization")
        try:
            with _without_rewrites(variant in BEFORE):
                result = tfcompress.export_tflite(
                    model,
                    out / f"{variant.replace(' ', '_').replace('(', '').replace(')', '')}.tflite",
                    mode,
                    representative_data=calibration if mode == "int8" else None,
                    parity_data=(feats, labels),
                    drift="ignore",
                    **kwargs,
                )
        except ValueError as e:  # e.g. nothing to fuse in a model without tables
            logging.getLogger("tfcompress").warning("%s %s: %s", name, variant, e)
            continue
        files[variant] = result.path
        auto = result.options.get("float_ops_auto")
        notes[variant] = (
            result.parity["max_abs_diff"],
            auto["groups"] if auto else result.options.get("float_ops"),
        )
    timed = _time(files, feats, args.repeats)
    scores = {v: _score(load_variant(p).predict(feats)) for v, p in files.items()}
    lines = [
        f"\n### {name} (built and exported in {time.time() - start:.0f} s)\n",
        "| variant | bytes | b1 ms | b1 × float | b256 ms | b256 × float | max abs diff "
        "| test ΔAUC ± CI | kept float |"
        + (" b1 / b256 × float (before) |" if "float (before)" in timed else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if "float (before)" in timed else ""),
    ]
    base = timed["float"]
    before = timed.get("float (before)")
    for variant in files:
        t = timed[variant]
        delta = "—"
        if scores[variant].shape[1] == 1 and variant != "float":
            d = delong_auc_difference(labels.ravel(), scores["float"][:, 0], scores[variant][:, 0])
            delta = f"{d.delta:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
        diff, ops = notes[variant]
        lines.append(
            f"| {variant} | {files[variant].stat().st_size:,} | {t[1]:.3f} | {base[1] / t[1]:.2f} "
            f"| {t[256]:.3f} | "
            f"{base[256] / t[256]:.2f} | {diff:.2g} | {delta} | {', '.join(ops or []) or '—'} |"
            + (f" {before[1] / t[1]:.2f} / {before[256] / t[256]:.2f} |" if before else "")
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="dcn_student,bst,bert,dcn_wide")
    parser.add_argument("--samples", type=int, default=30_000, help="training examples")
    parser.add_argument("--eval-examples", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="savedmodels/serving_speed")
    parser.add_argument(
        "--before",
        action="store_true",
        help="also time float and int8 hybrid files exported without the graph rewrites "
        "(export/simplify.py, export/float_regions.py) in the same run",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    cpu = machine_cpu()  # int8's speed-up depends on the CPU's int8 instructions
    lines = [
        "## int8 vs float on 1 thread (LiteRT + XNNPACK), one run",
        f"CPU: {cpu['model']} ({cpu['arch']}, {cpu['cores']} cores); int8 features: "
        + ", ".join(cpu["int8_isa"] or ["unknown"]),
    ]
    for name in args.models.split(","):
        lines += run_model(name.strip(), args)
        print("\n".join(lines[-(len(VARIANTS) + len(BEFORE) * args.before + 3) :]), flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
