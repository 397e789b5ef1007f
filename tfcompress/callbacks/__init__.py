"""Callbacks: compression summaries in TensorBoard (sparsity, quantizer ranges, HParams)."""

from tfcompress.callbacks.tensorboard import (
    CompressionTensorBoard,
    log_hparams,
    log_text,
    read_hparams,
    read_scalars,
    read_text,
)

__all__ = [
    "CompressionTensorBoard",
    "log_hparams",
    "log_text",
    "read_hparams",
    "read_scalars",
    "read_text",
]
