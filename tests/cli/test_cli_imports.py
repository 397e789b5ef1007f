"""``--import MODULE`` and ``[model] imports``: users' .keras files whose layers come from a
package (TensorFlow Recommenders' ``Cross``) load once it is imported, and name the package
to import when it is not."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import tfcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before the third-party imports)
from tfcompress._keras import keras
from tfcompress.cli import build_parser
from tfcompress.recipe import RecipeError
from tfcompress.recipe._cache import load_model
from tfcompress.recipe.model_files import (
    import_modules,
    load_model_file,
    unknown_layer_classes,
)
from tfcompress.recipe.specs import ModelSpec

tfrs = pytest.importorskip("tensorflow_recommenders")

_CROSS_MODULE = "tensorflow_recommenders.layers.feature_interaction.dcn"


@pytest.fixture(scope="module")
def dcn_file(tmp_path_factory):
    """A tiny DCN ranker with a full-rank and a low-rank TFRS ``Cross``, saved as .keras."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    x = tfrs.layers.dcn.Cross(projection_dim=None, name="cross_full")(inp)
    x = tfrs.layers.dcn.Cross(projection_dim=4, name="cross_low")(x)
    model = keras.Model(inp, keras.layers.Dense(1, name="logit")(x))
    path = tmp_path_factory.mktemp("dcn") / "dcn.keras"
    model.save(path)
    return path, model


def _cli(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "tfcompress.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def test_export_of_a_tfrs_model_needs_import_and_says_so(dcn_file, tmp_path):
    path, model = dcn_file
    out = tmp_path / "dcn.tflite"
    bare = _cli("export", str(path), "-o", str(out), cwd=tmp_path)
    assert bare.returncode == 2, bare.stderr
    errors = [ln for ln in bare.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, bare.stderr
    line = errors[0]
    assert line.startswith("tfcompress export: error: MODEL ")
    assert f"Cross (module {_CROSS_MODULE}, registered as 'Custom>Cross')" in line
    assert line.endswith("add --import tensorflow_recommenders")
    assert "not callable" not in bare.stderr and not out.exists()

    done = _cli(
        "export", str(path), "-o", str(out), "--import", "tensorflow_recommenders", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert f"Wrote {out}" in done.stdout
    entry = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["dcn.tflite"]
    assert entry["imports"] == ["tensorflow_recommenders"]  # recorded beside the file
    # the TFLite file computes what the Keras model does
    interpreter = Interpreter(str(out))  # LiteRT, as the runtime loads it
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).normal(size=(1, 8)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)


def test_every_model_loading_command_takes_import():
    parser = build_parser()
    for argv in (
        ["export", "m.keras"],
        ["bench", "m.keras", "--data", "ctr"],
        ["compress", "m.keras", "--data", "ctr"],
        ["run", "r.toml"],
    ):
        args = parser.parse_args([*argv, "--import", "a", "--import", "b.c"])
        assert args.imports == ["a", "b.c"], argv
        assert parser.parse_args(argv).imports == []


def _with_foreign_layer(src, dst):
    """A copy of the archive whose Cross layers claim a package nobody installed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                text = data.decode().replace(_CROSS_MODULE, "acme_layers.cross")
                data = text.replace("Custom>Cross", "Acme>Cross").encode()
            zout.writestr(item, data)
    return dst


def test_unknown_classes_are_named_with_their_module(dcn_file, tmp_path):
    path = _with_foreign_layer(dcn_file[0], tmp_path / "foreign.keras")
    assert unknown_layer_classes(dcn_file[0]) == []  # tfrs is imported in this process
    assert unknown_layer_classes(path) == [("Cross", "acme_layers.cross", "Acme>Cross")]
    with pytest.raises(ValueError, match=r"add --import acme_layers$") as info:
        load_model_file(path)
    assert "Cross (module acme_layers.cross, registered as 'Acme>Cross')" in str(info.value)
    assert info.value.__cause__ is not None  # chained from tf_keras' own error
    # the recipe's loader names the recipe key to add
    with pytest.raises(ValueError, match=r'add imports = \["acme_layers"\] under \[model\]'):
        load_model(path)


def test_imports_are_checked_and_recorded():
    assert import_modules(["json", "os.path"]) == ["json", "os.path"]
    with pytest.raises(ValueError, match=r"--import 'no_such_pkg_xyz': no module named"):
        import_modules(["no_such_pkg_xyz"])
    with pytest.raises(ValueError, match=r"is not a module name"):
        import_modules(["tensorflow recommenders"])
    spec = ModelSpec(path="dcn.keras", imports=["tensorflow_recommenders"])
    assert spec.imports == ("tensorflow_recommenders",)
    assert ModelSpec.from_config(spec.get_config()).imports == ("tensorflow_recommenders",)
    assert spec.get_config()["imports"] == ["tensorflow_recommenders"]
    with pytest.raises(RecipeError, match=r"imports\[0\]"):
        ModelSpec(path="dcn.keras", imports=["bad name"])
    with pytest.raises(RecipeError, match=r"imports"):
        ModelSpec(path="dcn.keras", imports=3)


def test_a_loaded_file_keeps_its_layers(dcn_file):
    path, model = dcn_file
    loaded = load_model_file(path, ["tensorflow_recommenders"])
    assert [type(layer).__name__ for layer in loaded.layers[1:3]] == ["Cross", "Cross"]
    x = np.ones((2, 8), "float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    assert json.loads(json.dumps(ModelSpec(name="dcn").get_config()))["imports"] == []


def test_our_own_classes_load_after_a_bare_import(tmp_path):
    """A pruned model (tfcompress' PruneWrapper) and a HostEmbedding load in a fresh process
    that imported only the loader (they were unknown there before)."""
    from tfcompress.distribute.acceleration import HostEmbedding
    from tfcompress.pruning import prune

    inp = keras.Input((3,), dtype="int32")
    x = keras.layers.Flatten()(HostEmbedding(10, 4, name="host")(inp))
    keras.Model(inp, keras.layers.Dense(1)(x)).save(tmp_path / "host.keras")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(8)(inp)))
    prune(model, 0.5).save(tmp_path / "pruned.keras")
    code = (
        "import sys\n"
        "from tfcompress.export import load_variant\n"
        "print(load_variant(sys.argv[2]).name)\n"  # the benchmark's loader, before the CLI's
        "from tfcompress.recipe.model_files import load_model_file\n"
        "for f in sys.argv[1:]:\n"
        "    print(sorted({type(l).__name__ for l in load_model_file(f).layers}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "host.keras"), str(tmp_path / "pruned.keras")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    variant, host, pruned = done.stdout.strip().splitlines()[-3:]
    assert variant == "pruned.keras"
    assert "HostEmbedding" in host
    assert "PruneWrapper" in pruned


def test_recipe_imports_are_parsed_recorded_and_imported_first(tmp_path):
    from tfcompress.recipe import loads_recipe
    from tfcompress.recipe.runner import run

    text = (
        'name = "their_dcn"\n[data]\ntask = "ctr"\nsamples = 2000\n'
        '[model]\npath = "dcn.keras"\nimports = ["json", "tensorflow_recommenders"]\n'
    )
    recipe = loads_recipe(text)
    assert recipe.model.imports == ("json", "tensorflow_recommenders")
    assert 'imports = ["json", "tensorflow_recommenders"]' in recipe.to_toml()
    assert loads_recipe(recipe.to_toml()).model.imports == recipe.model.imports
    with pytest.raises(RecipeError, match=r"model\.imports\[0\]"):
        loads_recipe(text.replace('"json"', '"not a module"'))
    missing = loads_recipe(text.replace('"json"', '"no_such_pkg_xyz"'))
    with pytest.raises(ValueError, match=r"\[model\] imports 'no_such_pkg_xyz': no module"):
        run(missing, out_dir=tmp_path, verbose=0)
    assert not (tmp_path / "their_dcn").exists()  # refused before any work
