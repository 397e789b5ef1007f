"""Run a recipe: :func:`tfcompress.run` trains the input model, runs each stage, exports,
benchmarks and reports, caching every step and resuming where it stopped (what it writes and
when it reuses a stage: docs/recipes.md).

Example:
    >>> import tfcompress
    >>> report = tfcompress.run("recipes/demo.toml")  # doctest: +SKIP
    >>> print(report.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfcompress import data, models
from tfcompress._keras import keras
from tfcompress._version import __version__
from tfcompress.callbacks.tensorboard import (
    CompressionTensorBoard,
    log_hparams,
    log_stage_summary,
    log_text,
)
from tfcompress.data.epochs import epoch_batches
from tfcompress.distillation.distiller import Distiller
from tfcompress.distribute.strategy import get_strategy
from tfcompress.export.manifest import atomic_write_text
from tfcompress.pruning.pruner import PruningCallback, prune, strip
from tfcompress.pruning.shrinking import shrink
from tfcompress.quantization.qat import quantize
from tfcompress.recipe import _quality as quality_
from tfcompress.recipe._cache import (
    begin_stage,
    cached_record,
    clean_run_dir,
    finish_stage,
    load_model,
    save_model,
    say,
    sha256_file,
    sha256_text,
    zero_share,
)
from tfcompress.recipe._export import benchmark_all, export_all, plan_exports
from tfcompress.recipe._seeds import EpochSeeds, stage_seed
from tfcompress.recipe.recipes import DataSpec, ModelSpec, Recipe, load_recipe
from tfcompress.recipe.report import RunReport, StageResult, render_report

_log = logging.getLogger("tfcompress")

__all__ = ["load_data", "run"]

MODEL_FILE = "model.keras"
#: strategies ``run`` can drive from one process
RUN_STRATEGIES = ("default", "auto", "mirrored")


def load_data(spec: DataSpec) -> Any:
    """The :class:`~tfcompress.data.TaskData` a recipe's ``[data]`` describes.

    Example:
        >>> from tfcompress.recipe import DataSpec
        >>> load_data(DataSpec(task="ctr", samples=1_000)).schema.task
        'binary'
    """
    if not isinstance(spec, DataSpec):
        raise TypeError(f"`spec` must be a tfcompress.recipe.DataSpec, received {spec!r:.80}.")
    if spec.path is None:
        return data.load_task(
            spec.task, n_samples=spec.samples, seed=spec.seed, batch_size=spec.batch_size
        )
    path = Path(spec.path)
    if not path.is_file():
        raise FileNotFoundError(
            f"data.path {spec.path!r} does not exist (a relative path in a recipe file is read "
            "from the recipe's folder; in a Recipe built in Python, from the working directory "
            f"{os.getcwd()!r}); fix the path or give an absolute one."
        )
    # every [data] option of the file's loader (drop, strict, split_mode, ...)
    return data.load_file(
        path,
        format=spec.resolved_format,
        label=spec.label,
        seed=spec.seed,
        batch_size=spec.batch_size,
        **spec.loader_options(),
    )


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
    #: (teacher model file, its distill stage) of the last distill stage run so far
    teacher: tuple[Path, Any] | None = None
    #: the seed of the stage running now (the data order and dropout of its fits derive from it)
    seed: int = 0
    _test_examples: int | None = None

    def fit(
        self,
        fit_model: keras.Model,
        stage_dir: Path,
        name: str,
        epochs: int,
        compression: Sequence[Any] = (),
        early_stopping: bool = True,
    ) -> int | None:
        """Fit with early stopping on the validation metric (keeping the best epoch),
        TensorBoard and resume; returns the epoch it resumed at (None for a fresh fit)."""
        monitor, mode = _monitor(self.task.schema)
        patience = self.recipe.model.patience
        first = _FirstEpoch()
        callbacks: list[Any] = []
        if patience and early_stopping:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor, mode=mode, patience=patience, restore_best_weights=True
                )
            )
        callbacks += list(compression)
        if self.verbose:  # before the TensorBoard callback adds every quantizer range to `logs`
            callbacks.append(keras.callbacks.ProgbarLogger(count_mode="steps"))
        callbacks += [
            CompressionTensorBoard(str(self.logdir / name)),
            *self.callbacks,
            keras.callbacks.BackupAndRestore(str(stage_dir / "backup")),
            first,
            EpochSeeds(self.seed),
        ]
        # the order of each epoch: a function of the stage seed and the step it starts at
        # (restored by BackupAndRestore), not of how often this process iterated the data
        train = epoch_batches(
            self.task,
            batch_size=self.recipe.data.batch_size,
            seed=self.seed,
            position=lambda: int(fit_model.optimizer.iterations.numpy()),
        )
        say(
            self.verbose,
            f"[{name}] fitting up to {epochs} epoch(s)"
            + (f", keeping the best {monitor}" if patience and early_stopping else ""),
        )
        fit_model.fit(
            train,
            validation_data=self.task.validation,
            epochs=epochs,
            callbacks=callbacks,
            verbose=_fit_verbosity(self.verbose),
        )
        return first.first or None

    def distiller(
        self, student: keras.Model, teacher: keras.Model, distill: Any, lr: float
    ) -> keras.Model:
        """``student`` inside a compiled Distiller with ``distill`` (a DistillStage)'s settings."""
        temperature = None if distill.loss == "mse" else distill.temperature
        wrapped = Distiller(
            student,
            teacher,
            distillation_loss=distill.loss,
            student_loss_weight=1.0 - distill.alpha,
            temperature=temperature,
        )
        loss, metrics = models.loss_and_metrics(self.task.schema)
        wrapped.compile(keras.optimizers.Adam(lr), loss=loss, metrics=metrics)
        return wrapped

    def fine_tune(
        self,
        model: keras.Model,
        stage: Any,
        stage_dir: Path,
        compression: Sequence[Any] = (),
        early_stopping: bool = True,
    ) -> int | None:
        """Fit a compressed ``model`` for the stage's budget: on the labels, or (``distill``)
        inside a Distiller with the recipe's teacher. Call in the strategy scope."""
        lr = stage.learning_rate or self.recipe.model.learning_rate
        if not getattr(stage, "distill", False):
            models.compile_for_task(model, self.task.schema, learning_rate=lr)
            return self.fit(model, stage_dir, stage.name, stage.epochs, compression, early_stopping)
        path, distill = self.teacher
        teacher = load_model(path)
        say(
            self.verbose,
            f"[{stage.name}] fine-tuning with the teacher {teacher.name} "
            f"(alpha {distill.alpha}, temperature {distill.temperature})",
        )
        wrapped = self.distiller(model, teacher, distill, lr)
        resumed = self.fit(
            wrapped, stage_dir, stage.name, stage.epochs, compression, early_stopping
        )
        models.compile_for_task(model, self.task.schema, learning_rate=lr)
        return resumed

    def evaluate(self, model: keras.Model) -> dict[str, Any]:
        """Exact quality on the whole test split (the definition the export and benchmark
        tables use), with ``n_examples`` and ``n_positives``."""
        return quality_.exact_quality(model, self.task.test)

    def test_examples(self) -> int:
        """Examples in the test split."""
        if self._test_examples is None:
            self._test_examples = quality_.count_examples(self.task.test)
        return self._test_examples

    def check_fit(self, model: keras.Model) -> dict[str, Any]:
        """Exact train and validation AUC of a stage's model, for :func:`fit_check`."""
        train, seen = quality_.auc_of(model, self.task.train, quality_.TRAIN_CHECK_EXAMPLES)
        if train is None:
            return {}
        val, _ = quality_.auc_of(model, self.task.validation)
        return {
            "train_auc": round(train, 6),
            "val_auc": None if val is None else round(val, 6),
            "train_examples": seen,
        }

    def build(self, spec: ModelSpec, seed: int) -> keras.Model:
        if spec.path is not None:
            return load_model(Path(spec.path))
        keras.utils.set_random_seed(seed)
        kwargs = {}
        if spec.name == "two_tower":
            kwargs["catalog"] = self.task.info["catalog"]
        return models.build(spec.name, self.task.schema, size=spec.size, **kwargs)


def _fit_verbosity(verbose: int) -> int:
    if not verbose:
        return 0
    return 1 if verbose >= 2 or sys.stdout.isatty() else 2  # one line per epoch when piped


# --- the stages ------------------------------------------------------------------------------


def _train_input(r: _Run, name: str, stage_dir: Path) -> tuple[keras.Model, dict[str, Any]]:
    spec = r.recipe.model
    with r.strategy.scope():
        model = r.build(spec, r.seed)
        resumed = None
        if spec.epochs:
            models.compile_for_task(model, r.task.schema, learning_rate=spec.learning_rate)
            say(r.verbose, f"[{name}] {model.name}: {model.count_params():,} parameters")
            resumed = r.fit(model, stage_dir, name, spec.epochs)
    return model, {"resumed_from_epoch": resumed}


def _distill(
    r: _Run, stage: Any, teacher: keras.Model, stage_dir: Path, seed: int
) -> tuple[keras.Model, dict[str, Any]]:
    lr = stage.learning_rate or r.recipe.model.learning_rate
    extra: dict[str, str] = {}
    with r.strategy.scope():
        if stage.train_alone and (stage_dir / "alone.keras").is_file():
            say(r.verbose, f"[{stage.name}] the student alone: reused from the interrupted run")
            extra[f"{stage.name}_alone"] = "alone.keras"
        elif stage.train_alone:
            alone = r.build(stage.student, seed)
            models.compile_for_task(alone, r.task.schema, learning_rate=lr)
            say(
                r.verbose,
                f"[{stage.name}] the student alone (reference): "
                f"{alone.count_params():,} parameters",
            )
            r.fit(alone, stage_dir / "alone", f"{stage.name}_alone", stage.epochs)
            save_model(alone, stage_dir / "alone.keras")
            extra[f"{stage.name}_alone"] = "alone.keras"
        student = r.build(stage.student, seed)
        say(
            r.verbose,
            f"[{stage.name}] distilling {teacher.name} "
            f"({teacher.count_params():,} parameters) into {student.name} "
            f"({student.count_params():,})",
        )
        distiller = r.distiller(student, teacher, stage, lr)
        resumed = r.fit(distiller, stage_dir, stage.name, stage.epochs)
        student = distiller.student
        models.compile_for_task(student, r.task.schema, learning_rate=lr)
    return student, {"resumed_from_epoch": resumed, "extra": extra}


def _prune(
    r: _Run, stage: Any, model: keras.Model, stage_dir: Path
) -> tuple[keras.Model, dict[str, Any]]:
    with r.strategy.scope():
        pruned = prune(
            model,
            stage.sparsity,
            structure=stage.structure,
            layers=_filter(stage.layers),
            skip=_filter(stage.skip),
        )
        # no early stopping: the best validation epoch of a pruning fit is an early one, before
        # the schedule reached the target; its weights would be pruned again untrained by strip
        # per-layer sparsity goes to TensorBoard (CompressionTensorBoard adds it after the
        # progress bar has printed), the progress bar shows the overall figure
        resumed = r.fine_tune(
            pruned, stage, stage_dir, [PruningCallback(log_layers=False)], early_stopping=False
        )
        stripped = strip(pruned)
        models.compile_for_task(
            stripped,
            r.task.schema,
            learning_rate=stage.learning_rate or r.recipe.model.learning_rate,
        )
    return stripped, {"resumed_from_epoch": resumed}


def _shrink(
    r: _Run, stage: Any, model: keras.Model, stage_dir: Path
) -> tuple[keras.Model, dict[str, Any]]:
    with r.strategy.scope():
        data = r.task.validation if stage.criterion == "activation" else None
        small = shrink(
            model,
            stage.ratio,
            data=data,
            criterion=stage.criterion,
            layers=_filter(stage.layers),
            skip=_filter(stage.skip),
        )
        say(
            r.verbose,
            f"[{stage.name}] {model.count_params():,} -> {small.count_params():,} parameters",
        )
        resumed = r.fine_tune(small, stage, stage_dir)
    return small, {"resumed_from_epoch": resumed}


def _quantize(
    r: _Run, stage: Any, model: keras.Model, stage_dir: Path
) -> tuple[keras.Model, dict[str, Any]]:
    with r.strategy.scope():
        qat = quantize(
            model, scheme=stage.scheme, layers=_filter(stage.layers), skip=_filter(stage.skip)
        )
        resumed = r.fine_tune(qat, stage, stage_dir)
    return qat, {"resumed_from_epoch": resumed}


_STAGES = {"prune": _prune, "shrink": _shrink, "quantize": _quantize}


def _filter(names: Sequence[str] | None) -> list[str] | None:
    return None if names is None else list(names)


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


def _library_version() -> str:
    """Part of every stage key: a new tfcompress release re-runs the stages."""
    return f"tfcompress {__version__}"


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
        The :class:`~tfcompress.recipe.report.RunReport` (also written as ``report.json``,
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
    callbacks = _check_run_args(recipe, out_dir, logdir, resume, verbose, callbacks)

    run_dir = Path(out_dir) / recipe.name
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # a crashed stage the recipe no longer has, temporaries of killed writers: removed, logged
    clean_run_dir(
        run_dir,
        [
            f"00_{_input_name(recipe)}",
            *(f"{i:02d}_{s.name}" for i, s in enumerate(recipe.stages, 1)),
        ],
    )
    atomic_write_text(run_dir / "recipe.toml", recipe.to_toml())
    logdir = Path(logdir) if logdir is not None else run_dir / "logs"
    strategy = get_strategy(recipe.strategy)
    say(
        verbose,
        f"tfcompress run {recipe.name!r} -> {run_dir} (TensorBoard: {logdir}; "
        f"{strategy.num_replicas_in_sync} replica(s))",
    )
    task = load_data(recipe.data)
    summary = getattr(task, "summary", None)
    if callable(summary):  # the data summary table (rows, positives, features) of every load
        say(verbose, str(summary()))
    r = _Run(recipe, run_dir, logdir, task, strategy, verbose, callbacks)
    input_hash = sha256_text(
        sha256_file(Path(recipe.data.path)) if recipe.data.path else "",
        sha256_file(Path(recipe.model.path)) if recipe.model.path else "",
    )

    results, warnings, digests = _run_stages(r, input_hash)
    noise = quality_.noise_note(results[-1].n_examples, results[-1].n_positives, "the test split")
    if noise is not None:
        _log.warning("%s", noise)
        warnings.append(noise)

    plan = plan_exports(recipe, run_dir, results)
    export_key = sha256_text(
        json.dumps(recipe.export.get_config(), sort_keys=True),
        *(digests[v.source] for v in plan),
        *(f"{v.name}:{v.mode}" for v in plan),
        _EXPORT_FORMAT,
    )
    exports, parity = export_all(r, plan, export_key, resume)
    bench, measured = None, False
    if recipe.benchmark.enabled:
        bench_key = sha256_text(
            export_key, json.dumps(recipe.benchmark.get_config(), sort_keys=True)
        )
        bench, measured = benchmark_all(r, exports, bench_key, resume)
    report = RunReport(
        name=recipe.name,
        run_dir=str(run_dir),
        stages=tuple(results),
        benchmark=bench,
        exports=exports,
        logdir=str(logdir),
        seconds=round(time.perf_counter() - started, 1),
        recipe=recipe.get_config(),
        parity=parity,
        warnings=tuple(warnings),
        benchmark_positives=quality_.benchmark_positives(r.task.test, bench),
    )
    report = render_report(report, run_dir)
    _log_report(logdir, report, plan, bench, measured, results)
    say(
        verbose,
        f"Done in {report.seconds:.0f} s: {run_dir / 'report.md'}"
        + (f", {run_dir / report.plot}" if report.plot else ""),
    )
    return report


def _check_run_args(
    recipe: Recipe, out_dir: Any, logdir: Any, resume: Any, verbose: Any, callbacks: Any
) -> tuple[keras.callbacks.Callback, ...]:
    """Check :func:`run`'s arguments; the callbacks as a tuple."""
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
            raise TypeError(
                f"run: every entry of `callbacks` must be a tf_keras Callback, received {cb!r:.80}."
            )
    if recipe.strategy not in RUN_STRATEGIES:
        raise ValueError(
            f"run: strategy {recipe.strategy!r} needs one process per worker; tfcompress.run "
            f"drives {list(RUN_STRATEGIES)}. For multi-worker training use "
            "tfcompress.distribute.launch.launch_local with your own fit (see notebooks/)."
        )
    return callbacks


def _run_stages(r: _Run, input_hash: str) -> tuple[list[StageResult], list[str], dict[Path, str]]:
    """Run (or reuse) the input model and every stage: results, fit warnings, file digests."""
    recipe, run_dir, strategy, verbose = r.recipe, r.run_dir, r.strategy, r.verbose
    results: list[StageResult] = []
    warnings: list[str] = []
    digests: dict[Path, str] = {}  # sha256 of every model file the stages wrote
    model: keras.Model | None = None
    model_path: Path | None = None
    names = [_input_name(recipe), *(s.name for s in recipe.stages)]
    # the fit check runs after the first stage that trains (the input model when it is trained)
    first_trained = -1 if recipe.model.epochs else 0
    for index in range(-1, len(recipe.stages)):
        stage = None if index < 0 else recipe.stages[index]
        name, kind = names[index + 1], "model" if stage is None else stage.kind
        stage_dir = run_dir / f"{index + 1:02d}_{name}"
        key = sha256_text(recipe.stage_key(index), input_hash, _library_version())
        check_fit = index == first_trained
        record = cached_record(stage_dir, key)
        if record is not None:
            say(verbose, f"[{name}] reused: recipe and input unchanged ({stage_dir.name}/)")
            record = _remeasured(r, record, stage_dir, check_fit)
            model, cached = None, True
        else:
            say(verbose, f"[{name}] stage {index + 2}/{len(names)}: {kind}")
            if begin_stage(stage_dir, key):
                say(verbose, f"[{name}] resuming the interrupted run of this stage")
            if stage is not None and model is None:
                with strategy.scope():
                    model = load_model(model_path)
            model, record = _run_stage(
                r, index, stage, name, kind, model, stage_dir, key, check_fit
            )
            cached = False
        if check_fit:
            warning = quality_.fit_warning(r, name, record)
            if warning is not None:
                warnings.append(warning)
        if kind == "distill":  # its input model teaches the stages that ask for it
            r.teacher = (model_path, stage)
        model_path = stage_dir / MODEL_FILE
        input_hash = record["files"][MODEL_FILE]
        digests.update({stage_dir / rel: digest for rel, digest in record["files"].items()})
        results.append(
            StageResult(
                name=name,
                kind=kind,
                cached=cached,
                seconds=float(record["seconds"]),
                quality=dict(record["quality"]),
                params=int(record["params"]),
                sparsity=float(record["sparsity"]),
                path=f"{stage_dir.name}/{MODEL_FILE}",
                resumed_from_epoch=None if cached else record.get("resumed_from_epoch"),
                extra={k: f"{stage_dir.name}/{v}" for k, v in record.get("extra", {}).items()},
                n_examples=record.get("n_examples"),
                n_positives=record.get("n_positives"),
            )
        )
    return results, warnings, digests


def _log_report(
    logdir: Path,
    report: RunReport,
    plan: Any,
    bench: Any,
    measured: bool,
    results: list[StageResult],
) -> None:
    """The benchmark's hparams runs and the report as text in TensorBoard."""
    if measured:  # a reused benchmark is in TensorBoard already: no duplicate sessions
        by_name = {v.name: v for v in plan}
        log_hparams(
            logdir / "hparams",
            bench,
            {
                n: {
                    "variant": n,
                    "stage": by_name[n].stage,
                    "kind": by_name[n].kind,
                    "format": bench.row(n).format,
                    "mode": by_name[n].mode,
                }
                for n in bench.names
            },
        )
    if measured or not all(s.cached for s in results):
        log_text(logdir, "report", report.to_markdown())


#: part of the export key: exports recorded before exports.json kept the parity run again
_EXPORT_FORMAT = "exports.json with parity"


def _run_stage(
    r: _Run,
    index: int,
    stage: Any,
    name: str,
    kind: str,
    model: keras.Model | None,
    stage_dir: Path,
    key: str,
    check_fit: bool,
) -> tuple[keras.Model, dict[str, Any]]:
    """Run one stage (its directory is begun); returns its model and its finished record."""
    t0 = time.perf_counter()
    r.seed = stage_seed(r.recipe.seed, index)
    keras.utils.set_random_seed(r.seed)
    if stage is None:
        out, info = _train_input(r, name, stage_dir)
    elif kind == "distill":
        out, info = _distill(r, stage, model, stage_dir, r.seed)
    else:
        out, info = _STAGES[kind](r, stage, model, stage_dir)
    seconds = round(time.perf_counter() - t0, 1)
    measured = r.evaluate(out)
    files = {MODEL_FILE: save_model(out, stage_dir / MODEL_FILE)}
    extra = info.get("extra", {})
    files.update({rel: sha256_file(stage_dir / rel) for rel in extra.values()})
    record = {
        "name": name,
        "kind": kind,
        "key": key,
        **quality_.split_quality(measured),
        "seconds": seconds,
        "params": int(out.count_params()),
        "sparsity": zero_share(out),
        "files": files,
        "resumed_from_epoch": info.get("resumed_from_epoch"),
        "extra": extra,
    }
    if check_fit:
        record["fit_check"] = r.check_fit(out)
    finish_stage(stage_dir, record)
    log_stage_summary(
        r.logdir,
        name,
        {
            **{f"test/{k}": v for k, v in record["quality"].items() if v is not None},
            "params": record["params"],
            "sparsity": record["sparsity"],
            "seconds": record["seconds"],
        },
    )
    say(
        r.verbose,
        f"[{name}] done in {seconds:.0f} s: test {quality_.quality_text(record)}; "
        f"{record['params']:,} parameters, sparsity {record['sparsity']:.3f}",
    )
    return out, record


def _remeasured(
    r: _Run, record: dict[str, Any], stage_dir: Path, check_fit: bool
) -> dict[str, Any]:
    """A reused stage's record, measured again where it predates the exact test quality (the
    model is loaded and evaluated, not retrained)."""
    if "n_examples" in record and (not check_fit or "fit_check" in record):
        return record
    with r.strategy.scope():
        model = load_model(stage_dir / MODEL_FILE)
    record = {**record, **quality_.split_quality(r.evaluate(model))}
    if check_fit:
        record["fit_check"] = r.check_fit(model)
    finish_stage(stage_dir, record)
    say(
        r.verbose,
        f"[{record['name']}] measured again with the exact metrics: "
        f"{quality_.quality_text(record)}",
    )
    return record
