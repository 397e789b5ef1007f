"""Evaluation: benchmark, paired statistics, layer sensitivity, FLOPs and the trade-off plot.

The names load on first use (PEP 562): ``benchmark`` (the CLI's ``bench``) imports no TFMOT,
``sensitivity`` imports the techniques it tries.
"""

from __future__ import annotations

import importlib as _importlib

#: public name -> the module that defines (or, for the private core's, publishes) it
_NAMES = {
    "CompressionReport": "tfcompress._layers",
    "LayerDecision": "tfcompress._layers",
    "benchmark": "tfcompress.evaluation.benchmarking",
    "configure_threads": "tfcompress.evaluation.benchmarking",
    "count_flops": "tfcompress.evaluation.flops",
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
    "plot_tradeoff": "tfcompress.evaluation.tradeoff",
}

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


def __getattr__(name: str) -> object:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'tfcompress.evaluation' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
