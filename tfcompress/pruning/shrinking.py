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

from tfcompress._compat import attention_heads, is_graph_network
from tfcompress._inputs import collect_examples, model_input_specs
from tfcompress._keras import check_model, keras
from tfcompress._layers import (
    CompressionReport,
    LayerDecision,
    LayerFilter,
    iter_layers,
    match_layers,
)
from tfcompress.models.layers import Cross, PositionEmbedding
from tfcompress.pruning._graph import Plan, analyse, layout_indices, shrink_rewrite

__all__ = ["shrink"]

_log = logging.getLogger("tfcompress")

CRITERIA = ("l2", "activation")
#: Examples of ``data`` used to measure activations (criterion="activation").
MAX_ACTIVATION_EXAMPLES = 2048
_PROBE_BATCH = 256
_NOTHING_TO_REMOVE = "nothing to remove"


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


# --------------------------------------------------------------------------- attention heads


def _num_heads(layer: Any) -> int:
    return attention_heads(layer)


def _head_roles(layer: Any) -> dict[int, str] | None:
    """``id(variable) -> role`` of an MHA layer, or None if its weights are not (d, H, k)."""
    dense = {
        "qkv": [getattr(layer, n, None) for n in ("_query_dense", "_key_dense", "_value_dense")],
        "out": [getattr(layer, "_output_dense", None)],
    }
    roles: dict[int, str] = {}
    heads = _num_heads(layer)
    for kind, blocks in dense.items():
        for block in blocks:
            if block is None or not block.built:
                return None
            kernel, bias = block.kernel, getattr(block, "bias", None)
            if kind == "qkv" and (kernel.shape.rank != 3 or kernel.shape[1] != heads):
                return None
            if kind == "out" and (kernel.shape.rank != 3 or kernel.shape[0] != heads):
                return None
            roles[id(kernel)] = f"{kind}_kernel"
            if bias is not None:
                roles[id(bias)] = f"{kind}_bias"
    return roles


def _head_keep(layer: Any, ratio: float) -> tuple[np.ndarray | None, str]:
    """Kept head indices (None: left alone) and the reason when left alone."""
    heads = _num_heads(layer)
    target = max(1, int(np.floor(heads * (1.0 - ratio) + 0.5)))
    if target >= heads:
        return None, f"{_NOTHING_TO_REMOVE}: {heads} head(s) at ratio {ratio} keep {target}"
    roles = _head_roles(layer)
    if roles is None:
        return None, "attention weights are not laid out as (dim, heads, key_dim); heads kept"
    squares = np.zeros(heads, np.float64)
    for w in layer.weights:
        role = roles.get(id(w))
        if role is None:
            continue
        values = np.asarray(w.numpy(), np.float64) ** 2
        axis = {"qkv_kernel": 1, "qkv_bias": 0, "out_kernel": 0}.get(role)
        if axis is not None:
            squares += np.moveaxis(values, axis, 0).reshape(heads, -1).sum(axis=1)
    order = np.argsort(-np.sqrt(squares), kind="stable")
    return np.sort(order[:target]), ""


def _slice_heads(layer: Any, kept: np.ndarray) -> list[np.ndarray]:
    roles = _head_roles(layer) or {}
    out = []
    for w in layer.weights:
        value = w.numpy()
        role = roles.get(id(w))
        if role == "qkv_kernel":
            value = value[:, kept]
        elif role in ("qkv_bias", "out_kernel"):
            value = value[kept]
        out.append(value)
    return out


# --------------------------------------------------------------------------- slicing


def _sliced_weights(layer: Any, in_idx: np.ndarray | None, out_idx: np.ndarray | None) -> list:
    """The layer's weights with input channels ``in_idx`` and own units ``out_idx`` kept."""
    values = [w.numpy() for w in layer.weights]
    if isinstance(layer, keras.layers.Dense):
        kernel_id = id(layer.kernel)
        out = []
        for w, value in zip(layer.weights, values, strict=True):
            if id(w) == kernel_id:
                value = value if in_idx is None else value[in_idx]
                value = value if out_idx is None else value[..., out_idx]
            elif out_idx is not None:  # bias
                value = value[out_idx]
            out.append(value)
        return out
    if isinstance(layer, keras.layers.Embedding):
        return [v if out_idx is None else v[:, out_idx] for v in values]
    if in_idx is None:
        return values
    if isinstance(layer, Cross):
        full = layer.kernel_v is None
        out = []
        for w, value in zip(layer.weights, values, strict=True):
            if w is layer.kernel:
                value = value[in_idx][:, in_idx] if full else value[in_idx]
            elif layer.kernel_v is not None and w is layer.kernel_v:
                value = value[:, in_idx]
            else:
                value = value[in_idx]
            out.append(value)
        return out
    if isinstance(layer, PositionEmbedding):
        return [v[..., in_idx] for v in values]
    # BatchNormalization / LayerNormalization: one value per channel of the last axis
    return [v[in_idx] for v in values]


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
                f"{_NOTHING_TO_REMOVE}: width {width} at ratio {ratio} with "
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
            kept, reason = _head_keep(layer, ratio)
            if kept is None:
                head_reasons[path] = reason
            else:
                heads[path] = kept

    new_model = _rebuild(model, plan, keep, heads)
    report = _report(
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
    if strict:
        _enforce_strict(report, plan, too_small, selected)
    new_model.compression_report = report
    _log.info(
        "shrink: %d -> %d parameters (%d layer(s) shrunk, %d left alone)",
        model.count_params(),
        new_model.count_params(),
        len(report.applied),
        len(report.skipped),
    )
    return new_model


def _rebuild(
    model: keras.Model, plan: Plan, keep: dict[str, np.ndarray], heads: dict[str, np.ndarray]
) -> keras.Model:
    """A new model from the edited config, with the kept weights copied in."""
    changes: dict[str, dict[str, Any]] = {}
    weights: dict[str, list[np.ndarray]] = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            _layer_edit(layer, plan, keep, heads, changes, weights)
    new_model = _from_edited_config(model, changes)
    _set_kept_weights(new_model, weights)
    return new_model


def _layer_edit(
    layer: Any,
    plan: Plan,
    keep: dict[str, np.ndarray],
    heads: dict[str, np.ndarray],
    changes: dict[str, dict[str, Any]],
    weights: dict[str, list[np.ndarray]],
) -> None:
    """Record ``layer``'s config changes and its kept weights."""

    def indices(layout: list[str] | None) -> np.ndarray | None:
        if layout is None or not any(plan.find(k) in keep for k in layout):
            return None
        return layout_indices(layout, plan, keep)

    name = layer.name
    out_idx = keep.get(plan.find(name)) if name in plan.sources else None
    in_idx = indices(plan.in_layouts.get(name))
    if out_idx is not None:
        key = "units" if isinstance(layer, keras.layers.Dense) else "output_dim"
        changes[name] = {key: int(len(out_idx))}
    if name in plan.out_layouts and isinstance(layer, keras.layers.Reshape):
        out = indices(plan.out_layouts[name])
        if out is not None:
            target = list(layer.target_shape)
            changes[name] = {"target_shape": tuple(target[:-1] + [int(len(out))])}
    rewrite = shrink_rewrite(layer)
    if name in heads:
        changes[name] = {"num_heads": int(len(heads[name]))}
        weights[name] = _slice_heads(layer, heads[name])
    elif isinstance(layer, keras.Model):
        weights[name] = layer.get_weights()
    elif rewrite is not None:  # a user's channel-wise layer (register_shrink_handler)
        weights[name] = layer.get_weights() if in_idx is None else list(rewrite(layer, in_idx))
    else:
        weights[name] = _sliced_weights(layer, in_idx, out_idx)


def _from_edited_config(model: keras.Model, changes: dict[str, dict[str, Any]]) -> keras.Model:
    """``model`` re-created from its config with ``changes`` (layer name -> config update)."""
    config = model.get_config()
    for entry in config.get("layers", []):
        entry.pop("build_config", None)  # widths changed: build from the rebuilt graph instead
        cfg = entry.get("config", {})
        if cfg.get("name") in changes:
            cfg.update(changes[cfg["name"]])
    custom = {}
    for layer in model.layers:
        cls = type(layer)
        custom[cls.__name__] = cls
        custom[keras.saving.get_registered_name(cls)] = cls
    try:
        if isinstance(model, keras.Sequential):
            return keras.Sequential.from_config(config, custom_objects=custom)
        return keras.Model.from_config(config, custom_objects=custom)
    except Exception as err:  # a layer whose config does not rebuild it
        raise ValueError(
            f"shrink: model '{model.name}' could not be rebuilt from its config ({err}); every "
            "layer must implement get_config() returning its constructor arguments."
        ) from err


def _set_kept_weights(new_model: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    for name, values in weights.items():
        target = new_model.get_layer(name)
        try:
            target.set_weights(values)
        except ValueError as err:
            raise ValueError(
                f"shrink: the kept weights of layer '{name}' do not fit the rebuilt layer "
                f"({err}); exclude it with skip=['{name}']."
            ) from err


def _report(
    model: keras.Model,
    new_model: keras.Model,
    plan: Plan,
    keep: dict[str, np.ndarray],
    too_small: dict[str, tuple[str, str]],
    heads: dict[str, np.ndarray],
    head_reasons: dict[str, str],
    selected: set[str],
    settings: dict[str, Any],
) -> CompressionReport:
    decisions: list[LayerDecision] = []
    for path, layer in iter_layers(model, nested=False):
        cls = type(layer).__name__
        new = new_model.get_layer(path)
        if isinstance(layer, keras.Model):
            decisions.append(
                LayerDecision(
                    path,
                    cls,
                    False,
                    reason="nested model: not handled (its width and the channels flowing into it "
                    "are kept); shrink the sub-model on its own and rebuild",
                )
            )
            continue
        if path in plan.sources:
            decisions.append(_source_decision(path, layer, new, plan, keep, too_small))
            continue
        if isinstance(layer, keras.layers.MultiHeadAttention):
            if path in heads:
                decisions.append(
                    LayerDecision(
                        path,
                        cls,
                        True,
                        f"num_heads {_num_heads(layer)} -> {_num_heads(new)}",
                        reason="query/key/value input width kept (attention is not rewired)",
                    )
                )
            else:
                decisions.append(LayerDecision(path, cls, False, reason=head_reasons[path]))
            continue
        if not layer.weights:
            continue
        before, after = layer.count_params(), new.count_params()
        layout = plan.in_layouts.get(path)
        if after < before:
            width = len(layout_indices(layout, plan, keep)) if layout else None
            detail = f"channels {_plan_width(plan, layout)} -> {width}" if layout else ""
            decisions.append(LayerDecision(path, cls, True, detail, ""))
        elif isinstance(
            layer,
            (
                Cross,
                PositionEmbedding,
                keras.layers.BatchNormalization,
                keras.layers.LayerNormalization,
            ),
        ):
            decisions.append(
                LayerDecision(
                    path,
                    cls,
                    False,
                    reason=f"{_NOTHING_TO_REMOVE}: none of its input channels was removed",
                )
            )
        else:
            decisions.append(
                LayerDecision(
                    path,
                    cls,
                    False,
                    reason=f"{cls} is not a layer shrink can change; its weights are kept",
                )
            )
    settings = {
        **settings,
        "params_before": int(model.count_params()),
        "params_after": int(new_model.count_params()),
    }
    return CompressionReport("shrink", tuple(decisions), settings)


def _plan_width(plan: Plan, layout: list[str]) -> int:
    """Total width of a layout (sum of its groups' widths)."""
    return int(sum(plan.widths[k] for k in layout))


def _source_decision(
    path: str,
    layer: Any,
    new: Any,
    plan: Plan,
    keep: dict[str, np.ndarray],
    too_small: dict[str, tuple[str, str]],
) -> LayerDecision:
    cls = type(layer).__name__
    attr = "units" if isinstance(layer, keras.layers.Dense) else "output_dim"
    old_w, new_w = getattr(layer, attr), getattr(new, attr)
    layout = plan.in_layouts.get(path)
    inputs = ""
    if layout is not None and isinstance(layer, keras.layers.Dense):
        old_in, new_in = _plan_width(plan, layout), len(layout_indices(layout, plan, keep))
        if new_in != old_in:
            inputs = f"inputs {old_in} -> {new_in}"
    if new_w != old_w:
        detail = f"{attr} {old_w} -> {new_w}" + (f", {inputs}" if inputs else "")
        tied = [m for m in plan.members(path) if m != path]
        reason = f"shrunk together with {', '.join(tied)}" if tied else ""
        return LayerDecision(path, cls, True, detail, reason)
    root = plan.find(path)
    reasons = [r for _, r in plan.blocked(path)] or [too_small.get(root, ("", ""))[1]]
    return LayerDecision(path, cls, False, inputs, "; ".join(r for r in reasons if r))


def _enforce_strict(
    report: CompressionReport, plan: Plan, too_small: dict[str, tuple[str, str]], selected: set[str]
) -> None:
    offending = []
    for decision in report.skipped:
        name = decision.layer
        if name not in selected:
            continue
        if name in plan.sources:
            kinds = {k for k, _ in plan.blocked(name)}
            if plan.find(name) in too_small or "output" in kinds:
                continue
            if (
                isinstance(plan.sources[name], keras.layers.Embedding)
                and not report.settings["embeddings"]
            ):
                continue  # embeddings=False asked for exactly this
        elif decision.reason.startswith(_NOTHING_TO_REMOVE):
            continue
        offending.append(f"{name} ({decision.reason})")
    if offending:
        raise ValueError(
            "shrink(strict=True): these selected layers would be left alone: "
            + "; ".join(offending)
            + ". Exclude them with skip=[...] or call with strict=False to accept the report."
        )
