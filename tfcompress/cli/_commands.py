"""The ``demo``, ``run``, ``report``, ``export`` and ``bench`` commands, and how a command reads
its data and models; each imports TensorFlow only when it runs.

Example:
    >>> sorted(COMMANDS)
    ['bench', 'demo', 'export', 'report', 'run']
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "interactive", "load_data", "load_keras", "read_data"]


def load_data(args: argparse.Namespace) -> Any:
    """The TaskData named by --data / --data-format, its summary table printed.

    Example:
        >>> args = build_parser().parse_args(["bench", "m", "--data", "ctr"])  # doctest: +SKIP
        >>> task = load_data(args)  # doctest: +SKIP
    """
    task = read_data(args)
    summary = getattr(task, "summary", None)
    if callable(summary):  # rows, positives and features of what was loaded
        print(str(summary()))
    return task


def read_data(args: argparse.Namespace) -> Any:
    """The TaskData named by --data / --data-format (the same reader as a recipe's [data]).

    Example:
        >>> args = build_parser().parse_args(["bench", "m", "--data", "ctr"])  # doctest: +SKIP
        >>> task = read_data(args)  # doctest: +SKIP
    """
    from tfcompress import data
    from tfcompress.recipe import DataSpec, RecipeError, load_data  # no TFMOT: fast start

    spec, kind = args.data, args.data_format
    if kind == "sim" or (kind == "auto" and spec in data.TASK_NAMES):
        return load_data(DataSpec(task=spec, samples=args.samples, seed=args.seed))
    try:
        file_spec = DataSpec(task=None, path=spec, format=kind, label=args.label, seed=args.seed)
    except RecipeError as err:
        if err.key == "label":
            raise ValueError(
                f"--data {spec!r} is a CSV file: name its label column with --label."
            ) from None
        raise
    return load_data(file_spec)


def load_keras(path: Path, imports: Sequence[str] = ()) -> Any:
    """The tf_keras model in the .keras file ``path`` (safe_mode; our layers, TFMOT's QAT
    classes and the layers of the ``--import`` modules ``imports`` in scope); a clear error for
    another suffix, a Keras 3 or a damaged file, and one naming each layer class nobody
    imported with the ``--import`` to add.

    Example:
        >>> model = load_keras(Path("dcn.keras"), ["tensorflow_recommenders"])  # doctest: +SKIP
    """
    from tfcompress.recipe.model_files import load_model_file

    if path.suffix != ".keras":
        raise ValueError(
            f"MODEL {str(path)!r} must be a .keras file (save your model with "
            "model.save('name.keras'))."
        )
    return load_model_file(path, imports, argument="MODEL")


def _cmd_export(args: argparse.Namespace) -> int:
    from tfcompress.export.tflite import export_saved_model, export_tflite

    model = load_keras(args.model, args.imports)
    task = load_data(args) if args.data else None
    parity = task.test if task else None
    mode = None if args.quantization == "none" else args.quantization
    stem = args.model.stem
    if args.format == "savedmodel":
        if mode is not None:
            raise ValueError(
                f"--quantization {args.quantization} applies to --format tflite only; the "
                "SavedModel is exported in float (use --no-jit to skip XLA)."
            )
        if args.embeddings is not None or args.fuse_embeddings != "auto":
            raise ValueError(
                "--embeddings and --fuse-embeddings apply to --format tflite only; the "
                "SavedModel keeps the model's own tables."
            )
        out = args.output or Path("savedmodels") / f"{stem}_savedmodel"
        result = export_saved_model(model, out, jit_compile=not args.no_jit, parity_data=parity)
    else:
        if mode in ("int8", "int16x8") and task is None:
            raise ValueError(
                f"--quantization {mode} calibrates on data: pass --data (a simulated task name "
                "or a data file)."
            )
        out = args.output or Path("savedmodels") / f"{stem}_{mode or 'float'}.tflite"
        result = export_tflite(
            model,
            out,
            quantization=mode,
            integer_io=args.integer_io,
            embeddings=args.embeddings,
            fuse_embeddings={"auto": None, "on": True, "off": False}[args.fuse_embeddings],
            representative_data=task.validation if task else None,
            parity_data=parity,
            drift=args.drift,
            progress=not args.quiet and interactive(),
        )
    if args.imports:  # what a Python consumer of the source model must import, beside it
        from tfcompress.export.manifest import read_manifest, update_manifest

        entry = read_manifest(result.manifest_path)["artifacts"][result.path.name]
        update_manifest(
            result.manifest_path.parent, result.path.name, {**entry, "imports": args.imports}
        )
    print(f"Wrote {result.path} ({result.bytes:,} bytes, sha256 {result.sha256[:12]}...)")
    for key, value in sorted(result.parity.items()):
        if isinstance(value, float):
            print(f"  parity {key}: {value:.6g}")
    for metric, delta in sorted((result.parity.get("quality_delta") or {}).items()):
        print(f"  {metric} change against the Keras model: {delta:+.4f}")
    if result.parity.get("drift_flag"):
        print(f"  DRIFT: {result.parity['drift_flag']} (see the warning above for what to try)")
    print(f"  manifest: {result.manifest_path}")
    return 0


def interactive() -> bool:
    """Whether stderr is a terminal (progress bars redraw there; piped, they would not)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _cmd_bench(args: argparse.Namespace) -> int:
    from tfcompress.evaluation.benchmarking import benchmark

    variants: dict[str, object] = {}
    for item in args.variants:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).name, item
        if name in variants:
            raise ValueError(f"variant name {name!r} is given twice; use NAME=PATH to rename one.")
        variants[name] = load_keras(Path(path), args.imports) if path.endswith(".keras") else path
    task = load_data(args)
    report = benchmark(
        variants,
        task.test,
        baseline=args.baseline,
        num_threads=args.threads,
        repeats=args.repeats,
        progress=sys.stderr.isatty(),  # no \r when piped
        verify=not args.no_verify,
        profile=args.profile,
        timing=args.timing,
        profile_group=args.profile_group,
    )
    print(report.to_markdown())
    if args.json:
        report.save_json(args.json)
        print(f"Wrote {args.json}")
    return 0


def _run_recipe(recipe, args: argparse.Namespace) -> int:
    from tfcompress.recipe.model_files import import_modules
    from tfcompress.recipe.runner import run

    import_modules(args.imports)  # --import: before the recipe's models are loaded

    report = run(
        recipe,
        out_dir=args.out,
        logdir=args.logdir,
        resume=not args.no_resume,
        verbose=0 if args.quiet else 1,
    )
    print()
    print(report.to_markdown())
    print()
    print(
        f"Artifacts: {report.run_dir}/ (report.md, report.json, {report.plot or 'no plot'}); "
        f"TensorBoard: tensorboard --logdir {report.logdir}"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tfcompress.recipe.demo import demo_recipe

    options = {"seed": args.seed}
    for name in ("samples", "teacher_epochs", "epochs"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    recipe = demo_recipe(**options)
    if args.print_recipe:
        print(recipe.to_toml())
        return 0
    return _run_recipe(recipe, args)


def _cmd_run(args: argparse.Namespace) -> int:
    from tfcompress.recipe.recipes import load_recipe

    return _run_recipe(load_recipe(args.recipe), args)


def _cmd_report(args: argparse.Namespace) -> int:
    from tfcompress.recipe.report import load_report, render_report

    report = render_report(
        load_report(args.run_dir), args.run_dir, metric=args.metric, batch_size=args.batch_size
    )
    print(report.to_markdown())
    print()
    print(
        f"Wrote {args.run_dir / 'report.md'}"
        + (f" and {args.run_dir / report.plot}" if report.plot else "")
    )
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "report": _cmd_report,
    "export": _cmd_export,
    "bench": _cmd_bench,
}
