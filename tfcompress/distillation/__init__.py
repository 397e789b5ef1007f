"""Distillation: the :class:`Distiller` model (teacher -> student) and its losses."""

from tfcompress.distillation.distiller import (
    Distiller,
)
from tfcompress.distillation.heads import (
    detect_output_kind,
)
from tfcompress.distillation.losses import (
    BinaryDistillationLoss,
    FeatureDistillation,
    ListwiseDistillationLoss,
    MSEDistillationLoss,
    SoftmaxDistillationLoss,
    get_distillation_loss,
)

__all__ = [
    "BinaryDistillationLoss",
    "Distiller",
    "FeatureDistillation",
    "ListwiseDistillationLoss",
    "MSEDistillationLoss",
    "SoftmaxDistillationLoss",
    "detect_output_kind",
    "get_distillation_loss",
]

#: names of 0.1 in this namespace that were renamed -> their new spelling
DEPRECATED = {
    "BinaryKD": "tfcompress.distillation.BinaryDistillationLoss",
    "ListwiseKD": "tfcompress.distillation.ListwiseDistillationLoss",
    "MSEKD": "tfcompress.distillation.MSEDistillationLoss",
    "SoftmaxKD": "tfcompress.distillation.SoftmaxDistillationLoss",
}


def __getattr__(name: str) -> object:
    if name in DEPRECATED:
        from tfcompress._moved import deprecated

        return deprecated(f"tfcompress.distillation.{name}", DEPRECATED[name])
    raise AttributeError(f"module 'tfcompress.distillation' has no attribute {name!r}")
