"""Parity of an exported artifact with its Keras model: :func:`measure_parity`, the float check
(:class:`ParityError`) and the drift flag of quantized exports (:data:`DRIFT_TOLERANCES`; why these
values: docs/export.md).

Example:
    >>> drift_flag({"max_abs_diff": 0.3, "p99_abs_diff": 0.2, "mean_abs_diff": 0.01,
    ...             "output_scale": 1.0, "quality_delta": {"auc": -0.16}})
    'ΔAUC -0.160 > tolerance 0.005; p99 |diff| 0.2 > tolerance 0.1'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress.export.metrics import infer_task, quality
from tfcompress.export.runtime import (
    RANDOM_BATCH_SIZE,
    Variant,
    collect_examples,
    load_variant,
    model_input_specs,
    random_batch,
)

_log = logging.getLogger("tfcompress")

__all__ = [
    "DRIFT_MODES",
    "DRIFT_TOLERANCES",
    "DriftError",
    "ParityError",
    "check_drift_mode",
    "check_drift_tolerances",
    "check_float_parity",
    "drift_flag",
    "measure_parity",
    "report_drift",
]

#: ``export_tflite(drift=...)`` values.
DRIFT_MODES = ("warn", "error", "ignore")

#: When a quantized export is flagged (see the module docstring for the measurements):
#: ``p99_abs_diff`` / ``mean_abs_diff`` of the outputs (divided by ``output_scale``, the largest
#: output magnitude when above 1) and the loss of each quality metric (Keras minus export).
DRIFT_TOLERANCES: dict[str, float] = {
    "p99_abs_diff": 0.1,
    "mean_abs_diff": 0.02,
    "auc": 0.005,
    "accuracy": 0.01,
}

_METRIC_LABELS = {"auc": "ΔAUC", "accuracy": "Δaccuracy"}


class ParityError(ValueError):
    """A float export's outputs drifted from the Keras model beyond the tolerance."""


class DriftError(ParityError):
    """A quantized export drifted beyond :data:`DRIFT_TOLERANCES` with ``drift="error"``."""


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value.numpy()
    return np.asarray(value)


def measure_parity(
    model: keras.Model,
    artifact: Variant,
    parity_data: Any,
    parity_labels: Any,
    max_examples: int,
) -> dict[str, Any]:
    """Run ``model`` and ``artifact`` on the same examples and return the parity figures.

    Args:
        model: the Keras model the artifact was exported from.
        artifact: the exported file, loaded with :func:`tfcompress.load_variant`.
        parity_data: examples (see :func:`tfcompress.export.collect_examples`); None: a small
            deterministic random batch built from the model's input specs.
        parity_labels: labels when ``parity_data`` carries none (or None).
        max_examples: examples taken from ``parity_data``.

    Returns:
        ``examples``, ``source``, ``max_abs_diff``, ``p99_abs_diff`` (99th percentile),
        ``mean_abs_diff``, ``output_scale`` (the
        largest |output| of the Keras model, at least 1) and, with labels, ``metric``,
        ``keras_quality``, ``export_quality`` (of the first output) and ``quality_delta``
        (``{metric: export minus Keras}``; None for a metric undefined on these labels).

    Example:
        >>> p = measure_parity(model, load_variant("m.tflite"), None, None, 16)  # doctest: +SKIP
        >>> p["source"]  # doctest: +SKIP
        'random batch of 16 from the input specs'
    """
    structure, specs = model_input_specs(model)
    if parity_data is None:
        features, labels = random_batch(specs), None
        source = f"random batch of {RANDOM_BATCH_SIZE} from the input specs"
    else:
        features, labels = collect_examples(
            parity_data, structure, specs, max_examples, "parity_data"
        )
        source = "parity_data"
    n = int(len(next(iter(features.values()))))
    if parity_labels is not None:
        labels = _as_array(parity_labels)[:n]
    reference = load_variant(model, name=model.name).predict(features)
    got = artifact.predict(features)
    if set(reference) != set(got):
        raise ValueError(
            f"exported artifact outputs {sorted(got)} do not match the model's outputs "
            f"{sorted(reference)}."
        )
    diff = np.concatenate(
        [
            np.abs(reference[k].astype(np.float64) - got[k].astype(np.float64)).reshape(-1)
            for k in sorted(reference)
        ]
    )
    peak = max((float(np.abs(v).max()) for v in reference.values() if v.size), default=0.0)
    result: dict[str, Any] = {
        "examples": n,
        "source": source,
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "p99_abs_diff": float(np.quantile(diff, 0.99)) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "output_scale": max(1.0, peak) if np.isfinite(peak) else 1.0,
    }
    if labels is not None:
        key = next(iter(reference))
        metric = "auc" if infer_task(reference[key], labels) == "binary" else "accuracy"
        q_ref = quality(reference[key], labels, [metric])[metric]
        q_art = quality(got[key], labels, [metric])[metric]
        result.update(
            {
                "metric": metric,
                "keras_quality": q_ref,
                "export_quality": q_art,
                "quality_delta": {
                    metric: None if q_ref is None or q_art is None else q_art - q_ref
                },
            }
        )
    return result


def check_float_parity(parity: Mapping[str, Any], tolerance: float, what: str) -> None:
    """Raise :class:`ParityError` when a float export's max |diff| exceeds ``tolerance``.

    Example:
        >>> check_float_parity({"max_abs_diff": 0.0}, 1e-4, "m.tflite")
    """
    if parity["max_abs_diff"] > tolerance or not np.isfinite(parity["max_abs_diff"]):
        raise ParityError(
            f"{what}: float export drifts from the Keras model: max |diff| = "
            f"{parity['max_abs_diff']:.3g}, mean |diff| = {parity['mean_abs_diff']:.3g} over "
            f"{parity['examples']} examples ({parity['source']}), tolerance {tolerance:g}. "
            "Nothing was written. Check for training-only behaviour in the model (dropout, "
            "batch-norm in training mode, randomness) or raise `parity_tolerance`."
        )


def check_drift_mode(drift: object) -> str:
    """Validate ``export_tflite(drift=...)``.

    Example:
        >>> check_drift_mode("error")
        'error'
    """
    if drift not in DRIFT_MODES:
        raise ValueError(
            f"`drift` must be one of {list(DRIFT_MODES)} (what a quantized export does when its "
            f"outputs drift beyond tfcompress.export.DRIFT_TOLERANCES), received {drift!r}."
        )
    return drift  # type: ignore[return-value]


def check_drift_tolerances(tolerances: object) -> dict[str, float]:
    """Validate ``export_tflite(drift_tolerances=...)``; return the tolerances in force.

    Example:
        >>> check_drift_tolerances({"auc": 0.002})["auc"]
        0.002
    """
    if tolerances is None:
        return dict(DRIFT_TOLERANCES)
    if not isinstance(tolerances, Mapping):
        raise TypeError(
            f"`drift_tolerances` must be None or a dict with keys among "
            f"{sorted(DRIFT_TOLERANCES)}, received {tolerances!r}."
        )
    unknown = sorted(str(k) for k in tolerances if k not in DRIFT_TOLERANCES)
    if unknown:
        raise ValueError(
            f"`drift_tolerances` has unknown key(s) {unknown}; valid keys: "
            f"{sorted(DRIFT_TOLERANCES)}."
        )
    for key, value in tolerances.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(
                f"`drift_tolerances[{key!r}]` must be a number >= 0, received {value!r}."
            )
    return {**DRIFT_TOLERANCES, **{k: float(v) for k, v in tolerances.items()}}


def drift_flag(
    parity: Mapping[str, Any], tolerances: Mapping[str, float] | None = None
) -> str | None:
    """None when a quantized export's parity figures are within tolerance, else why not.

    Args:
        parity: figures from :func:`measure_parity`.
        tolerances: overrides of :data:`DRIFT_TOLERANCES` (same keys).

    Returns:
        None, or the breaches joined by ``"; "``, quality first, e.g.
        ``"ΔAUC -0.160 > tolerance 0.005"``.

    Example:
        >>> drift_flag({"p99_abs_diff": 0.01, "mean_abs_diff": 0.001}) is None
        True
    """
    tol = {**DRIFT_TOLERANCES, **(tolerances or {})}
    flags = []
    for metric, delta in (parity.get("quality_delta") or {}).items():
        if delta is not None and metric in tol and -delta > tol[metric]:
            label = _METRIC_LABELS.get(metric, f"Δ{metric}")
            shown = f"{delta:+.3f}" if abs(delta) >= 0.01 else f"{delta:+.4f}"
            flags.append(f"{label} {shown} > tolerance {tol[metric]:g}")
    scale = float(parity.get("output_scale", 1.0))
    unit = "" if scale == 1.0 else f" (outputs up to {scale:.3g}: tolerance x {scale:.3g})"
    for key, label in (("p99_abs_diff", "p99 |diff|"), ("mean_abs_diff", "mean |diff|")):
        # figures recorded before the percentile existed: the maximum bounds it
        value = float(parity.get(key, parity.get("max_abs_diff", 0.0)))
        if not np.isfinite(value) or value > tol[key] * scale:
            flags.append(f"{label} {value:.3g} > tolerance {tol[key] * scale:.3g}{unit}")
    return "; ".join(flags) or None


def _hints(options: Mapping[str, Any]) -> list[str]:
    """What to try against drift, given how the file was exported."""
    mode = options.get("mode")
    hints = []
    if not options.get("qat"):
        hints.append("quantization-aware training (tfcompress.quantize, then fit)")
    if options.get("calibration_examples") is not None:
        hints.append(
            "representative_data drawn from the real inputs (e.g. the validation split) and "
            f"more num_calibration_steps (used {options.get('calibration_examples')})"
        )
    if mode in ("int8", "int16x8"):
        hints.append(
            "float_ops=[...] to run the op types that lose most in float (e.g. ['DIV'], "
            "['BATCH_MATMUL'])"
        )
        if mode == "int8":
            hints.append("quantization='int16x8' or 'dynamic'")
    if options.get("embedding_tables"):
        hints.append('embeddings="float" (the converter\'s own table handling)')
    return hints


def report_drift(
    parity: dict[str, Any],
    what: str,
    drift: str,
    options: Mapping[str, Any],
    tolerances: Mapping[str, float] | None = None,
) -> str | None:
    """Set ``parity["drift_flag"]``; warn or raise per ``drift`` when the export drifted.

    Args:
        parity: figures from :func:`measure_parity` (updated in place).
        what: the artifact, for the message (e.g. ``"TFLite export 'm.tflite'"``).
        drift: ``"warn"`` (a logging WARNING), ``"error"`` (:class:`DriftError`) or ``"ignore"``.
        options: the export options (``mode``, ``qat``, ``calibration_examples``,
            ``embedding_tables``), to say what to try.
        tolerances: overrides of :data:`DRIFT_TOLERANCES`.

    Returns:
        The flag (None within tolerance).

    Raises:
        DriftError: the export drifted and ``drift == "error"``.

    Example:
        >>> p = {"max_abs_diff": 0.3, "p99_abs_diff": 0.2, "mean_abs_diff": 0.05,
        ...      "examples": 64, "source": "parity_data"}
        >>> report_drift(p, "m.tflite", "ignore", {"mode": "int8"})
        'p99 |diff| 0.2 > tolerance 0.1; mean |diff| 0.05 > tolerance 0.02'
    """
    flag = drift_flag(parity, tolerances)
    parity["drift_flag"] = flag
    if flag is None or drift == "ignore":
        return flag
    figures = (
        f"max |diff| {parity['max_abs_diff']:.3g}, p99 |diff| "
        f"{parity.get('p99_abs_diff', parity['max_abs_diff']):.3g}, mean |diff| "
        f"{parity['mean_abs_diff']:.3g}"
    )
    if parity.get("metric"):
        figures += (
            f", {parity['metric']} Keras {_fmt(parity.get('keras_quality'))} -> export "
            f"{_fmt(parity.get('export_quality'))}"
        )
    message = (
        f"{what} ({options.get('mode')}) drifts from its Keras model beyond tolerance: {flag}. "
        f"Figures over {parity['examples']} examples ({parity['source']}): {figures}. Try: "
        + "; ".join(_hints(options))
        + "."
    )
    if drift == "error":
        raise DriftError(message + " Nothing was written (drift='error').")
    _log.warning("%s Pass drift='error' to fail instead, drift='ignore' to silence.", message)
    return flag


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"
