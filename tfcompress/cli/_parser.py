"""The ``tfcompress`` argument parser: every command and option, without importing TensorFlow.

Example:
    >>> build_parser().parse_args(["report", "savedmodels/demo"]).command
    'report'
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
from pathlib import Path
from typing import Any

from tfcompress.cli._compress import add_compress_parser
from tfcompress.cli._options import add_data_options, add_import_option, positive_int

__all__ = ["add_run_options", "build_parser", "demo_defaults"]

#: ``bench --timing`` (``tfcompress.evaluation.TIMINGS``, pinned by a test: the parser
#: imports no TensorFlow)
TIMING_CHOICES = ("invoke", "call")
#: ``bench --profile-group`` (``tfcompress.evaluation.profile.GROUPS``, pinned by a test)
PROFILE_GROUP_CHOICES = ("op", "node", "layer")
#: ``export --embeddings`` (``tfcompress.quantization.embedding.EMBEDDING_MODES``, pinned by a
#: test: the parser imports no TensorFlow)
EMBEDDING_CHOICES = ("float", "int8", "int8_row", "int8_tensor", "int4", "int4_compact")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tfcompress")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from tfcompress._version import __version__

        return __version__


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
    add_import_option(p)


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


def build_parser() -> argparse.ArgumentParser:
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
        help="the default recipe on the simulated CTR task: teacher -> distill -> auto "
        "(compress) -> prune -> QAT -> export -> benchmark",
        description=(
            "Run the default recipe on the simulated e-commerce CTR task: train a "
            "behaviour-sequence transformer teacher, distill it into a small DCN student, "
            "compress the student accuracy-aware (tfcompress.compress: the fastest export "
            "within 0.002 AUC, judged by a paired 95% CI), then by hand prune it, fine-tune it "
            "with quantization-aware training, export an int8 TFLite file and an XLA-compiled "
            "SavedModel, and print the benchmark of every stage against the teacher's float "
            "TFLite, ending with the search's candidates. Finished stages are reused when run "
            "again."
        ),
    )
    demo.add_argument(
        "--samples",
        type=positive_int,
        default=defaults.get("samples"),
        help="simulated CTR impressions (default: %(default)s)",
    )
    demo.add_argument(
        "--teacher-epochs",
        type=positive_int,
        default=defaults.get("teacher_epochs"),
        help="most epochs of teacher training; the best by validation AUC is kept "
        "(default: %(default)s)",
    )
    demo.add_argument(
        "--epochs",
        type=positive_int,
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
        type=positive_int,
        help="batch size of the latency panel (default: the largest measured)",
    )

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
        "--embeddings",
        choices=EMBEDDING_CHOICES,
        default=None,
        help="TFLite: how embedding tables are stored (default: int8 in the dynamic/int8/int16x8 "
        "modes, float otherwise; int4_compact: 4-bit codes and a 1-byte scale a row)",
    )
    export.add_argument(
        "--fuse-embeddings",
        choices=("auto", "on", "off"),
        default="auto",
        help="TFLite: one gather for all tables of a width (auto: where measured faster)",
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
    add_import_option(export)

    bench = sub.add_parser(
        "bench",
        help="benchmark models side by side: quality, bytes, latency, memory",
        description="Measure each VARIANT (a .keras file, a SavedModel directory or a .tflite "
        "file, optionally as NAME=PATH) on the same data in one run.",
    )
    bench.add_argument("variants", nargs="+", metavar="VARIANT")
    bench.add_argument("--baseline", help="variant the ratios are against (default: the first)")
    bench.add_argument(
        "--threads", type=positive_int, default=1, help="threads per variant (default: 1)"
    )
    bench.add_argument(
        "--repeats", type=positive_int, default=50, help="timed runs per batch size (default: 50)"
    )
    bench.add_argument(
        "--timing",
        choices=TIMING_CHOICES,
        default="invoke",
        help="what a .tflite latency measures: invoke() with the inputs set, as a native server "
        "runs it (default), or the Python call (inputs and outputs copied: ~3 us more a call)",
    )
    bench.add_argument(
        "--no-verify",
        action="store_true",
        help="load .tflite/SavedModel files whose sha256 no longer matches their "
        "manifest.json (with a warning) instead of refusing them",
    )
    bench.add_argument(
        "--profile",
        action="store_true",
        help="also profile each variant per op (LiteRT's profiler for .tflite, TensorFlow's "
        "otherwise) and report its share of this machine's measured GEMM peak",
    )
    bench.add_argument(
        "--profile-group",
        choices=PROFILE_GROUP_CHOICES,
        default="op",
        help="--profile rows: one per op type (default), per TFLite node, or per Keras layer",
    )
    bench.add_argument("--json", type=Path, help="also write the report as JSON here")
    add_data_options(bench, required=True)
    add_import_option(bench)
    add_compress_parser(sub)
    for command in sub.choices.values():  # also after the command: tfcompress run R --traceback
        _add_traceback(command, argparse.SUPPRESS)
    return parser
