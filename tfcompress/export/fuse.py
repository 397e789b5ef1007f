"""The fused embedding front end (:func:`fuse_embeddings`): an export-time rewrite of a functional
tf_keras model that turns one lookup per feature into ONE gather on a concatenated table, and
the ``Flatten`` / masked-mean pooling after it into a reshape and a plain sum.

The rewrite (measurements and limits: docs/export.md, "Fused embedding front end"):

- the ``Embedding`` layers of one output width that read integer model inputs directly share a
  table: their rows are stacked, each table at a row offset (a table read by several inputs
  appears once), plus one all-zero row when something is pooled. The id inputs are
  concatenated (one ``CONCATENATION``), clipped to their table's rows (one ``MAXIMUM`` with 0,
  one ``MINIMUM`` with the per-position last rows), shifted by their table's offset (a padding
  id at a pooled position to the zero row) and looked up once (one ``GATHER``);
- a run of ``Flatten``-ed lookups is one reshape of its slice of the gather; a run of
  :class:`~tfcompress.models.layers.MaskedMean` poolings of one length (each by its own ids,
  0 = padding) is one ``SUM`` (the padding rows are zero) times ``1 / max(count, 1)``;
  a ``Concatenate`` of those vectors in order reads the runs directly;
- any other use of a lookup reads its ``(batch, length, dim)`` slice of the gather.

The fused table is a plain ``keras.layers.Embedding``, so ``export_tflite(embeddings="int8")``
still stores it as int8 (or int4) rows.

Example:
    >>> from tfcompress._keras import keras
    >>> a = keras.Input((1,), dtype="int32", name="a")
    >>> b = keras.Input((1,), dtype="int32", name="b")
    >>> ea = keras.layers.Flatten()(keras.layers.Embedding(10, 4, name="ea")(a))
    >>> eb = keras.layers.Flatten()(keras.layers.Embedding(20, 4, name="eb")(b))
    >>> model = keras.Model([a, b], keras.layers.Concatenate()([ea, eb]))
    >>> fused, report = fuse_embeddings(model)
    >>> [d.layer for d in report.applied]
    ['ea', 'eb']
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfcompress._compat import is_graph_network, keras_history, keras_layer_of, nodes_by_depth
from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import CompressionReport, LayerDecision
from tfcompress.export.fuse_layers import (
    FLAT,
    MAX_FLOAT_ROWS,
    MEAN,
    FusedGatherIds,
    FusedPooling,
    FusedSlice,
    item_runs,
)
from tfcompress.models.layers import MaskedMean

__all__ = [
    "AUTO_FUSE_MODES",
    "POOLING_METHODS",
    "fusable_tables",
    "fuse_embeddings",
    "fuse_for_export",
]


# --------------------------------------------------------------------------- analysis


@dataclasses.dataclass
class _Lookup:
    """One call of a fusable table on one model input."""

    layer: keras.layers.Embedding
    ids: Any  # the model input (Keras tensor)
    output: Any  # the Embedding's output tensor
    length: int
    start: int = 0


@dataclasses.dataclass
class _Item:
    """One flattened or pooled vector the fused front end computes."""

    kind: str
    lookup: _Lookup
    output: Any  # the Flatten's / MaskedMean's output tensor


def _describe(layer: Any) -> str:
    return f"'{layer.name}' ({type(layer).__name__})"


def _is_keras_tensor(x: Any) -> bool:
    return keras_layer_of(x) is not None


def _all_nodes(model: keras.Model) -> list:
    """The model's nodes from the inputs to the outputs."""
    by_depth = nodes_by_depth(model)
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def _table_problem(layer: Any, nodes: list, inputs: dict[int, Any]) -> str:
    """Why ``layer`` (an Embedding) cannot be fused; '' when it can."""
    if type(layer) is not keras.layers.Embedding:
        return f"a subclass of Embedding ({type(layer).__name__}) may look ids up differently"
    if layer.mask_zero:
        return "mask_zero=True (the mask it propagates would be lost)"
    if layer.dtype_policy.compute_dtype != "float32":
        return f"compute dtype {layer.dtype_policy.compute_dtype} (fusion is float32)"
    if not nodes:
        return "never called in this model"
    for node in nodes:
        ins = list(node.keras_inputs)
        if len(ins) != 1 or id(ins[0]) not in inputs:
            src = keras_layer_of(ins[0]) if ins else None
            what = _describe(src) if src is not None else "no Keras tensor"
            return f"reads {what}, not a model input (fusion reads model inputs directly)"
        ids = ins[0]
        if not ids.dtype.is_integer:
            return f"reads the {ids.dtype.name} input '{keras_history(ids)[0].name}' (ids are ints)"
        if ids.shape.rank != 2 or ids.shape[1] is None:
            return (
                f"reads '{keras_history(ids)[0].name}' of shape {tuple(ids.shape)} (fusion reads "
                "(batch, length) ids of a static length)"
            )
        if node.call_kwargs:
            return f"called with arguments {sorted(node.call_kwargs)}"
    return ""


def _analyse(model: keras.Model) -> tuple[dict[int, list[_Lookup]], list[LayerDecision], list]:
    """Fusable lookups grouped by width, the decisions on left-alone tables, all nodes."""
    nodes = _all_nodes(model)
    inputs = {id(t): t for t in tf.nest.flatten(model.input)}
    calls: dict[int, list] = {}
    for node in nodes:
        if isinstance(node.layer, keras.layers.Embedding):
            calls.setdefault(id(node.layer), []).append(node)
    groups: dict[int, list[_Lookup]] = {}
    left: list[LayerDecision] = []
    seen: set[int] = set()
    for node in nodes:
        layer = node.layer
        if not isinstance(layer, keras.layers.Embedding) or id(layer) in seen:
            continue
        seen.add(id(layer))
        problem = _table_problem(layer, calls[id(layer)], inputs)
        if problem:
            left.append(LayerDecision(layer.name, type(layer).__name__, False, reason=problem))
            continue
        for call in calls[id(layer)]:
            ids = list(call.keras_inputs)[0]
            out = tf.nest.flatten(call.outputs)[0]
            groups.setdefault(int(layer.output_dim), []).append(
                _Lookup(layer, ids, out, int(ids.shape[1]))
            )
    for layer in _nested_embeddings(model):
        left.append(
            LayerDecision(layer.name, type(layer).__name__, False, reason="inside a nested model")
        )
    return groups, left, nodes


def _nested_embeddings(model: keras.Model) -> list:
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += [sub for sub in layer.submodules if isinstance(sub, keras.layers.Embedding)]
    return found


def fusable_tables(model: keras.Model) -> list[str]:
    """Names (sorted) of the ``Embedding`` layers :func:`fuse_embeddings` would fuse.

    Example:
        >>> fusable_tables(model)  # doctest: +SKIP
        ['emb_user_id', 'emb_item_id']
    """
    check_model(model, "model")
    if not is_graph_network(model) or isinstance(model, keras.Sequential):
        return []
    groups, _, _ = _analyse(model)
    names = {t.layer.name for lookups in groups.values() if len(lookups) >= 2 for t in lookups}
    return sorted(names)


def _items(nodes: list, lookups: list[_Lookup]) -> tuple[list[_Item], set[int]]:
    """The Flatten / MaskedMean uses of ``lookups`` the pooling computes; ids of their nodes."""
    by_output = {id(t.output): t for t in lookups}
    items, replaced = [], set()
    for node in nodes:
        layer, ins = node.layer, list(node.keras_inputs)
        if not ins or id(ins[0]) not in by_output or node.call_kwargs:
            continue
        lookup = by_output[id(ins[0])]
        out = tf.nest.flatten(node.outputs)[0]
        if type(layer) is keras.layers.Flatten and len(ins) == 1:
            if layer.data_format == "channels_last":
                items.append(_Item(FLAT, lookup, out))
                replaced.add(id(node))
        elif isinstance(layer, MaskedMean) and len(ins) == 2 and ins[1] is lookup.ids:
            items.append(_Item(MEAN, lookup, out))
            replaced.add(id(node))
    return items, replaced


def _order(items: list[_Item], nodes: list, inputs: list) -> list[_Item]:
    """Items in the order the first ``Concatenate`` reading them takes, then by input order."""
    by_output = {id(i.output): i for i in items}
    ordered: list[_Item] = []
    for node in nodes:
        if _folds(node):
            for t in node.keras_inputs:
                item = by_output.get(id(t))
                if item is not None and item not in ordered:
                    ordered.append(item)
    rank = {id(t): i for i, t in enumerate(inputs)}
    rest = sorted((i for i in items if i not in ordered), key=lambda i: rank[id(i.lookup.ids)])
    return ordered + rest


def _pieces(items: list[_Item], nodes: list, outputs: set[int]) -> list[list[int]]:
    """Item ranges each ``Concatenate`` reads in a row (the rest: one range per item).

    ``outputs``: ids of the model's output tensors (an item that is one gets its own range).
    """
    index = {id(item.output): k for k, item in enumerate(items)}
    cuts = {0, len(items)}
    for node in nodes:
        if not _folds(node):
            continue
        ks = [index.get(id(t)) for t in node.keras_inputs]
        for pos, k in enumerate(ks):
            if k is None:
                continue
            prev = ks[pos - 1] if pos else None
            if prev is None or prev != k - 1:
                cuts.add(k)
            nxt = ks[pos + 1] if pos + 1 < len(ks) else None
            if nxt is None or nxt != k + 1:
                cuts.add(k + 1)
    for node in nodes:  # an item read outside a Concatenate gets a piece of its own
        if _folds(node):
            continue
        for t in node.keras_inputs:
            k = index.get(id(t))
            if k is not None:
                cuts.update((k, k + 1))
    for key in outputs:
        if key in index:
            cuts.update((index[key], index[key] + 1))
    for a, b in item_runs([[i.kind, i.lookup.start, i.lookup.length] for i in items]):
        cuts.update((a, b))  # a piece never spans two runs: no concat inside the pooling
    bounds = sorted(cuts)
    return [[a, b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _folds(node: Any) -> bool:
    layer = node.layer
    return (
        type(layer) is keras.layers.Concatenate and layer.axis in (-1, 1) and not node.call_kwargs
    )


# --------------------------------------------------------------------------- the rewrite

#: ``pooling`` values: a SUM over the zero-padded rows (default), or the masked weights and one
#: BATCH_MATMUL per run (measured slower: docs/export.md)
POOLING_METHODS = ("sum", "matmul")
#: quantization modes in which ``export_tflite(fuse_embeddings=None)`` fuses (see docs/export.md)
AUTO_FUSE_MODES = ("float32", "dynamic", "float16")
_FLOAT_MODES = ("float32", "float16")  # the modes whose default tables stay float
_INTEGER_MODES = ("int8", "int16x8", "qat", "float16")  # rows computed in int32 (see below)


class _Rewrite:
    """The fused model's tensors: built group by group, then the rest of the graph re-called."""

    def __init__(self, model: keras.Model, nodes: list, pooling: str) -> None:
        self.model, self.nodes, self.pooling = model, nodes, pooling
        self.inputs = tf.nest.flatten(model.input)
        self.mapping: dict[int, Any] = {id(t): t for t in self.inputs}
        self.lazy: dict[int, Any] = {}  # lookup output -> (gathered, lookup): a FusedSlice on use
        self.folded: dict[int, tuple[int, Any, int]] = {}  # item output -> (k, piece, piece stop)
        self.skip: set[int] = set()
        self.decisions: list[LayerDecision] = []
        self.kinds: dict[str, int] = {FLAT: 0, MEAN: 0}  # uses replaced: Flatten, MaskedMean

    def group(self, dim: int, lookups: list[_Lookup], suffix: str) -> None:
        items, replaced = _items(self.nodes, lookups)
        items = _order(items, self.nodes, self.inputs)
        first = {}
        for k, item in enumerate(items):
            first.setdefault(id(item.lookup), k)
        rank = {id(t): i for i, t in enumerate(self.inputs)}
        lookups = sorted(lookups, key=lambda t: (first.get(id(t), len(items)), rank[id(t.ids)]))
        tables: list[keras.layers.Embedding] = []
        offsets: dict[int, int] = {}
        for t in lookups:
            if id(t.layer) not in offsets:
                offsets[id(t.layer)] = sum(int(x.input_dim) for x in tables)
                tables.append(t.layer)
        pos_offsets, pos_limits, start = [], [], 0
        for t in lookups:
            t.start, start = start, start + t.length
            pos_offsets += [offsets[id(t.layer)]] * t.length
            pos_limits += [int(t.layer.input_dim) - 1] * t.length  # ids clipped to their table
        rows = sum(int(x.input_dim) for x in tables)
        pooled = [0] * start
        for item in items:
            if item.kind == MEAN:
                t = item.lookup
                pooled[t.start : t.start + t.length] = [1] * t.length
        weights = [x.get_weights()[0] for x in tables]
        if any(pooled):  # the zero row pooled padding ids read
            weights.append(np.zeros((1, dim), weights[0].dtype))
        present, shifted = FusedGatherIds(
            pos_offsets, pooled, rows, pos_limits, name=f"fused_ids{suffix}"
        )([self.mapping[id(t.ids)] for t in lookups])
        stacked = np.concatenate(weights, axis=0)
        table = keras.layers.Embedding(len(stacked), dim, name=f"fused_embedding{suffix}")
        gathered = table(shifted)
        table.set_weights([stacked])
        for t in lookups:
            self.lazy[id(t.output)] = (gathered, t)
        self.skip.update(id(n) for n in self.nodes if n.layer in tables)
        self.skip.update(replaced)
        if items:
            self._pool(items, gathered, present, suffix)
        for x in tables:
            readers = [keras_history(t.ids)[0].name for t in lookups if t.layer is x]
            self.decisions.append(
                LayerDecision(
                    x.name,
                    type(x).__name__,
                    True,
                    f"rows {offsets[id(x)]}-{offsets[id(x)] + int(x.input_dim) - 1} of "
                    f"'{table.name}' ({rows} x {dim}), read by {readers}",
                )
            )

    def _pool(self, items: list[_Item], gathered: Any, present: Any, suffix: str) -> None:
        outputs = {id(t) for t in tf.nest.flatten(self.model.output)}
        pieces = _pieces(items, self.nodes, outputs)
        for item in items:
            self.kinds[item.kind] += 1
        pooled = FusedPooling(
            [[i.kind, i.lookup.start, i.lookup.length] for i in items],
            pieces,
            self.pooling,
            name=f"fused_pooling{suffix}",
        )([gathered, present])
        pooled = pooled if isinstance(pooled, list) else [pooled]
        for (a, b), tensor in zip(pieces, pooled, strict=True):
            if b - a == 1:
                self.mapping[id(items[a].output)] = tensor
            for k in range(a, b):
                self.folded[id(items[k].output)] = (k, tensor, a)

    def get(self, tensor: Any) -> Any:
        key = id(tensor)
        if key not in self.mapping and key in self.lazy:
            gathered, t = self.lazy[key]
            name = f"{t.layer.name}_{keras_history(t.ids)[0].name}_slice"
            self.mapping[key] = FusedSlice(t.start, t.length, name=name)(gathered)
        return self.mapping[key]

    def _concat_inputs(self, node: Any) -> list:
        new = []
        for t in node.keras_inputs:
            hit = self.folded.get(id(t))
            if hit is None:
                new.append(self.get(t))
            elif hit[0] == hit[2]:  # the first item of a piece: the whole piece
                new.append(hit[1])
        return new

    def run(self) -> keras.Model:
        for node in self.nodes:
            if node.is_input or id(node) in self.skip:
                continue
            outs = tf.nest.flatten(node.outputs)
            if _folds(node) and any(id(t) in self.folded for t in node.keras_inputs):
                ins = self._concat_inputs(node)
                layer = node.layer
                new = (
                    ins[0]
                    if len(ins) == 1
                    else keras.layers.Concatenate(axis=layer.axis, name=layer.name)(ins)
                )
            else:
                args, kwargs = tf.nest.map_structure(
                    lambda x: self.get(x) if _is_keras_tensor(x) else x,
                    (node.call_args, node.call_kwargs),
                )
                new = node.layer(*args, **kwargs)
            for old, value in zip(outs, tf.nest.flatten(new), strict=True):
                self.mapping[id(old)] = value
        outputs = tf.nest.map_structure(self._named_output, self.model.output)
        return keras.Model(self.model.input, outputs, name=self.model.name)

    def _named_output(self, tensor: Any) -> Any:
        """The new output of ``tensor``, under its layer's name (the signature's output name)."""
        new, name = self.get(tensor), keras_history(tensor)[0].name
        if keras_history(new)[0].name == name:
            return new
        return keras.layers.Identity(name=name)(new)


def fuse_embeddings(
    model: keras.Model, *, pooling: str = "sum"
) -> tuple[keras.Model, CompressionReport]:
    """``model`` with its embedding front end fused: one gather per table width.

    Every ``Embedding`` layer (the plain class, ``mask_zero=False``, float32) whose every call
    reads an integer ``(batch, length)`` model input directly joins the fused table of its
    output width, if that width has at least two lookups. Its ``Flatten`` uses become reshapes
    of the gather and its :class:`~tfcompress.models.layers.MaskedMean` uses a ``SUM`` over
    rows whose padding reads an all-zero row, times ``1 / max(count, 1)``. The math is the
    same (max |diff| ~1e-7). Ids outside a table's rows (``Embedding`` and the unfused
    ``.tflite`` fail on them) are clipped to ``[0, rows - 1]`` of their own table, never read
    from the next table: a negative id reads row 0 (or, pooled, counts as padding). The new
    model shares every other layer (and its weights) with ``model``; use it for export.

    Args:
        model: a built functional tf_keras model.
        pooling: ``"sum"`` (default; measured faster, see docs/export.md) or ``"matmul"``.

    Returns:
        ``(fused_model, report)``: the report lists each table (applied: its rows in the fused
        table; skipped: why it was left alone, e.g. a table read by a non-input tensor, a
        ``mask_zero=True`` table, one inside a nested model, the only table of its width).

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ``model`` is subclassed or Sequential (no graph to rewrite); bad ``pooling``.

    Example:
        >>> fused, report = fuse_embeddings(models.dcn(task.schema))  # doctest: +SKIP
        >>> len(report.applied)  # doctest: +SKIP
        9
    """
    check_model(model, "model")
    if pooling not in POOLING_METHODS:
        raise ValueError(f"`pooling` must be one of {list(POOLING_METHODS)}, received {pooling!r}.")
    if isinstance(model, keras.Sequential) or not is_graph_network(model):
        kind = "Sequential" if isinstance(model, keras.Sequential) else "subclassed"
        raise ValueError(
            f"fuse_embeddings: model {model.name!r} is a {kind} model; the rewrite needs a "
            "functional model whose Embedding layers read its inputs (build it with "
            "keras.Model(inputs, outputs)), or export it without fusing."
        )
    groups, left, nodes = _analyse(model)
    rewrite = _Rewrite(model, nodes, pooling)
    fused_groups = {}
    for dim, lookups in groups.items():
        tables = list({id(t.layer): t.layer for t in lookups}.values())
        rows = sum(int(x.input_dim) for x in tables)
        if len(lookups) >= 2 and rows < MAX_FLOAT_ROWS:
            fused_groups[dim] = lookups
            continue
        why = (
            f"the only lookup of width {dim}: nothing to fuse it with"
            if len(lookups) < 2
            else f"the tables of width {dim} hold {rows} rows together (fusion: < {MAX_FLOAT_ROWS})"
        )
        left += [LayerDecision(x.name, type(x).__name__, False, reason=why) for x in tables]
    for dim in sorted(fused_groups):
        suffix = "" if len(fused_groups) == 1 else f"_{dim}"
        rewrite.group(dim, fused_groups[dim], suffix)
    new = rewrite.run() if fused_groups else model
    report = CompressionReport(
        "fuse_embeddings",
        tuple(rewrite.decisions + left),
        {
            "pooling": pooling,
            "widths": sorted(fused_groups),
            "flattened": rewrite.kinds[FLAT],
            "pooled": rewrite.kinds[MEAN],
        },
    )
    return new, report


def fuse_for_export(
    model: keras.Model, fuse: bool | None, mode: str, embeddings: str | None = None
) -> tuple[keras.Model, dict[str, Any] | None]:
    """What ``export_tflite(fuse_embeddings=...)`` converts: ``model`` fused or not, and the record.

    None (auto): fuse when >= 2 tables are fusable, a masked-mean pooling is among what is
    fused (measured: lookups alone fused are no faster, the pooling is the gain), ``mode`` is
    in :data:`AUTO_FUSE_MODES` and the tables stay float (``embeddings`` None in float32 or
    float16, or ``"float"``): an int8/int4 row table swapped after fusing is one table with
    its own scales, a change of the stored bytes and drift the caller opts into with True.
    True: fuse, or raise naming the tables and why none can be fused. False: never.

    Example:
        >>> model, record = fuse_for_export(model, None, "float32")  # doctest: +SKIP
    """
    if fuse is not None and not isinstance(fuse, bool):
        raise TypeError(
            f"`fuse_embeddings` must be True, False or None (auto: in the {list(AUTO_FUSE_MODES)} "
            f"modes when >= 2 tables can be fused), received {fuse!r}."
        )
    graph = is_graph_network(model) and not isinstance(model, keras.Sequential)
    tables = fusable_tables(model) if graph else []
    if fuse is None:
        float_tables = embeddings == "float" or (embeddings is None and mode in _FLOAT_MODES)
        if not (len(tables) >= 2 and mode in AUTO_FUSE_MODES and float_tables):
            return model, None
    elif not fuse:
        return model, None
    if not tables:
        why = "it is not a functional model (no graph to rewrite)"
        if graph:
            left = fuse_embeddings(model)[1].skipped
            why = "; ".join(f"'{d.layer}' ({d.class_name}) {d.reason}" for d in left)
        raise ValueError(
            f"`fuse_embeddings=True`: model {model.name!r} has no embedding tables to fuse: "
            f"{why or 'it has no Embedding layer'}. Pass fuse_embeddings=None (auto) or False."
        )
    fused, report = fuse_embeddings(model)
    for layer in fused.layers:
        # full-integer converters quantize float row arithmetic, and the float16 converter
        # makes it float16, exact only up to row 2048 (a DCN student's float16 file read
        # wrong rows: max |diff| 0.026 against 0.00015 unfused): rows in int32 there
        if isinstance(layer, FusedGatherIds):
            layer.integer_rows = mode in _INTEGER_MODES
    if fuse is None and not report.settings["pooled"]:
        return model, None  # measured: lookups alone fused are no faster (docs/export.md)
    record = {
        "tables": [d.layer for d in report.applied],
        "left_alone": {d.layer: d.reason for d in report.skipped},
        "pooling": report.settings["pooling"],
        "auto": fuse is None,
    }
    return fused, record
