"""The ``tfcompress`` command; it imports TensorFlow only in the subcommands that need it.

Example:
    $ tfcompress demo --samples 8000 --epochs 1
    $ tfcompress run recipes/demo.toml --logdir runs/
    $ tfcompress report savedmodels/demo
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

_log = logging.getLogger("tfcompress")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tfcompress")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from tfcompress._version import __version__

        return __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("savedmodels"),
        help="the run goes to OUT/<recipe name>/ (default: savedmodels)",
    )
    p.add_argument(
        "--logdir", type=Path, help="TensorBoard log directory (default: OUT/<recipe name>/logs)"
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="run every stage again instead of reusing finished ones",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output, only the report")


def _add_traceback(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument(
        "--traceback",
        action="store_true",
        default=default,
        help="on an error, print the full traceback (default: one line and the last frames)",
    )


def demo_defaults() -> dict[str, Any]:
    """The keyword defaults of :func:`tfcompress.recipe.demo_recipe`, read from its source.

    ``demo --help`` shows them without importing the recipe module (which loads TensorFlow).

    Example:
        >>> demo_defaults()["seed"]
        0
    """
    # the file, found without importing tfcompress.recipe.demo (it imports TensorFlow)
    spec = importlib.util.find_spec("tfcompress")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - broken install
        return {}
    source = Path(list(spec.submodule_search_locations)[0]) / "recipe" / "demo.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "demo_recipe":
            args = node.args
            return {
                a.arg: ast.literal_eval(d)
                for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                if d is not None
            }
    return {}  # pragma: no cover - demo_recipe renamed; the test of the defaults catches it


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfcompress",
        description=(
            "Compress tf_keras e-commerce models (pruning, quantization-aware training, "
            "distillation) and ship them to TFLite and XLA SavedModels."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tfcompress {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log tfcompress' progress at INFO level"
    )
    _add_traceback(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    defaults = demo_defaults()

    demo = sub.add_parser(
        "demo",
        help="the default recipe on the simulated CTR task: teacher -> distill -> prune -> QAT "
        "-> export -> benchmark",
        description=(
            "Run the default recipe on the simulated e-commerce CTR task: train a "
            "behaviour-sequence transformer teacher, distill it into a small DCN student, prune "
            "it, fine-tune it with quantization-aware training, export an int8 TFLite file and an "
            "XLA-compiled SavedModel, and print the benchmark of every stage against the "
            "teacher's float TFLite. Finished stages are reused when run again."
        ),
    )
    demo.add_argument(
        "--samples",
        type=_positive_int,
        default=defaults.get("samples"),
        help="simulated CTR impressions (default: %(default)s)",
    )
    demo.add_argument(
        "--teacher-epochs",
        type=_positive_int,
        default=defaults.get("teacher_epochs"),
        help="most epochs of teacher training; the best by validation AUC is kept "
        "(default: %(default)s)",
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=defaults.get("epochs"),
        help="fine-tune epochs of the prune and quantize stages; distillation gets "
        "2 * EPOCHS + 2 (default: %(default)s)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=defaults.get("seed"),
        help="data and run seed (default: %(default)s)",
    )
    demo.add_argument(
        "--print-recipe",
        action="store_true",
        help="print the demo recipe as TOML (a starting point for your own) and exit",
    )
    add_run_options(demo)

    run = sub.add_parser(
        "run",
        help="run a recipe (TOML or YAML): stages, exports, benchmark, report",
        description="Run the stages of RECIPE in order (each cached and resumable under "
        "OUT/<recipe name>/), export, benchmark, and write report.md, report.json and "
        "tradeoff.png there.",
    )
    run.add_argument("recipe", type=Path, metavar="RECIPE", help="a .toml, .yaml or .yml recipe")
    add_run_options(run)

    report = sub.add_parser(
        "report",
        help="re-render the report (Markdown, JSON, trade-off plot) of a finished run",
        description="Read RUN_DIR/report.json, write report.md and tradeoff.png again, print the "
        "Markdown.",
    )
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--metric", help="quality metric of the plot (default: auc or accuracy)")
    report.add_argument(
        "--batch-size",
        type=_positive_int,
        help="batch size of the latency panel (default: the largest measured)",
    )

    def add_data_options(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument(
            "--data",
            required=required,
            metavar="TASK_OR_FILE",
            help="a simulated task (ctr, retrieval, profile) or a data file (.csv, libFM/libFFM "
            "text, MovieLens ratings); the test split is used for parity/benchmark and the "
            "validation split for calibration",
        )
        p.add_argument(
            "--data-format",
            default="auto",
            choices=("auto", "sim", "csv", "libfm", "movielens"),
            help="how to read --data (default: by name / suffix)",
        )
        p.add_argument("--label", help="label column of a CSV file")
        p.add_argument(
            "--samples",
            type=_positive_int,
            default=20_000,
            help="samples of a simulated task (default: 20000)",
        )
        p.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")

    export = sub.add_parser(
        "export",
        help="export a .keras model to TFLite or an XLA SavedModel, with a parity check",
        description="Export a saved .keras model (loaded with safe_mode=True) to TFLite or an "
        "XLA-compiled SavedModel; writes manifest.json beside it.",
    )
    export.add_argument("model", type=Path, help="the .keras file to export")
    export.add_argument("--format", choices=("tflite", "savedmodel"), default="tflite")
    export.add_argument(
        "--quantization",
        default="none",
        choices=("none", "dynamic", "int8", "float16", "int16x8"),
        help="TFLite quantization mode (default: none = float32)",
    )
    export.add_argument(
        "--integer-io", action="store_true", help="int8/int16x8: integer float inputs/outputs"
    )
    export.add_argument(
        "--drift",
        choices=("warn", "error", "ignore"),
        default="warn",
        help="quantized TFLite: what to do when the output or quality drifts "
        "beyond tolerance (default: warn)",
    )
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.add_argument(
        "--no-jit", action="store_true", help="SavedModel: do not XLA-compile the serving function"
    )
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        help="target file/directory (default: savedmodels/<model>_<mode>...)",
    )
    add_data_options(export, required=False)

    bench = sub.add_parser(
        "bench",
        help="benchmark models side by side: quality, bytes, latency, memory",
        description="Measure each VARIANT (a .keras file, a SavedModel directory or a .tflite "
        "file, optionally as NAME=PATH) on the same data in one run.",
    )
    bench.add_argument("variants", nargs="+", metavar="VARIANT")
    bench.add_argument("--baseline", help="variant the ratios are against (default: the first)")
    bench.add_argument(
        "--threads", type=_positive_int, default=1, help="threads per variant (default: 1)"
    )
    bench.add_argument(
        "--repeats", type=_positive_int, default=50, help="timed runs per batch size (default: 50)"
    )
    bench.add_argument(
        "--no-verify",
        action="store_true",
        help="load .tflite/SavedModel files whose sha256 no longer matches their "
        "manifest.json (with a warning) instead of refusing them",
    )
    bench.add_argument("--json", type=Path, help="also write the report as JSON here")
    add_data_options(bench, required=True)
    for command in sub.choices.values():  # also after the command: tfcompress run R --traceback
        _add_traceback(command, argparse.SUPPRESS)
    return parser


def _load_data(args: argparse.Namespace):
    """The TaskData named by --data / --data-format, its summary table printed."""
    task = _read_data(args)
    summary = getattr(task, "summary", None)
    if callable(summary):  # rows, positives and features of what was loaded
        print(str(summary()))
    return task


def _read_data(args: argparse.Namespace):
    """The TaskData named by --data / --data-format (the same reader as a recipe's [data])."""
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


def _load_keras(path: Path):
    import tfcompress.models  # noqa: F401  (registers the custom layers for safe_mode loading)
    from tfcompress._keras import check_keras_file
    from tfcompress.quantization.qat import load_quantized

    if path.suffix != ".keras":
        raise ValueError(
            f"MODEL {str(path)!r} must be a .keras file (save your model with "
            "model.save('name.keras'))."
        )
    check_keras_file(path, argument="MODEL")  # a Keras 3 or damaged file: a clear error
    return load_quantized(path)  # safe_mode, with TFMOT's QAT classes in scope


def _cmd_export(args: argparse.Namespace) -> int:
    from tfcompress.export.tflite import export_saved_model, export_tflite

    model = _load_keras(args.model)
    task = _load_data(args) if args.data else None
    parity = task.test if task else None
    mode = None if args.quantization == "none" else args.quantization
    stem = args.model.stem
    if args.format == "savedmodel":
        if mode is not None:
            raise ValueError(
                f"--quantization {args.quantization} applies to --format tflite only; the "
                "SavedModel is exported in float (use --no-jit to skip XLA)."
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
            representative_data=task.validation if task else None,
            parity_data=parity,
            drift=args.drift,
            progress=not args.quiet and _interactive(),
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


def _interactive() -> bool:
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
        variants[name] = _load_keras(Path(path)) if path.endswith(".keras") else path
    task = _load_data(args)
    report = benchmark(
        variants,
        task.test,
        baseline=args.baseline,
        num_threads=args.threads,
        repeats=args.repeats,
        progress=sys.stderr.isatty(),  # no \r when piped
        verify=not args.no_verify,
    )
    print(report.to_markdown())
    if args.json:
        report.save_json(args.json)
        print(f"Wrote {args.json}")
    return 0


def _run_recipe(recipe, args: argparse.Namespace) -> int:
    from tfcompress.recipe.runner import run

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


_COMMANDS = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "report": _cmd_report,
    "export": _cmd_export,
    "bench": _cmd_bench,
}


#: frames shown under a one-line error (``--traceback`` shows them all)
ERROR_FRAMES = 3
#: errors in what the user gave (arguments, recipe, files, sizes, the output path): exit status
#: 2; anything else 1
USER_ERRORS = (ValueError, TypeError, OSError, MemoryError, OverflowError, RecursionError)
#: errors printed without their type name (their message says it all)
_PLAIN_ERRORS = (ValueError, TypeError, FileNotFoundError)
#: what to try, after the message of an error that rarely says it
_HINTS = (
    (
        MemoryError,
        "out of memory: reduce the sizes asked for (samples, batch size, vocabulary, model size)",
    ),
    (RecursionError, "the input is nested too deeply (or refers to itself): simplify it"),
    (OverflowError, "a number is too large: check the sizes and ids in the input"),
    (
        OSError,
        "check the path exists, is of the right kind and is readable (or writable for an output)",
    ),
)


def _where(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    parts = path.parts
    if "tfcompress" in parts:  # the package's own files, from the package directory
        path = Path(*parts[len(parts) - 1 - parts[::-1].index("tfcompress") :])
    elif "site-packages" in parts:
        path = Path(*parts[parts.index("site-packages") + 1 :])
    return f"{path.as_posix()}:{frame.lineno} in {frame.name}"


def error_lines(err: BaseException, frames: int = ERROR_FRAMES) -> list[str]:
    """``"  at FILE:LINE in FUNCTION"`` for the last ``frames`` frames of where ``err`` was
    raised (innermost last), and the innermost tfcompress frame when it is not among them.

    Example:
        >>> try:
        ...     int("x")
        ... except ValueError as e:
        ...     error_lines(e)[-1].startswith("  at ")
        True
    """
    stack = traceback.extract_tb(err.__traceback__)
    shown = list(stack[-frames:])
    ours = [
        f
        for f in stack
        if "tfcompress" in Path(f.filename).parts and Path(f.filename).name != "cli.py"
    ]
    if ours and ours[-1] not in shown:
        shown = [ours[-1], *shown]
    return [f"  at {_where(f)}" for f in shown]


#: lines and characters of an error message printed (``--traceback`` shows all of it)
ERROR_LINES, ERROR_CHARS = 40, 4000


def message_lines(err: BaseException) -> list[str]:
    """The message of ``err`` as the lines ``tfcompress`` prints under ``error:``.

    A one-line message stays one line; a message of several lines (a recipe listing several
    problems, a worker's log tail) keeps its lines, blank ones dropped, each line and the whole
    bounded (:data:`ERROR_LINES`, :data:`ERROR_CHARS`) with a note of what was left out. The
    type name leads unless the error is a plain ``ValueError`` / ``TypeError`` /
    ``FileNotFoundError``; a hint of what to try follows the first line of a resource error.

    Example:
        >>> message_lines(RuntimeError("2 workers failed:\\n- worker 0\\n- worker 1"))
        ['RuntimeError: 2 workers failed:', '- worker 0', '- worker 1']
    """
    kind = "" if isinstance(err, _PLAIN_ERRORS) or not str(err) else f"{type(err).__name__}: "
    lines = [ln.rstrip() for ln in (str(err) or type(err).__name__).splitlines() if ln.strip()]
    lines = lines or [type(err).__name__]
    shown, size = [], 0
    for line in lines[:ERROR_LINES]:
        if size + len(line) > ERROR_CHARS and shown:
            break
        shown.append(line[:ERROR_CHARS])
        size += len(shown[-1])
    if len(shown) < len(lines):
        shown.append(f"... {len(lines) - len(shown):,} more lines (--traceback shows them all)")
    if len(lines[0]) > ERROR_CHARS:
        shown[0] += " ... (cut; --traceback shows all of it)"
    hint = (
        None
        if isinstance(err, _PLAIN_ERRORS)
        else next((h for t, h in _HINTS if isinstance(err, t)), None)
    )
    shown[0] = f"{kind}{shown[0]}" + (f" ({hint})" if hint else "")
    return shown


def _report_error(command: str, err: BaseException, full: bool) -> None:
    first, *more = message_lines(err)
    print(f"tfcompress {command}: error: {first}", file=sys.stderr)
    for line in more:  # indented under the first line, deeper than the "  at" frames below
        print(f"    {line}", file=sys.stderr)
    if full:
        traceback.print_exception(err, file=sys.stderr)
        return
    for line in error_lines(err):
        print(line, file=sys.stderr)
    print("  (run again with --traceback for the full traceback)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tfcompress`` command line; returns the exit status.

    Example:
        >>> main(["demo", "--print-recipe"])  # doctest: +SKIP
        0
    """
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:  # before any command loads TensorFlow
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if args.command in ("run", "demo"):
            print(
                f"tfcompress {args.command}: interrupted; run the same command again to resume "
                "at the stage (and epoch) that was running.",
                file=sys.stderr,
            )
        return 130
    except Exception as err:  # every failure: one line and where it came from
        _report_error(args.command, err, args.traceback)
        return 2 if isinstance(err, USER_ERRORS) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
