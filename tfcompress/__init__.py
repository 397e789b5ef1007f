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
from tfcompress.export import (
    ExportResult,
    ParityError,
    export_saved_model,
    export_tflite,
    load_variant,
    verify_manifest,
)
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
from tfcompress.report import BenchmarkReport
from tfcompress.shrinking import shrink

__version__ = "0.1.0"

__all__ = [
    "BenchmarkReport",
    "CompressionReport",
    "ExportResult",
    "LayerDecision",
    "ParityError",
    "PruningCallback",
    "SparsityReport",
    "WeightSparsity",
    "benchmark",
    "check_model",
    "acceleration",
    "data",
    "distribute",
    "export_saved_model",
    "export_tflite",
    "is_pruned",
    "keras_compat",
    "launch",
    "load_variant",
    "models",
    "prune",
    "shrink",
    "sparsity_report",
    "strip",
    "verify_manifest",
]
