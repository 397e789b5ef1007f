"""Distillation: the :class:`Distiller` model (teacher -> student) and its losses."""

from tfcompress.distillation.distiller import (
    Distiller,
)
from tfcompress.distillation.heads import (
    detect_output_kind,
)
from tfcompress.distillation.losses import (
    MSEKD,
    BinaryKD,
    FeatureDistillation,
    ListwiseKD,
    SoftmaxKD,
    get_distillation_loss,
)

__all__ = [
    "MSEKD",
    "BinaryKD",
    "Distiller",
    "FeatureDistillation",
    "ListwiseKD",
    "SoftmaxKD",
    "detect_output_kind",
    "get_distillation_loss",
]
