"""Magnitude and 2:4 pruning that reaches its target inside a plain ``fit``: :func:`prune`,
:func:`strip`, :func:`sparsity_report`, :func:`is_pruned` (TFMOT underneath; see docs/pruning.md).

Example:
    >>> from tfcompress._keras import keras
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="d")])
    >>> pruned = prune(model, 0.5)
    >>> pruned.compression_report["d"].detail
    'sparsity 0.50 on kernel'
    >>> is_pruned(pruned), is_pruned(strip(pruned))
    (True, False)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import (
    CompressionReport,
    LayerDecision,
    LayerFilter,
    iter_layers,
    match_layers,
)
from tfcompress._validation import check_functional, is_functional
from tfcompress.pruning.callback import PruningCallback, enable_fit_pruning
from tfcompress.pruning.masks import finalize_masks, mask_sparsity
from tfcompress.pruning.report import (
    SparsityReport,
    WeightSparsity,
    find_wrappers,
    is_two_four,
    prunable_weights,
    sparsity_report,
    weight_label,
)
from tfcompress.pruning.schedule import FitSizedSchedule, PruneLowMagnitude, PruneWrapper

__all__ = [
    "PruningCallback",
    "SparsityReport",
    "WeightSparsity",
    "enable_fit_pruning",
    "is_pruned",
    "is_two_four",
    "prune",
    "sparsity_report",
    "strip",
]

_log = logging.getLogger("tfcompress")
_STRUCTURES = {None: None, "2:4": (2, 4)}


# ---------------------------------------------------------------------- decisions


@dataclasses.dataclass
class _Plan:
    decision: LayerDecision
    indices: list[int] | None = None
    strict_failure: bool = False


def _covered(path: str, paths: set[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in paths)


def _plan_layer(
    path: str,
    layer: Any,
    selected: bool,
    excluded: bool,
    target: float,
    m_by_n: tuple[int, int] | None,
) -> _Plan:
    cls = type(layer).__name__
    if isinstance(layer, keras.Model):
        # a subclassed model nested in a functional one: Keras cannot clone it
        reason = (
            f"subclassed model {cls} cannot be cloned by Keras, so it is kept as is (shared "
            "with the original model); prune its functional sub-models instead"
        )
        has = bool(layer.trainable_weights) and selected and not excluded
        return _Plan(LayerDecision(path, cls, False, reason=reason), strict_failure=has)
    if excluded:
        return _Plan(LayerDecision(path, cls, False, reason="excluded by skip="))
    if not selected:
        reason = "not selected by layers=" if layer.weights else "no weights"
        return _Plan(LayerDecision(path, cls, False, reason=reason))
    found = prunable_weights(layer)
    if not found.weights:
        failure = found.source == "none" and found.note.startswith("custom layer")
        return _Plan(LayerDecision(path, cls, False, reason=found.note), strict_failure=failure)
    weights = found.weights
    left_out: list[str] = []
    if m_by_n is not None:
        left_out = [weight_label(layer, w) for w in weights if w.shape.rank not in (2, 4)]
        weights = [w for w in weights if w.shape.rank in (2, 4)]
        if not weights:
            reason = (
                f"2:4 structure needs rank-2 or rank-4 weights; {cls} has "
                f"{', '.join(left_out)} of rank "
                f"{', '.join(str(w.shape.rank) for w in found.weights)}"
            )
            return _Plan(LayerDecision(path, cls, False, reason=reason), strict_failure=True)
    refs = [w.ref() for w in layer.weights]
    indices = [refs.index(w.ref()) for w in weights if w.ref() in refs]
    labels = ", ".join(weight_label(layer, w) for w in weights)
    detail = f"2:4 on {labels}" if m_by_n else f"sparsity {target:.2f} on {labels}"
    reasons = []
    if found.source == "sublayers":
        pruned = {w.ref() for w in weights}
        rest = [
            weight_label(layer, w)
            for w in layer.trainable_weights
            if w.ref() not in pruned and w.shape.rank >= 2
        ]
        own_table = all(weight_label(layer, w) == "embeddings" for w in weights)
        reasons.append(
            f"custom layer {cls} without get_prunable_weights(): pruned its own `embeddings` table"
            if own_table
            else f"custom layer {cls} without get_prunable_weights(): pruned the kernels of "
            "its Dense/EinsumDense/Conv/Embedding sublayers"
        )
        if rest:
            reasons.append(f"left dense: {', '.join(rest)}")
    if left_out:
        reasons.append(f"not 2:4-prunable (rank not 2 or 4): {', '.join(left_out)}")
    partial = bool(left_out) or (found.source == "sublayers" and len(reasons) > 1)
    decision = LayerDecision(path, cls, True, detail, "; ".join(reasons))
    return _Plan(decision, indices, strict_failure=partial)


# ---------------------------------------------------------------------- cloning


def _fresh_copy(layer: Any, pairs: list[tuple[Any, Any]], purpose: str) -> Any:
    """A new layer from ``layer``'s config (weights copied later), or ``layer`` itself."""
    if isinstance(layer, keras.Model):
        _log.warning(
            "%s: nested model '%s' (%s) is not functional and cannot be cloned; the new model "
            "shares it, and its weights, with the original.",
            purpose,
            layer.name,
            type(layer).__name__,
        )
        return layer
    try:
        new = layer.__class__.from_config(layer.get_config())
    except Exception as err:  # a custom layer without a working get_config
        _log.warning(
            "%s: layer '%s' (%s) cannot be re-created from its config (%s); the new model "
            "shares it, and its weights, with the original. Implement get_config() to get an "
            "independent copy.",
            purpose,
            layer.name,
            type(layer).__name__,
            err,
        )
        return layer
    pairs.append((layer, new))
    return new


def _clone(model: keras.Model, layer_fn: Callable[[Any], Any]) -> keras.Model:
    def clone_function(layer: Any) -> Any:
        if is_functional(layer):
            return _clone(layer, layer_fn)
        return layer_fn(layer)

    return keras.models.clone_model(model, clone_function=clone_function)


def _copy_weights(pairs: list[tuple[Any, Any]], purpose: str, masked: bool = False) -> None:
    for source, target in pairs:
        if masked:
            values = _masked_weights(source)
            name = source.layer.name
        else:
            values = source.get_weights()
            name = source.name
        try:
            target.set_weights(values)
        except ValueError as err:
            raise ValueError(
                f"{purpose}: cannot copy the weights of layer '{name}' "
                f"({type(target).__name__}) into its copy: {err}. Its get_config() must "
                "re-create the same weights."
            ) from err


def _masked_weights(wrapper: PruneLowMagnitude) -> list[np.ndarray]:
    inner = wrapper.layer
    values = inner.get_weights()
    refs = [w.ref() for w in inner.weights]
    for weight, mask, _ in wrapper.pruning_vars:
        if weight.ref() in refs:
            i = refs.index(weight.ref())
            values[i] = values[i] * np.asarray(tf.convert_to_tensor(mask)).astype(values[i].dtype)
    return values


# ---------------------------------------------------------------------- prune


def _check_args(
    sparsity: Any, structure: Any, frequency: Any, strict: Any
) -> tuple[float, tuple[int, int] | None]:
    if not isinstance(structure, (str, type(None))) or structure not in _STRUCTURES:
        raise ValueError(
            f"`structure` must be None (unstructured) or '2:4', received {structure!r}."
        )
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be True or False, received {strict!r}.")
    m_by_n = _STRUCTURES[structure]
    if sparsity is not None and (
        isinstance(sparsity, bool)
        or not isinstance(sparsity, (int, float, np.floating, np.integer))
    ):
        raise TypeError(f"`sparsity` must be a float in [0, 1), received {sparsity!r}.")
    if m_by_n is not None:
        if sparsity is not None and float(sparsity) != 0.5:
            raise ValueError(
                f"structure='2:4' fixes the sparsity at 0.5 (2 zeros in every 4 weights); "
                f"received sparsity={sparsity!r}. Drop `sparsity` (or pass 0.5), or use "
                "structure=None for unstructured sparsity."
            )
        if frequency is not None:
            raise ValueError(
                f"`frequency` has no effect with structure='2:4' (its masks are chosen once, "
                f"at the begin step); received frequency={frequency!r}. Drop it."
            )
        return 0.5, m_by_n
    target = 0.8 if sparsity is None else float(sparsity)
    if not 0.0 <= target < 1.0:
        raise ValueError(
            f"`sparsity` must be in [0, 1) (the fraction of weights set to zero), received "
            f"{sparsity!r}; e.g. 0.8 keeps 20% of the weights."
        )
    return target, None


def prune(
    model: keras.Model,
    sparsity: float | None = None,
    *,
    schedule: str = "polynomial",
    structure: str | None = None,
    layers: LayerFilter = None,
    skip: LayerFilter = None,
    steps: int | tuple[int, int] | None = None,
    begin: float = 0.0,
    end: float = 0.8,
    frequency: int | None = None,
    strict: bool = False,
) -> keras.Model:
    """Return a copy of ``model`` with TFMOT magnitude-pruning wrappers, ready to compile+fit.

    Compile it and fit it as usual: a plain ``pruned.fit(x, y, epochs=...)`` prunes (the
    recommended path; see :func:`enable_fit_pruning`). Add :class:`PruningCallback` to
    ``callbacks`` to log ``sparsity`` and ``sparsity/<layer>`` (History, ``CSVLogger``,
    ``TensorBoard``); the schedule then still steps once per batch. A pruned model fitted
    inside a ``Distiller`` prunes too (the Distiller drives it); one nested in another
    subclassed model, or loaded from a file, needs the callback or :func:`enable_fit_pruning`. The
    per-layer outcome is attached as ``pruned.compression_report`` (a
    :class:`~tfcompress._layers.CompressionReport`, technique ``"prune"``): every layer,
    pruned (``detail`` = sparsity and weights) or not (``reason``).

    What gets pruned: kernels of ``Dense``/``Conv``/``MultiHeadAttention``, ``Embedding``
    tables (they dominate CTR model size), the weights a layer returns from
    ``get_prunable_weights()`` (e.g. :class:`tfcompress.models.layers.Cross`), and the
    ``Dense``/``EinsumDense``/``Conv``/``Embedding`` kernels inside other custom layers. Biases
    and normalisation weights are not pruned. Nested functional models are pruned
    recursively; a subclassed model must be pruned through its functional sub-models.

    Sparsity and structure: unstructured pruning removes the ``sparsity`` fraction (default
    0.8) of smallest-magnitude weights of each pruned weight. ``structure="2:4"`` zeroes 2 of
    every 4 consecutive weights along TFMOT's m-by-n axis (a Dense kernel's input axis), so
    the sparsity is fixed at 0.5: leave ``sparsity`` unset (or 0.5); any other value, or a
    ``frequency``, raises. 2:4 masks are chosen once, at the begin step; the ``schedule``
    argument does not apply to them. Rank-3 weights (attention kernels) cannot be 2:4-pruned.

    Schedule: ``steps=None`` sizes it from each fit (``epochs * steps_per_epoch``, read at fit
    start; a fit of unknown length, e.g. a filtered dataset without ``steps_per_epoch``, raises
    a ``ValueError`` naming both fixes); an int or ``(epochs, steps_per_epoch)`` plans one
    schedule over all fits. Pruning starts at ``begin * steps``, updates masks every
    ``frequency`` steps (default ``max(1, span // 10)``) and reaches the target at
    ``end * steps``; at the end of fit the exact final masks are applied, whatever the
    frequency.

    Args:
        model: a built functional or Sequential tf_keras model (left unchanged).
        sparsity: target fraction of zeros in [0, 1); None means 0.8 (0.5 for 2:4).
        schedule: ``"polynomial"`` (TFMOT's cubic ramp) or ``"constant"``.
        structure: None (unstructured) or ``"2:4"``.
        layers: layer filter (names, regexes, classes, callables; see
            :mod:`tfcompress._layers`) of the layers to prune; None = all. Naming a nested
            model selects all its layers.
        skip: layer filter of layers not to prune.
        steps: None, total steps, or ``(epochs, steps_per_epoch)``.
        begin: fraction of the steps at which pruning starts, in [0, 1].
        end: fraction of the steps at which the target is reached, in [begin, 1].
        frequency: steps between mask updates; None derives it from the steps.
        strict: raise instead of skipping a selected layer that holds weights pruning cannot
            handle (a custom layer without prunable kernels, rank-3 weights under 2:4, a
            nested subclassed model); layers with nothing to prune by design (normalisation,
            ``get_prunable_weights()`` returning none) do not count.

    Returns:
        The pruned copy, with ``compression_report`` attached; its ``fit`` drives the pruning.

    Raises:
        TypeError: ``model`` is not a tf_keras model (e.g. Keras 3), bad argument types.
        ValueError: sparsity outside [0, 1), unknown structure/schedule, a layer filter entry
            matching no layer, a subclassed or already pruned model, nothing to prune, or a
            skipped layer under ``strict=True``.

    Example:
        >>> from tfcompress._keras import keras
        >>> inputs = keras.Input((16,))
        >>> hidden = keras.layers.Dense(8, name="hidden")(inputs)
        >>> norm = keras.layers.LayerNormalization(name="norm")(hidden)
        >>> model = keras.Model(inputs, keras.layers.Dense(1, name="out")(norm))
        >>> pruned = prune(model, 0.75, skip="out")
        >>> [(d.layer, d.applied) for d in pruned.compression_report.decisions]
        [('hidden', True), ('norm', False), ('out', False)]
        >>> import numpy as np
        >>> pruned.compile("adam", "mse")
        >>> _ = pruned.fit(np.ones((64, 16)), np.ones((64, 1)), epochs=2, verbose=0)
        >>> round(sparsity_report(pruned)["hidden"], 2)
        0.75
    """
    check_model(model, "model")
    target, m_by_n = _check_args(sparsity, structure, frequency, strict)
    plan_schedule = FitSizedSchedule(
        target,
        kind=schedule,
        structure=structure,
        steps=steps,
        begin=begin,
        end=end,
        frequency=frequency,
    )
    check_functional(model, "prune")
    if not model.built:
        raise ValueError(
            f"prune: model '{model.name}' is not built; build it (call it on data or give it "
            "an Input) first."
        )
    wrapped = find_wrappers(model)
    if wrapped:
        raise ValueError(
            f"prune: model '{model.name}' is already pruned (layers "
            f"{', '.join(p for p, _ in wrapped)} have pruning wrappers); call "
            "tfcompress.pruning.strip(model) first to prune it again."
        )

    # pass 1: an independent, built copy with the original weights
    pairs: list[tuple[Any, Any]] = []
    base = _clone(model, lambda layer: _fresh_copy(layer, pairs, "prune"))
    _copy_weights(pairs, "prune")

    candidates = list(iter_layers(base))
    chosen = match_layers(base, layers, argument="layers") if layers is not None else None
    excluded = match_layers(base, skip, argument="skip") if skip is not None else set()
    plans: dict[int, _Plan] = {}
    decisions = []
    opaque: set[str] = set()  # nested subclassed models: kept as they are, contents included
    for path, layer in candidates:
        if is_functional(layer) or _covered(path, opaque):
            continue
        if isinstance(layer, keras.Model):
            opaque.add(path)
        plan = _plan_layer(
            path,
            layer,
            selected=chosen is None or _covered(path, chosen),
            excluded=_covered(path, excluded),
            target=target,
            m_by_n=m_by_n,
        )
        plans.setdefault(id(layer), plan)
        decisions.append(plan.decision)
    settings = {
        "sparsity": target,
        "structure": structure,
        "schedule": schedule,
        "steps": steps,
        "begin": begin,
        "end": end,
        "frequency": frequency,
    }
    report = CompressionReport("prune", tuple(decisions), settings)
    failures = [p.decision for p in plans.values() if p.strict_failure]
    if strict and failures:
        listing = "; ".join(f"{d.layer} ({d.class_name}): {d.reason}" for d in failures)
        raise ValueError(
            f"prune(strict=True): {len(failures)} selected layer(s) of model '{model.name}' "
            f"cannot be (fully) pruned: {listing}. Exclude them with skip=[...] or pass "
            "strict=False to prune the rest."
        )
    if not any(p.indices for p in plans.values()):
        raise ValueError(
            f"prune: nothing to prune in model '{model.name}' with layers={layers!r}, "
            f"skip={skip!r}: no selected layer has a prunable weight.\n{report.to_markdown()}"
        )
    for decision in failures:
        _log.warning("prune: %s (%s) %s", decision.layer, decision.class_name, decision.reason)

    # pass 2: wrap the chosen layers of the copy; fresh copies of the others
    pairs = []

    def wrap(layer: Any) -> Any:
        plan = plans.get(id(layer))
        if plan is not None and plan.indices:
            return PruneWrapper(
                layer,
                pruning_schedule=plan_schedule,
                sparsity_m_by_n=m_by_n,
                prunable_indices=plan.indices,
                path=plan.decision.layer,
            )
        return _fresh_copy(layer, pairs, "prune")

    pruned = _clone(base, wrap)
    _copy_weights(pairs, "prune")
    pruned.compression_report = report
    enable_fit_pruning(pruned)
    _log.info(
        "prune: %d layer(s) pruned to %s, %d not pruned.",
        len(report.applied),
        "2:4" if m_by_n else f"sparsity {target:.2f}",
        len(report.skipped),
    )
    return pruned


# ---------------------------------------------------------------------- strip / inspect


def is_pruned(model: keras.Model) -> bool:
    """Whether ``model`` holds pruning wrappers (searched through nested and subclassed models).

    Example:
        >>> from tfcompress._keras import keras
        >>> is_pruned(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
        False
    """
    check_model(model, "model")
    return bool(find_wrappers(model))


def _finish_undone_fits(model: keras.Model) -> None:
    """Apply the target masks where a completed fit's final masks were undone.

    ``EarlyStopping(restore_best_weights=True)`` listed AFTER :class:`PruningCallback` restores
    the weights and masks of an earlier epoch, below the target; so does reloading an earlier
    checkpoint. A fit-sized schedule (``steps=None``) promises the target at the end of every
    fit, so the masks are recomputed here (pruned weights stay pruned) and a warning says why.
    """
    for path, wrapper in find_wrappers(model):
        schedule = getattr(wrapper, "pruning_schedule", None)
        if not (
            isinstance(wrapper, PruneWrapper)
            and isinstance(schedule, FitSizedSchedule)
            and schedule.planned_total is None
            and schedule.started
        ):
            continue
        if wrapper.sparsity_m_by_n:
            values = [np.asarray(w) * np.asarray(m) for w, m, _ in wrapper.pruning_vars]
            below = any(is_two_four(v) is False for v in values)
        else:  # fewer zeros than the exact final mask leaves (see pruning_masks.exact_mask)
            below = False
            for _, mask, _ in wrapper.pruning_vars:
                values = np.asarray(mask)
                keep = max(int(round(values.size * (1.0 - schedule.target))), 1)
                below |= values.size - np.count_nonzero(values) < values.size - keep
        if below:
            _log.warning(
                "strip: layer %r is at sparsity %.3f, below its target %.3f%s: its final masks "
                "were undone (e.g. EarlyStopping(restore_best_weights=True) listed after "
                "PruningCallback, or an earlier checkpoint was loaded). Applying the target "
                "masks now; list PruningCallback last, or fine-tune again if quality matters.",
                path,
                mask_sparsity(wrapper),
                schedule.target,
                " (2:4)" if wrapper.sparsity_m_by_n else "",
            )
            finalize_masks(wrapper, schedule.target)


def strip(model: keras.Model) -> keras.Model:
    """A plain tf_keras copy of a pruned model: no wrappers (nested models too), sparse weights.

    Each pruned weight is copied as ``weight * mask``; outputs equal the pruned model's. If a
    fit's final masks were undone (``EarlyStopping(restore_best_weights=True)`` listed after
    :class:`PruningCallback`; a plain fit applies its final masks last, so it is not affected),
    the target masks are applied first, with a warning, so the copy has the sparsity ``prune``
    promised. The result saves as ``.keras`` and loads
    back with ``safe_mode=True`` (custom layers must be registered serializable). A model
    without wrappers gives a plain copy.

    Args:
        model: a functional or Sequential tf_keras model, typically from :func:`prune`.

    Returns:
        The stripped copy (independent of ``model``).

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: ``model`` is a subclassed model (strip its functional sub-models).

    Example:
        >>> from tfcompress._keras import keras
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="d")])
        >>> [layer.name for layer in strip(prune(model, 0.5)).layers]
        ['d']
    """
    check_model(model, "model")
    check_functional(model, "strip")
    _finish_undone_fits(model)
    pairs: list[tuple[Any, Any]] = []
    masked_pairs: list[tuple[Any, Any]] = []

    def unwrap(layer: Any) -> Any:
        if isinstance(layer, PruneLowMagnitude):
            new_pairs: list[tuple[Any, Any]] = []
            new = _fresh_copy(layer.layer, new_pairs, "strip")
            if new is layer.layer:  # cannot be copied: strip in place, as TFMOT does
                for weight, mask, _ in layer.pruning_vars:
                    weight.assign(tf.convert_to_tensor(weight) * tf.cast(mask, weight.dtype))
                return new
            masked_pairs.append((layer, new))
            return new
        return _fresh_copy(layer, pairs, "strip")

    stripped = _clone(model, unwrap)
    _copy_weights(pairs, "strip")
    _copy_weights(masked_pairs, "strip", masked=True)
    return stripped
