"""Export: TFLite (dynamic range, int8, float16, 16x8) and XLA-compiled SavedModels, each with
a parity check and a manifest, and the runtime that loads them back.

The names load on first use (PEP 562): the benchmark reads ``export.runtime`` without the
converter, and nothing here imports TFMOT until a QAT model is exported.
"""

from __future__ import annotations

from tfcompress._lazy import attach

# Importing these registers tfcompress's Keras layers (the reference models' layers, the int8
# and int4 tables, the tables of tfcompress.embeddings and their stored twins, the fused front
# end), so load_variant and the benchmark load a saved .keras model holding them with
# safe_mode=True; none of them imports TFMOT.
from tfcompress.embeddings import compositional as _compositional  # noqa: F401
from tfcompress.embeddings import mixed_dim_layer as _mixed_dim_layer  # noqa: F401
from tfcompress.embeddings import remap as _remap  # noqa: F401
from tfcompress.embeddings import vocabulary as _vocabulary  # noqa: F401
from tfcompress.export import fuse_layers as _fuse_layers  # noqa: F401
from tfcompress.export import table_layers as _table_layers  # noqa: F401
from tfcompress.models import layers as _model_layers  # noqa: F401
from tfcompress.quantization import embedding as _quantized_embedding  # noqa: F401

__all__ = [
    "DRIFT_MODES",
    "DRIFT_TOLERANCES",
    "QUANTIZATION_MODES",
    "ConversionError",
    "DriftError",
    "ExportResult",
    "HybridChoice",
    "InputSpec",
    "ParityError",
    "QuantizationConfig",
    "TableStorage",
    "Variant",
    "auc",
    "choose_float_ops",
    "collect_examples",
    "export_saved_model",
    "export_tflite",
    "fusable_tables",
    "fuse_embeddings",
    "load_variant",
    "model_input_specs",
    "quality",
    "register_table_storage",
    "registered_tables",
    "resolve_quantization",
    "verify_manifest",
]

#: public name -> the module that defines (or, for the private core's, publishes) it
_NAMES = {
    "ExportResult": "tfcompress.export.common",
    "ConversionError": "tfcompress.export.converter",
    "verify_manifest": "tfcompress.export.manifest",
    "fusable_tables": "tfcompress.export.fuse",
    "fuse_embeddings": "tfcompress.export.fuse",
    "HybridChoice": "tfcompress.export.hybrid",
    "choose_float_ops": "tfcompress.export.hybrid",
    "auc": "tfcompress.export.metrics",
    "quality": "tfcompress.export.metrics",
    "DRIFT_MODES": "tfcompress.export.parity",
    "DRIFT_TOLERANCES": "tfcompress.export.parity",
    "DriftError": "tfcompress.export.parity",
    "ParityError": "tfcompress.export.parity",
    "QUANTIZATION_MODES": "tfcompress.export.ptq",
    "QuantizationConfig": "tfcompress.export.ptq",
    "resolve_quantization": "tfcompress.export.ptq",
    "InputSpec": "tfcompress.export.runtime",
    "Variant": "tfcompress.export.runtime",
    "collect_examples": "tfcompress.export.runtime",
    "load_variant": "tfcompress.export.runtime",
    "model_input_specs": "tfcompress.export.runtime",
    "export_saved_model": "tfcompress.export.saved_model",
    "export_tflite": "tfcompress.export.tflite",
    "TableStorage": "tfcompress.export.tables",
    "register_table_storage": "tfcompress.export.tables",
    "registered_tables": "tfcompress.export.tables",
}


__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__)
