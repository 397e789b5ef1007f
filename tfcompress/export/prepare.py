"""What ``export_tflite`` converts: pruning stripped, sparse storage (float only), subclassed
models, calibration examples.

Example:
    >>> model, sparse = prepare_sparse(model, None, "float32")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tfcompress._compat import is_graph_network
from tfcompress._keras import keras
from tfcompress.export.runtime import InputSpec, collect_examples
from tfcompress.quantization.embedding import EXPORT_MIN_ROWS, embedding_of

_log = logging.getLogger("tfcompress")

__all__ = [
    "AUTO_SPARSE_THRESHOLD",
    "SPARSE_MODES",
    "is_subclassed",
    "prepare_sparse",
    "representative_examples",
    "resolve_subclassed",
]

#: ``sparse=None`` stores weights in TFLite's sparse format from this overall sparsity on.
AUTO_SPARSE_THRESHOLD = 0.5

#: modes whose files LiteRT can run with sparse weights: in the integer modes the XNNPACK and
#: built-in FULLY_CONNECTED kernels fail to prepare sparse int8 weights (LiteRT 2.x, measured)
SPARSE_MODES = ("float32", "float16")

_QUANTIZED_TABLE_MODES = ("dynamic", "int8", "int16x8")


def prepare_sparse(model: keras.Model, sparse: bool | None, mode: str) -> tuple[keras.Model, bool]:
    """Strip pruning wrappers and decide whether the converter stores weights sparsely.

    Example:
        >>> plain, sparse = prepare_sparse(pruned, None, "float32")  # doctest: +SKIP
    """
    from tfcompress.pruning.pruner import is_pruned, sparsity_report, strip  # pruning imports TFMOT

    if sparse and mode not in SPARSE_MODES:
        raise ValueError(
            f"`sparse=True` with quantization={mode!r}: LiteRT cannot run sparse integer "
            "weights (its FULLY_CONNECTED kernels fail to prepare them). Use sparse=False or "
            "None: the int8 weights are already 4x smaller, and their zeros still compress "
            "under gzip; or export in float32/float16 with sparse=True."
        )
    if is_pruned(model):
        _log.info(
            "Model %r holds pruning wrappers: exporting tfcompress.pruning.strip(model).",
            model.name,
        )
        model = strip(model)
    if sparse is None:
        overall = sparsity_report(model).overall
        sparse = bool(
            overall is not None and overall >= AUTO_SPARSE_THRESHOLD and mode in SPARSE_MODES
        )
        if sparse:
            _log.info(
                "Model %r is %.0f%% sparse: weights stored in TFLite's sparse format.",
                model.name,
                100 * overall,
            )
    return model, sparse


def is_subclassed(model: keras.Model) -> bool:
    """True for a subclassed model (neither functional nor Sequential).

    Example:
        >>> is_subclassed(keras.Sequential([keras.layers.Dense(1)]))
        False
    """
    # `is_graph_network` (a private Keras hook, see _compat) is how tf_keras itself
    # (clone_model, saving) tells functional models, including Model(inputs, outputs) subclasses.
    return not isinstance(model, keras.Sequential) and not is_graph_network(model)


def _swappable_tables(model: keras.Model) -> list[str]:
    """Names of the embedding tables ``prepare_for_export`` would swap for int8 tables."""
    names = []
    for layer in model.submodules:
        if not isinstance(layer, keras.layers.Layer):
            continue
        emb = embedding_of(layer)
        if emb is not None and (emb.input_dim >= EXPORT_MIN_ROWS or layer is not emb):
            names.append(layer.name)
    return sorted(set(names))


def resolve_subclassed(
    model: keras.Model, mode: str, embeddings: str | None, qat: bool
) -> str | None:
    """The ``embeddings`` option to export ``model`` with; errors a subclassed model cannot avoid.

    For a functional or Sequential model, ``embeddings`` unchanged. For a subclassed model with
    tables that would be swapped: None becomes ``"float"`` (logged at INFO: the converter's own
    int8 tables, one scale per table), an explicit int8 mode is a ``ValueError`` with the fix.

    Raises:
        ValueError: an int8 ``embeddings`` mode for a subclassed model with tables; a subclassed
            model holding QAT layers exported in another mode than ``"int8"``.

    Example:
        >>> resolve_subclassed(subclassed, "int8", None, qat=False)  # doctest: +SKIP
        'float'
    """
    if not is_subclassed(model):
        return embeddings
    if qat and mode != "int8":
        raise ValueError(
            f"Model {model.name!r} is a subclassed model holding QAT layers "
            f"(tfcompress.quantize); quantization={mode!r} needs a float copy, which only "
            "functional and Sequential models can be stripped to. Export it with "
            "quantization='int8' (it converts with the ranges it trained), or rebuild the model "
            "around tfcompress.quantization.strip(tower) of each quantized sub-model and export "
            "that."
        )
    choice = embeddings or ("int8" if mode in _QUANTIZED_TABLE_MODES else "float")
    if choice == "float":
        return embeddings
    tables = _swappable_tables(model)
    if not tables:
        return embeddings
    if embeddings is not None:
        raise ValueError(
            f"`embeddings={embeddings!r}`: model {model.name!r} is a subclassed model, so its "
            f"Embedding layers {tables} cannot be swapped for int8/int4 tables. Pass "
            "embeddings='float' (in the 'dynamic' and 'int8' modes the converter still stores "
            "large tables int8, with one scale per table), or build the model with the "
            "functional API or keras.Sequential for a scale per row."
        )
    _log.info(
        "Model %r is a subclassed model: its Embedding layers %s cannot be swapped for int8 "
        "tables with a scale per row; exporting with embeddings='float' (the converter's own "
        "handling; quantization=%r). Build it with the functional API for per-row scales.",
        model.name,
        tables,
        mode,
    )
    return "float"


def representative_examples(
    data: Any, structure: str, specs: tuple[InputSpec, ...], steps: int
) -> list[dict[str, np.ndarray]]:
    """Up to ``steps`` examples of ``data``, one batch of 1 each, for the calibrator.

    Example:
        >>> representative_examples(ds, "dict", specs, 100)[0]["user_id"].shape  # doctest: +SKIP
        (1, 1)
    """
    feats, _ = collect_examples(data, structure, specs, steps, "representative_data")
    n = len(next(iter(feats.values())))
    return [{k: v[i : i + 1] for k, v in feats.items()} for i in range(n)]
