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
)
from tfcompress.quantization.saving import (
    strip_quantization as strip,
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
    "strip",
]

#: names of 0.1 in this namespace that were renamed -> their new spelling
DEPRECATED = {"strip_quantization": "tfcompress.quantization.strip"}


def __getattr__(name: str) -> object:
    if name in DEPRECATED:
        from tfcompress._moved import deprecated

        return deprecated(f"tfcompress.quantization.{name}", DEPRECATED[name])
    raise AttributeError(f"module 'tfcompress.quantization' has no attribute {name!r}")


from tfcompress.quantization.registry import register_layer  # noqa: E402

__all__ += ["register_layer"]
