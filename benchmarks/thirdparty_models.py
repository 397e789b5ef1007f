"""Models nobody here wrote (issue 17): model x operation -> outcome, and the small-BERT targets.

Part 1 (default; ~3 minutes on 2 CPU cores): tiny Model Garden ``BertClassifier`` (padded
inputs) over the legacy ``BertEncoder`` (default activation: a lambda) and a ``gelu`` one; a DCN-v2
ranker (embeddings -> ``tfrs.layers.dcn.Cross`` full rank -> a low-rank ``Cross`` -> Dense); a
TFRS two-tower ``tfrs.Model`` (functional towers: operations apply to the query tower, fitted
inside the ``tfrs.Model``; the query tower is exported); a subclassed tf_keras model. Each goes
through prune (fit with ``PruningCallback``), strip, shrink(0.5) + a fit step, quantize (QAT) + a
fit step, the QAT model's int8 TFLite, the Distiller (student: a smaller one of the same family;
a fit step), ``export_tflite`` in every mode, the XLA SavedModel and ``benchmark``. A cell is
``works`` with a one-number check (sparsity, params before -> after, parity max|diff|, the share
of weights QAT fake-quantizes), ``clear report`` (a ValueError/TypeError raised by tfcompress
itself: its first 80 characters) or ``FAILS`` (anything else: an upstream exception, a native
crash -- each row runs in a child process, restarted after a crash --, a parity/drift error, a
wrong result such as QAT quantizing nothing or a file whose SOFTMAX input scale is > 1: Model
Garden's -1e9 attention-mask add calibrated into int8 turns every real score into one value),
listed after the table with the full message.

Part 2 (``--bert-target``; ~25 minutes on 2 CPU cores): the issue's small-BERT targets on
:func:`tfcompress.data.product_text` (8 classes, seq_len 32, vocab 2000; Bayes 0.873, bag of
words 0.588). 24,000 titles split 16,000 / 2,000 / 6,000: docs/data.md measured a 4-layer,
hidden-128 ``BertClassifier`` at 0.870 after 5 epochs on 16k titles (Adam 1e-3, batch 64);
6,000 test titles give a paired accuracy CI of about +-0.5 points when two models disagree on
~5% of titles, enough to resolve "within 1 point" (2,000 would give about +-1). The teacher (4
layers, hidden 128, 2 heads, FFN 512, the legacy encoder's default activation) trains 5 epochs,
then ``tfcompress.quantize`` + 2 epochs of fine-tuning (Adam 1e-4) -> int8 TFLite. Reported: the
share of the int8 file's matmul weights stored as int8 (elements of the constant >= 2-D inputs
of FULLY_CONNECTED / BATCH_MATMUL / CONV_2D / DEPTHWISE_CONV_2D ops, which Model Garden's
einsums lower to, followed back through DEQUANTIZE, read with LiteRT's interpreter; target >=
90%), its test accuracy vs the float TFLite file's with ``benchmark``'s paired bootstrap CI
(target: within 1 point) and the file sizes (target: float / int8 >= 3.5). Then a 2-layer
student (hidden 128) distilled from the teacher by ``tfcompress.Distiller`` vs the same student
(same initial weights, optimizer, epochs) trained alone (target: distilled beats alone; paired
CI from ``evaluation.statistics.paired_difference``).

Run from the repo root:

    python benchmarks/thirdparty_models.py                 # Part 1, ~2-4 minutes
    python benchmarks/thirdparty_models.py --bert-target   # Part 2 only
    python benchmarks/thirdparty_models.py --bert-target --titles 6000 --epochs 1  # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfcompress  # noqa: E402  (sets TF_USE_LEGACY_KERAS before Model Garden / TFRS load)
from tfcompress import data  # noqa: E402
from tfcompress._compat import interpreter_ops, quantized_weights  # noqa: E402
from tfcompress._keras import keras, tf  # noqa: E402
from tfcompress.evaluation.statistics import paired_difference  # noqa: E402
from tfcompress.export import export_saved_model, export_tflite  # noqa: E402
from tfcompress.pruning import PruningCallback, prune, shrink, sparsity_report, strip  # noqa: E402

PACKAGE = str(Path(tfcompress.__file__).parent)
SEQ = 16
TFLITE_MODES = ("float", "dynamic", "int8", "float16", "int16x8")
KERAS_OPS = ("prune", "strip", "shrink 0.5", "quantize", "qat int8", "distill")
COLUMNS = (*KERAS_OPS, *TFLITE_MODES, "xla", "benchmark")
#: tiny timing runs: the benchmark cell checks that it runs, Part 2 gives real figures
BENCH = {"batch_sizes": (1, 16), "warmup": 1, "repeats": 5, "measure_memory": False}
CRASH_LOG = "TFCOMPRESS_BENCH_CRASH_LOG"
MATMUL_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D")


# ------------------------------------------------------------------------- the models


@dataclasses.dataclass
class Case:
    """One model row: the model operations apply to, its data, and how it is fitted."""

    name: str
    build: Callable[[], keras.Model]  # a fresh model per call (the caller seeds)
    student: Callable[[], keras.Model]  # a smaller one of the same family
    x: Any
    y: np.ndarray
    loss: Any
    fit_wrapper: Callable[[keras.Model], keras.Model] | None = None  # e.g. the tfrs.Model
    distill: dict[str, Any] = dataclasses.field(default_factory=dict)


def _bert_classifier(hidden, layers, classes, seq, vocab, gelu, name, intermediate=None):
    from official.nlp.modeling import models, networks

    encoder = networks.BertEncoder(
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=layers,
        num_attention_heads=2,
        intermediate_size=intermediate or 2 * hidden,
        max_sequence_length=seq,
        **({"inner_activation": "gelu"} if gelu else {}),
    )
    return models.BertClassifier(encoder, num_classes=classes, name=name)


def _bert_case(gelu: bool, rng: np.random.Generator) -> Case:
    mask = (np.arange(SEQ) < rng.integers(4, SEQ + 1, (64, 1))).astype("int32")  # padded
    ids = rng.integers(1, 100, (64, SEQ)).astype("int32") * mask
    x = {"input_word_ids": ids, "input_mask": mask, "input_type_ids": 0 * ids}

    def make(hidden: int, layers: int, name: str) -> keras.Model:
        model = _bert_classifier(hidden, layers, 3, SEQ, 100, gelu, name)
        model(x)
        return model

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    bert, student = partial(make, 64, 2, "bert"), partial(make, 32, 1, "student")
    return Case(f"BERT {'gelu' if gelu else 'legacy'}", bert, student, x, np.arange(64) % 3, loss)


def _dcn_case(rng: np.random.Generator) -> Case:
    import tensorflow_recommenders as tfrs

    vocabs = {"user_id": 50, "item_id": 40}
    x = {k: rng.integers(0, v, (64, 1)).astype("int32") for k, v in vocabs.items()}

    def ranker(width: int, name: str) -> keras.Model:
        inputs = {k: keras.Input((1,), dtype="int32", name=k) for k in vocabs}
        embs = [
            keras.layers.Flatten()(keras.layers.Embedding(v, 8, name=f"{k}_emb")(inputs[k]))
            for k, v in vocabs.items()
        ]
        x0 = keras.layers.Concatenate()(embs)
        h = tfrs.layers.dcn.Cross(name="cross_full")(x0)
        h = tfrs.layers.dcn.Cross(projection_dim=4, name="cross_low_rank")(x0, h)
        h = keras.layers.Dense(width, activation="relu", name="deep")(h)
        out = keras.layers.Dense(1, activation="sigmoid", name="ctr")(h)
        return keras.Model(inputs, out, name=name)

    y = rng.integers(0, 2, 64).astype("float32")
    build, student = partial(ranker, 16, "dcn"), partial(ranker, 4, "student")
    return Case("TFRS DCN-v2", build, student, x, y, "binary_crossentropy")


def _two_tower_case(rng: np.random.Generator) -> Case:
    import tensorflow_recommenders as tfrs

    def tower(name: str, vocab: int, width: int) -> keras.Model:
        ids = keras.Input((1,), dtype="int32", name=f"{name}_id")
        h = keras.layers.Flatten()(keras.layers.Embedding(vocab, 8, name=f"{name}_emb")(ids))
        h = keras.layers.Dense(width, activation="relu", name=f"{name}_hidden")(h)
        return keras.Model(ids, keras.layers.Dense(8, name=f"{name}_out")(h), name=f"{name}_tower")

    class TwoTower(tfrs.Model):
        def __init__(self, query: keras.Model, candidate: keras.Model) -> None:
            super().__init__()
            self.query_model, self.candidate_model = query, candidate
            self.task = tfrs.tasks.Retrieval()

        def compute_loss(self, features, training=False):
            return self.task(
                self.query_model(features["user_id"]), self.candidate_model(features["item_id"])
            )

    def wrap(query: keras.Model) -> keras.Model:
        return TwoTower(query, tower("item", 40, 16))

    users = rng.integers(0, 50, (64, 1)).astype("int32")
    wrap.features = {"user_id": users, "item_id": rng.integers(0, 40, (64, 1)).astype("int32")}
    # the query tower has no labels: distil its embeddings (MSE), benchmark it as 8 "classes"
    build, student = partial(tower, "user", 50, 16), partial(tower, "user", 50, 4)
    case = Case("TFRS two-tower (query)", build, student, users, rng.integers(0, 8, 64), "mse")
    case.fit_wrapper = wrap
    case.distill = {"distillation_loss": "mse", "student_loss_weight": 0.0}
    return case


class SubclassedMLP(keras.Model):
    """A user's subclassed model: Dense layers and a call()."""

    def __init__(self, width: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(width, activation="relu")
        self.hidden2 = keras.layers.Dense(width // 2, activation="relu")
        self.out = keras.layers.Dense(1, activation="sigmoid")

    def call(self, inputs, training=False):
        return self.out(self.hidden2(self.hidden(inputs)))


def _subclassed_case(rng: np.random.Generator) -> Case:
    x = rng.normal(size=(64, 16)).astype("float32")

    def make(width: int, name: str) -> keras.Model:
        model = SubclassedMLP(width, name=name)
        model(x[:2])
        return model

    y = (x[:, 0] > 0).astype("float32")
    build, student = partial(make, 32, "subclassed"), partial(make, 8, "student")
    return Case("subclassed", build, student, x, y, "binary_crossentropy")


def cases() -> list[Case]:
    rng = np.random.default_rng(0)
    bert = [_bert_case(gelu, rng) for gelu in (False, True)]
    return [*bert, _dcn_case(rng), _two_tower_case(rng), _subclassed_case(rng)]


# ------------------------------------------------------------------------- the operations


class WrongResultError(RuntimeError):
    """An operation ran but its result is wrong (a FAILS cell)."""


def _fit(case: Case, model: keras.Model, callbacks=()) -> float:
    """One epoch of 4 steps (inside ``case.fit_wrapper`` when it has one); returns the loss."""
    fit = {"x": case.x, "y": case.y, "batch_size": 16}
    if case.fit_wrapper is not None:  # the tfrs.Model computes its own loss
        model = case.fit_wrapper(model)
        fit = {"x": tf.data.Dataset.from_tensor_slices(case.fit_wrapper.features).batch(16)}
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=case.loss)
    history = model.fit(**fit, verbose=0, callbacks=list(callbacks))
    loss = float(history.history["loss"][-1])
    if not np.isfinite(loss):
        raise WrongResultError(f"fit gave a non-finite loss {loss}")
    return loss


def _kw(case: Case) -> dict[str, Any]:
    return {"representative_data": case.x, "parity_data": case.x, "drift": "ignore"}


def op_prune(case: Case, state: dict) -> str:
    pruned = prune(state["model"], 0.5)
    _fit(case, pruned, [PruningCallback()])
    applied = len(pruned.compression_report.applied)
    overall = sparsity_report(pruned).overall
    state["pruned"] = pruned
    if applied == 0 or overall < 0.4:
        raise WrongResultError(f"{applied} layers pruned, sparsity {overall:.2f} (asked 0.5)")
    return f"{applied} layers, sparsity {overall:.2f}"


def op_strip(case: Case, state: dict) -> str:
    if "pruned" not in state:
        return "n/a (no pruned model)"
    stripped = strip(state["pruned"])
    diff = float(np.max(np.abs(stripped(case.x) - state["pruned"](case.x))))
    overall = sparsity_report(stripped).overall
    if diff > 1e-4 or overall < 0.4:
        raise WrongResultError(f"stripped vs pruned max|diff| {diff:.2e}, sparsity {overall:.2f}")
    return f"sparsity {overall:.2f}, max|diff| {diff:.0e}"


def op_shrink(case: Case, state: dict) -> str:
    model = state["model"]
    small = shrink(model, 0.5)
    before, after = model.count_params(), small.count_params()
    _fit(case, small)
    if after >= before:
        raise WrongResultError(f"params {before} -> {after}: nothing removed")
    return f"params {before:,} -> {after:,}"


def _quantized_share(qat: keras.Model) -> tuple[int, int]:
    """(fake-quantized weight elements, all weight elements) of a QAT model."""
    done = 0
    for layer in qat.submodules:
        if isinstance(layer, keras.layers.Layer) and not isinstance(layer, keras.Model):
            done += sum(int(np.prod(w.shape)) for w, _, _ in quantized_weights(layer))
    total = sum(int(np.prod(w.shape)) for w in qat.weights if "quantize" not in w.name)
    return done, total


def op_quantize(case: Case, state: dict) -> str:
    qat = tfcompress.quantize(state["model"])
    _fit(case, qat)
    state["qat"] = qat
    report = qat.compression_report
    applied, layers = len(report.applied), len(report.decisions)
    done, total = _quantized_share(qat)
    if applied == 0 or done == 0:
        raise WrongResultError(f"QAT quantized nothing: {applied}/{layers} layers, {done} weights")
    return f"{applied}/{layers} layers, {100 * done / max(total, 1):.0f}% of weights"


def op_qat_int8(case: Case, state: dict) -> str:
    if "qat" not in state:
        return "n/a (no QAT model)"
    result = export_tflite(state["qat"], state["dir"] / "qat_int8.tflite", "int8", **_kw(case))
    counts = _check_file(result.path)
    share = counts.get("int8", 0) / max(sum(counts.values()), 1)
    return f"{share:.0%} int8 matmul, max|diff| {result.parity['max_abs_diff']:.2g}"


def op_distill(case: Case, state: dict) -> str:
    teacher, student = state["model"], case.student()
    distiller = tfcompress.Distiller(student, teacher, **case.distill)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), loss=case.loss)
    y = np.zeros((len(case.y), 8), "float32") if case.distill else case.y
    before = [w.numpy().copy() for w in student.trainable_weights]
    history = distiller.fit(case.x, y, batch_size=16, epochs=1, verbose=0)
    loss = float(history.history["loss"][-1])
    after = student.trainable_weights
    changed = sum(not np.array_equal(a, w.numpy()) for a, w in zip(before, after, strict=True))
    if not np.isfinite(loss) or changed == 0:
        raise WrongResultError(f"distillation loss {loss}, {changed} student weights changed")
    return f"loss {loss:.3f}, {student.count_params():,} params"


def op_export(mode: str) -> Callable[[Case, dict], str]:
    def run(case: Case, state: dict) -> str:
        quantization = None if mode == "float" else mode
        result = export_tflite(
            state["model"], state["dir"] / f"{mode}.tflite", quantization, **_kw(case)
        )
        if mode == "float":
            state["float_path"] = result.path
        _check_file(result.path)
        return f"max|diff| {result.parity['max_abs_diff']:.2g}"

    return run


def op_xla(case: Case, state: dict) -> str:
    result = export_saved_model(state["model"], state["dir"] / "xla", parity_data=case.x)
    return f"max|diff| {result.parity['max_abs_diff']:.2g}"


def op_benchmark(case: Case, state: dict) -> str:
    variants = {"keras": state["model"]}
    if "float_path" not in state:  # the float cell ran in an earlier process, or failed
        with contextlib.suppress(Exception):  # the float cell reports it; time Keras alone
            op_export("float")(case, state)
    if "float_path" in state:
        variants["float tflite"] = str(state["float_path"])
    report = tfcompress.benchmark(variants, (case.x, case.y), progress=False, **BENCH)
    name = report.names[-1]
    return f"{name} b1 {1000 * report.row(name).latency_ms[1]['median']:.0f} us"


_OPS = (op_prune, op_strip, op_shrink, op_quantize, op_qat_int8, op_distill)
OPERATIONS: dict[str, Callable[[Case, dict], str]] = dict(
    zip(COLUMNS, (*_OPS, *map(op_export, TFLITE_MODES), op_xla, op_benchmark), strict=True)
)


def classify(exc: BaseException) -> str:
    """``clear report`` for a ValueError/TypeError raised by tfcompress itself, else ``FAILS``."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = bool(frames) and frames[-1].filename.startswith(PACKAGE)
    wrong = isinstance(exc, WrongResultError) or type(exc).__name__ in ("ParityError", "DriftError")
    clear = ours and isinstance(exc, (ValueError, TypeError)) and not wrong
    return "clear report" if clear else "FAILS"


def _matmul_weights(path: str | os.PathLike) -> tuple[dict[str, int], float]:
    """({dtype: elements} of the constant >= 2-D matmul inputs (through DEQUANTIZE), the largest
    SOFTMAX input scale: > 1 cannot resolve attention scores)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))  # not allocated: only constants can be read
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter_ops(interpreter)
    inputs = [details[op["inputs"][0]] for op in ops if op["op_name"] == "SOFTMAX"]
    softmax = [float(s) for d in inputs for s in d["quantization_parameters"]["scales"][:1]]
    producer = {out: op for op in ops for out in op["outputs"]}
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for op in ops:
        if op["op_name"] not in MATMUL_OPS:
            continue
        for index in op["inputs"]:
            source = producer.get(index)
            if source is not None and source["op_name"] == "DEQUANTIZE":
                index = source["inputs"][0]
            if index < 0 or index in seen or len(details[index]["shape"]) < 2:
                continue
            try:
                interpreter.get_tensor(index)
            except ValueError:
                continue  # an activation
            seen.add(index)
            dtype = np.dtype(details[index]["dtype"]).name
            counts[dtype] = counts.get(dtype, 0) + int(np.prod(details[index]["shape"]))
    return counts, max(softmax, default=0.0)


def _check_file(path: str | os.PathLike) -> dict[str, int]:
    counts, softmax = _matmul_weights(path)
    if softmax > 1.0:  # Model Garden's MaskedSoftmax adds -1e9: scale 1e9/255, real scores -> 0
        raise WrongResultError(f"SOFTMAX input scale {softmax:.3g}: all scores quantize to one")
    return counts


def run_row(index: int, columns: list[str], seed: int) -> None:
    """Child process (a native abort costs one cell): ``columns`` on case ``index``, as JSON."""
    logging.getLogger("tfcompress").setLevel(logging.ERROR)
    if os.environ.get(CRASH_LOG):  # the Python stack of a native abort, for the parent
        faulthandler.enable(file=open(os.environ[CRASH_LOG], "w"))  # noqa: SIM115
    case = cases()[index]
    with tempfile.TemporaryDirectory() as tmp:
        keras.utils.set_random_seed(seed)
        state = {"model": case.build(), "dir": Path(tmp)}
        for column in columns:
            print("@@" + json.dumps({"start": column}), flush=True)
            t0, fail = time.time(), None
            try:
                check = OPERATIONS[column](case, state)
                cell = check if check.startswith("n/a") else f"works: {check}"
            except Exception as exc:  # noqa: BLE001 -- every outcome is a table cell
                kind = classify(exc)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                cell = f"{kind}: {type(exc).__name__}: {first[:80]}"
                if kind == "FAILS":
                    where = traceback.extract_tb(exc.__traceback__)[-1]
                    fail = (
                        f"{type(exc).__name__} (raised at {where.filename}:{where.lineno}): {exc}"
                    )
            line = {"column": column, "cell": cell, "fail": fail, "s": time.time() - t0}
            print("@@" + json.dumps(line), flush=True)


def _row(index: int, name: str, seed: int) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Run one row in child processes, restarting after a crash; (cells, fails)."""
    cells: dict[str, str] = {}
    fails: list[tuple[str, str]] = []
    remaining = list(COLUMNS)
    while remaining:
        command = [sys.executable, __file__, "--row", str(index), "--seed", str(seed)]
        crash_log = Path(tempfile.mkdtemp()) / "stack.txt"
        proc = subprocess.run(
            [*command, "--columns", ",".join(remaining)],
            capture_output=True,
            text=True,
            env={**os.environ, CRASH_LOG: str(crash_log)},
        )
        started = None
        for line in (json.loads(r[2:]) for r in proc.stdout.splitlines() if r.startswith("@@")):
            started = line.get("start")
            if started:
                continue
            cells[line["column"]] = line["cell"].replace("|", "\\|")
            print(f"  {name} / {line['column']}: {line['cell']} ({line['s']:.1f} s)", flush=True)
            if line["fail"]:
                fails.append((line["column"], line["fail"]))
        remaining = [c for c in remaining if c not in cells]
        if proc.returncode == 0 or not remaining:
            break
        crashed = started or remaining[0]
        stack = crash_log.read_text() if crash_log.exists() else ""
        frames = [f.strip() for f in stack.splitlines() if f.strip().startswith("File")][:6]
        cells[crashed] = f"FAILS: the process died (exit {proc.returncode}, no Python exception)"
        fails.append(
            (crashed, "native abort; Python stack, innermost first:\n  " + "\n  ".join(frames))
        )
        print(f"  {name} / {crashed}: {cells[crashed]}", flush=True)
        remaining.remove(crashed)
    return cells, fails


def part1(args: argparse.Namespace) -> int:
    start = time.time()
    rows, fails = [], []
    for index, case in enumerate(cases()):
        cells, row_fails = _row(index, case.name, args.seed)
        rows.append((case.name, [cells.get(c, "n/a") for c in COLUMNS]))
        fails += [(case.name, column, message) for column, message in row_fails]
    print("\n| model | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(cells) + " |")
    kinds = ("works", "clear report", "FAILS", "n/a")
    counts = [f"{sum(c.startswith(k) for _, cs in rows for c in cs)} {k}" for k in kinds]
    print(f"\n{', '.join(counts)}; wall {time.time() - start:.0f} s")
    if fails:
        print("\nFAILS:")
        for model, column, message in fails:
            print(f"\n- {model} / {column}: {message}")
    return 1 if fails else 0


# ------------------------------------------------------------------------- Part 2


def _compile(model: keras.Model, lr: float) -> keras.Model:
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])
    return model


def _timed_fit(what: str, model: keras.Model, task: data.TaskData, epochs: int) -> None:
    start = time.time()
    history = model.fit(task.train, validation_data=task.validation, epochs=epochs, verbose=2)
    val = history.history.get("val_accuracy", [float("nan")])[-1]
    print(f"{what}: {epochs} epochs in {time.time() - start:.0f} s, val accuracy {val:.3f}")


def part2(args: argparse.Namespace) -> int:
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    n_test, n_val = args.test_titles / args.titles, args.val_titles / args.titles
    split = (1.0 - n_val - n_test, n_val, n_test)
    task = data.product_text(n_samples=args.titles, seed=args.seed, batch_size=64, split=split)
    info = task.info
    print(
        f"product_text: {args.titles:,} titles, splits {info.get('rows', '')!s:.80}; Bayes "
        f"{info['bayes_accuracy']:.3f}, bag of words {info['bag_of_words_accuracy']:.3f}"
    )
    teacher = _bert_classifier(128, 4, 8, 32, 2000, False, "teacher", intermediate=512)
    _compile(teacher, 1e-3)
    _timed_fit("teacher (4 layers, hidden 128)", teacher, task, args.epochs)
    x_test, y_test = task.info["arrays"]["test"]

    float_file = export_tflite(teacher, out / "float.tflite", parity_data=x_test)
    qat = _compile(tfcompress.quantize(teacher), args.qat_lr)
    report = qat.compression_report
    print(f"quantize: {len(report.applied)}/{len(report.decisions)} layers quantized")
    _timed_fit("QAT fine-tune", qat, task, args.qat_epochs)
    accuracy = [round(m.evaluate(task.test, verbose=0)[1], 4) for m in (teacher, qat)]
    print(f"Keras test accuracy (float teacher, QAT model): {accuracy}")
    int8_file = export_tflite(
        qat, out / "qat_int8.tflite", "int8", representative_data=task.train, drift="ignore"
    )
    files = {"float tflite": str(float_file.path), "qat int8 tflite": str(int8_file.path)}
    timing = {"batch_sizes": (1, 64), "repeats": 20, "measure_memory": False}
    bench = tfcompress.benchmark(files, task.test, metrics=["accuracy"], **timing)
    print(bench.to_markdown())
    counts, softmax = _matmul_weights(int8_file.path)
    print(f"int8 file: largest SOFTMAX input scale {softmax:.3g} (> 1: attention collapsed)")
    share = counts.get("int8", 0) / max(sum(counts.values()), 1)
    delta = bench.row("qat int8 tflite").deltas["accuracy"]
    size_x = float_file.bytes / int8_file.bytes

    keras.utils.set_random_seed(args.seed + 1)
    alone = _bert_classifier(128, 2, 8, 32, 2000, False, "student", intermediate=512)
    alone(x_test_batch := {k: v[:2] for k, v in x_test.items()})
    distilled = _bert_classifier(128, 2, 8, 32, 2000, False, "student_kd", intermediate=512)
    distilled(x_test_batch)
    distilled.set_weights(alone.get_weights())
    _timed_fit("student alone (2 layers, hidden 128)", _compile(alone, 1e-3), task, args.epochs)
    distiller = tfcompress.Distiller(distilled, teacher, temperature=args.temperature)
    _compile(distiller, 1e-3)
    _timed_fit("student distilled", distiller, task, args.epochs)
    outputs = [m.predict(x_test, batch_size=256, verbose=0) for m in (alone, distilled)]
    kd = paired_difference("accuracy", y_test, *outputs)

    ci = "{0.baseline:.4f} -> {0.variant:.4f}, delta {0.delta:+.4f} [{0.low:+.4f}, {0.high:+.4f}]"
    acc, students = ci.format(delta), f"{ci.format(kd)} ({kd.method}, n={kd.n})"
    size = f"{float_file.bytes:,} / {int8_file.bytes:,} B = {size_x:.2f}x"
    print("\n| target | measured | goal | met |\n|---|---|---|---|")
    print(f"| int8 share of matmul weights | {share:.1%} {counts} | >= 90% | {share >= 0.9} |")
    print(f"| accuracy float -> int8 TFLite | {acc} | within 1 point | {delta.low >= -0.01} |")
    print(f"| file size float / int8 | {size} | >= 3.5x | {size_x >= 3.5} |")
    print(f"| student alone -> distilled | {students} | distilled better | {kd.low > 0} |")
    print(f"\nPart 2 wall time: {time.time() - start:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bert-target", action="store_true", help="run Part 2 (the small-BERT targets) only"
    )
    parser.add_argument("--titles", type=int, default=24_000, help="Part 2: titles in all splits")
    parser.add_argument("--val-titles", type=int, default=2_000)
    parser.add_argument("--test-titles", type=int, default=6_000)
    parser.add_argument("--epochs", type=int, default=5, help="teacher and student epochs")
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--qat-lr", type=float, default=1e-4)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--out", default="savedmodels/bench_thirdparty")
    parser.add_argument("--row", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--columns", default=",".join(COLUMNS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.row is not None:
        run_row(args.row, args.columns.split(","), args.seed)
        return 0
    return part2(args) if args.bert_target else part1(args)


if __name__ == "__main__":
    sys.exit(main())
