"""How :func:`~tfcompress.pruning.shrinking.shrink` rebuilds a model: attention heads kept and
sliced, weights sliced to the kept channels, the edited config, and the per-layer report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._compat import attention_heads, attention_projections
from tfcompress._keras import keras
from tfcompress._layers import CompressionReport, LayerDecision, iter_layers
from tfcompress.models.layers import Cross, PositionEmbedding
from tfcompress.pruning._graph import Plan, layout_indices, shrink_rewrite
from tfcompress.pruning._thirdparty import thirdparty_kind

#: The start of the reason of a layer left alone because nothing of it could be removed.
NOTHING_TO_REMOVE = "nothing to remove"

# --------------------------------------------------------------------------- attention heads


def _num_heads(layer: Any) -> int:
    return attention_heads(layer)


def _head_roles(layer: Any) -> dict[int, str] | None:
    """``id(variable) -> role`` of an MHA layer, or None if its weights are not (d, H, k)."""
    projections = attention_projections(layer)
    dense = {
        "qkv": [projections[role] for role in ("query", "key", "value")],
        "out": [projections["output"]],
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


def head_keep(layer: Any, ratio: float) -> tuple[np.ndarray | None, str]:
    """Kept head indices (None: left alone) and the reason when left alone."""
    heads = _num_heads(layer)
    target = max(1, int(np.floor(heads * (1.0 - ratio) + 0.5)))
    if target >= heads:
        return None, f"{NOTHING_TO_REMOVE}: {heads} head(s) at ratio {ratio} keep {target}"
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


def tfrs_cross_weights(
    layer: Any, in_idx: np.ndarray | None, projection: np.ndarray | None
) -> list[np.ndarray]:
    """TFRS ``Cross`` weights with input channels ``in_idx`` and low-rank projections
    ``projection`` kept: full rank ``[W (d, d), b]``; low rank ``[U (d, p), V (p, d), b]``."""
    values = [w.numpy() for w in layer.weights]
    d = slice(None) if in_idx is None else in_idx
    p = slice(None) if projection is None else projection
    if layer.get_config()["projection_dim"] is None:
        return [v[d][:, d] if v.ndim == 2 else v[d] for v in values]
    u, v_kernel, *bias = values
    return [u[d][:, p], v_kernel[p][:, d], *[b[d] for b in bias]]


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
    if thirdparty_kind(layer) == "tfrs_cross":
        return tfrs_cross_weights(layer, in_idx, None)
    # BatchNormalization / LayerNormalization: one value per channel of the last axis
    return [v[in_idx] for v in values]


def rebuild(
    model: keras.Model,
    plan: Plan,
    keep: dict[str, np.ndarray],
    heads: dict[str, np.ndarray],
    projections: dict[str, np.ndarray] | None = None,
) -> keras.Model:
    """A new model from the edited config, with the kept weights copied in."""
    changes, weights = layer_edits(model, plan, keep, heads, projections)
    new_model = _from_edited_config(model, changes)
    _set_kept_weights(new_model, weights)
    return new_model


def layer_edits(
    model: keras.Model,
    plan: Plan,
    keep: dict[str, np.ndarray],
    heads: dict[str, np.ndarray],
    projections: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Config changes and kept weights of every top-level layer (by layer name);
    ``projections``: kept low-rank projections of TFRS ``Cross`` layers."""
    changes: dict[str, dict[str, Any]] = {}
    weights: dict[str, list[np.ndarray]] = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            _layer_edit(layer, plan, keep, heads, changes, weights)
            kept = (projections or {}).get(layer.name)
            if kept is not None:
                changes[layer.name] = {"projection_dim": int(len(kept))}
                in_idx = weights_in_idx(layer, plan, keep)
                weights[layer.name] = tfrs_cross_weights(layer, in_idx, kept)
    return changes, weights


def weights_in_idx(layer: Any, plan: Plan, keep: dict[str, np.ndarray]) -> np.ndarray | None:
    """Kept input channels of ``layer`` (None: all kept)."""
    layout = plan.in_layouts.get(layer.name)
    if layout is None or not any(plan.find(k) in keep for k in layout):
        return None
    return layout_indices(layout, plan, keep)


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
        culprits = _unrebuildable(model, custom)
        named = f" (layers {', '.join(culprits)} fail)" if culprits else ""
        raise ValueError(
            f"shrink: model '{model.name}' could not be rebuilt from its config{named}: "
            f"{type(err).__name__}: {err}. Every layer must implement get_config() returning "
            "its constructor arguments (fix that layer's get_config)."
        ) from err


def _unrebuildable(model: keras.Model, custom: dict[str, Any]) -> list[str]:
    """``"'name' (Class): error"`` for each top-level layer whose config does not rebuild it."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            with keras.utils.custom_object_scope(custom):
                layer.__class__.from_config(layer.get_config())
        except Exception as err:  # noqa: BLE001 - reported, then the caller raises
            found.append(f"'{layer.name}' ({type(layer).__name__}): {type(err).__name__}: {err}")
    return found


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


def build_report(
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
    """The per-layer decisions of one shrink (technique ``"shrink"``) with ``settings``."""
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
        elif thirdparty_kind(layer) == "tfrs_cross" or isinstance(
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
                    reason=f"{NOTHING_TO_REMOVE}: none of its input channels was removed",
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


def with_block_rows(report: CompressionReport, rows: list[LayerDecision]) -> CompressionReport:
    """``report`` with the rows of the transformer blocks (nested ones too) added, and the
    nested models that hold shrunk blocks described as such."""
    if not rows:
        return report
    shrunk = [row.layer for row in rows if row.applied]
    decisions = []
    for decision in report.decisions:
        inside = [p for p in shrunk if p.startswith(decision.layer + "/")]
        if inside and decision.reason.startswith("nested model"):
            reason = (
                f"nested model: its transformer blocks are shrunk (rows {', '.join(inside)}); "
                "its other layers and its output width are kept"
            )
            decision = LayerDecision(decision.layer, decision.class_name, True, "", reason)
        elif decision.layer in {row.layer for row in rows}:
            continue
        decisions.append(decision)
    return CompressionReport(report.technique, (*decisions, *rows), report.settings)


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


def enforce_strict(
    report: CompressionReport, plan: Plan, too_small: dict[str, tuple[str, str]], selected: set[str]
) -> None:
    """Raise (strict=True) naming every selected layer left alone that could have shrunk."""
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
        elif decision.reason.startswith(NOTHING_TO_REMOVE):
            continue
        offending.append(f"{name} ({decision.reason})")
    if offending:
        raise ValueError(
            "shrink(strict=True): these selected layers would be left alone: "
            + "; ".join(offending)
            + ". Exclude them with skip=[...] or call with strict=False to accept the report."
        )
