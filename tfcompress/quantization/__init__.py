"""Quantization: TFMOT quantization-aware training, its schemes and callbacks, saving and
loading QAT models, and int8/int4 embedding rows.

The names load on first use (PEP 562): ``tfcompress.quantization.QuantizedEmbedding`` needs
TensorFlow only, ``quantize`` and the other QAT names import TFMOT.
"""

from __future__ import annotations

import importlib as _importlib

#: public name -> "module" or "module:attribute" that defines it
_NAMES = {
    "QuantizationLogger": "tfcompress.quantization.callbacks",
    "fit_then_quantize": "tfcompress.quantization.callbacks",
    "quantizer_ranges": "tfcompress.quantization.callbacks",
    "SCHEMES": "tfcompress.quantization.configs",
    "QuantizationScheme": "tfcompress.quantization.configs",
    "QuantizedEmbedding": "tfcompress.quantization.embedding",
    "quantize_embeddings": "tfcompress.quantization.embedding",
    "quantize": "tfcompress.quantization.qat",
    "register_layer": "tfcompress.quantization.registry",
    "is_quantized": "tfcompress.quantization.saving",
    "load_quantized": "tfcompress.quantization.saving",
    "quantize_scope": "tfcompress.quantization.saving",
    "strip": "tfcompress.quantization.saving:strip_quantization",
}

__all__ = [
    "SCHEMES",
    "QuantizationLogger",
    "QuantizationScheme",
    "QuantizedEmbedding",
    "fit_then_quantize",
    "is_quantized",
    "load_quantized",
    "quantize",
    "quantize_embeddings",
    "quantize_scope",
    "quantizer_ranges",
    "strip",
    "register_layer",
]

#: names of 0.1 in this namespace that were renamed -> their new spelling
DEPRECATED = {"strip_quantization": "tfcompress.quantization.strip"}


def __getattr__(name: str) -> object:
    if name in DEPRECATED:
        from tfcompress._moved import deprecated

        return deprecated(f"tfcompress.quantization.{name}", DEPRECATED[name])
    target = _NAMES.get(name)
    if target is None:
        raise AttributeError(f"module 'tfcompress.quantization' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(_importlib.import_module(module), attribute or name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
