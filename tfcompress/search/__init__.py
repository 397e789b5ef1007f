"""Accuracy-aware compression: :func:`compress` searches shrink ratios, PTQ and QAT for the
smallest / fastest model whose quality loss stays within a tolerance (a paired CI decides).

The names load on first use: ``parse_budget`` and ``Candidate`` need no TensorFlow (the CLI
checks ``--budget`` with them before loading anything).
"""

from __future__ import annotations

from tfcompress._lazy import attach

#: public name -> the module that defines it
_NAMES = {
    "CandidateResult": "tfcompress.search.result",
    "CompressionResult": "tfcompress.search.result",
    "compress": "tfcompress.search.accuracy_aware",
    **dict.fromkeys(
        ("OBJECTIVES", "RUNTIMES", "Candidate", "SearchSettings", "parse_budget"),
        "tfcompress.search.space",
    ),
}

__all__ = [
    "OBJECTIVES",
    "RUNTIMES",
    "Candidate",
    "CandidateResult",
    "CompressionResult",
    "SearchSettings",
    "compress",
    "parse_budget",
]

__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__)
