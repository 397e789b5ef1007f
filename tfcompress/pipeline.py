"""Run a recipe: train the input model, run each stage, export, benchmark, report.

``tfcompress.run(recipe)`` works on plain tf_keras models and the library's own verbs
(:class:`~tfcompress.Distiller`, :func:`~tfcompress.prune` + :func:`~tfcompress.strip`,
:func:`~tfcompress.shrink`, :func:`~tfcompress.quantize`, :func:`~tfcompress.export_tflite`,
:func:`~tfcompress.export_saved_model`, :func:`~tfcompress.benchmark`). Everything lands in
``<out_dir>/<recipe name>/``::

    recipe.toml            the recipe as run
    00_teacher/            one directory per stage: model.keras, stage.json (its cache key,
    01_distill/            figures and the sha256 of its model), backup/ while it trains
    02_prune/ ...
    exports/               the TFLite files and the XLA SavedModel, manifest.json, exports.json
    report.json, report.md, tradeoff.png
    logs/                  TensorBoard (unless ``logdir=`` points elsewhere)

**Caching and resume.** A stage's key is the sha256 of the recipe up to and including it
(:meth:`Recipe.stage_key`) and of its input: the sha256 of the previous stage's saved model (or of
the user's ``.keras`` file) and of the data file. Running a recipe again reuses every stage whose
key matches the ``stage.json`` on disk and whose model file still has the recorded sha256; the first
stage that differs runs again, and so do all after it (their input changed). A stage interrupted
while training resumes from its last finished epoch (``keras.callbacks.BackupAndRestore`` under
the stage's ``backup/``). Exports and the benchmark are cached the same way.

Example:
    >>> import tfcompress
    >>> report = tfcompress.run("recipes/demo.toml")  # doctest: +SKIP
    >>> print(report.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.keras_compat import keras
from tfcompress.manifest import atomic_write_text
from tfcompress.recipe import DataSpec, ModelSpec, Recipe, load_recipe
from tfcompress.report import BenchmarkReport
from tfcompress.run_report import RunReport, StageResult, render_report

_log = logging.getLogger("tfcompress")

__all__ = ["load_data", "run"]

STAGE_FILE = "stage.json"
MODEL_FILE = "model.keras"
EXPORTS = "exports"
#: strategies ``run`` can drive from one process
RUN_STRATEGIES = ("default", "auto", "mirrored")


def _say(verbose: int, message: str) -> None:
    """Progress lines, through Keras' own output channel (the one its progress bar uses)."""
    if verbose:
        from tf_keras.src.utils import io_utils  # Keras' own output channel (absl-aware)

        io_utils.print_msg(message)
    _log.info(message)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_text(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load_data(spec: DataSpec) -> Any:
    """The :class:`~tfcompress.data.TaskData` a recipe's ``[data]`` describes.

    Example:
        >>> from tfcompress.recipe import DataSpec
        >>> load_data(DataSpec(task="ctr", samples=1_000)).schema.task
        'binary'
    """
    from tfcompress import data

    if not isinstance(spec, DataSpec):
        raise TypeError(f"`spec` must be a tfcompress.recipe.DataSpec, received {spec!r:.80}.")
    common = {"seed": spec.seed, "batch_size": spec.batch_size}
    if spec.task is not None:
        return data.load_task(spec.task, n_samples=spec.samples, **common)
    path = Path(spec.path)
    if not path.is_file():
        raise FileNotFoundError(f"data.path {spec.path!r} does not exist.")
    kind = spec.format
    if kind == "auto":
        name = path.name.lower()
        if name.removesuffix(".gz").endswith(".csv") and "rating" not in name:
            kind = "csv"
        elif path.suffix.lower() in (".dat", ".data") or "rating" in name:
            kind = "movielens"
        else:
            kind = "libfm"
    if kind == "csv":
        if not spec.label:
            raise ValueError(f"data.path {spec.path!r} is a CSV file: set data.label to its "
                             "label column.")
        return data.load_csv(path, label=spec.label, **common)
    if kind == "movielens":
        return data.load_movielens(path, **common)
    return data.load_libfm(path, **common)


def _monitor(schema: Any) -> tuple[str, str]:
    return {"binary": ("val_auc", "max"), "multiclass": ("val_accuracy", "max")}.get(
        schema.task, ("val_recall@10", "max")
    )


class _FirstEpoch(keras.callbacks.Callback):
    """Records the first epoch a fit runs (> 0 when BackupAndRestore resumed it)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: int | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.first is None:
            self.first = epoch


@dataclasses.dataclass
class _Run:
    """Everything the stages of one run share."""

    recipe: Recipe
    run_dir: Path
    logdir: Path
    task: Any
    strategy: Any
    verbose: int
    callbacks: tuple[Any, ...]

    def fit(self, fit_model: keras.Model, stage_dir: Path, name: str, epochs: int,
            compression: Sequence[Any] = ()) -> int | None:
        """Fit with early stopping on the validation metric, TensorBoard and resume; returns
        the epoch it resumed at (None for a fresh fit)."""
        from tfcompress.tensorboard import CompressionTensorBoard

        monitor, mode = _monitor(self.task.schema)
        patience = self.recipe.model.patience
        first = _FirstEpoch()
        callbacks: list[Any] = []
        if patience:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor=monitor, mode=mode, patience=patience, restore_best_weights=True))
        callbacks += [*compression, CompressionTensorBoard(str(self.logdir / name)),
                      *self.callbacks,
                      keras.callbacks.BackupAndRestore(str(stage_dir / "backup")), first]
        _say(self.verbose, f"[{name}] fitting up to {epochs} epoch(s), keeping the best "
                           f"{monitor}")
        fit_model.fit(self.task.train, validation_data=self.task.validation, epochs=epochs,
                      callbacks=callbacks, verbose=_fit_verbosity(self.verbose))
        return first.first or None

    def evaluate(self, model: keras.Model) -> dict[str, float]:
        from tfcompress import models

        if not model.compiled_loss:
            models.compile_for_task(model, self.task.schema)
        values = model.evaluate(self.task.test, verbose=0, return_dict=True)
        return {k: round(float(v), 6) for k, v in values.items()}

    def build(self, spec: ModelSpec, seed: int) -> keras.Model:
        from tfcompress import models

        if spec.path is not None:
            return _load_model(Path(spec.path))
        keras.utils.set_random_seed(seed)
        kwargs = {}
        if spec.name == "two_tower":
            kwargs["catalog"] = self.task.info["catalog"]
        return models.build(spec.name, self.task.schema, size=spec.size, **kwargs)


def _fit_verbosity(verbose: int) -> int:
    if not verbose:
        return 0
    return 1 if verbose >= 2 or sys.stdout.isatty() else 2  # one line per epoch when piped


def _load_model(path: Path) -> keras.Model:
    import tfcompress.models  # noqa: F401  (registers the custom layers for safe loading)
    from tfcompress.quantization import load_quantized

    if path.suffix != ".keras" or not path.is_file():
        raise FileNotFoundError(
            f"model file {str(path)!r} does not exist or is not a .keras file (save models "
            "with model.save('name.keras'))."
        )
    # safe_mode loading, with TFMOT's QAT classes in scope; the stages compile what they fit
    return load_quantized(path, compile=False)


def _save_model(model: keras.Model, path: Path) -> str:
    """Save atomically; returns the file's sha256."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return _sha256_file(path)


def _zero_share(model: keras.Model) -> float:
    zeros = total = 0
    for w in model.weights:
        if w.shape.rank is not None and w.shape.rank >= 2 and w.dtype.is_floating:
            value = w.numpy()
            zeros += int(np.sum(value == 0))
            total += value.size
    return round(zeros / total, 6) if total else 0.0


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _cached(stage_dir: Path, key: str) -> dict[str, Any] | None:
    """The stage's record when it finished with ``key`` and its files are intact."""
    record = _read_json(stage_dir / STAGE_FILE)
    if not record or record.get("status") != "done" or record.get("key") != key:
        return None
    for rel, digest in record.get("files", {}).items():
        f = stage_dir / rel
        if not f.is_file() or _sha256_file(f) != digest:
            _log.warning("%s changed since it was written; running the stage again", f)
            return None
    return record


def _begin(stage_dir: Path, key: str) -> None:
    """Mark the stage running with ``key``; a backup of a different key is stale."""
    record = _read_json(stage_dir / STAGE_FILE)
    if record and record.get("key") != key and (stage_dir / "backup").exists():
        shutil.rmtree(stage_dir / "backup")
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stage_dir / STAGE_FILE, json.dumps({"status": "running", "key": key}))


def _finish(stage_dir: Path, record: dict[str, Any]) -> None:
    shutil.rmtree(stage_dir / "backup", ignore_errors=True)
    atomic_write_text(stage_dir / STAGE_FILE, json.dumps({**record, "status": "done"}, indent=2))


# --- the stages ------------------------------------------------------------------------------


def _train_input(r: _Run, name: str, stage_dir: Path) -> tuple[keras.Model, dict[str, Any]]:
    from tfcompress import models

    spec = r.recipe.model
    with r.strategy.scope():
        model = r.build(spec, r.recipe.seed)
        resumed = None
        if spec.epochs:
            models.compile_for_task(model, r.task.schema, learning_rate=spec.learning_rate)
            _say(r.verbose, f"[{name}] {model.name}: {model.count_params():,} parameters")
            resumed = r.fit(model, stage_dir, name, spec.epochs)
    return model, {"resumed_from_epoch": resumed}


def _distill(r: _Run, stage: Any, teacher: keras.Model, stage_dir: Path, seed: int
             ) -> tuple[keras.Model, dict[str, Any]]:
    from tfcompress import models
    from tfcompress.distillation import Distiller

    lr = stage.learning_rate or r.recipe.model.learning_rate
    extra: dict[str, str] = {}
    with r.strategy.scope():
        if stage.train_alone:
            alone = r.build(stage.student, seed)
            models.compile_for_task(alone, r.task.schema, learning_rate=lr)
            _say(r.verbose, f"[{stage.name}] the student alone (reference): "
                            f"{alone.count_params():,} parameters")
            r.fit(alone, stage_dir / "alone", f"{stage.name}_alone", stage.epochs)
            _save_model(alone, stage_dir / "alone.keras")
            extra[f"{stage.name}_alone"] = "alone.keras"
        student = r.build(stage.student, seed)
        _say(r.verbose, f"[{stage.name}] distilling {teacher.name} "
                        f"({teacher.count_params():,} parameters) into {student.name} "
                        f"({student.count_params():,})")
        distiller = Distiller(student, teacher, distillation_loss=stage.loss, alpha=stage.alpha,
                              temperature=None if stage.loss == "mse" else stage.temperature)
        loss, metrics = models.loss_and_metrics(r.task.schema)
        distiller.compile(keras.optimizers.Adam(lr), loss=loss, metrics=metrics)
        resumed = r.fit(distiller, stage_dir, stage.name, stage.epochs)
        student = distiller.student
        models.compile_for_task(student, r.task.schema, learning_rate=lr)
    return student, {"resumed_from_epoch": resumed, "extra": extra}


def _prune(r: _Run, stage: Any, model: keras.Model, stage_dir: Path
           ) -> tuple[keras.Model, dict[str, Any]]:
    from tfcompress import models
    from tfcompress.pruning import PruningCallback, prune, strip

    lr = stage.learning_rate or r.recipe.model.learning_rate
    with r.strategy.scope():
        pruned = prune(model, stage.sparsity, structure=stage.structure,
                       layers=_filter(stage.layers), skip=_filter(stage.skip))
        models.compile_for_task(pruned, r.task.schema, learning_rate=lr)
        resumed = r.fit(pruned, stage_dir, stage.name, stage.epochs, [PruningCallback()])
        stripped = strip(pruned)
        models.compile_for_task(stripped, r.task.schema, learning_rate=lr)
    return stripped, {"resumed_from_epoch": resumed}


def _shrink(r: _Run, stage: Any, model: keras.Model, stage_dir: Path
            ) -> tuple[keras.Model, dict[str, Any]]:
    from tfcompress import models
    from tfcompress.shrinking import shrink

    lr = stage.learning_rate or r.recipe.model.learning_rate
    with r.strategy.scope():
        data = r.task.validation if stage.criterion == "activation" else None
        small = shrink(model, stage.ratio, data=data, criterion=stage.criterion,
                       layers=_filter(stage.layers), skip=_filter(stage.skip))
        _say(r.verbose, f"[{stage.name}] {model.count_params():,} -> "
                        f"{small.count_params():,} parameters")
        models.compile_for_task(small, r.task.schema, learning_rate=lr)
        resumed = r.fit(small, stage_dir, stage.name, stage.epochs)
    return small, {"resumed_from_epoch": resumed}


def _quantize(r: _Run, stage: Any, model: keras.Model, stage_dir: Path
              ) -> tuple[keras.Model, dict[str, Any]]:
    from tfcompress import models
    from tfcompress.quantization import quantize

    lr = stage.learning_rate or r.recipe.model.learning_rate
    with r.strategy.scope():
        qat = quantize(model, scheme=stage.scheme, layers=_filter(stage.layers),
                       skip=_filter(stage.skip))
        models.compile_for_task(qat, r.task.schema, learning_rate=lr)
        resumed = r.fit(qat, stage_dir, stage.name, stage.epochs)
    return qat, {"resumed_from_epoch": resumed}


_STAGES = {"prune": _prune, "shrink": _shrink, "quantize": _quantize}


def _filter(names: Sequence[str] | None) -> list[str] | None:
    return None if names is None else list(names)


# --- exports and benchmark ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Variant:
    name: str
    stage: str
    kind: str
    source: Path  # the stage's .keras file
    mode: str  # a TFLite mode, "xla" or "savedmodel"


def _plan_exports(recipe: Recipe, run_dir: Path, results: list[StageResult]) -> list[_Variant]:
    spec, final = recipe.export, results[-1]
    plan: list[_Variant] = []
    for s in results[:-1]:
        plan.append(_Variant(f"{s.name}_float", s.name, s.kind, run_dir / s.path, "float"))
    for s in results:
        for extra, rel in s.extra.items():
            plan.append(_Variant(f"{extra}_float", s.name, s.kind, run_dir / rel, "float"))
    for mode in spec.tflite:
        plan.append(_Variant(f"{final.name}_{mode}", final.name, final.kind,
                             run_dir / final.path, mode))
    if spec.saved_model:
        mode = "xla" if spec.jit_compile else "savedmodel"
        plan.append(_Variant(f"{final.name}_{mode}", final.name, final.kind,
                             run_dir / final.path, mode))
    return plan


def _export(r: _Run, plan: list[_Variant], key: str, resume: bool) -> dict[str, str]:
    from tfcompress.export import export_saved_model, export_tflite
    from tfcompress.quantization import is_quantized, strip_quantization

    out = r.run_dir / EXPORTS
    record = _read_json(out / "exports.json")
    if resume and record and record.get("key") == key and all(
        (r.run_dir / p).exists() for p in record["variants"].values()
    ):
        _say(r.verbose, f"[export] reused {len(record['variants'])} export(s) in {out}")
        return dict(record["variants"])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    variants: dict[str, str] = {}
    loaded: dict[Path, keras.Model] = {}
    for v in plan:
        if v.source not in loaded:
            with r.strategy.scope():
                loaded[v.source] = _load_model(v.source)
        model = loaded[v.source]
        if v.mode in ("xla", "savedmodel"):
            plain = strip_quantization(model) if is_quantized(model) else model
            result = export_saved_model(plain, out / v.name, jit_compile=v.mode == "xla",
                                        parity_data=r.task.test)
        else:
            mode = None if v.mode == "float" else v.mode
            calibrate = mode in ("int8", "int16x8") and not is_quantized(model)
            result = export_tflite(model, out / f"{v.name}.tflite", quantization=mode,
                                   representative_data=r.task.validation if calibrate else None,
                                   parity_data=r.task.test)
        diff = result.parity.get("max_abs_diff", float("nan"))
        _say(r.verbose, f"[export] {result.path.name:<28} {result.bytes / 1024:9.1f} KiB  "
                        f"parity max |diff| {diff:.2e}")
        variants[v.name] = str(result.path.relative_to(r.run_dir))
    atomic_write_text(out / "exports.json",
                      json.dumps({"key": key, "variants": variants}, indent=2))
    return variants


def _benchmark(r: _Run, variants: dict[str, str], key: str, resume: bool) -> BenchmarkReport:
    from tfcompress.benchmarking import benchmark

    spec = r.recipe.benchmark
    path = r.run_dir / "benchmark.json"
    record = _read_json(path)
    if resume and record and record.get("key") == key:
        _say(r.verbose, "[benchmark] reused the measurements of the previous run")
        return BenchmarkReport.from_dict(record["report"])
    _say(r.verbose, f"[benchmark] {len(variants)} variant(s), batch sizes "
                    f"{list(spec.batch_sizes)}, {spec.threads} thread(s)")
    report = benchmark({n: str(r.run_dir / p) for n, p in variants.items()}, r.task.test,
                       baseline=next(iter(variants)), batch_sizes=spec.batch_sizes,
                       repeats=spec.repeats, num_threads=spec.threads,
                       max_examples=spec.max_examples, measure_memory=False,
                       progress=bool(r.verbose))
    atomic_write_text(path, json.dumps({"key": key, "report": report.to_dict()}, indent=2))
    return report


# --- run ---------------------------------------------------------------------------------------


def _as_recipe(recipe: Any) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe)
    raise TypeError(
        f"`recipe` must be a tfcompress.recipe.Recipe or the path of a .toml/.yaml recipe, "
        f"received {type(recipe).__name__}: {recipe!r:.80}."
    )


def _input_name(recipe: Recipe) -> str:
    if any(s.kind == "distill" for s in recipe.stages):
        return "teacher"
    return "model"


def run(
    recipe: Recipe | str | os.PathLike,
    *,
    out_dir: str | os.PathLike = "savedmodels",
    logdir: str | os.PathLike | None = None,
    resume: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 1,
) -> RunReport:
    """Run ``recipe``: train its model, run its stages, export, benchmark, report.

    Args:
        recipe: a :class:`~tfcompress.recipe.Recipe` or the path of a TOML/YAML recipe file.
        out_dir: the run goes to ``<out_dir>/<recipe.name>/``.
        logdir: TensorBoard log directory (default ``<run dir>/logs``): one run per stage with
            its curves, sparsity and quantizer ranges, an ``hparams`` run per exported variant
            and the report as text.
        resume: reuse finished stages (and resume an interrupted one) whose recipe and input
            are unchanged; False runs everything again from scratch.
        callbacks: extra Keras callbacks added to every fit (e.g. a CSVLogger).
        verbose: 0 silent, 1 progress lines and one line per epoch when piped (Keras' progress
            bar on a terminal), 2 always the progress bar.

    Returns:
        The :class:`~tfcompress.run_report.RunReport` (also written as ``report.json``,
        ``report.md`` and ``tradeoff.png`` in the run directory).

    Raises:
        TypeError: ``recipe`` is neither a Recipe nor a path; bad argument types.
        ValueError: a recipe error (:class:`~tfcompress.recipe.RecipeError`), a strategy that
            needs several processes.
        FileNotFoundError: the recipe, the model file or the data file does not exist.

    Example:
        >>> from tfcompress.recipe import demo_recipe
        >>> report = run(demo_recipe(samples=4_000, epochs=1))  # doctest: +SKIP
        >>> report.stage("prune").sparsity  # doctest: +SKIP
        0.7
    """
    started = time.perf_counter()
    recipe = _as_recipe(recipe)
    for arg, value in (("out_dir", out_dir), ("logdir", logdir)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"run: `{arg}` must be a path, received {type(value).__name__}.")
    if not isinstance(resume, bool):
        raise TypeError(f"run: `resume` must be a bool, received {resume!r}.")
    if isinstance(verbose, bool) or not isinstance(verbose, int) or verbose not in (0, 1, 2):
        raise ValueError(f"run: `verbose` must be 0, 1 or 2, received {verbose!r}.")
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not isinstance(cb, keras.callbacks.Callback):
            raise TypeError(f"run: every entry of `callbacks` must be a tf_keras Callback, "
                            f"received {cb!r:.80}.")
    if recipe.strategy not in RUN_STRATEGIES:
        raise ValueError(
            f"run: strategy {recipe.strategy!r} needs one process per worker; tfcompress.run "
            f"drives {list(RUN_STRATEGIES)}. For multi-worker training use "
            "tfcompress.launch.launch_local with your own fit (see notebooks/)."
        )
    from tfcompress.distribute import get_strategy
    from tfcompress.tensorboard import log_hparams, log_stage_summary, log_text

    run_dir = Path(out_dir) / recipe.name
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.toml", recipe.to_toml())
    logdir = Path(logdir) if logdir is not None else run_dir / "logs"
    strategy = get_strategy(recipe.strategy)
    _say(verbose, f"tfcompress run {recipe.name!r} -> {run_dir} (TensorBoard: {logdir}; "
                  f"{strategy.num_replicas_in_sync} replica(s))")
    task = load_data(recipe.data)
    r = _Run(recipe, run_dir, logdir, task, strategy, verbose, callbacks)
    input_hash = _sha256_text(
        _sha256_file(Path(recipe.data.path)) if recipe.data.path else "",
        _sha256_file(Path(recipe.model.path)) if recipe.model.path else "",
    )

    results: list[StageResult] = []
    model: keras.Model | None = None
    model_path: Path | None = None
    names = [_input_name(recipe), *(s.name for s in recipe.stages)]
    for index in range(-1, len(recipe.stages)):
        stage = None if index < 0 else recipe.stages[index]
        name, kind = names[index + 1], "model" if stage is None else stage.kind
        stage_dir = run_dir / f"{index + 1:02d}_{name}"
        key = _sha256_text(recipe.stage_key(index), input_hash)
        record = _cached(stage_dir, key)
        if record is not None:
            _say(verbose, f"[{name}] reused: recipe and input unchanged ({stage_dir.name}/)")
            model, cached = None, True
        else:
            _say(verbose, f"[{name}] stage {index + 2}/{len(names)}: {kind}")
            _begin(stage_dir, key)
            if stage is not None and model is None:
                with strategy.scope():
                    model = _load_model(model_path)
            t0 = time.perf_counter()
            keras.utils.set_random_seed(recipe.seed + index + 1)
            if stage is None:
                out, info = _train_input(r, name, stage_dir)
            elif kind == "distill":
                out, info = _distill(r, stage, model, stage_dir, recipe.seed + index + 1)
            else:
                out, info = _STAGES[kind](r, stage, model, stage_dir)
            quality = r.evaluate(out)
            files = {MODEL_FILE: _save_model(out, stage_dir / MODEL_FILE)}
            extra = info.get("extra", {})
            files.update({rel: _sha256_file(stage_dir / rel) for rel in extra.values()})
            record = {"name": name, "kind": kind, "key": key, "quality": quality,
                      "seconds": round(time.perf_counter() - t0, 1),
                      "params": int(out.count_params()), "sparsity": _zero_share(out),
                      "files": files, "resumed_from_epoch": info.get("resumed_from_epoch"),
                      "extra": extra}
            _finish(stage_dir, record)
            log_stage_summary(logdir, name, {
                **{f"test/{k}": v for k, v in quality.items()},
                "params": record["params"], "sparsity": record["sparsity"],
                "seconds": record["seconds"]})
            summary = ", ".join(f"{k} {v:.4f}" for k, v in quality.items())
            _say(verbose, f"[{name}] done in {record['seconds']:.0f} s: test {summary}; "
                          f"{record['params']:,} parameters, sparsity {record['sparsity']:.3f}")
            model, cached = out, False
        model_path = stage_dir / MODEL_FILE
        input_hash = record["files"][MODEL_FILE]
        results.append(StageResult(
            name=name, kind=kind, cached=cached, seconds=float(record["seconds"]),
            quality=dict(record["quality"]), params=int(record["params"]),
            sparsity=float(record["sparsity"]), path=f"{stage_dir.name}/{MODEL_FILE}",
            resumed_from_epoch=None if cached else record.get("resumed_from_epoch"),
            extra={k: f"{stage_dir.name}/{v}" for k, v in record.get("extra", {}).items()},
        ))

    plan = _plan_exports(recipe, run_dir, results)
    export_key = _sha256_text(
        json.dumps(recipe.export.get_config(), sort_keys=True),
        *(_sha256_file(v.source) for v in plan),
        *(f"{v.name}:{v.mode}" for v in plan),
    )
    exports = _export(r, plan, export_key, resume)
    bench = None
    if recipe.benchmark.enabled:
        bench_key = _sha256_text(export_key,
                                 json.dumps(recipe.benchmark.get_config(), sort_keys=True))
        bench = _benchmark(r, exports, bench_key, resume)
    report = RunReport(
        name=recipe.name, run_dir=str(run_dir), stages=tuple(results), benchmark=bench,
        exports=exports, logdir=str(logdir), seconds=round(time.perf_counter() - started, 1),
        recipe=recipe.get_config(),
    )
    report = render_report(report, run_dir)
    if bench is not None:
        by_name = {v.name: v for v in plan}
        log_hparams(logdir / "hparams", bench, {
            n: {"variant": n, "stage": by_name[n].stage, "kind": by_name[n].kind,
                "format": bench.row(n).format, "mode": by_name[n].mode}
            for n in bench.names
        })
    log_text(logdir, "report", report.to_markdown())
    _say(verbose, f"Done in {report.seconds:.0f} s: {run_dir / 'report.md'}"
                  + (f", {run_dir / report.plot}" if report.plot else ""))
    return report
