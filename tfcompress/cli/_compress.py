"""``tfcompress compress``: the accuracy-aware search (:func:`tfcompress.compress`) on a saved
.keras model and a simulated task or data file.

Example:
    $ tfcompress compress model.keras --data ctr --max-loss 0.002 --objective size --budget 20m
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tfcompress.cli._options import add_data_options, add_import_option, positive_int

# the search's choices and budget parser: tfcompress.search.space imports no TensorFlow, so
# building the parser stays fast
from tfcompress.search.space import METRICS, OBJECTIVES, RULES, RUNTIMES, parse_budget

__all__ = ["METRICS", "OBJECTIVES", "RULES", "RUNTIMES", "add_compress_parser", "run_compress"]


def _budget(text: str) -> float:
    """An ``argparse`` type: seconds from ``"90"``, ``"90s"``, ``"20m"``, ``"1.5h"``."""
    try:
        return float(parse_budget(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration like 90s, 20m or 1.5h, received {text!r}"
        ) from None


def _loss(text: str) -> float:
    """An ``argparse`` type: a tolerated loss in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"expected a tolerated loss in (0, 1], e.g. 0.001, received {text!r}"
        )
    return value


def add_compress_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``compress`` command and its options to ``sub`` (what ``add_subparsers`` returns).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> _ = add_compress_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["compress", "m.keras", "--data", "ctr"]).objective
        'latency'
    """
    p = sub.add_parser(
        "compress",
        help="search for the smallest / fastest export of a .keras model within a quality "
        "tolerance (shrink + distillation, PTQ, QAT)",
        description="Run tfcompress.compress on MODEL: fine-tune candidates on the train split "
        "of --data, judge each on its validation split with a paired 95% CI against the "
        "float export, and choose the best on --objective among those within --max-loss. "
        "Prints the candidates as Markdown and, last, the chosen file's path. Exit status: 0 "
        "when a candidate keeps quality, 1 when none does, 2 on bad input. Candidates are "
        "cached under --out: the same command again resumes.",
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="the .keras file to compress")
    add_import_option(p)
    add_data_options(
        p,
        required=True,
        use="its train split fine-tunes the candidates, its validation split judges them",
        seed_help="data and search seed (default: 0)",
    )
    p.add_argument(
        "--max-loss",
        type=_loss,
        default=0.001,
        help="tolerated loss of --metric (default: %(default)s)",
    )
    p.add_argument("--metric", choices=METRICS, default="auc", help="(default: %(default)s)")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="latency",
        help="what to minimise; latency is at batch 256 (default: %(default)s)",
    )
    p.add_argument(
        "--rule",
        choices=RULES,
        default="ci",
        help="ci: the 95%% CI's worst end of the loss within --max-loss; point: the point "
        "estimate (default: %(default)s)",
    )
    p.add_argument("--runtime", choices=RUNTIMES, default="tflite", help="(default: %(default)s)")
    p.add_argument(
        "--budget",
        type=_budget,
        help="wall-time limit, e.g. 90s, 20m, 1.5h (default: none)",
    )
    p.add_argument(
        "--teacher",
        type=Path,
        help="a .keras model every fine-tune distils from (default: MODEL itself)",
    )
    p.add_argument(
        "--epochs", type=positive_int, default=2, help="epochs per fine-tune (default: 2)"
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=3,
        help="bisection steps on the shrink ratio (default: 3, a resolution of 1/8)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("savedmodels/compress"),
        help="where candidates are exported and cached (default: %(default)s)",
    )
    p.add_argument("--logdir", type=Path, help="log every candidate to TensorBoard's HParams")
    p.add_argument("--json", type=Path, help="also write the result as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the result")
    return p


def run_compress(args: argparse.Namespace) -> int:
    """Run ``tfcompress compress``; 0 when a candidate keeps quality, 1 when none does.

    Example:
        >>> from tfcompress.cli import build_parser
        >>> args = build_parser().parse_args(["compress", "m.keras", "--data", "ctr"])
        >>> run_compress(args)  # doctest: +SKIP
        0
    """
    from tfcompress.cli._commands import interactive, load_data, load_keras

    model = load_keras(args.model, args.imports)
    teacher = load_keras(args.teacher, args.imports) if args.teacher is not None else None
    task = load_data(args)
    if not interactive():  # piped: candidate lines only, no redrawn progress bar (tqdm >= 4.66)
        os.environ.setdefault("TQDM_DISABLE", "1")
    from tfcompress.search import compress

    result = compress(
        model,
        task.train,
        validation_data=task.validation,
        metric=args.metric,
        max_loss=args.max_loss,
        rule=args.rule,
        objective=args.objective,
        runtime=args.runtime,
        budget=args.budget,
        teacher=teacher,
        epochs=args.epochs,
        steps=args.steps,
        output_dir=args.out,
        log_dir=args.logdir,
        progress=not args.quiet,
        seed=args.seed,
    )
    print()
    print(result.to_markdown())
    if result.chosen is not None and getattr(task, "test", None) is not None:
        # the search chose on the validation split: confirm on examples it never saw
        test = result.evaluate(task.test, seed=args.seed)
        within = test.keeps_quality(args.max_loss, args.rule)
        print(
            f"On the test split (never seen by the search): Δ{args.metric} {test} on "
            f"{test.n:,} examples: {'within' if within else 'OUTSIDE'} --max-loss "
            f"{args.max_loss} (rule {args.rule})"
        )
        if not within:
            print(
                "tfcompress compress: the chosen model keeps quality on the validation split "
                "but not on the test split; use more validation examples or a smaller "
                "--max-loss",
                file=sys.stderr,
            )
    if args.json:
        result.save_json(args.json)
        print(f"Wrote {args.json}")
    if result.chosen is None:
        print(
            f"tfcompress compress: {result.none_reason()}; the path below is the float "
            "baseline. Try a larger --max-loss, more --epochs, or more validation examples "
            "(--samples, a larger file) to narrow the CI.",
            file=sys.stderr,
        )
    print(result.path)
    return 0 if result.chosen is not None else 1
