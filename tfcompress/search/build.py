"""Build one `compress` candidate from the library's own verbs: ``shrink`` then a fine-tune
distilled from the teacher, optionally ``quantize`` (QAT) and another distilled fine-tune, or
``prune_vocabulary`` (rare ids share an OOV row), or a table layout (mixed-dimension or
quotient-remainder tables, :func:`table_layout`) and another distilled fine-tune, then
``export_tflite`` (with the candidate's table storage and fused front end) / ``export_saved_model``.

Example:
    >>> from tfcompress.search.build import fit_loss
    >>> fit_loss(model)  # doctest: +SKIP
    'binary_crossentropy'
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress.distillation import Distiller
from tfcompress.embeddings.compositional import compositional_embeddings
from tfcompress.embeddings.frequency import count_ids
from tfcompress.embeddings.mixed_dim import MIN_ROWS, mixed_dimension_embeddings
from tfcompress.embeddings.vocabulary import prune_vocabulary
from tfcompress.export import ExportResult, export_saved_model, export_tflite, load_variant
from tfcompress.export.converter import ConversionError
from tfcompress.export.fuse import fusable_tables
from tfcompress.pruning import shrink
from tfcompress.pruning.depth import drop_blocks
from tfcompress.quantization import quantize
from tfcompress.quantization.embedding import EXPORT_MIN_ROWS
from tfcompress.quantization.embedding_int4 import int4_row_bytes
from tfcompress.search.space import Candidate, SearchSettings

_log = logging.getLogger("tfcompress")

__all__ = [
    "build_model",
    "embedding_layers",
    "export_candidate",
    "fit_loss",
    "id_counts",
    "layout_tables",
    "mixed_budget",
    "representative_features",
    "row_bytes",
    "shrink_ratio",
    "table_layout",
]


def fit_loss(model: keras.Model) -> Any:
    """The loss the user compiled ``model`` with; else the task's usual loss from its output
    (one sigmoid/score column: binary cross-entropy; several: sparse categorical)."""
    loss = getattr(model, "loss", None)
    if loss is not None:
        return loss
    width = int(model.outputs[0].shape[-1] or 1) if getattr(model, "outputs", None) else 1
    return "binary_crossentropy" if width == 1 else "sparse_categorical_crossentropy"


def _scope(strategy: tf.distribute.Strategy | None) -> Any:
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def distilled_fit(
    student: keras.Model,
    teacher: keras.Model,
    train: Any,
    settings: SearchSettings,
    *,
    loss: Any,
    batch_size: int,
    strategy: tf.distribute.Strategy | None = None,
) -> None:
    """Fine-tune ``student`` in place for ``settings.epochs``, distilling from ``teacher``.

    The seed of the fit is ``settings.seed``, so a candidate rebuilt later is the same model.
    """
    keras.utils.set_random_seed(settings.seed)
    # the Distiller freezes its teacher (teacher.trainable = False); the teacher is the user's
    # model, which later candidates shrink, and a shrunk copy of a frozen model is frozen too
    was_trainable = teacher.trainable
    try:
        with _scope(strategy):
            wrapped = Distiller(student, teacher, student_loss_weight=settings.student_loss_weight)
            wrapped.compile(keras.optimizers.Adam(settings.learning_rate), loss=loss)
        if isinstance(train, tuple):
            wrapped.fit(
                train[0],
                train[1],
                batch_size=batch_size,
                epochs=settings.epochs,
                shuffle=True,
                verbose=0,
            )
        else:
            wrapped.fit(train, epochs=settings.epochs, verbose=0)
    finally:
        teacher.trainable = was_trainable


def build_model(
    model: keras.Model,
    teacher: keras.Model,
    candidate: Candidate,
    train: Any,
    settings: SearchSettings,
    *,
    shrunk: keras.Model | None = None,
    batch_size: int = 256,
    strategy: tf.distribute.Strategy | None = None,
    counts: Mapping[str, np.ndarray] | None = None,
) -> tuple[keras.Model, keras.Model]:
    """The Keras model of ``candidate``: (the model to export, the shrunk float model).

    Args:
        model: the original model.
        teacher: the model every fine-tune distils from (the original by default).
        candidate: what to build.
        train: the fine-tune data: a ``tf.data.Dataset`` of ``(x, y)`` batches or an
            ``(x, y)`` tuple of arrays.
        settings: epochs, learning rate, seed, distillation weight.
        shrunk: the candidate's shrunk and fine-tuned float model when already built (a QAT
            candidate reuses the PTQ candidate's), else None.
        batch_size: batch size for array data.
        strategy: a ``tf.distribute`` strategy to build and fit in (None: the default one).
        counts: ``{table: counts per id}`` on the training data (:func:`id_counts`); required
            when ``candidate.min_count`` or ``candidate.tables`` is set.

    Returns:
        ``(model_to_export, shrunk_float_model)``; both are ``model`` for a PTQ-only candidate.
        A rare-id candidate's model is the shrunk float model with its tables pruned, not
        fine-tuned (docs/compress.md, "The embedding axis", says why). A table-layout
        candidate's is the shrunk float model with its tables in the layout
        (:func:`table_layout`), fine-tuned distilling from ``teacher``.
    """
    loss = fit_loss(model)
    base = model
    if candidate.shrinks is not None:
        if shrunk is None:
            with _scope(strategy):
                shrunk = _dropped_and_shrunk(model, candidate)
            distilled_fit(
                shrunk,
                teacher,
                train,
                settings,
                loss=loss,
                batch_size=batch_size,
                strategy=strategy,
            )
        base = shrunk
    if candidate.tables is not None:
        if counts is None:
            raise ValueError(
                f"candidate {candidate.name}: `tables={candidate.tables!r}` needs the ids' counts "
                "on the training data; pass counts=id_counts(model, train)."
            )
        with _scope(strategy):
            layout = table_layout(base, candidate, counts)
        distilled_fit(
            layout, teacher, train, settings, loss=loss, batch_size=batch_size, strategy=strategy
        )
        return layout, base
    if candidate.min_count:
        if counts is None:
            raise ValueError(
                f"candidate {candidate.name}: `min_count` needs the ids' counts on the training "
                "data; pass counts=id_counts(model, train)."
            )
        with _scope(strategy):
            # the id map in ~1 byte an id (BlockedIdRemap) instead of 4: at 2M ids 19.6x
            # instead of 10.2x smaller tables with int8 rows (docs/embeddings.md)
            pruned, _ = prune_vocabulary(
                base, counts, min_count=candidate.min_count, compact_map=True
            )
        return pruned, base
    if not candidate.qat:
        return base, base
    with _scope(strategy):
        qat = quantize(base, skip=list(candidate.keep_float) or None)
    distilled_fit(
        qat, teacher, train, settings, loss=loss, batch_size=batch_size, strategy=strategy
    )
    return qat, base


def _dropped_and_shrunk(model: keras.Model, candidate: Candidate) -> keras.Model:
    """``model`` with ``candidate.depth`` blocks dropped (``drop_blocks``), then shrunk by the
    candidate's ratios (the layers of the dropped blocks leave its ``skip``)."""
    if candidate.depth:
        model, _ = drop_blocks(model, candidate.depth)
    if not candidate.shrink and candidate.embeddings is None:
        return model
    names = {layer.name for layer in model.layers}
    skip = [name for name in candidate.skip if name in names]
    return shrink(model, shrink_ratio(model, candidate), skip=skip or None)


def row_bytes(storage: str | None, mode: str | None, dim: int, rows: int) -> float:
    """Bytes of one table row in a .tflite file: ``storage`` (``export_tflite(embeddings=)``)
    in ``mode``; tables under ``EXPORT_MIN_ROWS`` rows are left to the converter.

    Example:
        >>> row_bytes("int4", "int8", 16, 1000), row_bytes(None, "int8", 16, 1000)
        (12, 16)
    """
    if storage == "int4_compact" and rows >= EXPORT_MIN_ROWS:
        # a scale code a row, and the table's 256-entry float32 codebook spread over its rows
        return int4_row_bytes(dim, "codebook") + 1024 / rows
    if storage == "int4" and rows >= EXPORT_MIN_ROWS:
        return int4_row_bytes(dim)  # two codes a byte, a float16 scale and offset
    if storage == "int8_row" and rows >= EXPORT_MIN_ROWS:
        return dim + 2  # a float16 scale per row
    if mode in ("dynamic", "int8", "int16x8"):  # int8, a row scale from 32 values on
        return dim + 2 if dim >= 32 and rows >= EXPORT_MIN_ROWS else dim
    return 2 * dim if mode == "float16" else 4 * dim


def layout_tables(model: keras.Model, counts: Mapping[str, np.ndarray]) -> list[str]:
    """The top-level ``Embedding`` tables of ``model`` a table layout replaces: those with
    counts and at least ``max(EXPORT_MIN_ROWS, MIN_ROWS)`` (64) rows (smaller ones' bytes do
    not matter, and the export leaves them to the converter)."""
    least = max(EXPORT_MIN_ROWS, MIN_ROWS)
    return [
        name
        for name in embedding_layers(model)
        if name in counts and int(model.get_layer(name).input_dim) >= least
    ]


def mixed_budget(candidate: Candidate, rows: int, dim: int) -> float:
    """The ``budget`` (a fraction of the float32 table's bytes) of a ``rows x dim`` table's
    mixed-dimension layout in ``candidate``: the fraction the candidate's own storage
    (``candidate.rows`` in ``candidate.quantization``, :func:`row_bytes`) takes of the plain
    table.

    The rule: the layout, counted in float32 (block rows, projections and its id map), spends
    the bytes the storage already spends on the plain table (int4_compact rows of 32 values:
    0.14 of float), as wide rows for frequent ids and narrow ones for rare ids; stored in the
    same storage its blocks shrink again (its id map does not), so the exported tables come
    out smaller than the storage alone (estimated before any fine-tune by
    ``tables_axis.layout_bytes``; the search builds it only where that estimate beats the best
    kept export). A budget no layout fits (``mixed_dimension_embeddings`` raises) leaves the
    candidate unbuilt, with the reason.

    Example:
        >>> mixed_budget(Candidate(rows="int4_compact", quantization="int8", tables="mixed"),
        ...     1000, 32)  # doctest: +ELLIPSIS
        0.1408...
    """
    stored = row_bytes(candidate.rows, candidate.quantization, dim, rows)
    return float(min(1.0, stored / (4.0 * dim)))


def table_layout(
    model: keras.Model, candidate: Candidate, counts: Mapping[str, np.ndarray]
) -> keras.Model:
    """A copy of ``model`` (a float model) with its tables of :func:`layout_tables` in
    ``candidate.tables``' layout, initialised from the trained tables (not fine-tuned):
    ``"qr"``, ``compositional_embeddings(mode="qr")`` (``ceil(sqrt(V))`` remainder rows,
    combined by product, counts weighting the fit); ``"mixed"``,
    ``mixed_dimension_embeddings`` per table at :func:`mixed_budget`.

    Raises:
        ValueError: no table of ``model`` has 64 rows or more and counts; none changes in the
            layout; a mixed budget no layout fits (``mixed_dimension_embeddings``' message).
    """
    names = layout_tables(model, counts)
    if not names:
        raise ValueError(
            f"candidate {candidate.name}: model {model.name!r} has no top-level Embedding table "
            f"of >= {max(EXPORT_MIN_ROWS, MIN_ROWS)} rows with id counts to lay out; leave "
            "`tables=None`."
        )
    original = model
    if candidate.tables == "qr":
        chosen = {name: counts[name] for name in names}
        model = compositional_embeddings(model, tables=names, mode="qr", counts=chosen)[0]
    else:
        for name in names:
            layer = model.get_layer(name)
            budget = mixed_budget(candidate, int(layer.input_dim), int(layer.output_dim))
            model = mixed_dimension_embeddings(model, counts, tables=[name], budget=budget)[0]
    if model is original or all(
        isinstance(model.get_layer(name), keras.layers.Embedding) for name in names
    ):
        # e.g. QR tables no smaller than a small table: nothing to fine-tune (and a fine-tune
        # of ``original`` itself would change the search's cached float model)
        raise ValueError(
            f"candidate {candidate.name}: no table of model {model.name!r} ({names}) changes "
            f"in layout {candidate.tables!r}; leave `tables=None`."
        )
    return model


def embedding_layers(model: keras.Model) -> list[str]:
    """The names of ``model``'s top-level ``Embedding`` layers (the tables whose dimensions the
    search's second axis shrinks)."""
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Embedding)]


def id_counts(model: keras.Model, train: Any) -> dict[str, np.ndarray]:
    """How often each id of each table of ``model`` (nested ones under their path, e.g.
    ``"tower/emb_item"``) occurs in ``train`` (an ``(x, y)`` tuple of arrays or a
    ``tf.data.Dataset``): the input of rare-id pruning, counted once per search.

    Raises:
        ValueError: no table reads a model input directly (``count_ids``'s message).
    """
    return count_ids(model, [train] if isinstance(train, tuple) else train)


def shrink_ratio(model: keras.Model, candidate: Candidate) -> float | dict[str, float]:
    """What ``shrink`` gets for ``candidate``: its ratio, or per layer when the embedding
    tables have a ratio of their own."""
    if candidate.embeddings is None:
        return candidate.shrink
    tables = embedding_layers(model)
    if not tables:
        raise ValueError(
            f"candidate {candidate.name}: model '{model.name}' has no top-level Embedding layer "
            "whose dimensions `embeddings` could shrink; leave `embeddings=None`."
        )
    return {"default": candidate.shrink, **{name: candidate.embeddings for name in tables}}


def teacher_in_scope(teacher: keras.Model, strategy: tf.distribute.Strategy | None) -> keras.Model:
    """``teacher``, or a copy of it whose variables live in ``strategy``'s scope: Keras refuses
    to fit a Distiller whose teacher was built outside the strategy it is compiled in."""
    if strategy is None or not teacher.weights:
        return teacher
    if strategy.extended.variable_created_in_scope(teacher.weights[0]):
        return teacher
    try:
        with strategy.scope():
            copy = keras.models.clone_model(teacher)
            copy.set_weights(teacher.get_weights())
    except (TypeError, ValueError, NotImplementedError) as err:
        raise ValueError(
            f"the teacher {teacher.name!r} was built outside the strategy's scope and cannot be "
            f"cloned into it ({err}); build it inside `with strategy.scope():`."
        ) from err
    return copy


def representative_features(model: keras.Model, train: Any, limit: int = 256) -> Any:
    """Calibration features for a full-integer export: the first ``limit`` training inputs,
    read once into arrays (a tf.data pipeline may reshuffle on every pass, and each candidate
    of a search, or a resumed one, must calibrate on the same examples)."""
    return load_variant(model).collect(train, limit)[0]


def export_candidate(
    model: keras.Model,
    candidate: Candidate,
    path: Path,
    *,
    runtime: str,
    representative: Any,
) -> ExportResult:
    """Export ``model`` as ``candidate`` says, to ``path`` (``.tflite`` file or directory).

    Quality is judged by the search on the validation data, so the export's own drift check
    is off (``drift="ignore"``). The tables are stored as ``candidate.rows`` says, and the
    front end fused as ``candidate.fuse`` says (None: the export's auto rule).
    """
    if runtime == "saved_model":
        return export_saved_model(model, path)
    if candidate.fuse and not fusable_tables(model):
        # e.g. a shrink that skipped one of two tables of one width: a failed candidate
        # (recorded with this reason), not a failed search
        raise ConversionError(
            f"candidate {candidate.name}: model {model.name!r} has no two Embedding tables of "
            "one width reading integer model inputs to fuse; pass fuse=None."
        )
    mode = candidate.quantization
    calibrated = mode in ("int8", "int16x8") and not candidate.qat
    return export_tflite(
        model,
        path,
        mode,
        representative_data=representative if calibrated else None,
        # full int8 keeps in float the op groups measured faster in float on this machine
        # (attention, normalization...: the BST's int8 file went from 0.42x to 0.93x float);
        # dynamic computes its int8 weights in float where measured faster (same bytes, no
        # activation quantized: the DCN student on an AVX2 CPU, 0.92x -> 1.01x float at batch 256)
        float_ops="auto" if mode in ("int8", "dynamic") else None,
        drift="ignore",
        embeddings=candidate.rows,
        fuse_embeddings=candidate.fuse,
    )
