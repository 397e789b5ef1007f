"""Embedding-table compression for real vocabularies: id frequencies, rare-id (vocabulary)
pruning, hashed and quotient-remainder tables, mixed dimensions (docs/embeddings.md).

int8/int4 row quantization lives in :mod:`tfcompress.quantization` (it is quantization); this
package changes what the tables hold and how ids reach them. The names load on first use.

Example:
    >>> from tfcompress.embeddings import count_ids
"""

from __future__ import annotations

from tfcompress._lazy import attach

#: public name -> the module that defines it
_NAMES = {
    "count_ids": "tfcompress.embeddings.frequency",
    "table_inputs": "tfcompress.embeddings.frequency",
}

__all__ = ["count_ids", "table_inputs"]


__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__)
