"""Embedding-table compression for real vocabularies: id frequencies, rare-id (vocabulary)
pruning by frequency or learned, hashed and quotient-remainder tables, mixed dimensions
(docs/embeddings.md).

int8/int4 row quantization lives in :mod:`tfcompress.quantization` (it is quantization); this
package changes what the tables hold and how ids reach them. The names load on first use.

Example:
    >>> from tfcompress.embeddings import count_ids
"""

from __future__ import annotations

from tfcompress._lazy import attach

#: public name -> the module that defines it
_NAMES = {
    "HashedEmbedding": "tfcompress.embeddings.compositional",
    "BlockedIdRemap": "tfcompress.embeddings.remap",
    "blocked_map_bytes": "tfcompress.embeddings.remap",
    "QREmbedding": "tfcompress.embeddings.compositional",
    "collision_report": "tfcompress.embeddings.compositional",
    "compositional_embeddings": "tfcompress.embeddings.compositional",
    "count_ids": "tfcompress.embeddings.frequency",
    "RowShrinkage": "tfcompress.embeddings.learned",
    "learned_row_pruning": "tfcompress.embeddings.learned",
    "table_inputs": "tfcompress.embeddings.frequency",
    "MixedDimEmbedding": "tfcompress.embeddings.mixed_dim",
    "mixed_dimension_embeddings": "tfcompress.embeddings.mixed_dim",
    "IdRemap": "tfcompress.embeddings.vocabulary",
    "detach_vocabulary": "tfcompress.embeddings.detach",
    "load_vocabulary": "tfcompress.embeddings.vocabulary",
    "prune_vocabulary": "tfcompress.embeddings.vocabulary",
    "save_vocabulary": "tfcompress.embeddings.vocabulary",
}

__all__ = [
    "BlockedIdRemap",
    "HashedEmbedding",
    "IdRemap",
    "MixedDimEmbedding",
    "QREmbedding",
    "RowShrinkage",
    "blocked_map_bytes",
    "collision_report",
    "compositional_embeddings",
    "count_ids",
    "detach_vocabulary",
    "learned_row_pruning",
    "load_vocabulary",
    "mixed_dimension_embeddings",
    "prune_vocabulary",
    "save_vocabulary",
    "table_inputs",
]


__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__)
