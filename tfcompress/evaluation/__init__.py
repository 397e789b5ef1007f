"""Evaluation: benchmark, paired statistics, layer sensitivity, FLOPs and the trade-off plot."""

from tfcompress._layers import (
    CompressionReport,
    LayerDecision,
)
from tfcompress.evaluation.benchmarking import (
    benchmark,
    configure_threads,
)
from tfcompress.evaluation.flops import (
    count_flops,
)
from tfcompress.evaluation.layer_sensitivity import (
    SensitivityReport,
    SensitivityRow,
    sensitivity,
)
from tfcompress.evaluation.report import (
    BenchmarkReport,
    BenchmarkRow,
)
from tfcompress.evaluation.statistics import (
    PairedDifference,
    delong_auc_difference,
    paired_bootstrap,
    paired_difference,
)
from tfcompress.evaluation.tradeoff import (
    pareto_front,
    plot_tradeoff,
)

__all__ = [
    "BenchmarkReport",
    "BenchmarkRow",
    "CompressionReport",
    "LayerDecision",
    "PairedDifference",
    "SensitivityReport",
    "SensitivityRow",
    "benchmark",
    "configure_threads",
    "count_flops",
    "delong_auc_difference",
    "paired_bootstrap",
    "paired_difference",
    "pareto_front",
    "plot_tradeoff",
    "sensitivity",
]
