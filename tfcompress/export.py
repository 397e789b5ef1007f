"""Export tf_keras models to TFLite and XLA-compiled SavedModels, with a parity check and manifest.

Every export:

1. validates its arguments (model, path, quantization mode, representative data) before any work;
2. converts into a temporary file / directory next to the target;
3. runs the exported artifact and the Keras model on the same batch (``parity_data`` or a small
   deterministic random batch built from the model's input specs) and records the drift; a float
   export (``quantization=None`` or a SavedModel) that drifts beyond ``parity_tolerance`` raises
   :class:`ParityError` and leaves nothing behind;
4. moves the artifact into place atomically and records it in ``manifest.json`` next to it.

QAT models (:func:`tfcompress.quantize`) and embedding tables get special care: see
:func:`tfcompress.embeddings.prepare_for_export` (tables stored int8 in every quantized mode,
option ``embeddings=``). Exported artifacts are run with :func:`load_variant`
(:mod:`tfcompress.runtime`). The quantization
modes and the selective quantization (``float_ops``) live in :mod:`tfcompress.tflite_quant`, the
manifest in :mod:`tfcompress.manifest`, the quality metrics in :mod:`tfcompress.metrics`; their
public names are re-exported here.

Example:
    >>> from tfcompress.keras_compat import keras
    >>> from tfcompress import export
    >>> inp = keras.Input((4,), name="x")
    >>> model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp))
    >>> result = export.export_tflite(model, "/tmp/tfc_doc/model.tflite")  # doctest: +SKIP
    >>> result.parity["max_abs_diff"] <= 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.embeddings import check_embeddings_mode, is_qat_model, prepare_for_export
from tfcompress.keras_compat import check_model, keras, tf
from tfcompress.manifest import (
    MANIFEST_NAME,
    file_table,
    manifest_entry,
    read_manifest,
    update_manifest,
    verify_manifest,
)
from tfcompress.metrics import auc, infer_task, quality
from tfcompress.runtime import (
    RANDOM_BATCH_SIZE,
    InputSpec,
    Variant,
    _as_np,
    _KerasVariant,
    _SavedModelVariant,
    _TFLiteVariant,
    check_int_arg,
    collect_examples,
    load_variant,
    model_input_specs,
    random_batch,
    serving_function,
)
from tfcompress.tflite_quant import (
    QUANTIZATION_MODES,
    QuantizationConfig,
    check_float_ops,
    keep_ops_in_float,
    resolve_quantization,
)

_log = logging.getLogger("tfcompress")

__all__ = [
    "QUANTIZATION_MODES",
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

DEFAULT_PARITY_TOLERANCE = 1e-4
DEFAULT_PARITY_EXAMPLES = 512


class ParityError(ValueError):
    """A float export's outputs drifted from the Keras model beyond the tolerance."""


def _parity(
    model: keras.Model,
    artifact: Variant,
    parity_data: Any,
    parity_labels: Any,
    max_examples: int,
) -> dict[str, Any]:
    structure, specs = model_input_specs(model)
    if parity_data is None:
        features, labels = random_batch(specs), None
        source = f"random batch of {RANDOM_BATCH_SIZE} from the input specs"
    else:
        features, labels = collect_examples(
            parity_data, structure, specs, max_examples, "parity_data"
        )
        source = "parity_data"
    if parity_labels is not None:
        labels = _as_np(parity_labels)[: len(next(iter(features.values())))]
    reference = _KerasVariant(model, model.name).predict(features)
    got = artifact.predict(features)
    if set(reference) != set(got):
        raise ValueError(
            f"exported artifact outputs {sorted(got)} do not match the model's outputs "
            f"{sorted(reference)}."
        )
    diffs = [
        np.abs(reference[k].astype(np.float64) - got[k].astype(np.float64)).reshape(-1)
        for k in sorted(reference)
    ]
    diff = np.concatenate(diffs)
    result: dict[str, Any] = {
        "examples": int(len(next(iter(features.values())))),
        "source": source,
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
    }
    if labels is not None:
        key = next(iter(reference))
        task = infer_task(reference[key], labels)
        metric = "auc" if task == "binary" else "accuracy"
        q_ref = quality(reference[key], labels, [metric])[metric]
        q_art = quality(got[key], labels, [metric])[metric]
        result.update(
            {
                "metric": metric,
                "keras_quality": q_ref,
                "export_quality": q_art,
                "quality_delta": None if q_ref is None or q_art is None else q_art - q_ref,
            }
        )
    return result


def _check_parity(parity: dict[str, Any], tolerance: float, what: str) -> None:
    if parity["max_abs_diff"] > tolerance or not np.isfinite(parity["max_abs_diff"]):
        raise ParityError(
            f"{what}: float export drifts from the Keras model: max |diff| = "
            f"{parity['max_abs_diff']:.3g}, mean |diff| = {parity['mean_abs_diff']:.3g} over "
            f"{parity['examples']} examples ({parity['source']}), tolerance {tolerance:g}. "
            "Nothing was written. Check for training-only behaviour in the model (dropout, "
            "batch-norm in training mode, randomness) or raise `parity_tolerance`."
        )


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        path: the ``.tflite`` file or SavedModel directory (a ``Path``).
        format: ``"tflite"`` or ``"saved_model"``.
        quantization: the TFLite mode (``"float32"``, ``"dynamic"``, ...); ``"float32"`` for a
            SavedModel.
        bytes: size on disk (sum of files for a SavedModel).
        sha256: sha256 of the file (for a SavedModel: of its sorted ``path\\tsha256`` lines).
        parity: the parity figures (max/mean abs diff, examples, quality when labels were given).
        manifest_path: the ``manifest.json`` that records the artifact.
        options: the export options recorded in the manifest.
    """

    path: Path
    format: str
    quantization: str
    bytes: int
    sha256: str
    parity: dict[str, Any]
    manifest_path: Path
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the result (paths as strings)."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["manifest_path"] = str(self.manifest_path)
        return d


def _check_common(parity_tolerance: float, parity_max_examples: int, overwrite: bool) -> None:
    if (
        isinstance(parity_tolerance, bool)
        or not isinstance(parity_tolerance, (int, float))
        or not parity_tolerance >= 0
    ):
        raise ValueError(
            f"`parity_tolerance` must be a number >= 0, received {parity_tolerance!r}."
        )
    check_int_arg(parity_max_examples, "parity_max_examples", 1)
    if not isinstance(overwrite, bool):
        raise TypeError(f"`overwrite` must be a bool, received {overwrite!r}.")


@contextlib.contextmanager
def _created_dirs(directory: Path) -> Iterator[None]:
    """Create ``directory`` (and parents); remove the ones created here if the body fails."""
    created = []
    d = directory
    while not d.exists():
        created.append(d)
        d = d.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in created:  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _representative_examples(
    data: Any, structure: str, specs: tuple[InputSpec, ...], steps: int
) -> list[dict[str, np.ndarray]]:
    feats, _ = collect_examples(data, structure, specs, steps, "representative_data")
    n = len(next(iter(feats.values())))
    return [{k: v[i : i + 1] for k, v in feats.items()} for i in range(n)]


def _convert(make_converter: Any, config: QuantizationConfig) -> bytes:
    try:
        with warnings.catch_warnings():
            # TF's calibrator still runs the deprecated tf.lite.Interpreter internally.
            warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
            return make_converter().convert()
    except Exception as e:
        if "Max and min for dynamic tensors" in str(e):
            # The int16x8 quantizer tries to quantize the int32 inputs of comparisons such as the
            # NOT_EQUAL of `ids != 0` (Embedding(mask_zero=True)) and has no op deny-list.
            raise ValueError(
                f"quantization={config.name!r} cannot quantize an op that reads an integer id "
                f"input ({str(e).splitlines()[0]}). A comparison on ids (e.g. `ids != 0` or "
                "Embedding(mask_zero=True)) causes it: build the padding mask as "
                "tf.minimum(tf.maximum(ids, 0), 1) like tfcompress.models.layers.PaddingMask, "
                "or use quantization='int8' or 'dynamic' for this model."
            ) from e
        raise


#: ``sparse=None`` stores weights in TFLite's sparse format from this overall sparsity on.
AUTO_SPARSE_THRESHOLD = 0.5


#: modes whose files LiteRT can run with sparse weights: in the integer modes the XNNPACK and
#: built-in FULLY_CONNECTED kernels fail to prepare sparse int8 weights (LiteRT 2.x, measured)
SPARSE_MODES = ("float32", "float16")


def _prepare_sparse(model: keras.Model, sparse: bool | None, mode: str
                    ) -> tuple[keras.Model, bool]:
    """Strip pruning wrappers and decide whether the converter stores weights sparsely."""
    from tfcompress.pruning import is_pruned, sparsity_report, strip  # pruning imports TFMOT

    if sparse and mode not in SPARSE_MODES:
        raise ValueError(
            f"`sparse=True` with quantization={mode!r}: LiteRT cannot run sparse integer "
            "weights (its FULLY_CONNECTED kernels fail to prepare them). Use sparse=False or "
            "None: the int8 weights are already 4x smaller, and their zeros still compress "
            "under gzip; or export in float32/float16 with sparse=True."
        )
    if is_pruned(model):
        _log.info("Model %r holds pruning wrappers: exporting tfcompress.strip(model).", model.name)
        model = strip(model)
    if sparse is None:
        overall = sparsity_report(model).overall
        sparse = bool(overall is not None and overall >= AUTO_SPARSE_THRESHOLD
                      and mode in SPARSE_MODES)
        if sparse:
            _log.info("Model %r is %.0f%% sparse: weights stored in TFLite's sparse format.",
                      model.name, 100 * overall)
    return model, sparse


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
    overwrite: bool = True,
    embeddings: str | None = None,
    sparse: bool | None = None,
) -> ExportResult:
    """Convert ``model`` to a ``.tflite`` file, check parity, and record it in the manifest.

    The file has one ``serving_default`` signature whose inputs carry the model's input names
    (dict keys for dict-input models) and a batch dimension resizable at run time.

    QAT models (from :func:`tfcompress.quantize`) convert with the ranges they trained:
    ``"int8"`` needs no ``representative_data`` (tensors without a trained range are then
    calibrated on a random batch from the input specs; pass data for better ranges); other
    modes convert the model with its int8-grid weights (see
    :func:`tfcompress.embeddings.prepare_for_export`). Parity is always measured against
    ``model`` itself.

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
            falling back to float.
        float_ops: full-integer modes only: TFLite op types (e.g. ``["DIV"]``) that run in float
            between a DEQUANTIZE and a QUANTIZE (selective quantization, see
            :func:`tfcompress.tflite_quant.keep_ops_in_float`). None (default): the mode's
            default, ``["SQUARED_DIFFERENCE"]`` for ``"int16x8"`` (LiteRT has no int16 kernel for
            the variance of ``LayerNormalization``), none for ``"int8"``; ``[]`` keeps every op
            quantized.
        parity_data: data to compare the file with the Keras model on (up to
            ``parity_max_examples`` examples); default: a small deterministic random batch.
        parity_labels: labels for ``parity_data`` when it has none, to compare quality.
        parity_tolerance: max |diff| allowed for a float32 export.
        parity_max_examples: examples taken from ``parity_data``.
        overwrite: replace an existing file at ``path``.
        embeddings: how embedding tables are stored. None: ``"int8"`` in the ``"dynamic"``,
            ``"int8"`` and ``"int16x8"`` modes, ``"float"`` otherwise. ``"int8"``: tables of
            >= 64 rows become int8 with a scale per row (rows of >= 32 values) or per table;
            ``"int8_row"``/``"int8_tensor"`` force the scale granularity; ``"float"``: the
            converter's own handling. See :mod:`tfcompress.embeddings`.
        sparse: store pruned weights in TFLite's sparse format
            (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``); float32 and float16 only (LiteRT
            cannot run sparse integer weights). None: in those modes, when at least half of
            the model's prunable weights are zero (see :func:`tfcompress.sparsity_report`). A
            model still holding pruning wrappers (from :func:`tfcompress.prune`) is stripped
            first.

    Returns:
        The :class:`ExportResult`.

    Raises:
        TypeError: ``model`` is not a tf_keras model (or is a Keras 3 model).
        ValueError: bad path, mode, options or representative data; a corrupt manifest.
        ParityError: a float32 export drifts beyond ``parity_tolerance`` (nothing is written).

    Example:
        >>> r = export_tflite(model, "savedmodels/ctr_int8.tflite", "int8",
        ...                   representative_data=task.train)  # doctest: +SKIP
        >>> r.bytes < 1_000_000  # doctest: +SKIP
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
    _check_common(parity_tolerance, parity_max_examples, overwrite)
    if not isinstance(integer_io, bool):
        raise TypeError(f"`integer_io` must be a bool, received {integer_io!r}.")
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
    keep_float = check_float_ops(float_ops, config)
    check_embeddings_mode(embeddings)
    if sparse is not None and not isinstance(sparse, bool):
        raise TypeError(f"`sparse` must be True, False or None (auto), received {sparse!r}.")
    model, sparse = _prepare_sparse(model, sparse, config.name)
    qat_int8 = config.name == "int8" and is_qat_model(model)
    check_int_arg(num_calibration_steps, "num_calibration_steps", 1)
    if target.exists() and not overwrite:
        raise ValueError(f"`path` {str(target)!r} exists; pass overwrite=True to replace it.")
    if target.is_dir():
        raise ValueError(f"`path` {str(target)!r} is a directory; pass a '.tflite' file path.")
    structure, specs = model_input_specs(model)
    examples = None
    if qat_int8 and representative_data is None:
        _log.warning(
            "QAT model %r: int8 ranges from training; tensors without one (embedding lookups, "
            "pooling, ...) are calibrated on a random batch, which can cost accuracy (0.026 AUC "
            "on the demo's student vs 0.008 with data): pass representative_data, e.g. the "
            "validation split.",
            model.name,
        )
        batch = random_batch(specs)
        examples = [{k: v[i : i + 1] for k, v in batch.items()} for i in range(RANDOM_BATCH_SIZE)]
    elif config.needs_representative_data:
        if representative_data is None:
            raise ValueError(
                f"quantization={config.name!r} calibrates activation ranges: pass "
                "`representative_data` (e.g. a tf.data.Dataset of (features, label) from the "
                "training data)."
            )
        examples = _representative_examples(
            representative_data, structure, specs, num_calibration_steps
        )
    elif representative_data is not None:
        _log.info("representative_data ignored: quantization=%r does not calibrate.", config.name)
    manifest_path = target.parent / MANIFEST_NAME
    if manifest_path.exists():
        read_manifest(manifest_path)  # fail on a corrupt manifest before any work

    convert_model, prepared = prepare_for_export(model, config.name, embeddings)
    concrete = serving_function(convert_model).get_concrete_function()
    # The converter saves its trackable object as a SavedModel first; a plain module holding
    # the variables spares it re-tracing every Keras layer (seconds for a QAT model).
    holder = tf.Module()
    holder.model_variables = list(convert_model.variables)

    def make_converter() -> Any:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
        if config.optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if sparse:
            converter.optimizations = [*converter.optimizations,
                                       tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        if examples is not None:
            ops = config.ops + (() if strict else config.fallback_ops)
            converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, o) for o in ops]
            converter.representative_dataset = lambda: iter(examples)
            if integer_io:
                io_type = getattr(tf, config.integer_io_type)
                converter.inference_input_type = io_type
                converter.inference_output_type = io_type
        if config.supported_types:
            converter.target_spec.supported_types = [getattr(tf, t) for t in config.supported_types]
        return converter

    options = {
        "mode": config.name,
        "sparse": sparse,
        "integer_io": integer_io,
        "strict": strict,
        "float_ops": list(keep_float),
        "num_calibration_steps": num_calibration_steps if examples is not None else None,
        "calibration_examples": len(examples) if examples is not None else None,
        "parity_tolerance": parity_tolerance,
        **prepared,
    }
    with _created_dirs(target.parent):
        try:
            flatbuffer = _convert(make_converter, config)
            flatbuffer, kept = keep_ops_in_float(flatbuffer, keep_float)
            options["float_ops_applied"] = kept
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(
                f"TFLite conversion of model {model.name!r} with quantization={config.name!r} "
                f"failed: {e}" + (" Try strict=False." if strict else "")
            ) from e
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=".tflite.tmp", dir=target.parent
        )
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(flatbuffer)
            artifact = _TFLiteVariant(str(tmp), target.name)
            parity = _parity(model, artifact, parity_data, parity_labels, parity_max_examples)
            del artifact
            if config.is_float and not (prepared["qat"] or prepared["embedding_tables"]):
                # (QAT models and int8 tables drift by design; the drift is recorded)
                _check_parity(parity, parity_tolerance, f"TFLite export {str(target)!r}")
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    files = file_table(target, target.parent)
    entry = manifest_entry(model.name, "tflite", options, parity, files)
    mpath = update_manifest(target.parent, target.name, entry)
    _log.info(
        "exported %s (%s, %d bytes, max |diff| %.3g)",
        target,
        config.name,
        entry["bytes"],
        parity["max_abs_diff"],
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


def export_saved_model(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    jit_compile: bool = True,
    parity_data: Any = None,
    parity_labels: Any = None,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
    parity_max_examples: int = DEFAULT_PARITY_EXAMPLES,
    overwrite: bool = True,
) -> ExportResult:
    """Write ``model`` as a SavedModel whose ``serving_default`` is an (XLA-)compiled function.

    The signature takes the model inputs by name (batch dimension None) and returns a dict of
    outputs keyed by the model's output names. Loading needs only TensorFlow::

        m = tf.saved_model.load(path)
        m.signatures["serving_default"](user_id=tf.constant([[3]]), ...)

    Args:
        model: a built tf_keras model.
        path: the SavedModel directory to create (must not be an existing file).
        jit_compile: compile the serving function with XLA (works on CPU and GPU).
        parity_data: data to compare the SavedModel with the Keras model on.
        parity_labels: labels for ``parity_data`` when it has none.
        parity_tolerance: max |diff| allowed; beyond it :class:`ParityError` and nothing written.
        parity_max_examples: examples taken from ``parity_data``.
        overwrite: replace an existing directory at ``path``.

    Returns:
        The :class:`ExportResult`.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: bad path or options; XLA compilation failure; corrupt manifest.
        ParityError: outputs drift beyond ``parity_tolerance`` (nothing is written).

    Example:
        >>> r = export_saved_model(model, "savedmodels/ctr_xla")  # doctest: +SKIP
        >>> r.format  # doctest: +SKIP
        'saved_model'
    """
    check_model(model, "model")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"`path` must be a directory path (str or Path), received {path!r}.")
    target = Path(path)
    if target.suffix in (".tflite", ".keras", ".h5", ".json"):
        raise ValueError(
            f"`path` {str(path)!r} looks like a file; a SavedModel is a directory, e.g. "
            f"{str(target.with_suffix(''))!r}."
        )
    if target.exists() and not target.is_dir():
        raise ValueError(f"`path` {str(path)!r} is an existing file; pass a directory path.")
    if not isinstance(jit_compile, bool):
        raise TypeError(f"`jit_compile` must be a bool, received {jit_compile!r}.")
    _check_common(parity_tolerance, parity_max_examples, overwrite)
    if target.exists() and not overwrite:
        raise ValueError(f"`path` {str(target)!r} exists; pass overwrite=True to replace it.")
    manifest_path = target.parent / MANIFEST_NAME
    if manifest_path.exists():
        read_manifest(manifest_path)
    if parity_data is not None:  # validate before the (slow) save
        structure, specs = model_input_specs(model)
        collect_examples(parity_data, structure, specs, 1, "parity_data")

    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = serving_function(model, jit_compile=jit_compile)
    options = {
        "jit_compile": jit_compile,
        "signature": "serving_default",
        "parity_tolerance": parity_tolerance,
    }
    with _created_dirs(target.parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        old = None
        try:
            tf.saved_model.save(
                module,
                str(tmp),
                signatures={"serving_default": module.serve.get_concrete_function()},
            )
            try:
                artifact = _SavedModelVariant(str(tmp), target.name)
                parity = _parity(model, artifact, parity_data, parity_labels, parity_max_examples)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
                raise ValueError(
                    f"SavedModel export of {model.name!r}: running the serving function "
                    f"(jit_compile={jit_compile}) failed: {e}. Try jit_compile=False."
                ) from e
            del artifact
            _check_parity(parity, parity_tolerance, f"SavedModel export {str(target)!r}")
            if target.exists():
                old = Path(
                    tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
                )
                os.replace(target, old / "x")
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and (old / "x").exists() and not target.exists():
                os.replace(old / "x", target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    files = file_table(target, target.parent)
    entry = manifest_entry(model.name, "saved_model", options, parity, files)
    mpath = update_manifest(target.parent, target.name, entry)
    _log.info(
        "exported SavedModel %s (jit_compile=%s, %d bytes, max |diff| %.3g)",
        target,
        jit_compile,
        entry["bytes"],
        parity["max_abs_diff"],
    )
    return ExportResult(
        target,
        "saved_model",
        "float32",
        entry["bytes"],
        entry["sha256"],
        parity,
        mpath,
        options,
    )
