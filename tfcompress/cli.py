"""The ``tfcompress`` command.

TensorFlow is imported only by the subcommands that need it, so ``tfcompress --help`` and
``tfcompress --version`` answer at once.

Example:
    $ tfcompress demo --epochs 2
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_log = logging.getLogger("tfcompress")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tfcompress")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from tfcompress import __version__

        return __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train the reference CTR model on the simulated e-commerce world, export, benchmark",
        description=(
            "Train the reference CTR model (DCN-v2) on the simulated e-commerce world, print "
            "its test AUC and logloss, export it (float and dynamic-range TFLite, XLA "
            "SavedModel) and print the side-by-side benchmark."
        ),
    )
    demo.add_argument("--out", type=Path, default=Path("savedmodels/demo"),
                      help="where the exports go (default: savedmodels/demo)")
    demo.add_argument("--samples", type=_positive_int, default=60_000,
                      help="simulated impressions (default: 60000)")
    demo.add_argument("--epochs", type=_positive_int, default=3, help="training epochs")
    demo.add_argument("--model", default="dcn",
                      help="reference model: dcn, wide_deep, lr, transformer (default: dcn)")
    demo.add_argument("--size", default="student", help="model size: student or teacher")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-export", action="store_true",
                      help="only train and evaluate; skip export and benchmark")
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from tfcompress import data, models
    from tfcompress.keras_compat import keras

    out: Path = args.out
    started = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    print(f"tfcompress demo: simulating {args.samples:,} CTR impressions (seed {args.seed})")
    task = data.load_task("ctr", n_samples=args.samples, seed=args.seed, batch_size=512)
    oracle = task.info.get("oracle_auc")
    if oracle is not None:
        print(f"  the simulated world's ceiling (AUC of the true click probability): {oracle:.4f}")

    model = models.build(args.model, task.schema, size=args.size)
    models.compile_for_task(model, task.schema, learning_rate=2e-3)
    print(f"Training {model.name} ({model.count_params():,} parameters) for {args.epochs} epochs")
    model.fit(task.train, validation_data=task.validation, epochs=args.epochs, verbose=1)
    results = model.evaluate(task.test, verbose=0, return_dict=True)
    print(
        f"Test AUC {results['auc']:.4f} | logloss {results['logloss']:.4f} | "
        f"accuracy {results['accuracy']:.4f}"
    )

    if not args.no_export:
        from tfcompress.benchmark import benchmark
        from tfcompress.export import export_saved_model, export_tflite

        out.mkdir(parents=True, exist_ok=True)
        keras_path = out / "ctr.keras"
        model.save(keras_path)
        print(f"Exporting to {out}/")
        calibration = task.validation
        variants: dict[str, object] = {"keras": model}
        for name, mode in (("tflite_float", None), ("tflite_dynamic", "dynamic"),
                           ("tflite_int8", "int8")):
            result = export_tflite(
                model, out / f"ctr_{name.removeprefix('tflite_')}.tflite", quantization=mode,
                representative_data=calibration if mode == "int8" else None,
                parity_data=task.test,
            )
            variants[name] = result.path
            print(f"  {result.path.name:<22} {result.bytes / 1024:9.1f} KiB  "
                  f"max |diff| {result.parity.get('max_abs_diff', float('nan')):.2e}")
        saved = export_saved_model(model, out / "ctr_xla_savedmodel", jit_compile=True,
                                   parity_data=task.test)
        variants["savedmodel_xla"] = saved.path
        print(f"  {saved.path.name:<22} {saved.bytes / 1024:9.1f} KiB  "
              f"max |diff| {saved.parity.get('max_abs_diff', float('nan')):.2e}")
        print("Benchmarking (1 thread; latency in ms)")
        report = benchmark(variants, task.test, baseline="keras")
        report.to_json(out / "benchmark.json")
        print(report.to_markdown())
    print(f"Done in {time.perf_counter() - started:.0f} s")
    return 0


_COMMANDS = {"demo": _cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tfcompress`` command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"tfcompress {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
