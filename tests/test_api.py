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
