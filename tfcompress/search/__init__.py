"""Accuracy-aware compression: :func:`compress` searches shrink ratios, PTQ and QAT for the
smallest / fastest model whose quality loss stays within a tolerance (a paired CI decides)."""

from tfcompress.search.accuracy_aware import compress
from tfcompress.search.result import CandidateResult, CompressionResult
from tfcompress.search.space import OBJECTIVES, RUNTIMES, Candidate, SearchSettings, parse_budget

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
