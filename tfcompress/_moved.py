"""Old module paths of tfcompress (before the subpackages) keep importing for one release.

``import tfcompress.pruning_callback`` (or ``from tfcompress.pruning_callback import X``) gets the
module at its new path (``tfcompress.pruning.callback``) with a ``DeprecationWarning`` naming it.
A finder on ``sys.meta_path`` answers only for the names below; :func:`install` adds it once.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

#: old module path -> its path since the subpackages (0.2)
MOVED: dict[str, str] = {
    "tfcompress.keras_compat": "tfcompress._keras",
    "tfcompress._selection": "tfcompress._layers",
    "tfcompress.model_inputs": "tfcompress._inputs",
    "tfcompress.pruning_callback": "tfcompress.pruning.callback",
    "tfcompress.pruning_masks": "tfcompress.pruning.masks",
    "tfcompress.pruning_report": "tfcompress.pruning.report",
    "tfcompress.pruning_schedule": "tfcompress.pruning.schedule",
    "tfcompress.shrinking": "tfcompress.pruning.shrinking",
    "tfcompress.shrinking_graph": "tfcompress.pruning._graph",
    "tfcompress._quantize_configs": "tfcompress.quantization.configs",
    "tfcompress.quantization_callbacks": "tfcompress.quantization.callbacks",
    "tfcompress.quantization_io": "tfcompress.quantization.saving",
    "tfcompress.embeddings": "tfcompress.quantization.embedding",
    "tfcompress.distillation_losses": "tfcompress.distillation.losses",
    "tfcompress.distillation_keras_losses": "tfcompress.distillation.keras_losses",
    "tfcompress.distillation_heads": "tfcompress.distillation.heads",
    "tfcompress.export_common": "tfcompress.export.common",
    "tfcompress.export_convert": "tfcompress.export.converter",
    "tfcompress.export_parity": "tfcompress.export.parity",
    "tfcompress.export_prepare": "tfcompress.export.prepare",
    "tfcompress.export_savedmodel": "tfcompress.export.saved_model",
    "tfcompress.tflite_quant": "tfcompress.export.ptq",
    "tfcompress.runtime": "tfcompress.export.runtime",
    "tfcompress.manifest": "tfcompress.export.manifest",
    "tfcompress.metrics": "tfcompress.export.metrics",
    "tfcompress.benchmarking": "tfcompress.evaluation.benchmarking",
    "tfcompress.report": "tfcompress.evaluation.report",
    "tfcompress.layer_sensitivity": "tfcompress.evaluation.layer_sensitivity",
    "tfcompress.flops": "tfcompress.evaluation.flops",
    "tfcompress.tradeoff": "tfcompress.evaluation.tradeoff",
    "tfcompress.memory_probe": "tfcompress.evaluation.memory_probe",
    "tfcompress.tensorboard": "tfcompress.callbacks.tensorboard",
    "tfcompress.tensorboard_events": "tfcompress.callbacks._events",
    "tfcompress.cluster": "tfcompress.distribute.cluster",
    "tfcompress.launch": "tfcompress.distribute.launch",
    "tfcompress.acceleration": "tfcompress.distribute.acceleration",
    "tfcompress._recipe_data": "tfcompress.recipe._data",
    "tfcompress._recipe_files": "tfcompress.recipe._files",
    "tfcompress._recipe_limits": "tfcompress.recipe._limits",
    "tfcompress._recipe_specs": "tfcompress.recipe.specs",
    "tfcompress.pipeline": "tfcompress.recipe.runner",
    "tfcompress._pipeline_export": "tfcompress.recipe._export",
    "tfcompress._pipeline_io": "tfcompress.recipe._cache",
    "tfcompress._pipeline_quality": "tfcompress.recipe._quality",
    "tfcompress._pipeline_seeds": "tfcompress.recipe._seeds",
    "tfcompress.run_report": "tfcompress.recipe.report",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: Any) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new}; import it from there (the old path goes in the "
            "next release).",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:  # the new module ran already
        return None


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Put the finder of the old module paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


def resolve(path: str) -> Any:
    """The object at a dotted path: a module (``tfcompress.distribute.launch``) or a name in one
    (``tfcompress.pruning.sparsity_report``)."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        if err.name != path:
            raise
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def deprecated(old: str, new: str, hint: str = "") -> Any:
    """Warn that ``old`` is now ``new`` (``DeprecationWarning``) and return ``new``'s object.

    Args:
        old: the old spelling, e.g. ``"tfcompress.sparsity_report"``.
        new: the new dotted path, e.g. ``"tfcompress.pruning.sparsity_report"``.
        hint: what to do instead, added to the message (for a name that went private).

    Returns:
        The object at ``new``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     path = deprecated("tfcompress.old_path", "tfcompress._moved.MOVED")
        >>> str(caught[0].message).split(";")[0]
        'tfcompress.old_path is now tfcompress._moved.MOVED'
    """
    warnings.warn(
        f"{old} is now {new}{hint}; the old name goes in the next release.",
        DeprecationWarning,
        stacklevel=3,
    )
    return resolve(new)
