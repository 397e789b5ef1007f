"""Evaluation: benchmark, paired statistics, layer sensitivity, FLOPs, per-op profiles, the
machine's peak and the trade-off plot.

The names load on first use (PEP 562): ``benchmark`` (the CLI's ``bench``) imports no TFMOT,
``sensitivity`` imports the techniques it tries.
"""

from __future__ import annotations

from tfcompress._lazy import attach

#: public name -> the module that defines (or, for the private core's, publishes) it
_NAMES = {
    "CompressionReport": "tfcompress._layers",
    "LayerDecision": "tfcompress._layers",
    "benchmark": "tfcompress.evaluation.benchmarking",
    "configure_threads": "tfcompress.evaluation.benchmarking",
    "count_flops": "tfcompress.evaluation.flops",
    "function_gemm_flops": "tfcompress.evaluation.graph_flops",
    "saved_model_flops": "tfcompress.evaluation.graph_flops",
    "SensitivityReport": "tfcompress.evaluation.layer_sensitivity",
    "SensitivityRow": "tfcompress.evaluation.layer_sensitivity",
    "sensitivity": "tfcompress.evaluation.layer_sensitivity",
    "BenchmarkReport": "tfcompress.evaluation.report",
    "BenchmarkRow": "tfcompress.evaluation.report",
    "PairedDifference": "tfcompress.evaluation.statistics",
    "delong_auc_difference": "tfcompress.evaluation.statistics",
    "paired_bootstrap": "tfcompress.evaluation.statistics",
    "paired_difference": "tfcompress.evaluation.statistics",
    "pareto_front": "tfcompress.evaluation.tradeoff",
    "machine_peak": "tfcompress.evaluation.peak",
    "OpProfile": "tfcompress.evaluation.profile",
    "OpRow": "tfcompress.evaluation.profile",
    "TIMINGS": "tfcompress.evaluation.benchmarking",
    "profile_variant": "tfcompress.evaluation.profile",
    "plot_tradeoff": "tfcompress.evaluation.tradeoff",
}

__all__ = [
    "TIMINGS",
    "BenchmarkReport",
    "BenchmarkRow",
    "CompressionReport",
    "LayerDecision",
    "OpProfile",
    "OpRow",
    "PairedDifference",
    "SensitivityReport",
    "SensitivityRow",
    "benchmark",
    "configure_threads",
    "count_flops",
    "delong_auc_difference",
    "function_gemm_flops",
    "machine_peak",
    "paired_bootstrap",
    "paired_difference",
    "pareto_front",
    "plot_tradeoff",
    "profile_variant",
    "saved_model_flops",
    "sensitivity",
]


__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__)
