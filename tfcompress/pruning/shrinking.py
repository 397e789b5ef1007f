"""Structured shrinking: :func:`shrink` removes whole units, embedding dimensions and attention
heads and rebuilds a genuinely smaller functional model (faster on CPUs; see docs/pruning.md).

Example:
    >>> from tfcompress._keras import keras
    >>> x = keras.Input((8,))
    >>> h = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    >>> model = keras.Model(x, keras.layers.Dense(1, name="logits")(h))
    >>> small = shrink(model, ratio=0.5)
    >>> small.get_layer("hidden").units, small.compression_report["hidden"].detail
    (8, 'units 16 -> 8')
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tfcompress._compat import is_graph_network
from tfcompress._inputs import collect_examples, model_input_specs
from tfcompress._keras import check_model, keras
from tfcompress._layers import LayerFilter, iter_layers, match_layers
from tfcompress.pruning._graph import Plan, analyse
from tfcompress.pruning._shrink_blocks import (
    clone_rebuild,
    config_rebuilds,
    plan_blocks,
    plan_projections,
    projection_rows,
)
from tfcompress.pruning._shrink_rebuild import (
    NOTHING_TO_REMOVE,
    build_report,
    enforce_strict,
    head_keep,
    layer_edits,
    rebuild,
    with_block_rows,
)

__all__ = ["shrink"]

_log = logging.getLogger("tfcompress")

CRITERIA = ("l2", "activation")
#: Examples of ``data`` used to measure activations (criterion="activation").
MAX_ACTIVATION_EXAMPLES = 2048
_PROBE_BATCH = 256


# --------------------------------------------------------------------------- validation


def _check_args(
    ratio: Any, criterion: Any, data: Any, embeddings: Any, min_units: Any, strict: Any
) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)):
        raise TypeError(
            f"shrink: `ratio` must be a float in (0, 1) (the fraction of units removed), "
            f"received {type(ratio).__name__}: {ratio!r}."
        )
    if not 0.0 < float(ratio) < 1.0:
        raise ValueError(
            f"shrink: `ratio` must be in (0, 1), the fraction of units removed (0.5 halves "
            f"every width), received {ratio!r}."
        )
    if criterion not in CRITERIA:
        raise ValueError(
            f"shrink: unknown `criterion` {criterion!r}; use 'l2' (weight norms) or "
            "'activation' (mean |activation| on `data`)."
        )
    if criterion == "activation" and data is None:
        raise ValueError(
            "shrink: criterion='activation' needs `data` (a tf.data.Dataset of (features, "
            "label) or features, batched or not) to measure activations; pass data= or use "
            "criterion='l2'."
        )
    for value, name in ((embeddings, "embeddings"), (strict, "strict")):
        if not isinstance(value, bool):
            raise TypeError(f"shrink: `{name}` must be True or False, received {value!r}.")
    if isinstance(min_units, bool) or not isinstance(min_units, (int, np.integer)):
        raise TypeError(f"shrink: `min_units` must be an int >= 1, received {min_units!r}.")
    if min_units < 1:
        raise ValueError(
            f"shrink: `min_units` must be >= 1 (a layer keeps at least that many units), "
            f"received {min_units!r}."
        )


def _check_graph(model: keras.Model) -> None:
    if not is_graph_network(model):
        raise ValueError(
            f"shrink: `model` {model.name!r} ({type(model).__name__}) is not a functional or "
            "built Sequential model, so its layer graph cannot be rebuilt. Build it with the "
            "functional API (keras.Input ... keras.Model(inputs, outputs)) or give a "
            "Sequential model an input shape."
        )


def _selection(model: keras.Model, layers: LayerFilter, skip: LayerFilter) -> set[str]:
    """Names of the top-level layers that the filters let shrink touch."""
    pairs = list(iter_layers(model))
    top = {path for path, _ in pairs if "/" not in path}
    chosen = match_layers(model, layers, argument="layers") if layers is not None else top
    excluded = match_layers(model, skip, argument="skip") if skip is not None else set()
    if layers is not None:
        shrinkable = (keras.layers.Dense, keras.layers.Embedding, keras.layers.MultiHeadAttention)
        by_path = dict(pairs)
        if not any(isinstance(by_path[p], shrinkable) for p in chosen - excluded if "/" not in p):
            raise ValueError(
                f"shrink: `layers`={layers!r} (minus `skip`) selects no layer shrink can change "
                f"(a top-level Dense, Embedding or MultiHeadAttention) in model '{model.name}'; it "
                f"selects {sorted(chosen - excluded) or 'nothing'}."
            )
    return chosen - excluded


# --------------------------------------------------------------------------- importance


def _l2_importance(layer: Any) -> np.ndarray:
    if isinstance(layer, keras.layers.Embedding):
        table = np.asarray(layer.embeddings.numpy(), np.float64)
        return np.sqrt(np.sum(table**2, axis=0))
    kernel = np.asarray(layer.kernel.numpy(), np.float64)
    squares = np.sum(kernel.reshape(-1, kernel.shape[-1]) ** 2, axis=0)
    if layer.use_bias:
        squares = squares + np.asarray(layer.bias.numpy(), np.float64) ** 2
    return np.sqrt(squares)


def _model_feed(structure: str, specs: Any, feats: dict[str, np.ndarray]) -> Any:
    if structure == "dict":
        return feats
    if structure == "single":
        return feats[specs[0].name]
    return [feats[s.name] for s in specs]


def _activation_importance(model: keras.Model, plan: Plan, data: Any) -> dict[str, np.ndarray]:
    """Mean |output| of every source layer on up to MAX_ACTIVATION_EXAMPLES examples."""
    structure, specs = model_input_specs(model)
    feats, _ = collect_examples(data, structure, specs, MAX_ACTIVATION_EXAMPLES, "data")
    owners = [(name, t) for name, ts in plan.source_outputs.items() for t in ts]
    probe = keras.Model(model.input, [t for _, t in owners])
    n = len(next(iter(feats.values())))
    sums = [np.zeros(t.shape[-1], np.float64) for _, t in owners]
    counts = [0] * len(owners)
    for start in range(0, n, _PROBE_BATCH):
        batch = {k: v[start : start + _PROBE_BATCH] for k, v in feats.items()}
        outs = probe(_model_feed(structure, specs, batch), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, out in enumerate(outs):
            values = np.abs(np.asarray(out, np.float64)).reshape(-1, sums[i].shape[0])
            sums[i] += values.sum(axis=0)
            counts[i] += values.shape[0]
    importance: dict[str, np.ndarray] = {}
    for (name, _), total, count in zip(owners, sums, counts, strict=True):
        importance[name] = importance.get(name, 0.0) + total / max(count, 1)
    _log.debug("shrink: measured activations of %d layer output(s) on %d examples", len(owners), n)
    return importance


def _keep_sets(
    plan: Plan, importance: dict[str, np.ndarray], ratio: float, min_units: int
) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, str]]]:
    """Kept indices per free group root, and (kind, reason) for groups left at full width."""
    keep: dict[str, np.ndarray] = {}
    too_small: dict[str, tuple[str, str]] = {}
    for root in plan.roots():
        if plan.blocked(root):
            continue
        width = plan.widths[root]
        target = max(int(min_units), int(np.floor(width * (1.0 - ratio) + 0.5)))
        if target >= width:
            too_small[root] = (
                "min_units",
                f"{NOTHING_TO_REMOVE}: width {width} at ratio {ratio} with "
                f"min_units={min_units} keeps {width}",
            )
            continue
        score = sum(np.asarray(importance[m], np.float64) for m in plan.members(root))
        order = np.argsort(-score, kind="stable")
        keep[root] = np.sort(order[:target])
    return keep, too_small


# --------------------------------------------------------------------------- public API


def shrink(
    model: keras.Model,
    ratio: float = 0.5,
    *,
    data: Any = None,
    criterion: str = "l2",
    layers: LayerFilter = None,
    skip: LayerFilter = None,
    embeddings: bool = True,
    min_units: int = 1,
    strict: bool = False,
) -> keras.Model:
    """Remove the least important units, embedding dimensions and heads; rebuild a smaller model.

    Every selected ``Dense`` layer keeps ``round(units * (1 - ratio))`` units (at least
    ``min_units``), every ``Embedding`` the same share of its output dimensions and every
    ``MultiHeadAttention`` the same share of its heads (at least one). The removed channels are
    removed from every consumer downstream, and layers tied channel by channel (``Add``, the DCN
    ``Cross`` layer) are shrunk as one group, so the result is a plain tf_keras functional model
    with the same layer names, inputs and outputs, smaller layer configs and the kept weights.
    It is not compiled: compile and fine-tune it with ``fit``.

    Third-party layers (recognised by class name; neither library is imported): a Model Garden
    ``TransformerEncoderBlock`` (inside ``BertEncoder``/``BertClassifier`` too) keeps
    ``round(heads * (1 - ratio))`` attention heads and the same share of its FFN units, ranked
    by the L2 norm of their weights; its hidden width, LayerNorms and the embeddings and pooler
    around it are kept (reported). A TFRS ``Cross`` is tied channel by channel like ours, and a
    low-rank one also loses that share of its ``projection_dim``. Models whose config does not
    rebuild their graph (``BertEncoder``, ``BertClassifier``) come back as the plain functional
    graph they wrap.

    Left alone (and reported, with the reason): the output layers (whose units are the model's
    outputs), layers whose output reaches an op that cannot be rewired (the query/key/value of
    attention, a ``Reshape`` to another shape, a channel-mixing activation, an unknown or
    nested layer), and layers already at ``min_units``. ``LayerNormalization`` over shrunk
    channels gets its ``gamma``/``beta`` sliced, but its statistics then run over fewer
    channels, so its outputs change (fine-tuning recovers this); every other rewrite is exact
    for removed channels that were zero.

    Args:
        model: a functional or built Sequential tf_keras model.
        ratio: the fraction of units removed, in (0, 1); 0.5 halves every width.
        data: examples for ``criterion="activation"``: a ``tf.data.Dataset`` of
            ``(features, label)`` or features (batched or not), a features dict, or an iterable
            of those. Up to ``MAX_ACTIVATION_EXAMPLES`` (2048) examples are used.
        criterion: ``"l2"``: the L2 norm of each unit's kernel column and bias (for an
            embedding, of each dimension over the whole table); ``"activation"``: the mean
            absolute output of each unit on ``data``. Tied units add their scores. Attention
            heads are always ranked by the L2 norm of their projection weights.
        layers: layer filter (names, regex, class, callable or a list of them) of the layers
            that may be shrunk; None = every layer.
        skip: layer filter of layers to leave alone.
        embeddings: whether embedding dimensions may be removed.
        min_units: the fewest units (dimensions) any shrunk layer keeps.
        strict: raise instead of leaving a selected layer alone (output layers and layers
            already at ``min_units`` excepted).

    Returns:
        The smaller, uncompiled model, with the per-layer
        :class:`~tfcompress._layers.CompressionReport` (technique ``"shrink"``) as
        ``model.compression_report``.

    Raises:
        TypeError: ``model`` is not a tf_keras model (e.g. a Keras 3 model); an argument of
            the wrong type.
        ValueError: ``ratio`` outside (0, 1); unknown ``criterion``; ``criterion="activation"``
            without ``data``; a subclassed model; a filter entry matching no layer or
            selecting no shrinkable layer; ``strict=True`` and a selected layer left alone;
            ``data`` not matching the model inputs.

    Example:
        >>> from tfcompress import data, models
        >>> task = data.load_task("ctr", n_samples=1_000)
        >>> model = models.dcn(task.schema, size="student")
        >>> small = shrink(model, 0.5)
        >>> small.get_layer("emb_user_id").output_dim, small.get_layer("mlp_0").units
        (4, 32)
        >>> print(small.compression_report.to_markdown())  # doctest: +SKIP
    """
    check_model(model, "model")
    _check_args(ratio, criterion, data, embeddings, min_units, strict)
    _check_graph(model)
    ratio = float(ratio)
    selected = _selection(model, layers, skip)
    plan = analyse(model, lambda name: name in selected, embeddings)

    if criterion == "activation":
        importance = _activation_importance(model, plan, data)
    else:
        if data is not None:
            _log.info("shrink: `data` is not used with criterion='l2'.")
        importance = {name: _l2_importance(layer) for name, layer in plan.sources.items()}
    keep, too_small = _keep_sets(plan, importance, ratio, min_units)

    heads: dict[str, np.ndarray] = {}
    head_reasons: dict[str, str] = {}
    for path, layer in iter_layers(model, nested=False):
        if isinstance(layer, keras.layers.MultiHeadAttention):
            if path not in selected:
                head_reasons[path] = f"'{path}' is not selected by `layers`/`skip`"
                continue
            kept, reason = head_keep(layer, ratio)
            if kept is None:
                head_reasons[path] = reason
            else:
                heads[path] = kept

    blocks, block_rows = plan_blocks(model, ratio, int(min_units), layers, skip)
    projections = plan_projections(model, selected, ratio, int(min_units))  # TFRS low-rank Cross
    if blocks or not config_rebuilds(model):  # e.g. BertEncoder / BertClassifier
        edits = layer_edits(model, plan, keep, heads, projections)
        new_model = clone_rebuild(model, *edits, blocks)
    else:
        new_model = rebuild(model, plan, keep, heads, projections)
    report = build_report(
        model,
        new_model,
        plan,
        keep,
        too_small,
        heads,
        head_reasons,
        selected,
        dict(ratio=ratio, criterion=criterion, embeddings=embeddings, min_units=int(min_units)),
    )
    report = with_block_rows(
        report, block_rows + projection_rows(report.decisions, projections, model)
    )
    if strict:
        enforce_strict(report, plan, too_small, selected)
    new_model.compression_report = report
    _log.info(
        "shrink: %d -> %d parameters (%d layer(s) shrunk, %d left alone)",
        model.count_params(),
        new_model.count_params(),
        len(report.applied),
        len(report.skipped),
    )
    return new_model
