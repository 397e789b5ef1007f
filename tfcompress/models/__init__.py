"""Reference e-commerce models: tf_keras functional models built from a data ``Schema``.

Example:
    >>> from tfcompress import data, models
    >>> task = data.load_task("ctr", n_samples=2_000)
    >>> model = models.dcn(task.schema, size="student")
    >>> model.output_shape
    (None, 1)
"""

from tfcompress.models._blocks import resolve_size
from tfcompress.models.builders import (
    MODEL_NAMES,
    SIZES,
    build,
    compile_for_task,
    dcn,
    logistic_regression,
    loss_and_metrics,
    sequence_transformer,
    two_tower,
    wide_deep,
)

__all__ = [
    "MODEL_NAMES",
    "SIZES",
    "build",
    "compile_for_task",
    "dcn",
    "loss_and_metrics",
    "resolve_size",
    "logistic_regression",
    "sequence_transformer",
    "two_tower",
    "wide_deep",
]
