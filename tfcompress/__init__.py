"""tfcompress: make tf_keras e-commerce models smaller and faster, and ship them.

Importing tfcompress makes ``tf.keras`` resolve to Keras 2 (``tf_keras``), which TFMOT needs.

Example:
    >>> import tfcompress
    >>> from tfcompress import data, models
    >>> task = data.load_task("ctr", n_samples=2_000)
    >>> model = models.compile_for_task(models.dcn(task.schema), task.schema)
    >>> result = tfcompress.export_tflite(model, "savedmodels/ctr.tflite")  # doctest: +SKIP
"""

# `import tfcompress` stays cheap: the CLI's --help/--version answer without TensorFlow. Names
# load on first use (PEP 562); tf.keras must still resolve to tf_keras for a user who imports
# tfcompress before TensorFlow, so the environment variable is set here (keras_compat checks it).
import importlib as _importlib
import os as _os

if _os.environ.get("TF_USE_LEGACY_KERAS") in (None, ""):
    _os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.1.0"

_MODULES = frozenset({"acceleration", "data", "distribute", "keras_compat", "launch", "models",
                      "recipe"})
_NAMES = {
    "BenchmarkReport": "tfcompress.report",
    "BinaryKD": "tfcompress.distillation_losses",
    "CompressionReport": "tfcompress._selection",
    "CompressionTensorBoard": "tfcompress.tensorboard",
    "Distiller": "tfcompress.distillation",
    "ExportResult": "tfcompress.export",
    "FeatureDistillation": "tfcompress.distillation_losses",
    "LayerDecision": "tfcompress._selection",
    "ListwiseKD": "tfcompress.distillation_losses",
    "MSEKD": "tfcompress.distillation_losses",
    "ParityError": "tfcompress.export",
    "PruningCallback": "tfcompress.pruning",
    "QuantizationLogger": "tfcompress.quantization_callbacks",
    "QuantizationScheme": "tfcompress.quantization",
    "QuantizedEmbedding": "tfcompress.embeddings",
    "Recipe": "tfcompress.recipe",
    "RecipeError": "tfcompress.recipe",
    "RunReport": "tfcompress.run_report",
    "SensitivityReport": "tfcompress.layer_sensitivity",
    "SoftmaxKD": "tfcompress.distillation_losses",
    "SparsityReport": "tfcompress.pruning",
    "StageResult": "tfcompress.run_report",
    "WeightSparsity": "tfcompress.pruning",
    "benchmark": "tfcompress.benchmarking",
    "check_model": "tfcompress.keras_compat",
    "count_flops": "tfcompress.flops",
    "demo_recipe": "tfcompress.recipe",
    "detect_output_kind": "tfcompress.distillation",
    "export_saved_model": "tfcompress.export",
    "export_tflite": "tfcompress.export",
    "fit_then_quantize": "tfcompress.quantization_callbacks",
    "get_distillation_loss": "tfcompress.distillation_losses",
    "is_pruned": "tfcompress.pruning",
    "is_quantized": "tfcompress.quantization",
    "load_quantized": "tfcompress.quantization",
    "load_recipe": "tfcompress.recipe",
    "load_report": "tfcompress.run_report",
    "load_variant": "tfcompress.export",
    "log_hparams": "tfcompress.tensorboard",
    "pareto_front": "tfcompress.tradeoff",
    "plot_tradeoff": "tfcompress.tradeoff",
    "prune": "tfcompress.pruning",
    "quantize": "tfcompress.quantization",
    "quantize_embeddings": "tfcompress.embeddings",
    "quantize_scope": "tfcompress.quantization",
    "quantizer_ranges": "tfcompress.quantization_callbacks",
    "read_hparams": "tfcompress.tensorboard",
    "read_scalars": "tfcompress.tensorboard",
    "run": "tfcompress.pipeline",
    "sensitivity": "tfcompress.layer_sensitivity",
    "shrink": "tfcompress.shrinking",
    "sparsity_report": "tfcompress.pruning",
    "strip": "tfcompress.pruning",
    "strip_quantization": "tfcompress.quantization",
    "verify_manifest": "tfcompress.export",
}


def __getattr__(name: str):
    if name in _MODULES:
        value = _importlib.import_module(f"tfcompress.{name}")
    elif name in _NAMES:
        value = getattr(_importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
