"""The export and benchmark steps of :func:`tfcompress.run`, cached like the stages
(``exports/exports.json`` keeps each variant's file and parity figures).

Example:
    >>> [v.name for v in plan_exports(recipe, run_dir, results)]  # doctest: +SKIP
    ['distill_alone_float', 'teacher_float', 'distill_float', 'quantize_int8', 'quantize_xla']
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tfcompress._keras import keras
from tfcompress.evaluation.report import BenchmarkReport
from tfcompress.export.manifest import atomic_write_text
from tfcompress.recipe._cache import load_model, read_json, say
from tfcompress.recipe.recipes import Recipe
from tfcompress.recipe.report import StageResult

_log = logging.getLogger("tfcompress")

EXPORTS = "exports"
#: the parity figures of an export that the run report keeps
PARITY_KEYS = (
    "examples",
    "max_abs_diff",
    "metric",
    "keras_quality",
    "export_quality",
    "quality_delta",
    "drift_flag",
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One export of a run: its name, the stage it comes from, its source model and mode."""

    name: str
    stage: str
    kind: str
    source: Path  # the stage's .keras file
    mode: str  # a TFLite mode, "xla" or "savedmodel"


def plan_exports(recipe: Recipe, run_dir: Path, results: list[StageResult]) -> list[Variant]:
    """Every stage's float TFLite (reference models first), then the final stage's modes."""
    spec, final = recipe.export, results[-1]
    plan: list[Variant] = []
    for s in results:  # in stage order; a stage's reference models (distill_alone) first
        for extra, rel in s.extra.items():
            plan.append(Variant(f"{extra}_float", s.name, s.kind, run_dir / rel, "float"))
        if s.auto:  # the search's chosen export; the stage's model is its input's (no _float)
            chosen = run_dir / s.auto["path"]
            plan.append(Variant(f"{s.name}_chosen", s.name, s.kind, chosen, "auto"))
        elif s is not final:
            plan.append(Variant(f"{s.name}_float", s.name, s.kind, run_dir / s.path, "float"))
    for mode in spec.tflite:
        plan.append(
            Variant(f"{final.name}_{mode}", final.name, final.kind, run_dir / final.path, mode)
        )
    if spec.saved_model:
        mode = "xla" if spec.jit_compile else "savedmodel"
        plan.append(
            Variant(f"{final.name}_{mode}", final.name, final.kind, run_dir / final.path, mode)
        )
    return plan


def _parity(parity: dict[str, Any]) -> dict[str, Any]:
    """The report's figures; ``quality_delta`` (``{metric: export - Keras}``) as the number of
    the parity's metric."""
    kept = {k: parity.get(k) for k in PARITY_KEYS}
    delta = kept["quality_delta"]
    if isinstance(delta, dict):
        kept["quality_delta"] = delta.get(kept["metric"], next(iter(delta.values()), None))
    return kept


def _export_line(
    index: int, total: int, v: Variant, size: int, parity: dict[str, Any], seconds: float
) -> str:
    line = (
        f"[export] {index}/{total} {v.name} ({v.mode}): {size / 1024:.1f} KiB, parity max "
        f"|diff| {parity.get('max_abs_diff', float('nan')):.2e}"
    )
    if parity.get("quality_delta") is not None:
        line += f", Δ{parity.get('metric') or 'quality'} {parity['quality_delta']:+.4f}"
    line += f" ({seconds:.0f} s)"
    if parity.get("drift_flag"):
        line += f"  ⚠ drift: {parity['drift_flag']}"
    return line


def export_all(
    r: Any, plan: list[Variant], key: str, resume: bool
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Export every variant of ``plan`` (or reuse the exports of the same key).

    Returns:
        ``(variant -> path relative to the run directory, variant -> parity figures)``.
    """
    from tfcompress.export.tflite import export_saved_model, export_tflite
    from tfcompress.quantization.qat import is_quantized, strip_quantization

    out = r.run_dir / EXPORTS
    record = read_json(out / "exports.json")
    if (
        resume
        and record
        and record.get("key") == key
        and all((r.run_dir / p).exists() for p in record["variants"].values())
    ):
        say(r.verbose, f"[export] reused {len(record['variants'])} export(s) in {out}")
        return dict(record["variants"]), dict(record.get("parity", {}))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    variants: dict[str, str] = {}
    parities: dict[str, dict[str, Any]] = {}
    loaded: dict[Path, keras.Model] = {}
    test_examples = r.test_examples()
    for index, v in enumerate(plan, 1):
        t0 = time.perf_counter()
        if v.mode == "auto":  # exported by the auto stage already: copied, parity measured there
            target = out / (f"{v.name}{v.source.suffix}" if v.source.is_file() else v.name)
            copy = shutil.copyfile if v.source.is_file() else shutil.copytree
            copy(v.source, target)
            variants[v.name] = str(target.relative_to(r.run_dir))
            say(r.verbose, f"[export] {index}/{len(plan)} {v.name}: the auto stage's export")
            continue
        if v.source not in loaded:
            with r.strategy.scope():
                loaded[v.source] = load_model(v.source)
        model = loaded[v.source]
        # parity and its quality delta on the whole test split, like the stage table
        common = {"parity_data": r.task.test, "parity_max_examples": test_examples}
        if v.mode in ("xla", "savedmodel"):
            plain = strip_quantization(model) if is_quantized(model) else model
            result = export_saved_model(plain, out / v.name, jit_compile=v.mode == "xla", **common)
        else:
            mode = None if v.mode == "float" else v.mode
            # a QAT model has trained ranges, but tensors outside them (lookups, pooling) are
            # calibrated on the data: 3x closer to the QAT model than the converter's default
            calibrate = mode in ("int8", "int16x8")
            result = export_tflite(
                model,
                out / f"{v.name}.tflite",
                quantization=mode,
                representative_data=r.task.validation if calibrate else None,
                **common,
            )
        parities[v.name] = _parity(result.parity)
        say(
            r.verbose,
            _export_line(
                index, len(plan), v, result.bytes, parities[v.name], time.perf_counter() - t0
            ),
        )
        variants[v.name] = str(result.path.relative_to(r.run_dir))
    atomic_write_text(
        out / "exports.json",
        json.dumps({"key": key, "variants": variants, "parity": parities}, indent=2),
    )
    return variants, parities


def interactive() -> bool:
    """True when progress bars can redraw in place (stderr is a terminal)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def benchmark_all(
    r: Any, variants: dict[str, str], key: str, resume: bool
) -> tuple[BenchmarkReport, bool]:
    """The benchmark of the exports, and whether it was measured now (False: reused)."""
    from tfcompress._keras import tf
    from tfcompress.evaluation.benchmarking import benchmark

    spec = r.recipe.benchmark
    path = r.run_dir / "benchmark.json"
    record = read_json(path)
    if resume and record and record.get("key") == key:
        say(r.verbose, "[benchmark] reused the measurements of the previous run")
        return BenchmarkReport.from_dict(record["report"]), False
    tf_threads = tf.config.threading.get_intra_op_parallelism_threads()
    say(
        r.verbose,
        f"[benchmark] {len(variants)} variant(s), batch sizes "
        f"{list(spec.batch_sizes)}; TFLite with {spec.threads} thread(s) (timing "
        f"{spec.timing}), SavedModels "
        f"with TensorFlow's pool as training left it ("
        f"{tf_threads or 'all'} intra-op thread(s))",
    )
    report = benchmark(
        {n: str(r.run_dir / p) for n, p in variants.items()},
        r.task.test,
        baseline=next(iter(variants)),
        batch_sizes=spec.batch_sizes,
        repeats=spec.repeats,
        num_threads=spec.threads,
        max_examples=spec.max_examples,
        timing=spec.timing,
        measure_memory=False,
        progress=bool(r.verbose) and interactive(),
    )
    atomic_write_text(path, json.dumps({"key": key, "report": report.to_dict()}, indent=2))
    return report, True
