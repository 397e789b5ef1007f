"""Embedding-table compression for real vocabularies: id frequencies, rare-id (vocabulary)
pruning, hashed and quotient-remainder tables, mixed dimensions (docs/embeddings.md).

int8/int4 row quantization lives in :mod:`tfcompress.quantization` (it is quantization); this
package changes what the tables hold and how ids reach them.

Example:
    >>> from tfcompress.embeddings import count_ids
"""

from tfcompress.embeddings.frequency import count_ids, table_inputs

__all__ = ["count_ids", "table_inputs"]
