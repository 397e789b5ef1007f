"""Shrinking inside Model Garden ``TransformerEncoderBlock`` layers (attention heads and FFN
units), and the cloning rebuild that :func:`~tfcompress.pruning.shrink` uses for models whose
config does not rebuild their graph (``BertEncoder``, ``BertClassifier``, nested ones).

A block keeps its hidden width (it is tied to the embeddings, every other block and the
residual path); it is re-created from its config with fewer ``num_attention_heads`` and a
smaller ``inner_dim`` (``key_dim`` pinned), and the kept slices of its query/key/value/output
``EinsumDense`` kernels and of its FFN kernels are copied in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from tfcompress._keras import keras
from tfcompress._layers import LayerDecision, LayerFilter, iter_layers, match_layers
from tfcompress._validation import is_functional
from tfcompress.pruning._thirdparty import thirdparty_kind

__all__ = [
    "BlockEdit",
    "clone_rebuild",
    "config_rebuilds",
    "plan_blocks",
    "plan_projections",
    "projection_rows",
]

#: weight name (relative to the block) -> (role, axis of heads / inner units)
_HEAD_AXES = {
    "self_attention/query/kernel": 1,
    "self_attention/key/kernel": 1,
    "self_attention/value/kernel": 1,
    "self_attention/query/bias": 0,
    "self_attention/key/bias": 0,
    "self_attention/value/bias": 0,
    "self_attention/attention_output/kernel": 0,
}
_INNER_AXES = {"intermediate/kernel": 1, "intermediate/bias": 0, "output/kernel": 0}
#: config keys whose non-default value changes the attention layout (left alone then)
_UNSUPPORTED = ("num_kv_heads", "linformer_dim", "src_block_size", "tgt_block_size")
#: what a shrunk block leaves alone (said in its report row)
LEFT_ALONE = (
    "hidden width, LayerNorms, attention_output bias and FFN output bias kept (the hidden "
    "size is tied to the embeddings, every block and the residual path)"
)


@dataclasses.dataclass
class BlockEdit:
    """One block's new config entries and its sliced weights (in ``layer.weights`` order)."""

    path: str
    changes: dict[str, Any]
    weights: list[np.ndarray]
    detail: str


def _relative(layer: Any, weight: Any) -> str:
    name = weight.name.split(":")[0]
    prefix = layer.name + "/"
    return name[name.index(prefix) + len(prefix) :] if prefix in name else name


def _keep(scores: np.ndarray, target: int) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:target])


def _block_edit(
    path: str, layer: Any, ratio: float, min_units: int
) -> tuple[BlockEdit | None, str]:
    """The edit of one ``TransformerEncoderBlock`` (None and the reason when left alone)."""
    config = layer.get_config()
    odd = [key for key in _UNSUPPORTED if config.get(key)]
    if odd or config.get("attention_axes") is not None:
        what = ", ".join(odd) or "attention_axes"
        return None, f"its attention layout ({what}) is not (dim, heads, key_dim); kept whole"
    heads, inner = int(config["num_attention_heads"]), int(config["inner_dim"])
    roles = {_relative(layer, w): w for w in layer.weights}
    missing = [name for name in (*_HEAD_AXES, *_INNER_AXES) if name not in roles]
    if missing and not all(m.endswith("bias") for m in missing):
        return None, f"weights {', '.join(missing)} not found (not a standard block); kept whole"
    head_sq, inner_sq = np.zeros(heads), np.zeros(inner)
    for name, axis in _HEAD_AXES.items():
        if name in roles:
            values = np.asarray(roles[name].numpy(), np.float64) ** 2
            head_sq += np.moveaxis(values, axis, 0).reshape(heads, -1).sum(axis=1)
    for name in ("intermediate/kernel", "intermediate/bias"):
        if name in roles:
            values = np.asarray(roles[name].numpy(), np.float64) ** 2
            inner_sq += np.moveaxis(values, _INNER_AXES[name], 0).reshape(inner, -1).sum(axis=1)
    keep_heads = max(1, int(np.floor(heads * (1.0 - ratio) + 0.5)))
    keep_inner = min(inner, max(int(min_units), int(np.floor(inner * (1.0 - ratio) + 0.5))))
    if keep_heads >= heads and keep_inner >= inner:
        return None, (
            f"nothing to remove: {heads} head(s) and inner_dim {inner} at ratio {ratio} keep all"
        )
    kept_heads = _keep(np.sqrt(head_sq), keep_heads)
    kept_inner = _keep(np.sqrt(inner_sq), keep_inner)
    by_id = {id(w): n for n, w in roles.items()}
    sliced = []
    for weight in layer.weights:
        value = weight.numpy()
        name = by_id.get(id(weight))
        if name in _HEAD_AXES:
            value = np.take(value, kept_heads, axis=_HEAD_AXES[name])
        elif name in _INNER_AXES:
            value = np.take(value, kept_inner, axis=_INNER_AXES[name])
        sliced.append(value)
    key_dim = config.get("key_dim") or int(roles["self_attention/query/kernel"].shape[-1])
    changes = {
        "num_attention_heads": len(kept_heads),
        "inner_dim": len(kept_inner),
        "key_dim": int(key_dim),
    }
    detail = f"heads {heads} -> {len(kept_heads)}, inner_dim {inner} -> {len(kept_inner)}"
    return BlockEdit(path, changes, sliced, detail), ""


def plan_blocks(
    model: keras.Model, ratio: float, min_units: int, layers: LayerFilter, skip: LayerFilter
) -> tuple[dict[int, BlockEdit], list[LayerDecision]]:
    """``id(block) -> edit`` for every selected transformer block (nested ones too) and the
    report rows of all of them."""
    chosen = match_layers(model, layers, argument="layers") if layers is not None else None
    excluded = match_layers(model, skip, argument="skip") if skip is not None else set()

    def covered(path: str, paths: set[str]) -> bool:
        return any(path == p or path.startswith(p + "/") for p in paths)

    edits: dict[int, BlockEdit] = {}
    decisions: list[LayerDecision] = []
    for path, layer in iter_layers(model):
        if thirdparty_kind(layer) != "transformer_block":
            continue
        cls = type(layer).__name__
        if covered(path, excluded) or (chosen is not None and not covered(path, chosen)):
            reason = f"'{path}' is not selected by `layers`/`skip`"
            decisions.append(LayerDecision(path, cls, False, reason=reason))
            continue
        edit, reason = _block_edit(path, layer, ratio, min_units)
        if edit is None:
            decisions.append(LayerDecision(path, cls, False, reason=reason))
        else:
            edits[id(layer)] = edit
            decisions.append(LayerDecision(path, cls, True, edit.detail, LEFT_ALONE))
    return edits, decisions


def plan_projections(
    model: keras.Model, selected: set[str], ratio: float, min_units: int
) -> dict[str, np.ndarray]:
    """Kept projections (by L2 norm of ``U``'s column and ``V``'s row) of every selected
    top-level low-rank TFRS ``Cross`` (``projection_dim`` set), by layer name."""
    kept: dict[str, np.ndarray] = {}
    for layer in model.layers:
        if thirdparty_kind(layer) != "tfrs_cross" or layer.name not in selected:
            continue
        rank = layer.get_config().get("projection_dim")
        if rank is None or len(layer.weights) < 2:
            continue
        u, v = (np.asarray(w.numpy(), np.float64) for w in layer.weights[:2])
        target = min(rank, max(int(min_units), int(np.floor(rank * (1.0 - ratio) + 0.5))))
        if u.shape[-1] != rank or v.shape[0] != rank or target >= rank:
            continue
        kept[layer.name] = _keep(np.sqrt((u**2).sum(axis=0) + (v**2).sum(axis=1)), target)
    return kept


def projection_rows(
    report_rows: tuple[LayerDecision, ...], kept: dict[str, np.ndarray], model: keras.Model
) -> list[LayerDecision]:
    """Report rows of the TFRS ``Cross`` layers whose projection was cut."""
    rows = []
    by_name = {row.layer: row for row in report_rows}
    for name, indices in kept.items():
        layer = model.get_layer(name)
        old = by_name.get(name)
        channels = old.detail if old is not None and old.applied else ""
        detail = f"projection_dim {layer.get_config()['projection_dim']} -> {len(indices)}"
        detail = f"{channels}, {detail}" if channels else detail
        rows.append(LayerDecision(name, type(layer).__name__, True, detail, ""))
    return rows


def config_rebuilds(model: keras.Model) -> bool:
    """Whether ``model`` and every model nested in it rebuild their graph from ``get_config``
    (plain functional/Sequential models; not ``BertEncoder``/``BertClassifier``)."""
    plain = ("Functional.get_config", "Sequential.get_config")
    models = [model] + [layer for _, layer in iter_layers(model) if isinstance(layer, keras.Model)]
    return all(type(m).get_config.__qualname__ in plain for m in models)


def _from_config(layer: Any, changes: dict[str, Any]) -> Any:
    config = layer.get_config()
    config.update(changes)
    try:
        return layer.__class__.from_config(config)
    except Exception as err:
        what = f"with {changes}" if changes else "unchanged"
        raise ValueError(
            f"shrink: layer '{layer.name}' ({type(layer).__name__}) could not be re-created "
            f"from its config {what} ({type(err).__name__}: {err}). Its get_config() must return "
            f"its constructor arguments; or leave it alone with skip=['{layer.name}']."
        ) from err


def clone_rebuild(
    model: keras.Model,
    changes: dict[str, dict[str, Any]],
    weights: dict[str, list[np.ndarray]],
    blocks: dict[int, BlockEdit],
) -> keras.Model:
    """Rebuild ``model`` by cloning its graph (nested models too): top-level layers take their
    ``changes``/``weights`` (layer name -> ...), transformer blocks their :class:`BlockEdit`,
    every other layer a copy of its config and weights. The result is a plain functional model
    (a ``BertEncoder`` comes back as the functional graph it is)."""
    pending: list[tuple[Any, Any, list[np.ndarray]]] = []

    def make(layer: Any, top: bool) -> Any:
        if is_functional(layer):
            return keras.models.clone_model(layer, clone_function=_maker(False))
        edit = blocks.get(id(layer))
        if edit is not None:
            new, values = _from_config(layer, edit.changes), edit.weights
        elif top and layer.name in changes:
            new, values = _from_config(layer, changes[layer.name]), weights[layer.name]
        else:
            new = _from_config(layer, {})
            values = weights.get(layer.name) if top else None
            values = layer.get_weights() if values is None else values
        pending.append((layer, new, values))
        return new

    def _maker(top: bool) -> Callable[[Any], Any]:
        return lambda layer: make(layer, top)

    new_model = keras.models.clone_model(model, clone_function=_maker(True))
    for old, new, values in pending:
        try:
            new.set_weights(values)
        except ValueError as err:
            raise ValueError(
                f"shrink: the kept weights of layer '{old.name}' ({type(old).__name__}) do not "
                f"fit the rebuilt layer ({err}); leave it alone with skip=['{old.name}']."
            ) from err
    return new_model
