"""The public names of tfcompress are pinned: adding or removing one is a deliberate change."""

import tfcompress

NAMESPACES = {
    "callbacks",
    "data",
    "distillation",
    "distribute",
    "embeddings",
    "evaluation",
    "export",
    "models",
    "pruning",
    "quantization",
    "recipe",
    "search",
}
VERBS = {
    "prune",
    "shrink",
    "quantize",
    "Distiller",
    "export_tflite",
    "export_saved_model",
    "load_variant",
    "benchmark",
    "sensitivity",
    "run",
    "Recipe",
    "load_recipe",
    "PruningCallback",
    "CompressionTensorBoard",
    "check_model",
    "compress",
}
PUBLIC = NAMESPACES | VERBS

#: each namespace's public names (its __all__), pinned as well
NAMESPACE_ALL = {
    "search": {
        "OBJECTIVES",
        "RUNTIMES",
        "Candidate",
        "CandidateResult",
        "CompressionResult",
        "SearchSettings",
        "compress",
        "parse_budget",
    },
    "pruning": {
        "Block",
        "DimShrinkage",
        "FitSizedSchedule",
        "PruningCallback",
        "SparsityReport",
        "WeightSparsity",
        "drop_blocks",
        "enable_fit_pruning",
        "find_blocks",
        "is_pruned",
        "is_two_four",
        "learned_dim_pruning",
        "prune",
        "remove_zero_dims",
        "shrink",
        "register_shrink_handler",
        "sparsity_report",
        "strip",
    },
    "quantization": {
        "SCHEMES",
        "QuantizationLogger",
        "QuantizationScheme",
        "QuantizedEmbedding",
        "QuantizedEmbedding4",
        "fit_then_quantize",
        "int4_aware_embeddings",
        "is_quantized",
        "load_quantized",
        "quantize",
        "quantize_embeddings",
        "quantize_scope",
        "quantizer_ranges",
        "register_layer",
        "strip",
    },
    "distillation": {
        "BinaryDistillationLoss",
        "Distiller",
        "FeatureDistillation",
        "ListwiseDistillationLoss",
        "MSEDistillationLoss",
        "SoftmaxDistillationLoss",
        "detect_output_kind",
        "get_distillation_loss",
    },
    "export": {
        "DRIFT_MODES",
        "DRIFT_TOLERANCES",
        "QUANTIZATION_MODES",
        "ConversionError",
        "DriftError",
        "ExportResult",
        "HybridChoice",
        "InputSpec",
        "ParityError",
        "QuantizationConfig",
        "TableStorage",
        "Variant",
        "auc",
        "choose_float_ops",
        "collect_examples",
        "export_saved_model",
        "export_tflite",
        "fusable_tables",
        "fuse_embeddings",
        "load_variant",
        "model_input_specs",
        "quality",
        "register_table_storage",
        "registered_tables",
        "resolve_quantization",
        "verify_manifest",
    },
    "evaluation": {
        "TIMINGS",
        "BenchmarkReport",
        "BenchmarkRow",
        "CompressionReport",
        "LayerDecision",
        "PairedDifference",
        "OpProfile",
        "OpRow",
        "SensitivityReport",
        "SensitivityRow",
        "benchmark",
        "configure_threads",
        "count_flops",
        "machine_peak",
        "profile_variant",
        "saved_model_flops",
        "delong_auc_difference",
        "function_gemm_flops",
        "paired_bootstrap",
        "paired_difference",
        "pareto_front",
        "plot_tradeoff",
        "sensitivity",
    },
    "embeddings": {
        "BlockedIdRemap",
        "HashedEmbedding",
        "IdRemap",
        "MixedDimEmbedding",
        "QREmbedding",
        "RowShrinkage",
        "blocked_map_bytes",
        "collision_report",
        "compositional_embeddings",
        "count_ids",
        "detach_vocabulary",
        "learned_row_pruning",
        "load_vocabulary",
        "mixed_dimension_embeddings",
        "prune_vocabulary",
        "save_vocabulary",
        "table_inputs",
    },
    "callbacks": {
        "CompressionTensorBoard",
        "log_hparams",
        "log_text",
        "read_hparams",
        "read_scalars",
        "read_text",
    },
    "distribute": {
        "JOBS",
        "STRATEGY_NAMES",
        "LaunchTimeoutError",
        "WorkerError",
        "chief_only_path",
        "get_strategy",
        "is_chief",
        "launch_local",
        "local_tf_config",
        "parse_tf_config",
        "resolve_strategy_name",
        "run_server",
        "split_cpu",
        "to_local_model",
    },
    "recipe": {
        "DATA_FORMATS",
        "DISTILLATION_LOSSES",
        "MODEL_NAMES",
        "RECIPE_STRATEGIES",
        "STAGE_KINDS",
        "TFLITE_MODES",
        "AutoStage",
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
        "load_data",
        "load_recipe",
        "load_report",
        "loads_recipe",
        "run",
        "stage_from_config",
    },
}


def test_public_names_are_pinned():
    assert set(tfcompress.__all__) == PUBLIC
    assert len(tfcompress.__all__) == len(PUBLIC) <= 28  # no duplicates, the verbs only
    # (25 after the redesign; issue 16 added `compress` and its namespace `search`, issue 18
    # the namespace `embeddings`)


def test_namespace_names_are_pinned():
    import importlib

    for namespace, names in NAMESPACE_ALL.items():
        module = importlib.import_module(f"tfcompress.{namespace}")
        assert set(module.__all__) == names, namespace
        assert len(module.__all__) == len(names), namespace
        for name in module.__all__:
            assert hasattr(module, name), f"tfcompress.{namespace}.{name}"


def test_the_top_level_verbs_are_the_namespaces_objects():
    """`tfcompress.prune` is `tfcompress.pruning.prune`: one object, two spellings."""
    import importlib

    homes = {
        "prune": "pruning",
        "shrink": "pruning",
        "PruningCallback": "pruning",
        "quantize": "quantization",
        "Distiller": "distillation",
        "export_tflite": "export",
        "export_saved_model": "export",
        "load_variant": "export",
        "benchmark": "evaluation",
        "sensitivity": "evaluation",
        "run": "recipe",
        "Recipe": "recipe",
        "load_recipe": "recipe",
        "CompressionTensorBoard": "callbacks",
        "compress": "search",
    }
    assert set(homes) == VERBS - {"check_model"}
    for name, namespace in homes.items():
        module = importlib.import_module(f"tfcompress.{namespace}")
        assert getattr(tfcompress, name) is getattr(module, name), name


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
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
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
    for name in tfcompress.__all__:
        obj = getattr(tfcompress, name)
        assert isinstance(obj, types.ModuleType) == (name in NAMESPACES), name
    for namespace in NAMESPACE_ALL:  # the same inside each namespace
        module = getattr(tfcompress, namespace)
        for name in module.__all__:
            assert not isinstance(getattr(module, name), types.ModuleType), (namespace, name)
    assert callable(tfcompress.sensitivity) and callable(tfcompress.benchmark)
    assert callable(tfcompress.pruning.strip) and callable(tfcompress.quantization.strip)


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'prunee'"):
        tfcompress.prunee  # noqa: B018
