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

from tfcompress._moved import deprecated as _deprecated
from tfcompress._moved import install as _install_moved
from tfcompress._version import __version__ as __version__

# old module paths (tfcompress.pruning_callback, ...) keep importing, with a warning
_install_moved()

#: the namespaces (subpackages), loaded on first use
_MODULES = (
    "callbacks",
    "data",
    "distillation",
    "distribute",
    "embeddings",
    "evaluation",
    "export",
    "models",
    "pruning",
    "quantization",
    "recipe",
    "search",
)
#: the verbs and the classes a user starts from -> the module that defines them
_NAMES = {
    "CompressionTensorBoard": "tfcompress.callbacks.tensorboard",
    "Distiller": "tfcompress.distillation.distiller",
    "PruningCallback": "tfcompress.pruning.callback",
    "Recipe": "tfcompress.recipe.recipes",
    "benchmark": "tfcompress.evaluation.benchmarking",
    "compress": "tfcompress.search.accuracy_aware",
    "check_model": "tfcompress._keras",
    "export_saved_model": "tfcompress.export.tflite",
    "export_tflite": "tfcompress.export.tflite",
    "load_recipe": "tfcompress.recipe.recipes",
    "load_variant": "tfcompress.export.tflite",
    "prune": "tfcompress.pruning.pruner",
    "quantize": "tfcompress.quantization.qat",
    "run": "tfcompress.recipe.runner",
    "sensitivity": "tfcompress.evaluation.layer_sensitivity",
    "shrink": "tfcompress.pruning.shrinking",
}
#: names of 0.1 that moved (one release of DeprecationWarning, then gone) -> their new spelling
DEPRECATED = {
    "BenchmarkReport": "tfcompress.evaluation.BenchmarkReport",
    "BinaryKD": "tfcompress.distillation.BinaryDistillationLoss",
    "CompressionReport": "tfcompress.evaluation.CompressionReport",
    "ExportResult": "tfcompress.export.ExportResult",
    "FeatureDistillation": "tfcompress.distillation.FeatureDistillation",
    "LayerDecision": "tfcompress.evaluation.LayerDecision",
    "ListwiseKD": "tfcompress.distillation.ListwiseDistillationLoss",
    "MSEKD": "tfcompress.distillation.MSEDistillationLoss",
    "ParityError": "tfcompress.export.ParityError",
    "QuantizationLogger": "tfcompress.quantization.QuantizationLogger",
    "QuantizationScheme": "tfcompress.quantization.QuantizationScheme",
    "QuantizedEmbedding": "tfcompress.quantization.QuantizedEmbedding",
    "RecipeError": "tfcompress.recipe.RecipeError",
    "RunReport": "tfcompress.recipe.RunReport",
    "SensitivityReport": "tfcompress.evaluation.SensitivityReport",
    "SoftmaxKD": "tfcompress.distillation.SoftmaxDistillationLoss",
    "SparsityReport": "tfcompress.pruning.SparsityReport",
    "StageResult": "tfcompress.recipe.StageResult",
    "WeightSparsity": "tfcompress.pruning.WeightSparsity",
    "acceleration": "tfcompress.distribute.acceleration",
    "count_flops": "tfcompress.evaluation.count_flops",
    "demo_recipe": "tfcompress.recipe.demo_recipe",
    "detect_output_kind": "tfcompress.distillation.detect_output_kind",
    "fit_then_quantize": "tfcompress.quantization.fit_then_quantize",
    "get_distillation_loss": "tfcompress.distillation.get_distillation_loss",
    "is_pruned": "tfcompress.pruning.is_pruned",
    "is_quantized": "tfcompress.quantization.is_quantized",
    "keras_compat": "tfcompress._keras",
    "launch": "tfcompress.distribute.launch",
    "load_quantized": "tfcompress.quantization.load_quantized",
    "load_report": "tfcompress.recipe.load_report",
    "log_hparams": "tfcompress.callbacks.log_hparams",
    "pareto_front": "tfcompress.evaluation.pareto_front",
    "plot_tradeoff": "tfcompress.evaluation.plot_tradeoff",
    "quantize_embeddings": "tfcompress.quantization.quantize_embeddings",
    "quantize_scope": "tfcompress.quantization.quantize_scope",
    "quantizer_ranges": "tfcompress.quantization.quantizer_ranges",
    "read_hparams": "tfcompress.callbacks.read_hparams",
    "read_scalars": "tfcompress.callbacks.read_scalars",
    "sparsity_report": "tfcompress.pruning.sparsity_report",
    "strip": "tfcompress.pruning.strip",
    "strip_quantization": "tfcompress.quantization.strip",
    "verify_manifest": "tfcompress.export.verify_manifest",
}


def __getattr__(name: str) -> object:
    if name in _MODULES:
        value = _importlib.import_module(f"tfcompress.{name}")
    elif name in _NAMES:
        value = getattr(_importlib.import_module(_NAMES[name]), name)
    elif name in DEPRECATED:
        hint = " (private: import tf_keras yourself)" if name == "keras_compat" else ""
        return _deprecated(f"tfcompress.{name}", DEPRECATED[name], hint)  # warns on every use
    else:
        raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    # the namespaces
    "callbacks",
    "data",
    "distillation",
    "distribute",
    "embeddings",
    "evaluation",
    "export",
    "models",
    "pruning",
    "quantization",
    "recipe",
    "search",
    # the verbs and the classes a user starts from
    "CompressionTensorBoard",
    "Distiller",
    "PruningCallback",
    "Recipe",
    "benchmark",
    "check_model",
    "compress",
    "export_saved_model",
    "export_tflite",
    "load_recipe",
    "load_variant",
    "prune",
    "quantize",
    "run",
    "sensitivity",
    "shrink",
]
