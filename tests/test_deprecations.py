"""Every name removed or renamed in 0.2 keeps working for one release: it warns
(``DeprecationWarning``) naming the new spelling and is the very object of the new name."""

import importlib
import re
import warnings

import pytest

import tfcompress
from tfcompress._moved import resolve

#: old top-level name -> new spelling (the list users read in the release notes)
TOP_LEVEL = {
    "BenchmarkReport": "tfcompress.evaluation.BenchmarkReport",
    "BinaryKD": "tfcompress.distillation.BinaryDistillationLoss",
    "CompressionReport": "tfcompress.evaluation.CompressionReport",
    "ExportResult": "tfcompress.export.ExportResult",
    "FeatureDistillation": "tfcompress.distillation.FeatureDistillation",
    "LayerDecision": "tfcompress.evaluation.LayerDecision",
    "ListwiseKD": "tfcompress.distillation.ListwiseDistillationLoss",
    "MSEKD": "tfcompress.distillation.MSEDistillationLoss",
    "ParityError": "tfcompress.export.ParityError",
    "QuantizationLogger": "tfcompress.quantization.QuantizationLogger",
    "QuantizationScheme": "tfcompress.quantization.QuantizationScheme",
    "QuantizedEmbedding": "tfcompress.quantization.QuantizedEmbedding",
    "RecipeError": "tfcompress.recipe.RecipeError",
    "RunReport": "tfcompress.recipe.RunReport",
    "SensitivityReport": "tfcompress.evaluation.SensitivityReport",
    "SoftmaxKD": "tfcompress.distillation.SoftmaxDistillationLoss",
    "SparsityReport": "tfcompress.pruning.SparsityReport",
    "StageResult": "tfcompress.recipe.StageResult",
    "WeightSparsity": "tfcompress.pruning.WeightSparsity",
    "acceleration": "tfcompress.distribute.acceleration",
    "count_flops": "tfcompress.evaluation.count_flops",
    "demo_recipe": "tfcompress.recipe.demo_recipe",
    "detect_output_kind": "tfcompress.distillation.detect_output_kind",
    "fit_then_quantize": "tfcompress.quantization.fit_then_quantize",
    "get_distillation_loss": "tfcompress.distillation.get_distillation_loss",
    "is_pruned": "tfcompress.pruning.is_pruned",
    "is_quantized": "tfcompress.quantization.is_quantized",
    "keras_compat": "tfcompress._keras",
    "launch": "tfcompress.distribute.launch",
    "load_quantized": "tfcompress.quantization.load_quantized",
    "load_report": "tfcompress.recipe.load_report",
    "log_hparams": "tfcompress.callbacks.log_hparams",
    "pareto_front": "tfcompress.evaluation.pareto_front",
    "plot_tradeoff": "tfcompress.evaluation.plot_tradeoff",
    "quantize_embeddings": "tfcompress.quantization.quantize_embeddings",
    "quantize_scope": "tfcompress.quantization.quantize_scope",
    "quantizer_ranges": "tfcompress.quantization.quantizer_ranges",
    "read_hparams": "tfcompress.callbacks.read_hparams",
    "read_scalars": "tfcompress.callbacks.read_scalars",
    "sparsity_report": "tfcompress.pruning.sparsity_report",
    "strip": "tfcompress.pruning.strip",
    "strip_quantization": "tfcompress.quantization.strip",
    "verify_manifest": "tfcompress.export.verify_manifest",
}

#: renamed inside a namespace or module: old dotted path -> new spelling
SCOPED = {
    "tfcompress.quantization.strip_quantization": "tfcompress.quantization.strip",
    "tfcompress.distillation.BinaryKD": "tfcompress.distillation.BinaryDistillationLoss",
    "tfcompress.distillation.SoftmaxKD": "tfcompress.distillation.SoftmaxDistillationLoss",
    "tfcompress.distillation.MSEKD": "tfcompress.distillation.MSEDistillationLoss",
    "tfcompress.distillation.ListwiseKD": "tfcompress.distillation.ListwiseDistillationLoss",
    "tfcompress.distillation.losses.BinaryKD": "tfcompress.distillation.BinaryDistillationLoss",
    "tfcompress.distillation.losses.SoftmaxKD": "tfcompress.distillation.SoftmaxDistillationLoss",
    "tfcompress.distillation.losses.MSEKD": "tfcompress.distillation.MSEDistillationLoss",
    "tfcompress.distillation.losses.ListwiseKD": "tfcompress.distillation.ListwiseDistillationLoss",
}


def test_the_list_is_the_packages_list():
    assert TOP_LEVEL == tfcompress.DEPRECATED
    assert not set(TOP_LEVEL) & set(tfcompress.__all__)  # old names are not public any more


@pytest.mark.parametrize("old", sorted(TOP_LEVEL))
def test_old_top_level_name_warns_and_is_the_new_object(old):
    new = TOP_LEVEL[old]
    with pytest.warns(DeprecationWarning, match=re.escape(f"tfcompress.{old} is now {new}")):
        value = getattr(tfcompress, old)
    assert value is resolve(new)
    with pytest.warns(DeprecationWarning):  # every use warns, not only the first
        assert getattr(tfcompress, old) is value


@pytest.mark.parametrize("old", sorted(SCOPED))
def test_old_scoped_name_warns_and_is_the_new_object(old):
    module, _, name = old.rpartition(".")
    new = SCOPED[old]
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        value = getattr(importlib.import_module(module), name)
    assert value is resolve(new)


def test_from_import_of_an_old_name_warns_at_the_callers_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from tfcompress import sparsity_report  # noqa: F401
    ours = [
        w
        for w in caught
        if issubclass(w.category, DeprecationWarning) and "sparsity_report" in str(w.message)
    ]
    assert ours and ours[0].filename == __file__


def test_new_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in tfcompress.__all__:
            getattr(tfcompress, name)
        assert tfcompress.pruning.strip is not tfcompress.quantization.strip
        assert tfcompress.distillation.SoftmaxDistillationLoss.__name__ == (
            "SoftmaxDistillationLoss"
        )


def test_keras_compat_says_it_went_private():
    with pytest.warns(DeprecationWarning, match="private: import tf_keras yourself"):
        tfcompress.keras_compat  # noqa: B018


@pytest.mark.parametrize(
    "old,new",
    [
        ("BinaryKD", "BinaryDistillationLoss"),
        ("SoftmaxKD", "SoftmaxDistillationLoss"),
        ("MSEKD", "MSEDistillationLoss"),
        ("ListwiseKD", "ListwiseDistillationLoss"),
    ],
)
def test_configs_that_name_the_old_loss_classes_still_load(old, new):
    """A loss serialized before 0.2 names "tfcompress>BinaryKD": it loads as the new class."""
    from tfcompress._keras import keras
    from tfcompress.distillation import losses

    cls = getattr(losses, new)
    config = keras.saving.serialize_keras_object(cls())
    config["registered_name"] = f"tfcompress>{old}"
    config["class_name"] = old
    loaded = keras.saving.deserialize_keras_object(config)
    assert type(loaded) is cls
    assert loaded.get_config() == cls().get_config()
    # the legacy (h5 / SavedModel) config format names the class as "tfcompress>SoftmaxKD"
    legacy = keras.losses.deserialize(
        {"class_name": f"tfcompress>{old}", "config": cls().get_config()}
    )
    assert type(legacy) is cls


def test_a_model_saved_with_an_old_loss_name_loads(tmp_path):
    """A whole .keras file whose compile config names "tfcompress>SoftmaxKD" loads and
    evaluates with the new class."""
    import json
    import zipfile

    import numpy as np

    from tfcompress._keras import keras
    from tfcompress.distillation import SoftmaxDistillationLoss

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    model.compile("sgd", loss=SoftmaxDistillationLoss(temperature=3.0))
    path = tmp_path / "m.keras"
    model.save(path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert "tfcompress>SoftmaxDistillationLoss" in text
                text = text.replace("tfcompress>SoftmaxDistillationLoss", "tfcompress>SoftmaxKD")
                text = text.replace('"SoftmaxDistillationLoss"', '"SoftmaxKD"')
                json.loads(text)
                data = text.encode()
            dst.writestr(item, data)
    loaded = keras.models.load_model(old)
    assert type(loaded.loss) is SoftmaxDistillationLoss
    assert loaded.loss.temperature == 3.0
    x = np.ones((2, 3), "float32")
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def _pair():
    from tfcompress._keras import keras

    def mlp(width, name, seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(width, activation="relu"),
                keras.layers.Dense(1, activation="sigmoid"),
            ],
            name=name,
        )

    return mlp(3, "student", 1), mlp(6, "teacher", 2)


def test_distiller_alpha_is_the_complement_of_student_loss_weight():
    """Our alpha weighed the distillation loss; Keras 3's student_loss_weight weighs the
    student's: alpha=a warns and trains exactly as student_loss_weight=1 - a."""
    import numpy as np

    from tfcompress.distillation import Distiller

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    with pytest.warns(DeprecationWarning, match=r"student_loss_weight=1 - a"):
        old = Distiller(*_pair(), alpha=0.25)
    new = Distiller(*_pair(), student_loss_weight=0.75)
    assert (old.student_loss_weight, old.distillation_loss_weight) == (0.75, 0.25)
    assert (new.student_loss_weight, new.distillation_loss_weight) == (0.75, 0.25)
    with pytest.warns(DeprecationWarning, match="distillation_loss_weight"):
        assert old.alpha == 0.25
    results = []
    for distiller in (old, new):
        distiller.compile("sgd", loss="binary_crossentropy")
        results.append(distiller.evaluate(x, y, batch_size=32, verbose=0, return_dict=True))
    assert results[0] == results[1]
    total = 0.75 * results[1]["student_loss"] + 0.25 * results[1]["distillation_loss"]
    assert results[1]["loss"] == pytest.approx(total, rel=1e-6)
    assert Distiller(*_pair()).student_loss_weight == 0.5  # the default is unchanged


def test_distiller_refuses_alpha_and_student_loss_weight_together():
    from tfcompress.distillation import Distiller

    with pytest.raises(
        ValueError,
        match=r"give `student_loss_weight` only.*alpha=0.3.*"
        r"student_loss_weight=0.7",
    ):
        Distiller(*_pair(), alpha=0.3, student_loss_weight=0.7)


def test_distiller_config_round_trips_and_old_alpha_configs_load():
    import warnings as w

    from tfcompress.distillation import Distiller

    distiller = Distiller(*_pair(), student_loss_weight=0.7)
    config = distiller.get_config()
    assert config["student_loss_weight"] == 0.7 and "alpha" not in config
    with w.catch_warnings():
        w.simplefilter("error", DeprecationWarning)  # a new config loads without a warning
        again = Distiller.from_config(config)
    assert again.get_config()["student_loss_weight"] == 0.7
    old = dict(config)
    old["alpha"] = 0.25  # a config saved before 0.2
    del old["student_loss_weight"]
    loaded = Distiller.from_config(old)
    assert loaded.student_loss_weight == 0.75 and loaded.distillation_loss_weight == 0.25


@pytest.mark.parametrize("kind", ["benchmark", "run"])
def test_to_json_with_a_path_warns_naming_save_json_and_still_writes(tmp_path, kind):
    import json

    from tfcompress.evaluation import BenchmarkReport
    from tfcompress.evaluation.report import BenchmarkRow
    from tfcompress.recipe import RunReport

    row = BenchmarkRow("m", "keras", None, "binary", {"auc": 0.7}, 100, 50, 10, {}, {}, 3.0, 64)
    report = BenchmarkReport((row,), baseline="m")
    if kind == "run":
        report = RunReport("demo", str(tmp_path), benchmark=report)
    name = type(report).__name__
    with pytest.warns(DeprecationWarning, match=rf"{name}\.to_json\(path\).*{name}\.save_json"):
        path = report.to_json(tmp_path / "sub" / "r.json")
    assert path == str(tmp_path / "sub" / "r.json")
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == json.loads(report.to_json())
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="must end in '.json'"):
        report.to_json(tmp_path / "r.txt")
