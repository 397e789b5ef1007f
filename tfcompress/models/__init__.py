"""Reference e-commerce models: tf_keras functional models built from a data ``Schema``.

Example:
    >>> from tfcompress import data, models
    >>> task = data.load_task("ctr", n_samples=2_000)
    >>> model = models.dcn(task.schema, size="student")
    >>> model.output_shape
    (None, 1)
"""

from tfcompress.models.builders import (
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
    "SIZES",
    "build",
    "compile_for_task",
    "dcn",
    "loss_and_metrics",
    "logistic_regression",
    "sequence_transformer",
    "two_tower",
    "wide_deep",
]
