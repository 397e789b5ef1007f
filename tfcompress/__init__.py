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

from tfcompress._moved import install as _install_moved
from tfcompress._version import __version__ as __version__

# old module paths (tfcompress.pruning_callback, ...) keep importing, with a warning
_install_moved()

_MODULES = {"acceleration": "tfcompress.distribute.acceleration", "data": "tfcompress.data",
            "distribute": "tfcompress.distribute", "keras_compat": "tfcompress._keras",
            "launch": "tfcompress.distribute.launch", "models": "tfcompress.models",
            "recipe": "tfcompress.recipe"}
_NAMES = {
    "BenchmarkReport": "tfcompress.evaluation.report",
    "BinaryKD": "tfcompress.distillation.losses",
    "CompressionReport": "tfcompress._layers",
    "CompressionTensorBoard": "tfcompress.callbacks.tensorboard",
    "Distiller": "tfcompress.distillation.distiller",
    "ExportResult": "tfcompress.export.tflite",
    "FeatureDistillation": "tfcompress.distillation.losses",
    "LayerDecision": "tfcompress._layers",
    "ListwiseKD": "tfcompress.distillation.losses",
    "MSEKD": "tfcompress.distillation.losses",
    "ParityError": "tfcompress.export.tflite",
    "PruningCallback": "tfcompress.pruning.pruner",
    "QuantizationLogger": "tfcompress.quantization.callbacks",
    "QuantizationScheme": "tfcompress.quantization.qat",
    "QuantizedEmbedding": "tfcompress.quantization.embedding",
    "Recipe": "tfcompress.recipe.recipes",
    "RecipeError": "tfcompress.recipe.recipes",
    "RunReport": "tfcompress.recipe.report",
    "SensitivityReport": "tfcompress.evaluation.layer_sensitivity",
    "SoftmaxKD": "tfcompress.distillation.losses",
    "SparsityReport": "tfcompress.pruning.pruner",
    "StageResult": "tfcompress.recipe.report",
    "WeightSparsity": "tfcompress.pruning.pruner",
    "benchmark": "tfcompress.evaluation.benchmarking",
    "check_model": "tfcompress._keras",
    "count_flops": "tfcompress.evaluation.flops",
    "demo_recipe": "tfcompress.recipe.recipes",
    "detect_output_kind": "tfcompress.distillation.distiller",
    "export_saved_model": "tfcompress.export.tflite",
    "export_tflite": "tfcompress.export.tflite",
    "fit_then_quantize": "tfcompress.quantization.callbacks",
    "get_distillation_loss": "tfcompress.distillation.losses",
    "is_pruned": "tfcompress.pruning.pruner",
    "is_quantized": "tfcompress.quantization.qat",
    "load_quantized": "tfcompress.quantization.qat",
    "load_recipe": "tfcompress.recipe.recipes",
    "load_report": "tfcompress.recipe.report",
    "load_variant": "tfcompress.export.tflite",
    "log_hparams": "tfcompress.callbacks.tensorboard",
    "pareto_front": "tfcompress.evaluation.tradeoff",
    "plot_tradeoff": "tfcompress.evaluation.tradeoff",
    "prune": "tfcompress.pruning.pruner",
    "quantize": "tfcompress.quantization.qat",
    "quantize_embeddings": "tfcompress.quantization.embedding",
    "quantize_scope": "tfcompress.quantization.qat",
    "quantizer_ranges": "tfcompress.quantization.callbacks",
    "read_hparams": "tfcompress.callbacks.tensorboard",
    "read_scalars": "tfcompress.callbacks.tensorboard",
    "run": "tfcompress.recipe.runner",
    "sensitivity": "tfcompress.evaluation.layer_sensitivity",
    "shrink": "tfcompress.pruning.shrinking",
    "sparsity_report": "tfcompress.pruning.pruner",
    "strip": "tfcompress.pruning.pruner",
    "strip_quantization": "tfcompress.quantization.qat",
    "verify_manifest": "tfcompress.export.tflite",
}


def __getattr__(name: str):
    if name in _MODULES:
        value = _importlib.import_module(_MODULES[name])
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
