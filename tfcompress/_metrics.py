"""The one exact ROC AUC, below every subpackage (data's leak checks and export's quality use it).

Example:
    >>> from tfcompress._metrics import auc
    >>> import numpy as np
    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
"""

from __future__ import annotations

import numpy as np

__all__ = ["auc"]


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC (Mann-Whitney, ties averaged); None when only one class is present.

    Args:
        labels: 0/1 labels (any shape; values > 0.5 count as positive).
        scores: one score per label (probabilities or logits).

    Returns:
        The exact AUC, or None when ``labels`` hold a single class.

    Example:
        >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # average ranks of tied scores (1-based), vectorised: each distinct value's rank is the
    # mean of the positions it occupies in sorted order
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
