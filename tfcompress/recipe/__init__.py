"""Recipes: declarative pipelines (TOML/YAML), :func:`run` that executes them stage by stage
(cached and resumable), and the run report."""

from tfcompress.recipe.recipes import (
    DATA_FORMATS,
    DISTILLATION_LOSSES,
    MODEL_NAMES,
    RECIPE_STRATEGIES,
    STAGE_KINDS,
    TFLITE_MODES,
    BenchmarkSpec,
    DataSpec,
    DistillStage,
    ExportSpec,
    ModelSpec,
    PruneStage,
    QuantizeStage,
    Recipe,
    RecipeError,
    ShrinkStage,
    Stage,
    demo_recipe,
    load_recipe,
    loads_recipe,
    stage_from_config,
)
from tfcompress.recipe.report import (
    RunReport,
    StageResult,
    load_report,
)

__all__ = [
    "DATA_FORMATS",
    "DISTILLATION_LOSSES",
    "MODEL_NAMES",
    "RECIPE_STRATEGIES",
    "STAGE_KINDS",
    "TFLITE_MODES",
    "BenchmarkSpec",
    "DataSpec",
    "DistillStage",
    "ExportSpec",
    "ModelSpec",
    "PruneStage",
    "QuantizeStage",
    "Recipe",
    "RecipeError",
    "RunReport",
    "ShrinkStage",
    "Stage",
    "StageResult",
    "demo_recipe",
    "load_recipe",
    "load_report",
    "loads_recipe",
    "run",
    "stage_from_config",
]


def __getattr__(name: str):
    # `run` pulls in every technique; the recipe classes stay light for the CLI
    if name == "run":
        from tfcompress.recipe.runner import run

        return run
    raise AttributeError(f"module 'tfcompress.recipe' has no attribute {name!r}")
