"""The stages of a recipe run: the shared :class:`RunState` (fit with early stopping,
TensorBoard and resume; fine-tuning with the teacher) and one function per stage kind, each
``(state, stage, model, stage_dir) -> (model, info)``. :func:`tfcompress.recipe.run` calls them.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfcompress import models
from tfcompress._keras import keras
from tfcompress.callbacks.tensorboard import CompressionTensorBoard
from tfcompress.data.epochs import epoch_batches
from tfcompress.distillation.distiller import Distiller
from tfcompress.pruning.pruner import PruningCallback, prune, strip
from tfcompress.pruning.shrinking import shrink
from tfcompress.quantization.qat import quantize
from tfcompress.recipe import _quality as quality_
from tfcompress.recipe._cache import load_model, save_model, say
from tfcompress.recipe._seeds import EpochSeeds
from tfcompress.recipe.recipes import ModelSpec, Recipe

__all__ = ["STAGES", "RunState", "distill_student", "train_input"]


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
class RunState:
    """Everything the stages of one run share (the run's recipe, data, strategy, teacher...)."""

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
            student_loss_weight=distill.student_loss_weight,
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
            f"(student_loss_weight {distill.student_loss_weight}, "
            f"temperature {distill.temperature})",
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


def train_input(r: RunState, name: str, stage_dir: Path) -> tuple[keras.Model, dict[str, Any]]:
    spec = r.recipe.model
    with r.strategy.scope():
        model = r.build(spec, r.seed)
        resumed = None
        if spec.epochs:
            models.compile_for_task(model, r.task.schema, learning_rate=spec.learning_rate)
            say(r.verbose, f"[{name}] {model.name}: {model.count_params():,} parameters")
            resumed = r.fit(model, stage_dir, name, spec.epochs)
    return model, {"resumed_from_epoch": resumed}


def distill_student(
    r: RunState, stage: Any, teacher: keras.Model, stage_dir: Path, seed: int
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
    r: RunState, stage: Any, model: keras.Model, stage_dir: Path
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
    r: RunState, stage: Any, model: keras.Model, stage_dir: Path
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
    r: RunState, stage: Any, model: keras.Model, stage_dir: Path
) -> tuple[keras.Model, dict[str, Any]]:
    with r.strategy.scope():
        qat = quantize(
            model, scheme=stage.scheme, layers=_filter(stage.layers), skip=_filter(stage.skip)
        )
        resumed = r.fine_tune(qat, stage, stage_dir)
    return qat, {"resumed_from_epoch": resumed}


def _auto(
    r: RunState, stage: Any, model: keras.Model, stage_dir: Path
) -> tuple[keras.Model, dict[str, Any]]:
    """:func:`tfcompress.compress` of ``model``; hands ``model`` on unchanged (its chosen
    export is the stage's artifact, a benchmark variant of the run)."""
    from tfcompress.search.accuracy_aware import compress

    teacher = None
    if r.teacher is not None:
        with r.strategy.scope():
            teacher = load_model(r.teacher[0])
    say(
        r.verbose,
        f"[{stage.name}] compress: max loss {stage.max_loss} {stage.metric} (rule "
        f"{stage.rule}), objective {stage.objective}, distilling from "
        + (teacher.name if teacher is not None else "the model itself"),
    )
    result = compress(
        model,
        r.task.train,
        validation_data=r.task.validation,
        metric=stage.metric,
        max_loss=stage.max_loss,
        rule=stage.rule,
        objective=stage.objective,
        runtime=stage.runtime,
        budget=stage.budget,
        teacher=teacher,
        epochs=stage.epochs,
        learning_rate=stage.learning_rate or r.recipe.model.learning_rate,
        steps=stage.steps,
        student_loss_weight=stage.student_loss_weight,
        batch_size=r.recipe.data.batch_size,
        strategy=r.strategy,
        # the candidates' cache: outside the stage directory, so a changed max_loss / rule /
        # objective (a new stage key) re-judges the stored candidates instead of rebuilding
        output_dir=r.run_dir / "compress",
        # its own HParams experiment beside the run's logs: TensorBoard reads one experiment
        # per logdir, and the run's (one session per benchmark variant) is in <logdir>/hparams
        log_dir=r.logdir.with_name(f"{r.logdir.name}_{stage.name}"),
        repeats=r.recipe.benchmark.repeats,
        progress=bool(r.verbose),
        seed=r.seed,
    )
    source = Path(result.path)
    if source.is_dir():
        chosen = "chosen"
        shutil.copytree(source, stage_dir / chosen, dirs_exist_ok=True)
    else:
        chosen = "chosen" + source.suffix
        shutil.copyfile(source, stage_dir / chosen)
    result.save_json(stage_dir / "compress.json")
    # the chosen export against the float baseline of the search, paired, on the test split
    test = result.evaluate(r.task.test, seed=r.seed)
    auto = {
        "chosen": None if result.chosen is None else result.chosen.name,
        "path": chosen,
        "ratios": _plain(result.ratios()),
        "validation": result.chosen.difference.to_dict() if result.chosen else None,
        "test": test.to_dict(),
        "keeps_quality_on_test": bool(test.keeps_quality(stage.max_loss, rule=stage.rule)),
        "max_loss": stage.max_loss,
        "metric": stage.metric,
        "candidates": len(result.candidates),
        "kept": sum(1 for c in result.candidates if c.accepted and c.path),
        "objective": stage.objective,
        "trained": result.trained,
        "seconds": round(result.seconds, 1),
        "stopped": result.stopped,
        "table": result.to_markdown(),
    }
    say(r.verbose, f"[{stage.name}] chosen {auto['chosen']}: test Δ{stage.metric} {test}")
    return model, {"resumed_from_epoch": None, "auto": auto}


def _plain(value: Any) -> Any:
    """JSON types (batch-size keys as strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


#: the fine-tuning stages by kind: ``fn(state, stage, model, stage_dir) -> (model, info)``
STAGES = {"prune": _prune, "shrink": _shrink, "quantize": _quantize, "auto": _auto}


def _filter(names: Sequence[str] | None) -> list[str] | None:
    return None if names is None else list(names)
