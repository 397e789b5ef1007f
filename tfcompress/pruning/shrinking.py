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

import dataclasses
import difflib
import fnmatch
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfcompress._compat import is_graph_network
from tfcompress._inputs import collect_examples, model_input_specs
from tfcompress._keras import check_model, keras
from tfcompress._layers import (
    CompressionReport,
    LayerDecision,
    LayerFilter,
    iter_layers,
    match_layers,
)
from tfcompress._validation import check_float
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
from tfcompress.pruning._thirdparty import thirdparty_kind

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
    if isinstance(ratio, Mapping):
        pass  # checked key by key against the model by _resolve_ratios
    elif isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)):
        raise TypeError(
            f"shrink: `ratio` must be a float in (0, 1) (the fraction of units removed) or a "
            f"mapping {{layer name or pattern: ratio, 'default': ratio}}, received "
            f"{type(ratio).__name__}: {ratio!r}."
        )
    elif not 0.0 < float(ratio) < 1.0:
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


# --------------------------------------------------------------------------- per-layer ratios

#: Keys of a ``ratio`` mapping that set the ratio of every layer no other key matches.
DEFAULT_KEYS = ("default", "*")


@dataclasses.dataclass(frozen=True)
class _Ratios:
    """The resolved ``ratio`` argument: a default and explicit ratios by layer path."""

    default: float
    by_path: dict[str, float] = dataclasses.field(default_factory=dict)
    keys: dict[str, float] | None = None  # the mapping's keys and values; None: a float

    def of(self, path: str) -> float:
        """The ratio of ``path``: its own key's, else its closest enclosing model's, else the
        default."""
        parts = path.split("/")
        for end in range(len(parts), 0, -1):
            prefix = "/".join(parts[:end])
            if prefix in self.by_path:
                return self.by_path[prefix]
        return self.default

    def setting(self) -> Any:
        """``ratio`` as the report's settings record it."""
        if self.keys is None:
            return self.default
        return {**self.keys, "default": self.default}


def _key_matcher(key: str) -> Callable[[str, str], bool]:
    """A layer name, a regex matched in full (as in ``layers=``) or a shell glob (``emb_*``)."""
    try:
        pattern = re.compile(key)
    except re.error:
        pattern = None

    def matches(path: str, name: str) -> bool:
        if key in (path, name):
            return True
        if pattern is not None and (pattern.fullmatch(path) or pattern.fullmatch(name)):
            return True
        return fnmatch.fnmatchcase(path, key) or fnmatch.fnmatchcase(name, key)

    return matches


def _no_match(model: keras.Model, key: str, paths: list[str]) -> ValueError:
    close = difflib.get_close_matches(key, paths, n=3, cutoff=0.5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return ValueError(
        f"shrink: `ratio` key {key!r} matches no layer of model '{model.name}' (a key is a "
        f"layer name, a regex matched in full or a glob such as 'emb_*'; 'default' or '*' sets "
        f"the rest).{hint} Layers: {', '.join(paths) or '(none)'}."
    )


def _resolve_ratios(model: keras.Model, ratio: Any) -> _Ratios:
    """Validate ``ratio`` (a float or a ``{layer name/pattern: ratio}`` mapping) against
    ``model`` and resolve it to a ratio per layer path."""
    if not isinstance(ratio, Mapping):
        return _Ratios(float(ratio))
    if not ratio:
        raise ValueError(
            "shrink: `ratio` is an empty mapping; give {layer name or pattern: ratio, "
            "'default': ratio} or a float."
        )
    defaults = [k for k in ratio if k in DEFAULT_KEYS]
    if len(defaults) > 1:
        raise ValueError(
            f"shrink: `ratio` has both {defaults[0]!r} and {defaults[1]!r}, which both set the "
            "default ratio; keep one."
        )
    values: dict[str, float] = {}
    for key, value in ratio.items():
        if not isinstance(key, str) or not key:
            raise TypeError(
                f"shrink: `ratio` keys must be layer names or patterns (non-empty str), "
                f"received {key!r} ({type(key).__name__})."
            )
        values[key] = check_float(
            value,
            f"ratio[{key!r}]",
            minimum=0,
            maximum=1,
            max_open=True,
            fix="A ratio is the fraction of units removed; 0 keeps the layer whole.",
            where="shrink",
        )
    default = values.pop(defaults[0]) if defaults else 0.0
    pairs = list(iter_layers(model))
    paths = [path for path, _ in pairs]
    exact: dict[str, str] = {}
    by_pattern: dict[str, str] = {}
    for key in values:
        matcher = _key_matcher(key)
        hits = [path for path, layer in pairs if matcher(path, layer.name)]
        if not hits:
            raise _no_match(model, key, paths)
        for path in hits:
            if key in (path, path.rsplit("/", 1)[-1]):
                exact[path] = key
            elif path in by_pattern and values[by_pattern[path]] != values[key]:
                raise ValueError(
                    f"shrink: layer '{path}' matches the `ratio` keys {by_pattern[path]!r} "
                    f"({values[by_pattern[path]]}) and {key!r} ({values[key]}); make the "
                    f"patterns disjoint or add the exact key {path!r}, which wins."
                )
            else:
                by_pattern.setdefault(path, key)
    key_of = {**by_pattern, **exact}
    by_path = {path: values[key] for path, key in key_of.items()}
    return _Ratios(default, by_path, dict(values))


def _group_ratio(plan: Plan, root: str, ratios: _Ratios) -> tuple[float, str]:
    """One ratio for a channel group: the smallest of its sources' (the safest), and a note
    when they disagree."""
    members = plan.members(root)
    own = [ratios.of(m) for m in members]
    chosen = min(own)
    if len(set(own)) < 2:
        return chosen, ""
    names = ", ".join(members)
    shown = "/".join(f"{r:g}" for r in own)
    return chosen, f"tied group {{{names}}}: ratios {shown} -> {chosen:g}"


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
    plan: Plan, importance: dict[str, np.ndarray], ratios: _Ratios, min_units: int
) -> tuple[
    dict[str, np.ndarray], dict[str, tuple[str, str]], dict[str, float], dict[str, list[str]]
]:
    """Kept indices per free group root, (kind, reason) for groups left at full width, the
    ratio each source was shrunk at, and the notes on tied groups whose sources disagree (note
    -> the group's sources)."""
    keep: dict[str, np.ndarray] = {}
    too_small: dict[str, tuple[str, str]] = {}
    used: dict[str, float] = {}
    notes: dict[str, list[str]] = {}
    for root in plan.roots():
        ratio, note = _group_ratio(plan, root, ratios)
        used.update(dict.fromkeys(plan.members(root), ratio))
        if plan.blocked(root):
            continue
        if note:
            notes[note] = plan.members(root)
        width = plan.widths[root]
        target = max(int(min_units), int(np.floor(width * (1.0 - ratio) + 0.5)))
        if target >= width:
            why = (
                f"ratio 0 keeps width {width}"
                if ratio == 0.0
                else f"width {width} at ratio {ratio:g} with min_units={min_units} keeps {width}"
            )
            too_small[root] = ("min_units", f"{NOTHING_TO_REMOVE}: {why}")
            continue
        score = sum(np.asarray(importance[m], np.float64) for m in plan.members(root))
        order = np.argsort(-score, kind="stable")
        keep[root] = np.sort(order[:target])
    return keep, too_small, used, notes


def _blocks_by_ratio(
    model: keras.Model, ratios: _Ratios, min_units: int, layers: LayerFilter, skip: LayerFilter
) -> tuple[dict[int, Any], list[LayerDecision], dict[str, float]]:
    """:func:`plan_blocks` with each transformer block at its own ratio."""
    if ratios.keys is None:
        edits, rows = plan_blocks(model, ratios.default, min_units, layers, skip)
        return edits, rows, {row.layer: ratios.default for row in rows if row.applied}
    edits: dict[int, Any] = {}
    rows: list[LayerDecision] = []
    wanted = [p for p, layer in iter_layers(model) if thirdparty_kind(layer) == "transformer_block"]
    for ratio in sorted({ratios.of(path) for path in wanted}):
        some, some_rows = plan_blocks(model, ratio, min_units, layers, skip)
        edits.update({k: e for k, e in some.items() if ratios.of(e.path) == ratio})
        rows.extend(row for row in some_rows if ratios.of(row.layer) == ratio)
    order = {path: i for i, path in enumerate(wanted)}
    rows.sort(key=lambda row: order.get(row.layer, len(order)))
    return edits, rows, {row.layer: ratios.of(row.layer) for row in rows if row.applied}


def _projections_by_ratio(
    model: keras.Model, selected: set[str], ratios: _Ratios, min_units: int
) -> dict[str, np.ndarray]:
    """:func:`plan_projections` with each low-rank TFRS ``Cross`` at its own ratio."""
    kept: dict[str, np.ndarray] = {}
    for ratio in sorted({ratios.of(name) for name in selected}):
        names = {name for name in selected if ratios.of(name) == ratio}
        kept.update(plan_projections(model, names, ratio, min_units))
    return kept


def _with_ratio_notes(report: CompressionReport, notes: dict[str, list[str]]) -> CompressionReport:
    """``report`` with each tied-group note added to the reason of the group's layers."""
    by_layer = {}
    for note, members in notes.items():
        by_layer.update(dict.fromkeys(members, note))
    decisions = []
    for d in report.decisions:
        note = by_layer.get(d.layer)
        if note and d.applied:
            d = dataclasses.replace(d, reason=f"{d.reason}; {note}" if d.reason else note)
        decisions.append(d)
    return CompressionReport(report.technique, tuple(decisions), report.settings)


# --------------------------------------------------------------------------- public API


def shrink(
    model: keras.Model,
    ratio: float | Mapping[str, float] = 0.5,
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
        ratio: the fraction of units removed, in (0, 1); 0.5 halves every width. Or a
            mapping ``{key: ratio}`` with a ratio per layer, each in [0, 1) (0 keeps the layer
            whole): a key is a layer name (or nested path), a regex matched in full (as in
            ``layers=``) or a shell glob (``"emb_*"``); ``"default"`` (or ``"*"``) sets the
            ratio of every other layer (0 when absent). An exact name beats a pattern; two
            patterns that give one layer different ratios are an error; a layer inside a
            nested model takes its enclosing model's ratio unless a key matches it. Layers
            tied channel by channel (``Add``, ``Cross``) are shrunk at the smallest ratio of
            their group (reported in ``settings["tied_groups"]`` and the layers' reasons).
            ``settings["ratios"]`` of the report holds the ratio each layer was shrunk at.
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
        ValueError: ``ratio`` outside (0, 1) (a mapping value outside [0, 1), naming its key;
            a mapping key matching no layer, listing the layers); unknown ``criterion``;
            ``criterion="activation"`` without ``data``; a subclassed model; a filter entry
            matching no layer or selecting no shrinkable layer; ``strict=True`` and a selected
            layer left alone; ``data`` not matching the model inputs.

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
    ratios = _resolve_ratios(model, ratio)
    selected = _selection(model, layers, skip)
    plan = analyse(model, lambda name: name in selected, embeddings)

    if criterion == "activation":
        importance = _activation_importance(model, plan, data)
    else:
        if data is not None:
            _log.info("shrink: `data` is not used with criterion='l2'.")
        importance = {name: _l2_importance(layer) for name, layer in plan.sources.items()}
    keep, too_small, used, notes = _keep_sets(plan, importance, ratios, min_units)
    for note in notes:
        _log.info("shrink: %s", note)

    heads: dict[str, np.ndarray] = {}
    head_reasons: dict[str, str] = {}
    for path, layer in iter_layers(model, nested=False):
        if isinstance(layer, keras.layers.MultiHeadAttention):
            if path not in selected:
                head_reasons[path] = f"'{path}' is not selected by `layers`/`skip`"
                continue
            used[path] = ratios.of(path)
            kept, reason = head_keep(layer, used[path])
            if kept is None:
                head_reasons[path] = reason
            else:
                heads[path] = kept

    blocks, block_rows, block_ratios = _blocks_by_ratio(model, ratios, int(min_units), layers, skip)
    used.update(block_ratios)
    projections = _projections_by_ratio(model, selected, ratios, int(min_units))  # TFRS low-rank
    used.update({name: ratios.of(name) for name in projections})
    if blocks or not config_rebuilds(model):  # e.g. BertEncoder / BertClassifier
        edits = layer_edits(model, plan, keep, heads, projections)
        new_model = clone_rebuild(model, *edits, blocks)
    else:
        new_model = rebuild(model, plan, keep, heads, projections)
    settings = dict(
        ratio=ratios.setting(),
        criterion=criterion,
        embeddings=embeddings,
        min_units=int(min_units),
        ratios={path: used[path] for path, _ in iter_layers(model) if path in used},
        tied_groups=list(notes),
    )
    report = build_report(
        model, new_model, plan, keep, too_small, heads, head_reasons, selected, settings
    )
    report = with_block_rows(
        report, block_rows + projection_rows(report.decisions, projections, model)
    )
    report = _with_ratio_notes(report, notes)
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
