"""Two int8 export choices measured (issue 19): per-channel against per-tensor weights, and where
the BST's hybrid int8 file (``float_ops="auto"``) loses quality.

``channel``: for each model (the DCN student and the BST on the simulated ctr task, a Model
Garden BERT-small on product_text; serving_speed.py's builders, ``--epochs`` epochs, seeded),
exports side by side

- ``float`` (the baseline), ``int8`` (full int8, the converter's default: per-channel weights),
  ``int8 per-tensor`` (the same with the converter's ``_experimental_disable_per_channel`` and
  ``_experimental_disable_per_channel_quantization_for_dense_layers`` set: one scale a weight
  tensor);
- ``hybrid`` and ``hybrid per-tensor``: both int8 files with the same op groups kept in float
  (``choose_float_ops`` run once on the per-channel file, then the same ``keep_ops_in_float`` +
  ``merge_float_regions`` rewrite that ``float_ops="auto"`` applies, on each file);

and prints bytes, how many weight tensors carry more than one scale, batch-1 and batch-256
latency (interleaved medians, 1 thread, ``invoke()`` on inputs set once, as serving_speed.py),
max |diff| against Keras on the test examples, the test ΔAUC against the float file and of
per-tensor against per-channel (DeLong's paired 95% CI; BERT: accuracy, paired bootstrap),
and the XNNPACK operators that ran the weight GEMMs (``profile_variant`` at batch 256).

``drift``: the BST only. Exports float and full int8 (per channel), then derives from the int8
file one hybrid per :data:`tfcompress.export.hybrid.OP_GROUPS` group and per op type (kept in
float, regions merged, as ``float_ops="auto"`` builds it), all groups together and the groups the
timed search chooses (``choose_float_ops``); beside them the int8 files with the embedding tables
stored otherwise (``embeddings="int8_tensor"`` / ``"float"``), per-tensor weights, the
``dynamic`` file, the float file with int8 tables, and the int8 file of the model whose first MLP
layer is split by input range (:func:`split_concat_dense`: the ``mlp_input`` Concatenate mixes
embeddings of |x| < 0.25 with numeric features up to 6, and a full-int8 CONCATENATION has one
scale). For each: the test ΔAUC against the float file (DeLong), max and mean |diff| against
Keras on the test and on the 100 calibration examples. Then the spread over calibration draws:
int8, its auto hybrid and the split model's int8 file calibrated on ``--draws`` independent draws
of each of ``--calibration-steps`` training examples. Every int8 file of one comparison
calibrates on the same fixed examples (``train`` reshuffles on each pass).

Usage:
    python benchmarks/int8_choices.py channel [--models dcn_student,bst,bert]
    python benchmarks/int8_choices.py drift [--calibration-steps 100,1000] [--draws 5]
    common: [--samples 30000] [--epochs 2] [--eval-examples 20000] [--repeats 50] [--seed 0]
        [--out savedmodels/int8_choices]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

import tfcompress
from tfcompress._keras import keras, tf
from tfcompress.evaluation import delong_auc_difference, paired_difference
from tfcompress.evaluation.profile import profile_variant
from tfcompress.export import hybrid
from tfcompress.export import tflite as tflite_module
from tfcompress.export.float_regions import merge_float_regions
from tfcompress.export.ptq import keep_ops_in_float
from tfcompress.export.runtime import load_variant

sys.path.insert(0, str(Path(__file__).parent))
import serving_speed as ss  # noqa: E402  (the same model builders, examples and timer)

#: the converter switches that make full-int8 weights one scale a tensor (TF 2.21 lite.py)
PER_TENSOR_FLAGS = (
    "_experimental_disable_per_channel",
    "_experimental_disable_per_channel_quantization_for_dense_layers",
)
#: ops whose constant weights the converter may quantize per channel
WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL")


@contextlib.contextmanager
def per_tensor_weights(active: bool = True) -> Iterator[None]:
    """Within the block, ``export_tflite``'s converters quantize weights one scale a tensor.

    Wraps the converter factory of :mod:`tfcompress.export.tflite` (not part of the API: a
    benchmark hook) so each converter it makes gets :data:`PER_TENSOR_FLAGS` set.

    Example:
        >>> with per_tensor_weights():  # doctest: +SKIP
        ...     tfcompress.export_tflite(model, "m.tflite", "int8", representative_data=ds)
    """
    if not active:
        yield
        return
    original = tflite_module._converter_factory

    def factory(*args, **kwargs):
        make = original(*args, **kwargs)

        def make_converter(saved_model_dir, stream):
            converter = make(saved_model_dir, stream)
            for flag in PER_TENSOR_FLAGS:
                setattr(converter, flag, True)
            return converter

        return make_converter

    with mock.patch.object(tflite_module, "_converter_factory", factory):
        yield


def weight_scales(path: str | Path) -> dict[str, int]:
    """``{"per_channel": n, "per_tensor": n}``: constant int8 weight inputs of :data:`WEIGHT_OPS`
    with more than one scale / with one scale.

    Example:
        >>> weight_scales("m_int8.tflite")  # doctest: +SKIP
        {'per_channel': 12, 'per_tensor': 0}
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    out = {"per_channel": 0, "per_tensor": 0}
    for graph in model.subgraphs:
        for op in graph.operators:
            if flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) not in WEIGHT_OPS:
                continue
            for i in op.inputs[1:2]:  # the weight operand
                tensor = graph.tensors[i]
                buffer = model.buffers[tensor.buffer] if tensor.buffer else None
                if buffer is None or buffer.data is None or tensor.type != 9:  # 9: INT8
                    continue
                scales = getattr(tensor.quantization, "scale", None)
                out["per_channel" if scales is not None and len(scales) > 1 else "per_tensor"] += 1
    return out


def split_concat_dense(
    model, concat: str, dense: str, after: tuple[str, ...], calib: dict, ratio: float = 4.0
):
    """A copy of ``model`` whose Dense ``dense``, fed by the Concatenate ``concat``, runs as one
    Dense per group of the concatenated inputs plus an Add (the same function): in a full-int8
    file each group then gets its own int8 scale instead of sharing the concat's one.

    Inputs are grouped by their largest absolute value on ``calib`` (sorted; a new group starts
    where the value exceeds ``ratio`` times the group's smallest). ``after``: the layers that
    follow ``dense`` up to the output, re-applied in order. Returns ``(model, groups)``.

    Example:
        >>> split, groups = split_concat_dense(m, "mlp_input", "mlp_0", after, x)  # doctest: +SKIP
    """
    parts = list(model.get_layer(concat).input)
    probe = keras.Model(model.inputs, parts)
    peaks = [float(np.abs(v).max()) for v in probe.predict(calib, verbose=0)]
    groups: list[list[int]] = []
    for i in sorted(range(len(parts)), key=lambda k: peaks[k]):
        if groups and peaks[i] <= ratio * max(peaks[groups[-1][0]], 1e-12):
            groups[-1].append(i)
        else:
            groups.append([i])
    layer = model.get_layer(dense)
    kernel, bias = layer.get_weights()
    offsets = np.cumsum([0] + [int(p.shape[-1]) for p in parts])
    branches = []
    for g, members in enumerate(sorted(groups)):
        members = sorted(members)
        x = [parts[i] for i in members]
        x = x[0] if len(x) == 1 else keras.layers.Concatenate(name=f"{dense}_in_{g}")(x)
        rows = np.concatenate([kernel[offsets[i] : offsets[i + 1]] for i in members])
        part = keras.layers.Dense(layer.units, use_bias=g == 0, name=f"{dense}_part_{g}")
        branches.append(part(x))
        part.set_weights([rows, bias] if g == 0 else [rows])
    x = keras.layers.Add(name=f"{dense}_sum")(branches)
    x = keras.layers.Activation(layer.activation, name=f"{dense}_activation")(x)
    for name in after:
        x = model.get_layer(name)(x)
    return keras.Model(model.inputs, x, name=f"{model.name}_split"), sorted(groups)


def _rewrite(source: Path, target: Path, ops: tuple[str, ...]) -> Path:
    """``source`` with ``ops`` kept in float and float regions merged (what "auto" builds)."""
    flatbuffer, _ = keep_ops_in_float(source.read_bytes(), ops)
    flatbuffer, _ = merge_float_regions(flatbuffer)
    target.write_bytes(flatbuffer)
    return target


def _scores(outputs) -> np.ndarray:
    if isinstance(outputs, dict):
        outputs = next(iter(outputs.values()))
    outputs = np.asarray(outputs)
    return outputs.reshape(len(outputs), -1)


def _build(name: str, args: argparse.Namespace):
    if name == "bert":
        return ss._bert(args.samples, args.epochs, args.seed)
    return ss._ctr(name, args.samples, args.epochs, args.seed)


def _calibration_set(train, n: int) -> tuple[dict[str, np.ndarray], Any]:
    """The next ``n`` training examples (one reshuffled pass of ``train``) as arrays and as a
    fixed dataset: every int8 file of a comparison calibrates on the same examples (``train``
    itself reshuffles on each pass, so two exports from it calibrate on different draws)."""
    feats, labels = ss._examples(train, n)
    return feats, tf.data.Dataset.from_tensor_slices((feats, labels)).batch(256)


def _export(model, path: Path, mode, calibration, feats, labels, **kwargs) -> Path:
    return tfcompress.export_tflite(
        model,
        path,
        mode,
        representative_data=calibration if mode == "int8" else None,
        num_calibration_steps=kwargs.pop("steps", 100),
        parity_data=(feats, labels),
        drift="ignore",
        **kwargs,
    ).path


def _quality(files, keras_scores, labels, feats, pairs) -> dict[str, dict]:
    """Max/mean |diff| against Keras and ΔAUC of each ``(variant, baseline)`` pair."""
    scores = {v: _scores(load_variant(p, verify=False).predict(feats)) for v, p in files.items()}
    out: dict[str, dict] = {}
    for variant, s in scores.items():
        diff = np.abs(s - keras_scores)
        out[variant] = {"max": float(diff.max()), "mean": float(diff.mean()), "dauc": {}}
        for base in pairs.get(variant, ()):
            if s.shape[1] == 1:
                d = delong_auc_difference(labels.ravel(), scores[base][:, 0], s[:, 0])
            else:  # class scores (BERT): accuracy, paired bootstrap
                d = paired_difference("accuracy", labels, scores[base], s)
            out[variant]["dauc"][base] = (d.delta, d.low, d.high)
    return out


def _ci(t) -> str:
    return f"{t[0]:+.4f} [{t[1]:+.4f}, {t[2]:+.4f}]" if t else "—"


def _gemm_kernels(path: Path, feats) -> str:
    prof = profile_variant(path, feats, 256, runs=5, warmup=2)
    rows = [r for r in prof.rows if "Fully Connected" in r.op or "Matrix Multiply" in r.op]
    rows += [r for r in prof.rows if r.op in WEIGHT_OPS]
    return "; ".join(f"{r.op} {r.ms:.2f} ms" for r in rows) or "—"


def run_channel(name: str, args: argparse.Namespace) -> list[str]:
    start = time.time()
    model, train, test = _build(name, args)
    feats, labels = ss._examples(test, args.eval_examples)
    keras_scores = _scores(model.predict(feats, batch_size=1024, verbose=0))
    out = Path(args.out) / "channel" / name
    calib, calibration = _calibration_set(train, 100)
    files = {"float": _export(model, out / "float.tflite", None, None, feats, labels)}
    files["int8"] = _export(model, out / "int8.tflite", "int8", calibration, feats, labels)
    with per_tensor_weights():
        files["int8 per-tensor"] = _export(
            model, out / "int8_tensor.tflite", "int8", calibration, feats, labels
        )
    choice = hybrid.choose_float_ops(files["int8"].read_bytes(), calib)
    ops = choice.float_ops
    files["hybrid"] = _rewrite(files["int8"], out / "hybrid.tflite", ops)
    files["hybrid per-tensor"] = _rewrite(
        files["int8 per-tensor"], out / "hybrid_tensor.tflite", ops
    )
    timed = ss._time(files, feats, args.repeats)
    pairs = {
        "int8": ("float",),
        "int8 per-tensor": ("float", "int8"),
        "hybrid": ("float",),
        "hybrid per-tensor": ("float", "hybrid"),
    }
    quality = _quality(files, keras_scores, labels, feats, pairs)
    lines = [
        f"\n### {name} (built, exported, timed in {time.time() - start:.0f} s; hybrid keeps "
        f"{', '.join(choice.groups) or 'nothing'} in float)\n",
        "| file | bytes | weights per-channel / per-tensor | b1 ms | b256 ms | max abs diff "
        "| test ΔAUC (BERT: Δaccuracy) vs float | vs per-channel twin | GEMM kernels at b256 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, path in files.items():
        scales = weight_scales(path)
        q = quality[variant]
        twin = {"int8 per-tensor": "int8", "hybrid per-tensor": "hybrid"}.get(variant)
        lines.append(
            f"| {variant} | {path.stat().st_size:,} | {scales['per_channel']} / "
            f"{scales['per_tensor']} | {timed[variant][1]:.3f} | {timed[variant][256]:.3f} | "
            f"{q['max']:.3g} | {_ci(q['dauc'].get('float'))} | "
            f"{_ci(q['dauc'].get(twin)) if twin else '—'} | {_gemm_kernels(path, feats)} |"
        )
    return lines


def run_drift(args: argparse.Namespace) -> list[str]:
    start = time.time()
    model, train, test = _build("bst", args)
    feats, labels = ss._examples(test, args.eval_examples)
    calib, calibration = _calibration_set(train, 100)
    keras_scores = _scores(model.predict(feats, batch_size=1024, verbose=0))
    keras_calib = _scores(model.predict(calib, verbose=0))
    out = Path(args.out) / "drift"
    files = {"float": _export(model, out / "float.tflite", None, None, feats, labels)}
    files["int8"] = _export(model, out / "int8.tflite", "int8", calibration, feats, labels)
    for storage in ("int8_tensor", "float"):
        files[f"int8, embeddings={storage}"] = _export(
            model,
            out / f"int8_emb_{storage}.tflite",
            "int8",
            calibration,
            feats,
            labels,
            embeddings=storage,
        )
    with per_tensor_weights():
        files["int8 per-tensor"] = _export(
            model, out / "int8_tensor.tflite", "int8", calibration, feats, labels
        )
    files["dynamic"] = _export(model, out / "dynamic.tflite", "dynamic", None, feats, labels)
    files["float, int8 tables"] = _export(
        model, out / "float_int8_tables.tflite", None, None, feats, labels, embeddings="int8"
    )
    after = tuple(n for n in ("mlp_1", "mlp_2", "mlp_3", "logits", "output") if _has(model, n))
    split, groups = split_concat_dense(model, "mlp_input", "mlp_0", after, calib)
    split_parity = float(
        np.abs(_scores(split.predict(feats, batch_size=1024, verbose=0)) - keras_scores).max()
    )
    names = [t.name.split("/")[0] for t in model.get_layer("mlp_input").input]
    split_label = "int8, mlp_0 split by input range"
    files[split_label] = _export(
        split, out / "int8_split.tflite", "int8", calibration, feats, labels
    )
    kept = {}
    for group, ops in hybrid.OP_GROUPS.items():
        _, done = keep_ops_in_float(files["int8"].read_bytes(), ops)
        if done:
            files[f"+{group}"] = _rewrite(files["int8"], out / f"hybrid_{group}.tflite", ops)
            kept[f"+{group}"] = len(done)
    every = tuple(op for ops in hybrid.OP_GROUPS.values() for op in ops)
    for op in every:  # each op type alone, where a group holds more than one the model has
        _, done = keep_ops_in_float(files["int8"].read_bytes(), (op,))
        group = next(g for g, ops in hybrid.OP_GROUPS.items() if op in ops)
        if done and len(done) < kept.get(f"+{group}", 0):
            files[f"+{op}"] = _rewrite(files["int8"], out / f"hybrid_{op}.tflite", (op,))
            kept[f"+{op}"] = len(done)
    files["+all groups"] = _rewrite(files["int8"], out / "hybrid_all.tflite", every)
    choice = hybrid.choose_float_ops(files["int8"].read_bytes(), calib)
    auto = f"auto ({'+'.join(choice.groups) or 'nothing'})"
    files[auto] = _rewrite(files["int8"], out / "hybrid_auto.tflite", choice.float_ops)
    timed = ss._time(
        {k: files[k] for k in ("float", "int8", auto, split_label)}, feats, args.repeats
    )
    quality = _quality(files, keras_scores, labels, feats, {v: ("float",) for v in files})
    calib_q = _quality(files, keras_calib, np.zeros(100), calib, {})
    lines = [
        f"\n### BST: where the int8 quality goes (built and exported in "
        f"{time.time() - start:.0f} s; {len(labels)} test examples)\n",
        "| file | ops kept float | test ΔAUC vs float | max / mean abs diff (test) "
        "| max / mean abs diff (100 calibration examples) |",
        "|---|---|---|---|---|",
    ]
    for variant in files:
        q, c = quality[variant], calib_q[variant]
        lines.append(
            f"| {variant} | {kept.get(variant, '—')} | {_ci(q['dauc'].get('float'))} | "
            f"{q['max']:.3g} / {q['mean']:.2e} | {c['max']:.3g} / {c['mean']:.2e} |"
        )
    lines += [
        f"\nmlp_0 split into {len(groups)} Dense (+ Add) by input range: "
        + "; ".join("+".join(names[i] for i in g) for g in groups)
        + f" (Keras parity of the split model {split_parity:.2g}).\n",
        "| file | bytes | b1 ms | b256 ms |",
        "|---|---|---|---|",
        *(
            f"| {k} | {files[k].stat().st_size:,} | {t[1]:.3f} | {t[256]:.3f} |"
            for k, t in timed.items()
        ),
    ]
    lines += _calibration_spread(
        model, split, train, feats, labels, keras_scores, choice, out, args
    )
    return lines


def _has(model, name: str) -> bool:
    try:
        model.get_layer(name)
    except ValueError:
        return False
    return True


def _calibration_spread(
    model, split, train, feats, labels, keras_scores, choice, out, args
) -> list:
    """Full int8 and its auto hybrid (the same ops kept float) calibrated on ``--draws``
    independent draws of ``steps`` training examples, for each of ``--calibration-steps``."""
    lines = [
        "\n### BST: int8 test ΔAUC against the float file by calibration draw\n",
        "| calibration examples | draw | int8 ΔAUC | auto hybrid ΔAUC | mlp_0 split ΔAUC "
        "| int8 / split mean abs diff |",
        "|---|---|---|---|---|---|",
    ]
    summary = []
    float_file = out / "float.tflite"
    for steps in args.calibration_steps:
        deltas: dict[str, list[float]] = {"int8": [], "hybrid": [], "split": []}
        for draw in range(args.draws):
            _, calibration = _calibration_set(train, steps)
            stem = f"calib{steps}_{draw}"
            files = {
                "float": float_file,
                "int8": _export(
                    model, out / f"{stem}.tflite", "int8", calibration, feats, labels, steps=steps
                ),
            }
            files["hybrid"] = _rewrite(files["int8"], out / f"{stem}_auto.tflite", choice.float_ops)
            files["split"] = _export(
                split, out / f"{stem}_split.tflite", "int8", calibration, feats, labels, steps=steps
            )
            pairs = {k: ("float",) for k in deltas}
            q = _quality(files, keras_scores, labels, feats, pairs)
            for k in deltas:
                deltas[k].append(q[k]["dauc"]["float"][0])
            lines.append(
                f"| {steps} | {draw} | {_ci(q['int8']['dauc']['float'])} | "
                f"{_ci(q['hybrid']['dauc']['float'])} | {_ci(q['split']['dauc']['float'])} | "
                f"{q['int8']['mean']:.2e} / {q['split']['mean']:.2e} |"
            )
        summary.append(
            f"| {steps} | "
            + " | ".join(
                f"{np.mean(v):+.4f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.4f}"
                for v in deltas.values()
            )
            + " |"
        )
    lines += [
        f"\nMean ± sd over {args.draws} draws:\n",
        "| calibration examples | int8 ΔAUC | auto hybrid ΔAUC | mlp_0 split ΔAUC |",
        "|---|---|---|---|",
        *summary,
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=("channel", "drift"))
    parser.add_argument("--models", default="dcn_student,bst,bert")
    parser.add_argument("--samples", type=int, default=30_000, help="training examples")
    parser.add_argument("--eval-examples", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="savedmodels/int8_choices")
    parser.add_argument(
        "--calibration-steps",
        type=lambda t: [int(x) for x in t.split(",")],
        default=[100, 1000],
        help="drift: calibration set sizes compared over --draws draws",
    )
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    lines: list[str] = []
    if args.task == "channel":
        lines.append("## per-channel vs per-tensor int8 weights, 1 thread (LiteRT + XNNPACK)")
        for name in args.models.split(","):
            lines += run_channel(name.strip(), args)
            print("\n".join(lines[-7:]), flush=True)
    else:
        lines += run_drift(args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
