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
    recipe,
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
from tfcompress.pipeline import run
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
from tfcompress.recipe import Recipe, RecipeError, demo_recipe, load_recipe
from tfcompress.report import BenchmarkReport
from tfcompress.run_report import RunReport, StageResult, load_report
from tfcompress.sensitivity import SensitivityReport, sensitivity
from tfcompress.shrinking import shrink
from tfcompress.tensorboard import (
    CompressionTensorBoard,
    log_hparams,
    read_hparams,
    read_scalars,
)
from tfcompress.tradeoff import pareto_front, plot_tradeoff

__version__ = "0.1.0"

__all__ = [
    "BenchmarkReport",
    "BinaryKD",
    "CompressionReport",
    "CompressionTensorBoard",
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
    "Recipe",
    "RecipeError",
    "RunReport",
    "SensitivityReport",
    "SoftmaxKD",
    "SparsityReport",
    "StageResult",
    "WeightSparsity",
    "acceleration",
    "benchmark",
    "check_model",
    "count_flops",
    "data",
    "demo_recipe",
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
    "load_recipe",
    "load_report",
    "load_variant",
    "log_hparams",
    "models",
    "pareto_front",
    "plot_tradeoff",
    "prune",
    "quantize",
    "quantize_embeddings",
    "quantize_scope",
    "quantizer_ranges",
    "read_hparams",
    "read_scalars",
    "recipe",
    "run",
    "sensitivity",
    "shrink",
    "sparsity_report",
    "strip",
    "strip_quantization",
    "verify_manifest",
]
