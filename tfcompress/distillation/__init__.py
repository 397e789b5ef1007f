"""Distillation: the :class:`Distiller` model (teacher -> student) and its losses.

The names load on first use (PEP 562): the losses need TensorFlow only, ``Distiller`` imports
pruning (and so TFMOT).
"""

from __future__ import annotations

from tfcompress._lazy import attach

#: public name -> the module that defines it
_NAMES = {
    "Distiller": "tfcompress.distillation.distiller",
    "detect_output_kind": "tfcompress.distillation.heads",
    **dict.fromkeys(
        (
            "BinaryDistillationLoss",
            "FeatureDistillation",
            "ListwiseDistillationLoss",
            "MSEDistillationLoss",
            "SoftmaxDistillationLoss",
            "get_distillation_loss",
        ),
        "tfcompress.distillation.losses",
    ),
}

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


__getattr__, __dir__ = attach(__name__, _NAMES, globals(), __all__, DEPRECATED)
