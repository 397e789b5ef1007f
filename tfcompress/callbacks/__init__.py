"""Callbacks: compression summaries in TensorBoard (sparsity, quantizer ranges, HParams).

The names load on first use (PEP 562), so importing the namespace imports no TFMOT.
"""

from __future__ import annotations

import importlib as _importlib

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


def __getattr__(name: str) -> object:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'tfcompress.callbacks' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
