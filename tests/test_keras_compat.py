import os
import subprocess
import sys

import pytest

from tfcompress._keras import check_model, is_keras3_object, keras, tf, tf_keras_is_tf_keras


def test_tf_keras_is_the_same_as_tf_keras_module():
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tf_keras_is_tf_keras()
    assert tf.keras.Model is keras.Model
    assert tf.keras.layers.Dense is keras.layers.Dense


@pytest.mark.parametrize(
    "first_import",
    [
        "import tfcompress",
        "import tensorflow_model_optimization",
        "import tfcompress._keras; import tensorflow_model_optimization",
    ],
)
def test_same_keras_whichever_is_imported_first(first_import):
    code = (
        f"{first_import}\n"
        "import tensorflow as tf, tf_keras\n"
        "import tensorflow_model_optimization as tfmot\n"
        "from tfcompress._keras import keras\n"
        "print(tf.keras.Model is tf_keras.Model is keras.Model, tf_keras.__version__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    same, version = out.stdout.split()[-2:]
    assert same == "True"
    assert version.startswith("2.")


def test_check_model_accepts_tf_keras_model():
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(3,))])
    assert check_model(model) is model
    assert not is_keras3_object(model)


def test_check_model_rejects_keras3_model_with_fix():
    import keras as keras3  # the real Keras 3 package, installed alongside TF

    model3 = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)])
    assert is_keras3_object(model3)
    with pytest.raises(TypeError, match=r"`model` is a Keras 3 model.*import tf_keras as keras"):
        check_model(model3)


@pytest.mark.parametrize("bad", [None, "model.keras", 3, keras.layers.Dense(2)])
def test_check_model_rejects_non_models_naming_argument(bad):
    with pytest.raises(TypeError, match=r"`teacher` must be a tf_keras.Model, received"):
        check_model(bad, "teacher")


def _keras3_model():
    import keras as keras3

    return keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(1)])


def _tc():
    import tfcompress

    return tfcompress


def _ctr_schema():
    return _tc().data.load_task("ctr", n_samples=500).schema


def _plain():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])


_KERAS3_CALLS = {
    "export_tflite": lambda m, tmp: _tc().export_tflite(m, tmp / "m.tflite"),
    "export_saved_model": lambda m, tmp: _tc().export_saved_model(m, tmp / "sm"),
    "load_variant": lambda m, tmp: _tc().load_variant(m),
    "benchmark": lambda m, tmp: _tc().benchmark({"m": m}, ({"x": [[0.0] * 3]}, [1.0])),
    "compile_for_task": lambda m, tmp: _tc().models.compile_for_task(m, _ctr_schema()),
    "prune": lambda m, tmp: _tc().prune(m),
    "strip": lambda m, tmp: _tc().strip(m),
    "sparsity_report": lambda m, tmp: _tc().sparsity_report(m),
    "is_pruned": lambda m, tmp: _tc().is_pruned(m),
    "shrink": lambda m, tmp: _tc().shrink(m),
    "quantize": lambda m, tmp: _tc().quantize(m),
    "quantize_embeddings": lambda m, tmp: _tc().quantize_embeddings(m),
    "sensitivity": lambda m, tmp: _tc().sensitivity(m, ({"x": [[0.0] * 3]}, [1.0])),
    "Distiller(student)": lambda m, tmp: _tc().Distiller(m, _plain()),
    "Distiller(teacher)": lambda m, tmp: _tc().Distiller(_plain(), m),
    "count_flops": lambda m, tmp: _tc().count_flops(m),
    "to_local_model": lambda m, tmp: _tc().distribute.to_local_model(m),
    "set_jit_compile": lambda m, tmp: _tc().acceleration.set_jit_compile(m),
    "check_float32_outputs": lambda m, tmp: _tc().acceleration.check_float32_outputs(m),
    "embeddings_on_cpu": lambda m, tmp: _tc().acceleration.embeddings_on_cpu(m),
}


@pytest.mark.parametrize("call", list(_KERAS3_CALLS.values()), ids=list(_KERAS3_CALLS))
def test_every_public_model_function_rejects_keras3(call, tmp_path):
    with pytest.raises(TypeError, match="is a Keras 3 model"):
        call(_keras3_model(), tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written


# ------------------------------------------------------------------ check_keras_file


def _tiny_keras_file(path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.save(path)
    return path


def test_check_keras_file_accepts_a_tf_keras_file(tmp_path):
    from tfcompress._keras import check_keras_file

    path = _tiny_keras_file(tmp_path / "m.keras")
    assert check_keras_file(str(path)) == path
    assert keras.models.load_model(check_keras_file(path)).count_params() == 4


def test_check_keras_file_refuses_a_keras3_file_with_the_fix(tmp_path):
    from tfcompress._keras import check_keras_file

    path = tmp_path / "k3.keras"
    code = (
        "import keras, sys\n"
        "keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(sys.argv[1])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    with pytest.raises(TypeError, match=r"k3\.keras.*Keras 3.*set_weights.*tf_keras") as err:
        check_keras_file(path, argument="model.path")
    assert "`model.path`" in str(err.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("empty", r"is empty \(0 bytes\)"),
        ("truncated", r"not a Keras archive: it is truncated"),
        ("not_zip", r"not a Keras archive"),
        ("missing", r"does not exist"),
    ],
)
def test_check_keras_file_names_a_damaged_file(tmp_path, damage, message):
    from tfcompress._keras import check_keras_file

    path = _tiny_keras_file(tmp_path / "m.keras")
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not_zip":
        path.write_text("hello")
    else:
        path.unlink()
    with pytest.raises(ValueError, match=message) as err:
        check_keras_file(path)
    assert "m.keras" in str(err.value)


def test_check_keras_file_bad_argument():
    from tfcompress._keras import check_keras_file

    with pytest.raises(TypeError, match="`path` must be a path"):
        check_keras_file(3)
