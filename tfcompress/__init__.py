"""tfcompress: make tf_keras e-commerce models smaller and faster, and ship them.

Importing tfcompress makes ``tf.keras`` resolve to Keras 2 (``tf_keras``), which TFMOT needs.

Example:
    >>> import tfcompress
    >>> from tfcompress import data, models
    >>> task = data.load_task("ctr", n_samples=2_000)
    >>> model = models.compile_for_task(models.dcn(task.schema), task.schema)
    >>> result = tfcompress.export_tflite(model, "savedmodels/ctr.tflite")  # doctest: +SKIP
"""

from tfcompress import (
    acceleration,
    data,
    distribute,
    keras_compat,  # every submodule imports it first: TF_USE_LEGACY_KERAS=1 before TF
    launch,
    models,
)
from tfcompress._selection import CompressionReport, LayerDecision
from tfcompress.benchmarking import benchmark
from tfcompress.distillation import Distiller, detect_output_kind
from tfcompress.distillation_losses import (
    MSEKD,
    BinaryKD,
    FeatureDistillation,
    ListwiseKD,
    SoftmaxKD,
    get_distillation_loss,
)
from tfcompress.embeddings import QuantizedEmbedding, quantize_embeddings
from tfcompress.export import (
    ExportResult,
    ParityError,
    export_saved_model,
    export_tflite,
    load_variant,
    verify_manifest,
)
from tfcompress.flops import count_flops
from tfcompress.keras_compat import check_model
from tfcompress.pruning import (
    PruningCallback,
    SparsityReport,
    WeightSparsity,
    is_pruned,
    prune,
    sparsity_report,
    strip,
)
from tfcompress.quantization import (
    QuantizationScheme,
    is_quantized,
    load_quantized,
    quantize,
    quantize_scope,
    strip_quantization,
)
from tfcompress.quantization_callbacks import (
    QuantizationLogger,
    fit_then_quantize,
    quantizer_ranges,
)
from tfcompress.report import BenchmarkReport
from tfcompress.sensitivity import SensitivityReport, sensitivity
from tfcompress.shrinking import shrink

__version__ = "0.1.0"

__all__ = [
    "BenchmarkReport",
    "BinaryKD",
    "CompressionReport",
    "Distiller",
    "ExportResult",
    "FeatureDistillation",
    "LayerDecision",
    "ListwiseKD",
    "MSEKD",
    "ParityError",
    "PruningCallback",
    "QuantizationLogger",
    "QuantizationScheme",
    "QuantizedEmbedding",
    "SensitivityReport",
    "SoftmaxKD",
    "SparsityReport",
    "WeightSparsity",
    "acceleration",
    "benchmark",
    "check_model",
    "count_flops",
    "data",
    "detect_output_kind",
    "distribute",
    "export_saved_model",
    "export_tflite",
    "fit_then_quantize",
    "get_distillation_loss",
    "is_pruned",
    "is_quantized",
    "keras_compat",
    "launch",
    "load_quantized",
    "load_variant",
    "models",
    "prune",
    "quantize",
    "quantize_embeddings",
    "quantize_scope",
    "quantizer_ranges",
    "sensitivity",
    "shrink",
    "sparsity_report",
    "strip",
    "strip_quantization",
    "verify_manifest",
]
