"""Run a recipe: :func:`tfcompress.run` trains the input model, runs each stage, exports,
benchmarks and reports, caching every step and resuming where it stopped (what it writes and
when it reuses a stage: docs/recipes.md).

Example:
    >>> import tfcompress
    >>> report = tfcompress.run("recipes/demo.toml")  # doctest: +SKIP
    >>> print(report.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfcompress._keras import keras
from tfcompress._version import __version__
from tfcompress.callbacks.tensorboard import (
    log_hparams,
    log_stage_summary,
    log_text,
)
from tfcompress.distribute.strategy import get_strategy
from tfcompress.export.manifest import atomic_write_text
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
from tfcompress.recipe._data import load_data
from tfcompress.recipe._export import benchmark_all, export_all, plan_exports
from tfcompress.recipe._seeds import stage_seed
from tfcompress.recipe.model_files import import_modules
from tfcompress.recipe.recipes import Recipe, load_recipe
from tfcompress.recipe.report import RunReport, StageResult, render_report
from tfcompress.recipe.stages import STAGES, RunState, distill_student, train_input

_log = logging.getLogger("tfcompress")

__all__ = ["load_data", "run"]

MODEL_FILE = "model.keras"
#: strategies ``run`` can drive from one process
RUN_STRATEGIES = ("default", "auto", "mirrored")


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
    # [model] imports: the packages that register the layers of the models this run loads
    import_modules(recipe.model.imports, "[model] imports")

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
    r = RunState(recipe, run_dir, logdir, task, strategy, verbose, callbacks)
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
        *(digests.get(v.source, str(v.source)) for v in plan),
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


def _run_stages(
    r: RunState, input_hash: str
) -> tuple[list[StageResult], list[str], dict[Path, str]]:
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
                auto=_auto_result(record.get("auto"), stage_dir),
            )
        )
    return results, warnings, digests


def _auto_result(auto: dict[str, Any] | None, stage_dir: Path) -> dict[str, Any] | None:
    """An auto stage's summary for the report, its export's path relative to the run."""
    if auto is None:
        return None
    return {**auto, "path": f"{stage_dir.name}/{auto['path']}"}


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
    r: RunState,
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
        out, info = train_input(r, name, stage_dir)
    elif kind == "distill":
        out, info = distill_student(r, stage, model, stage_dir, r.seed)
    else:
        out, info = STAGES[kind](r, stage, model, stage_dir)
    seconds = round(time.perf_counter() - t0, 1)
    measured = r.evaluate(out)
    files = {MODEL_FILE: save_model(out, stage_dir / MODEL_FILE)}
    extra = info.get("extra", {})
    files.update({rel: sha256_file(stage_dir / rel) for rel in extra.values()})
    auto = info.get("auto")
    if auto is not None and (stage_dir / auto["path"]).is_file():  # an auto stage's export
        files[auto["path"]] = sha256_file(stage_dir / auto["path"])
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
        **({"auto": auto} if auto is not None else {}),
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
    r: RunState, record: dict[str, Any], stage_dir: Path, check_fit: bool
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
