"""Pruning: magnitude and 2:4 pruning inside ``fit``, schedules, reports, and shrinking
(structured removal of units, heads and embedding dimensions) and dropping residual blocks.

The names load on first use (PEP 562), so importing the namespace imports no TFMOT.
"""

from __future__ import annotations

from tfcompress._lazy import attach

#: public name -> the module that defines it
_NAMES = {
    "PruningCallback": "tfcompress.pruning.callback",
    "enable_fit_pruning": "tfcompress.pruning.callback",
    "is_pruned": "tfcompress.pruning.pruner",
    "prune": "tfcompress.pruning.pruner",
    "strip": "tfcompress.pruning.pruner",
    "SparsityReport": "tfcompress.pruning.report",
    "WeightSparsity": "tfcompress.pruning.report",
    "is_two_four": "tfcompress.pruning.report",
    "sparsity_report": "tfcompress.pruning.report",
    "FitSizedSchedule": "tfcompress.pruning.schedule",
    "shrink": "tfcompress.pruning.shrinking",
    "register_shrink_handler": "tfcompress.pruning._graph",
    "DimShrinkage": "tfcompress.pruning.learned_dims",
    "learned_dim_pruning": "tfcompress.pruning.learned_dims",
    "remove_zero_dims": "tfcompress.pruning.learned_dims",
    "Block": "tfcompress.pruning.depth",
    "drop_blocks": "tfcompress.pruning.depth",
    "find_blocks": "tfcompress.pruning.depth",
}

__all__ = [
    "Block",
    "DimShrinkage",
    "FitSizedSchedule",
    "PruningCallback",
    "SparsityReport",
    "WeightSparsity",
    "drop_blocks",
    "enable_fit_pruning",
    "find_blocks",
    "is_pruned",
    "is_two_four",
    "learned_dim_pruning",
    "prune",
    "remove_zero_dims",
    "shrink",
    "sparsity_report",
    "strip",
    "register_shrink_handler",
]


__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__)
