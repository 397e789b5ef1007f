"""Quantization: TFMOT quantization-aware training, its schemes and callbacks, saving and
loading QAT models, and int8/int4 embedding rows."""

from tfcompress.quantization.callbacks import (
    QuantizationLogger,
    fit_then_quantize,
    quantizer_ranges,
)
from tfcompress.quantization.configs import (
    SCHEMES,
    QuantizationScheme,
)
from tfcompress.quantization.embedding import (
    QuantizedEmbedding,
    quantize_embeddings,
)
from tfcompress.quantization.qat import (
    quantize,
)
from tfcompress.quantization.saving import (
    is_quantized,
    load_quantized,
    quantize_scope,
    strip_quantization,
)

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
    "strip_quantization",
]
