"""Recipes: declarative pipelines (TOML/YAML), :func:`run` that executes them stage by stage
(cached and resumable), and the run report.

The names load on first use: ``tfcompress.recipe.DataSpec`` (and the CLI's ``bench``, which
reads data through :mod:`tfcompress.recipe._data`) imports no technique, ``run`` imports them
all.
"""

from __future__ import annotations

import importlib as _importlib

#: public name -> the module that defines it
_NAMES = {
    **dict.fromkeys(
        (
            "DISTILLATION_LOSSES",
            "MODEL_NAMES",
            "RECIPE_STRATEGIES",
            "STAGE_KINDS",
            "TFLITE_MODES",
            "AutoStage",
            "BenchmarkSpec",
            "DistillStage",
            "ExportSpec",
            "ModelSpec",
            "PruneStage",
            "QuantizeStage",
            "ShrinkStage",
            "Stage",
            "stage_from_config",
        ),
        "tfcompress.recipe.specs",
    ),
    "DATA_FORMATS": "tfcompress.recipe._data",
    "DataSpec": "tfcompress.recipe._data",
    "load_data": "tfcompress.recipe._data",
    "RecipeError": "tfcompress.recipe._files",
    "Recipe": "tfcompress.recipe.recipes",
    "load_recipe": "tfcompress.recipe.recipes",
    "loads_recipe": "tfcompress.recipe.recipes",
    "demo_recipe": "tfcompress.recipe.demo",
    "RunReport": "tfcompress.recipe.report",
    "StageResult": "tfcompress.recipe.report",
    "load_report": "tfcompress.recipe.report",
    "run": "tfcompress.recipe.runner",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> object:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'tfcompress.recipe' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
