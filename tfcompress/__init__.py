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
    data,
    keras_compat,  # sets TF_USE_LEGACY_KERAS before TF builds tf.keras
    models,
)
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
from tfcompress.report import BenchmarkReport

__version__ = "0.1.0"

__all__ = [
    "BenchmarkReport",
    "ExportResult",
    "ParityError",
    "benchmark",
    "check_model",
    "data",
    "export_saved_model",
    "export_tflite",
    "keras_compat",
    "load_variant",
    "models",
    "verify_manifest",
]
