"""The public names of tfcompress are pinned: adding or removing one is a deliberate change."""

import tfcompress

PUBLIC = {
    # reports and configs
    "BenchmarkReport", "CompressionReport", "LayerDecision", "ExportResult", "ParityError",
    "SparsityReport", "WeightSparsity", "SensitivityReport", "QuantizationScheme",
    # pruning and shrinking
    "prune", "strip", "is_pruned", "sparsity_report", "PruningCallback", "shrink",
    # quantization
    "quantize", "is_quantized", "load_quantized", "quantize_scope", "strip_quantization",
    "QuantizationLogger", "fit_then_quantize", "quantizer_ranges", "QuantizedEmbedding",
    "quantize_embeddings", "sensitivity",
    # distillation
    "Distiller", "BinaryKD", "SoftmaxKD", "MSEKD", "ListwiseKD", "FeatureDistillation",
    "get_distillation_loss", "detect_output_kind", "count_flops",
    # export and measurement
    "export_tflite", "export_saved_model", "load_variant", "verify_manifest", "benchmark",
    "check_model",
    # recipes, runs, reports, TensorBoard
    "run", "Recipe", "RecipeError", "demo_recipe", "load_recipe", "RunReport", "StageResult",
    "load_report", "CompressionTensorBoard", "log_hparams", "read_hparams", "read_scalars",
    "pareto_front", "plot_tradeoff",
    # modules
    "acceleration", "data", "distribute", "keras_compat", "launch", "models", "recipe",
}


def test_public_names_are_pinned():
    assert set(tfcompress.__all__) == PUBLIC
    assert len(tfcompress.__all__) == len(PUBLIC)  # no duplicates


def test_every_public_name_exists_and_is_documented():
    for name in tfcompress.__all__:
        obj = getattr(tfcompress, name)
        assert (obj.__doc__ or "").strip(), f"tfcompress.{name} has no docstring"


def test_import_is_lazy_and_sets_legacy_keras():
    """`import tfcompress` loads no TensorFlow (the CLI's --help stays instant) but already makes
    tf.keras resolve to tf_keras for whatever the user imports next."""
    import subprocess
    import sys

    code = (
        "import os, sys, tfcompress\n"
        "print('tensorflow' in sys.modules, os.environ['TF_USE_LEGACY_KERAS'])\n"
        "import tensorflow as tf, tf_keras\n"
        "print(tf.keras.Model is tf_keras.Model)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "1", "True"]


def test_names_stay_what_they_are_after_every_submodule_is_imported():
    """A submodule named like a public verb would replace the verb on import (Python sets the
    package attribute to the module), so no public function may share a submodule's name."""
    import importlib
    import pkgutil
    import types

    for info in pkgutil.walk_packages(tfcompress.__path__, "tfcompress."):
        if not info.name.endswith(".__main__"):
            importlib.import_module(info.name)
    modules = {"acceleration", "data", "distribute", "keras_compat", "launch", "models",
               "recipe"}
    for name in tfcompress.__all__:
        obj = getattr(tfcompress, name)
        assert isinstance(obj, types.ModuleType) == (name in modules), name
    assert callable(tfcompress.sensitivity) and callable(tfcompress.benchmark)


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'prunee'"):
        tfcompress.prunee  # noqa: B018
