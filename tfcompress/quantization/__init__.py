"""Quantization: TFMOT quantization-aware training, its schemes and callbacks, saving and
loading QAT models, and int8/int4 embedding rows.

The names load on first use (PEP 562): ``tfcompress.quantization.QuantizedEmbedding`` needs
TensorFlow only, ``quantize`` and the other QAT names import TFMOT.
"""

from __future__ import annotations

from tfcompress._lazy import attach

#: public name -> "module" or "module:attribute" that defines it
_NAMES = {
    "QuantizationLogger": "tfcompress.quantization.callbacks",
    "fit_then_quantize": "tfcompress.quantization.callbacks",
    "quantizer_ranges": "tfcompress.quantization.callbacks",
    "SCHEMES": "tfcompress.quantization.configs",
    "QuantizationScheme": "tfcompress.quantization.configs",
    "QuantizedEmbedding": "tfcompress.quantization.embedding",
    "quantize_embeddings": "tfcompress.quantization.embedding",
    "QuantizedEmbedding4": "tfcompress.quantization.embedding_int4",
    "int4_aware_embeddings": "tfcompress.quantization.embedding_int4",
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
    "QuantizedEmbedding4",
    "fit_then_quantize",
    "int4_aware_embeddings",
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


__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__, DEPRECATED)
