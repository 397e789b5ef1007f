"""Export tf_keras models to TFLite (:func:`export_tflite`): validated, converted next to the
target, checked for parity against the Keras model, moved into place atomically, recorded in
``manifest.json``. What each step does: docs/export.md.

Example:
    >>> from tfcompress._keras import keras
    >>> from tfcompress import export
    >>> inp = keras.Input((4,), name="x")
    >>> model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp))
    >>> result = export.export_tflite(model, "/tmp/tfc_doc/model.tflite")  # doctest: +SKIP
    >>> result.parity["max_abs_diff"] <= 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfcompress._compat import bounded_mask_adder
from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import check_int
from tfcompress.export.common import (
    DEFAULT_PARITY_EXAMPLES,
    DEFAULT_PARITY_TOLERANCE,
    ExportResult,
    check_common_args,
    created_dirs,
)
from tfcompress.export.converter import (
    SIGNATURE_KEY,
    ConversionError,
    calibration_dataset,
    captured_output,
    convert,
    saved_model_for_conversion,
)
from tfcompress.export.float_regions import merge_float_regions
from tfcompress.export.fuse import fuse_for_export
from tfcompress.export.hybrid import apply_auto_float_ops
from tfcompress.export.manifest import (
    MANIFEST_NAME,
    clean_stale_temps,
    default_file_mode,
    file_table,
    held,
    manifest_entry,
    read_manifest,
    update_manifest,
    verify_manifest,
)
from tfcompress.export.metrics import auc, quality
from tfcompress.export.parity import (
    DRIFT_MODES,
    DRIFT_TOLERANCES,
    DriftError,
    ParityError,
    check_drift_mode,
    check_drift_tolerances,
    check_float_parity,
    measure_parity,
    report_drift,
)
from tfcompress.export.prepare import prepare_sparse, representative_examples, resolve_subclassed
from tfcompress.export.ptq import (
    QUANTIZATION_MODES,
    QuantizationConfig,
    check_float_ops,
    dequantize_weights,
    keep_ops_in_float,
    resolve_quantization,
)
from tfcompress.export.runtime import (
    RANDOM_BATCH_SIZE,
    InputSpec,
    Variant,
    collect_examples,
    load_variant,
    model_input_specs,
    random_batch,
    serving_function,
)
from tfcompress.export.saved_model import export_saved_model
from tfcompress.export.simplify import simplify_flatbuffer
from tfcompress.export.tables import with_stored_tables
from tfcompress.quantization.embedding import (
    check_embeddings_mode,
    is_qat_model,
    prepare_for_export,
)

_log = logging.getLogger("tfcompress")

__all__ = [
    "DRIFT_MODES",
    "DRIFT_TOLERANCES",
    "QUANTIZATION_MODES",
    "ConversionError",
    "DriftError",
    "ExportResult",
    "InputSpec",
    "ParityError",
    "QuantizationConfig",
    "Variant",
    "auc",
    "collect_examples",
    "export_saved_model",
    "export_tflite",
    "load_variant",
    "model_input_specs",
    "quality",
    "resolve_quantization",
    "verify_manifest",
]


def _check_flags(
    config: Any, quantization: Any, integer_io: Any, progress: Any, strict: Any
) -> None:
    """Check the bool flags of :func:`export_tflite` and that the mode allows them."""
    for flag, value in (("integer_io", integer_io), ("progress", progress)):
        if not isinstance(value, bool):
            raise TypeError(f"`{flag}` must be a bool, received {value!r}.")
    if integer_io and config.integer_io_type is None:
        raise ValueError(
            f"`integer_io=True` needs a full-integer mode ('int8' or 'int16x8'); received "
            f"quantization={quantization!r}."
        )
    if strict and not config.needs_representative_data:
        raise ValueError(
            f"`strict=True` applies to 'int8' and 'int16x8' only; received "
            f"quantization={quantization!r}."
        )


def _calibration_examples(
    model: keras.Model,
    config: Any,
    qat_int8: bool,
    representative_data: Any,
    structure: Any,
    specs: Any,
    num_calibration_steps: int,
) -> list | None:
    """The calibration examples of the conversion (None: the mode does not calibrate)."""
    if qat_int8 and representative_data is None:
        _log.warning(
            "QAT model %r: int8 ranges from training; tensors without one (embedding lookups, "
            "pooling, ...) are calibrated on a random batch, which can cost accuracy (0.026 AUC "
            "on the demo's student vs 0.008 with data): pass representative_data, e.g. the "
            "validation split.",
            model.name,
        )
        batch = random_batch(specs)
        return [{k: v[i : i + 1] for k, v in batch.items()} for i in range(RANDOM_BATCH_SIZE)]
    if config.needs_representative_data:
        if representative_data is None:
            raise ValueError(
                f"quantization={config.name!r} calibrates activation ranges: pass "
                "`representative_data` (e.g. a tf.data.Dataset of (features, label) from the "
                "training data)."
            )
        return representative_examples(representative_data, structure, specs, num_calibration_steps)
    if representative_data is not None:
        _log.info("representative_data ignored: quantization=%r does not calibrate.", config.name)
    return None


#: the score full-integer exports give masked attention positions (instead of tf_keras' and
#: Model Garden's -1e9): exp(-30) makes a padded token's weight negligible, and the softmax input's
#: int8 range stays near the real scores' (a scale of ~0.15 instead of ~4e6)
MASKED_SCORE = -30.0


def _converter_factory(
    config: Any,
    sparse: Any,
    examples: list | None,
    strict: bool,
    integer_io: bool,
    progress: bool,
    target: Path,
) -> Any:
    """``make_converter(saved_model_dir, stream)``: a configured TFLite converter."""

    def make_converter(saved_model_dir: str, stream: Any) -> Any:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=[SIGNATURE_KEY]
        )
        if config.optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if sparse:
            converter.optimizations = [
                *converter.optimizations,
                tf.lite.Optimize.EXPERIMENTAL_SPARSITY,
            ]
        if examples is not None:
            ops = config.ops + (() if strict else config.fallback_ops)
            converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, o) for o in ops]
            converter.representative_dataset = calibration_dataset(
                examples,
                progress=progress,
                stream=stream,
                label=f"calibrating {target.name} ({config.name})",
            )
            if integer_io:
                io_type = getattr(tf, config.integer_io_type)
                converter.inference_input_type = io_type
                converter.inference_output_type = io_type
        if config.supported_types:
            converter.target_spec.supported_types = [getattr(tf, t) for t in config.supported_types]
        return converter

    return make_converter


def _write_artifact(
    model: keras.Model,
    target: Path,
    flatbuffer: bytes,
    config: Any,
    prepared: dict[str, Any],
    options: dict[str, Any],
    tolerances: Any,
    drift: Any,
    parity_data: Any,
    parity_labels: Any,
    parity_max_examples: Any,
    parity_tolerance: Any,
) -> dict[str, Any]:
    """Write ``flatbuffer`` to ``target`` atomically once LiteRT runs it; its parity."""
    what = f"TFLite export {str(target)!r}"
    # hidden temp name ending in .tflite, so that load_variant runs it as a TFLite file
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=".tmp.tflite", dir=target.parent
    )
    tmp = Path(tmp_name)
    try:
        with held(tmp):  # a cleaner in another process leaves it alone
            with os.fdopen(fd, "wb") as f:
                f.write(flatbuffer)
            with captured_output() as out:  # LiteRT's "Created ... XNNPACK delegate" line
                artifact = load_variant(tmp, name=target.name)
                parity = measure_parity(
                    model, artifact, parity_data, parity_labels, parity_max_examples
                )
                del artifact
            if out.text.strip():
                _log.debug("LiteRT output while checking %s:\n%s", target, out.text.rstrip())
            if config.is_float and not (prepared["qat"] or prepared["embedding_tables"]):
                check_float_parity(parity, parity_tolerance, what)
                parity["drift_flag"] = None
            else:  # quantized, QAT or int8 tables: drift by design, flagged beyond tolerance
                report_drift(parity, what, drift, options, tolerances)
            os.chmod(tmp, default_file_mode())  # mkstemp creates 0600 whatever the umask
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return parity


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantization: str | None = None,
    *,
    representative_data: Any = None,
    num_calibration_steps: int = 100,
    integer_io: bool = False,
    strict: bool = False,
    float_ops: Any = None,
    parity_data: Any = None,
    parity_labels: Any = None,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
    parity_max_examples: int = DEFAULT_PARITY_EXAMPLES,
    drift: str = "warn",
    drift_tolerances: Mapping[str, float] | None = None,
    overwrite: bool = True,
    embeddings: str | None = None,
    sparse: bool | None = None,
    progress: bool = False,
    fuse_embeddings: bool | None = None,
) -> ExportResult:
    """Convert ``model`` to a ``.tflite`` file, check parity, and record it in the manifest.

    The file has one ``serving_default`` signature whose inputs carry the model's input names
    (dict keys for dict-input models) and a batch dimension resizable at run time. Functional,
    Sequential and subclassed models convert (a subclassed model's embedding tables are left
    to the converter, see ``embeddings``). The conversion prints nothing: what TF's converter
    and LiteRT print to stdout/stderr is logged at DEBUG, or carried by the error on failure.

    QAT models (from :func:`tfcompress.quantize`) convert with the ranges they trained:
    ``"int8"`` needs no ``representative_data`` (tensors without a trained range are then
    calibrated on a random batch from the input specs; pass data for better ranges); other
    modes convert the model with its int8-grid weights (see
    :func:`tfcompress.quantization.embedding.prepare_for_export`). Parity is always measured against
    ``model`` itself.

    A float32 export must match the Keras model to ``parity_tolerance``. Quantized exports
    (and float32 exports of QAT models or with int8 tables) drift by design: their drift is
    checked against :data:`DRIFT_TOLERANCES` (p99 |diff| 0.1, mean |diff| 0.02 for
    probabilities, scaled by the largest output above 1; a loss of 0.005 AUC or 0.01 accuracy
    with labels; the measurements behind them are in :mod:`tfcompress.export.parity`).
    ``parity["drift_flag"]`` says whether and why it is flagged; ``drift`` says what else
    happens.

    Args:
        model: a built tf_keras model.
        path: target file; must end in ``.tflite``. Its directory is created.
        quantization: None (float32), ``"dynamic"`` (dynamic-range int8 weights), ``"int8"``
            (full integer, calibrated), ``"float16"`` (float16 weights) or ``"int16x8"`` (int16
            activations, int8 weights, calibrated).
        representative_data: calibration data for ``"int8"``/``"int16x8"``: a ``tf.data.Dataset``
            of features or ``(features, label)`` (batched or not), a dict of arrays, or an
            iterable of feature dicts / arrays. Integer id inputs stay int32.
        num_calibration_steps: examples fed to the calibrator (one at a time).
        integer_io: full-integer modes only: float inputs/outputs become int8 (int16 for
            ``"int16x8"``); id inputs stay int32.
        strict: full-integer modes only: fail on ops without an integer kernel instead of
            falling back to float. (Drift beyond tolerance is ``drift="error"``.)
        float_ops: full-integer modes: TFLite op types (e.g. ``["DIV"]``) that run in float
            between a DEQUANTIZE and a QUANTIZE (selective quantization, see
            :func:`tfcompress.export.ptq.keep_ops_in_float`). None (default): the mode's
            default, ``["SQUARED_DIFFERENCE", "SUB"]`` for ``"int16x8"`` (LiteRT has no int16
            kernel for the variance of ``LayerNormalization``, and its int16 SUB of the
            centring aborts the process), none for ``"int8"``; ``[]`` keeps every op quantized.
            ``"dynamic"``: weight ops (:data:`tfcompress.export.ptq.WEIGHT_OPS`) computed in
            float on their int8 weights, dequantized once at load
            (:func:`tfcompress.export.ptq.dequantize_weights`; same bytes, no activation
            quantized). ``"auto"``: measured on this machine, the op groups whose float run is
            faster (latency-aware hybrid, :func:`tfcompress.export.hybrid.choose_float_ops`; a
            few seconds on the calibration examples, or a random batch for ``"dynamic"``; the
            choice is in ``options["float_ops_auto"]``).
        parity_data: data to compare the file with the Keras model on (up to
            ``parity_max_examples`` examples); default: a small deterministic random batch.
            With labels (``(features, label)`` elements or ``parity_labels``) the quality of
            both is compared too.
        parity_labels: labels for ``parity_data`` when it has none, to compare quality.
        parity_tolerance: max |diff| allowed for a float32 export.
        parity_max_examples: examples taken from ``parity_data``.
        drift: what a drifting export does: ``"warn"`` (default: a logging WARNING naming the
            file, the figures, the tolerance and what to try; the file is written),
            ``"error"`` (raise :class:`DriftError`; nothing is written) or ``"ignore"``.
        drift_tolerances: overrides of :data:`DRIFT_TOLERANCES` (keys ``"p99_abs_diff"``,
            ``"mean_abs_diff"``, ``"auc"``, ``"accuracy"``), e.g. ``{"auc": 0.002}``.
        overwrite: replace an existing file at ``path``.
        embeddings: how embedding tables are stored. None: ``"int8"`` in the ``"dynamic"``,
            ``"int8"`` and ``"int16x8"`` modes, ``"float"`` otherwise; ``"float"`` for a
            subclassed model (its layers cannot be swapped; logged at INFO). ``"int8"``: tables
            of >= 64 rows become int8 with a scale per row (rows of >= 32 values) or per table;
            ``"int8_row"``/``"int8_tensor"`` force the scale granularity; ``"int4"``: tables
            of >= 64 rows become int4 (two codes a byte, a float16 scale and offset per row,
            unpacked after the gather with builtin ops; every mode); ``"int4_compact"``:
            int4 with symmetric codes and one byte a row for the scale, an index into a
            256-entry codebook per table (9 bytes a 16-wide row, 7.1x float); ``"float"``: the
            converter's own handling (the ``"dynamic"`` and ``"int8"`` converters store large
            tables int8 with one scale per table). See :mod:`tfcompress.quantization.embedding`.
            The row tables of ``QREmbedding``, ``HashedEmbedding``, ``MixedDimEmbedding`` and
            of layers registered with :func:`tfcompress.export.tables.register_table_storage`
            are stored alike (``options["embedding_tables_left"]``: those left float, and why).
        sparse: store pruned weights in TFLite's sparse format
            (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``); float32 and float16 only (LiteRT
            cannot run sparse integer weights). None: in those modes, when at least half of
            the model's prunable weights are zero (see :func:`tfcompress.pruning.sparsity_report`).
            A
            model still holding pruning wrappers (from :func:`tfcompress.prune`) is stripped
            first.
        progress: show a progress bar (stderr) over the calibration steps of ``"int8"`` /
            ``"int16x8"``.
        fuse_embeddings: one gather per table width instead of one per feature, and the
            pooling as a sum (:func:`tfcompress.export.fuse.fuse_embeddings`). None: when >= 2
            tables and a ``MaskedMean`` pooling can be fused, in the float32, ``"dynamic"`` and
            ``"float16"`` modes, with float tables (``embeddings`` None in float32/float16, or
            ``"float"``); True: always (an error naming the tables when none can be); False:
            never. Recorded in ``options["fused_embeddings"]`` (None when not fused).

    Returns:
        The :class:`ExportResult`; ``result.parity["drift_flag"]`` and
        ``result.parity["quality_delta"]`` are also recorded in the manifest.

    Raises:
        TypeError: ``model`` is not a tf_keras model (or is a Keras 3 model).
        ValueError: bad path, mode, options or representative data; a corrupt manifest.
        ConversionError: the converter failed (a ``ValueError``; carries what it printed).
        ParityError: a float32 export drifts beyond ``parity_tolerance`` (nothing is written).
        DriftError: a quantized export drifts beyond the tolerances with ``drift="error"``
            (nothing is written).

    Example:
        >>> r = export_tflite(model, "savedmodels/ctr_int8.tflite", "int8",
        ...                   representative_data=task.train, parity_data=task.test,
        ...                   drift="error")  # doctest: +SKIP
        >>> r.parity["drift_flag"] is None and r.bytes < 1_000_000  # doctest: +SKIP
        True
    """
    check_model(model, "model")
    target = Path(path)
    if target.suffix != ".tflite":
        raise ValueError(
            f"`path` must end in '.tflite', received {str(path)!r}; e.g. "
            f"{str(target.with_suffix('.tflite'))!r}."
        )
    config = resolve_quantization(quantization)
    check_common_args(parity_tolerance, parity_max_examples, overwrite)
    check_drift_mode(drift)
    tolerances = check_drift_tolerances(drift_tolerances)
    _check_flags(config, quantization, integer_io, progress, strict)
    auto_float = isinstance(float_ops, str) and float_ops.lower() == "auto"
    keep_float = check_float_ops(None if auto_float else float_ops, config)
    if auto_float and not (config.needs_representative_data or config.name == "dynamic"):
        raise ValueError(
            f"`float_ops=\"auto\"` applies to the full-integer modes ('int8', 'int16x8') and "
            f"'dynamic'; received quantization={config.name!r}."
        )
    check_embeddings_mode(embeddings)
    if sparse is not None and not isinstance(sparse, bool):
        raise TypeError(f"`sparse` must be True, False or None (auto), received {sparse!r}.")
    model, sparse = prepare_sparse(model, sparse, config.name)
    qat = is_qat_model(model)
    embeddings = resolve_subclassed(model, config.name, embeddings, qat)
    qat_int8 = config.name == "int8" and qat
    fuse_model, fused = fuse_for_export(
        model, fuse_embeddings, "qat" if qat else config.name, embeddings
    )
    if fused and config.needs_representative_data and embeddings in (None, "int8"):
        # full-integer modes requantize the gathered rows to one scale a tensor, so row
        # scales gain nothing there, and a fused table's row scales span every table's
        # magnitudes: calibrated as one tensor, the small ones were lost (32-wide tables,
        # int8: max |diff| 0.107 fused against 0.013 unfused; one scale: 0.013)
        embeddings = "int8_tensor"
    check_int(num_calibration_steps, "num_calibration_steps", minimum=1)
    if target.exists() and not overwrite:
        raise ValueError(f"`path` {str(target)!r} exists; pass overwrite=True to replace it.")
    if target.is_dir():
        raise ValueError(f"`path` {str(target)!r} is a directory; pass a '.tflite' file path.")
    structure, specs = model_input_specs(model)
    examples = _calibration_examples(
        model, config, qat_int8, representative_data, structure, specs, num_calibration_steps
    )
    manifest_path = target.parent / MANIFEST_NAME
    if manifest_path.exists():
        read_manifest(manifest_path)  # fail on a corrupt manifest before any work
    clean_stale_temps(target.parent)  # what an interrupted export left there (logged)

    convert_model, prepared = prepare_for_export(fuse_model, config.name, embeddings)
    convert_model, prepared = with_stored_tables(convert_model, prepared, config.name)
    prepared = {**prepared, "fused_embeddings": fused}
    # full-integer modes calibrate every tensor: the -1e9 attention-mask adder of tf_keras'
    # Softmax (every MultiHeadAttention) and Model Garden's MaskedSoftmax would give the
    # softmax input a scale of 1e9/255 (attention collapses); trace with a bounded one
    bounded = contextlib.nullcontext([])
    if config.needs_representative_data:
        bounded = bounded_mask_adder(MASKED_SCORE)
    with bounded as patched:
        # a fresh trace when patched: the cached one may hold the -1e9 of an earlier export
        concrete = serving_function(convert_model, cached=not patched).get_concrete_function()
        if patched:
            prepared = {**prepared, "masked_score": MASKED_SCORE}

    make_converter = _converter_factory(
        config, sparse, examples, strict, integer_io, progress, target
    )

    options = {
        "mode": config.name,
        "sparse": sparse,
        "integer_io": integer_io,
        "strict": strict,
        "float_ops": list(keep_float),
        "num_calibration_steps": num_calibration_steps if examples is not None else None,
        "calibration_examples": len(examples) if examples is not None else None,
        "parity_tolerance": parity_tolerance,
        "drift": drift,
        "drift_tolerances": tolerances,
        **prepared,
    }
    with created_dirs(target.parent):
        flatbuffer = _convert_quietly(
            model, convert_model, concrete, config, make_converter, strict, keep_float, options
        )
        flatbuffer, options["simplified"] = simplify_flatbuffer(flatbuffer)
        if auto_float:
            flatbuffer = apply_auto_float_ops(flatbuffer, examples, specs, options)
        parity = _write_artifact(
            model,
            target,
            flatbuffer,
            config,
            prepared,
            options,
            tolerances,
            drift,
            parity_data,
            parity_labels,
            parity_max_examples,
            parity_tolerance,
        )
    files = file_table(target, target.parent)
    entry = manifest_entry(model.name, "tflite", options, parity, files)
    entry["inputs"] = [spec.name for spec in specs]  # the Keras input order (runtime reads it)
    mpath = update_manifest(target.parent, target.name, entry)
    _log.info(
        "exported %s (%s, %d bytes, max |diff| %.3g%s)",
        target,
        config.name,
        entry["bytes"],
        parity["max_abs_diff"],
        "" if parity["drift_flag"] is None else f"; drift: {parity['drift_flag']}",
    )
    return ExportResult(
        target,
        "tflite",
        config.name,
        entry["bytes"],
        entry["sha256"],
        parity,
        mpath,
        options,
    )


def _convert_quietly(
    model: keras.Model,
    convert_model: keras.Model,
    concrete: Any,
    config: QuantizationConfig,
    make_converter: Any,
    strict: bool,
    keep_float: tuple[str, ...],
    options: dict[str, Any],
) -> bytes:
    """Convert with fd 1/2 captured; the converter's output goes to DEBUG or into the error."""
    out = None
    try:
        with captured_output() as out, saved_model_for_conversion(convert_model, concrete) as d:
            flatbuffer = convert(lambda: make_converter(d, out.terminal), config, model)
            if config.name == "dynamic":  # int8 weights computed in float
                flatbuffer, kept = dequantize_weights(flatbuffer, keep_float)
            else:
                flatbuffer, kept = keep_ops_in_float(flatbuffer, keep_float)
                if kept:  # one float region per run of kept ops, as float_ops="auto" files get
                    flatbuffer, options["float_regions_merged"] = merge_float_regions(flatbuffer)
    except ConversionError as e:  # the converter's: its summary, then what it printed
        output = (out.text if out is not None else "") or e.converter_output
        raise ConversionError(e.summary, output) from e.__cause__
    except ValueError:
        raise  # ours, already clear (the converter's output is attached as a note)
    except Exception as e:
        raise ConversionError(
            f"TFLite conversion of model {model.name!r} with quantization={config.name!r} "
            f"failed: {str(e).strip()}" + (" Try strict=False." if strict else ""),
            out.text if out is not None else "",
        ) from e
    options["float_ops_applied"] = kept
    if out.text.strip():
        _log.debug("TFLite converter output for model %r:\n%s", model.name, out.text.rstrip())
    return flatbuffer
