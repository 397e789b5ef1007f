"""Pruning: magnitude and 2:4 pruning inside ``fit``, schedules, reports, and shrinking
(structured removal of units, heads and embedding dimensions)."""

from tfcompress.pruning.callback import (
    PruningCallback,
    enable_fit_pruning,
)
from tfcompress.pruning.pruner import (
    is_pruned,
    prune,
    strip,
)
from tfcompress.pruning.report import (
    SparsityReport,
    WeightSparsity,
    is_two_four,
    sparsity_report,
)
from tfcompress.pruning.schedule import (
    FitSizedSchedule,
)
from tfcompress.pruning.shrinking import (
    shrink,
)

__all__ = [
    "FitSizedSchedule",
    "PruningCallback",
    "SparsityReport",
    "WeightSparsity",
    "enable_fit_pruning",
    "is_pruned",
    "is_two_four",
    "prune",
    "shrink",
    "sparsity_report",
    "strip",
]
from tfcompress.pruning._graph import register_shrink_handler  # noqa: E402

__all__ += ["register_shrink_handler"]
