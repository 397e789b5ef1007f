"""Callbacks: compression summaries in TensorBoard (sparsity, quantizer ranges, HParams).

The names load on first use (PEP 562), so importing the namespace imports no TFMOT.
"""

from __future__ import annotations

from tfcompress._lazy import attach

__all__ = [
    "CompressionTensorBoard",
    "log_hparams",
    "log_text",
    "read_hparams",
    "read_scalars",
    "read_text",
]

#: public name -> the module that defines it
_NAMES = dict.fromkeys(__all__, "tfcompress.callbacks.tensorboard")


__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__)
