"""The masks of pruned weights: exact final masks (top-k or 2:4), re-masking, and the sparsity
logs.

Example:
    >>> from tfcompress._keras import tf
    >>> exact_mask(tf.constant([[0.1, -3.0], [2.0, 0.5]]), 0.5).numpy().tolist()
    [[0.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._keras import tf

# isort: split
# TFMOT is imported after keras_compat, which makes it use tf_keras (Keras 2).
from tfcompress._compat import pruning_utils, pruning_wrapper

__all__ = [
    "apply_masks",
    "exact_mask",
    "finalize_masks",
    "m_by_n_mask",
    "mask_sparsity",
    "masked_counts",
    "sparsity_logs",
]

PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude


def _value(variable: Any) -> tf.Tensor:
    return tf.convert_to_tensor(variable)


def exact_mask(weight: tf.Tensor, sparsity: float) -> tf.Tensor:
    """0/1 mask keeping exactly ``max(round(n * (1 - sparsity)), 1)`` largest magnitudes."""
    flat = tf.reshape(tf.abs(weight), [-1])
    size = int(flat.shape[0])
    keep = max(int(round(size * (1.0 - sparsity))), 1)
    _, indices = tf.math.top_k(flat, k=keep, sorted=False)
    mask = tf.scatter_nd(tf.expand_dims(indices, -1), tf.ones([keep], weight.dtype), [size])
    return tf.reshape(mask, tf.shape(weight))


def m_by_n_mask(weight: tf.Tensor, m_by_n: tuple[int, int]) -> tf.Tensor:
    """TFMOT's m-by-n mask (``m`` zeros in every ``n`` consecutive weights along its axis)."""
    prepared = pruning_utils.weights_rearrange(weight)
    mask = pruning_utils.generate_m_by_n_mask(prepared, m_by_n)
    return tf.cast(pruning_utils.m_by_n_sparsity_mask_prepare(mask, weight.shape), weight.dtype)


def apply_masks(wrapper: PruneLowMagnitude) -> None:
    """``weight <- weight * mask`` for every pruned weight of ``wrapper`` (eager)."""
    for weight, mask, _ in wrapper.pruning_vars:
        weight.assign(_value(weight) * tf.cast(_value(mask), weight.dtype))


def finalize_masks(wrapper: PruneLowMagnitude, sparsity: float) -> None:
    """Exact final masks at ``sparsity`` (or 2:4), computed from ``|weight * mask|`` so that
    pruned weights stay pruned, then ``weight <- weight * mask``."""
    for weight, mask, threshold in wrapper.pruning_vars:
        current = _value(weight) * tf.cast(_value(mask), weight.dtype)
        if wrapper.sparsity_m_by_n:
            new_mask = m_by_n_mask(current, tuple(wrapper.sparsity_m_by_n))
        else:
            new_mask = exact_mask(current, sparsity)
            kept = tf.boolean_mask(tf.abs(current), tf.cast(new_mask, tf.bool))
            threshold.assign(tf.cast(tf.reduce_min(kept), threshold.dtype))
        mask.assign(tf.cast(new_mask, mask.dtype))
        weight.assign(current * tf.cast(new_mask, weight.dtype))


def masked_counts(wrapper: PruneLowMagnitude) -> tuple[int, int]:
    """``(zeros, size)`` of ``weight * mask`` over the pruned weights of ``wrapper``."""
    zeros = size = 0
    for weight, mask, _ in wrapper.pruning_vars:
        value = np.asarray(_value(weight)) * np.asarray(_value(mask))
        zeros += int(value.size - np.count_nonzero(value))
        size += int(value.size)
    return zeros, size


def sparsity_logs(
    wrappers: list[tuple[str, PruneLowMagnitude]], per_layer: bool = True
) -> dict[str, float]:
    """``{"sparsity": overall, "sparsity/<path>": per layer}`` of ``(path, wrapper)`` pairs, as
    the callbacks put them into ``logs``."""
    zeros_total = size_total = 0
    layers: dict[str, list[int]] = {}
    for path, wrapper in wrappers:
        zeros, size = masked_counts(wrapper)
        zeros_total += zeros
        size_total += size
        entry = layers.setdefault(path, [0, 0])
        entry[0] += zeros
        entry[1] += size
    logs = {"sparsity": zeros_total / size_total if size_total else 0.0}
    if per_layer:
        logs.update({f"sparsity/{path}": z / n for path, (z, n) in layers.items() if n})
    return logs


def mask_sparsity(wrapper: PruneLowMagnitude) -> float:
    """Fraction of zeros in the masks of ``wrapper`` (what its pruning has reached so far)."""
    zeros = size = 0
    for _, mask, _ in wrapper.pruning_vars:
        value = np.asarray(_value(mask))
        zeros += int(value.size - np.count_nonzero(value))
        size += int(value.size)
    return zeros / size if size else 0.0
