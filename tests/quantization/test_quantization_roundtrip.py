"""The ``.keras`` round trip of a QAT model (issue 13, item 3).

``quantize(model)`` -> ``qat.save("x.keras")`` -> ``load_quantized("x.keras")`` must give the same
outputs, the same quantizer state and a model that trains again, for every reference model on
the schema of every loader. The Criteo layout (13 numeric columns with missing values + 26
categorical) used to die at load with "Layer 'quantize_layer' expected 7 variables, but
received 4 variables during loading".
"""

from __future__ import annotations

import itertools
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfcompress import data, models
from tfcompress._keras import keras, tf
from tfcompress.quantization import is_quantized, load_quantized, quantize
from tfcompress.quantization.callbacks import quantizer_ranges

# --------------------------------------------------------------------------- small data files


def _write_criteo(
    path: Path,
    n_numeric: int = 13,
    n_categorical: int = 26,
    rows: int = 300,
    sequence: bool = False,
) -> Path:
    """A Criteo-like CSV: label, I1..In (20% empty), C1..Cm (10% empty), optional sequence."""
    rng = np.random.default_rng(0)
    header = [
        "label",
        *(f"I{i}" for i in range(1, n_numeric + 1)),
        *(f"C{i}" for i in range(1, n_categorical + 1)),
    ]
    if sequence:
        header.append("viewed")
    lines = [",".join(header)]
    for _ in range(rows):
        cells = [str(int(rng.random() < 0.3))]
        cells += ["" if rng.random() < 0.2 else f"{rng.lognormal():.3f}" for _ in range(n_numeric)]
        cells += [
            "" if rng.random() < 0.1 else f"{rng.integers(0, 40):08x}" for _ in range(n_categorical)
        ]
        if sequence:
            cells.append("|".join(str(v) for v in rng.integers(0, 30, rng.integers(0, 6))))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def _load_criteo(path: Path, sequence: bool = False) -> data.TaskData:
    if not sequence:  # every column inferred, as a user would load Criteo
        return data.load_csv(path, label="label", numeric_fill="mean", batch_size=32)
    header = path.read_text().split("\n", 1)[0].split(",")
    return data.load_csv(
        path,
        label="label",
        numeric_fill="mean",
        batch_size=32,
        sequence_length=5,
        numeric=[c for c in header if c.startswith("I")],
        categorical=[c for c in header if c.startswith("C")],
        sequence=["viewed"],
    )


def _write_libfm(path: Path, rows: int = 300, fields: int = 10) -> Path:
    """libFM lines, one token per field; fields 0..7 carry real values (numeric features)."""
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(rows):
        tokens = [str(int(rng.random() < 0.3))]
        for f in range(fields):
            if rng.random() < 0.1:
                continue  # the field is absent from this line
            index = f * 20 + int(rng.integers(0, 20))
            value = f"{rng.random():.3f}" if f < 8 else "1"
            tokens.append(f"{index}:{value}")
        lines.append(" ".join(tokens))
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_ratings(path: Path, users: int = 30, items: int = 40) -> Path:
    rng = np.random.default_rng(2)
    lines = []
    for user in range(1, users + 1):
        for t, item in enumerate(rng.choice(items, size=12, replace=False)):
            lines.append(f"{user}::{item + 1}::{int(rng.integers(1, 6))}::{1000 + t}")
    path.write_text("\n".join(lines) + "\n")
    return path


SCHEMAS = (
    "sim_ctr",
    "sim_profile",
    "sim_retrieval",
    "csv_few",
    "csv_criteo",
    "libfm",
    "movielens_ctr",
    "movielens_retrieval",
)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> dict[str, data.TaskData]:
    root = tmp_path_factory.mktemp("roundtrip_data")
    ratings = _write_ratings(root / "ratings.dat")
    return {
        "sim_ctr": data.load_task("ctr", n_samples=300, seed=0, batch_size=32),
        "sim_profile": data.load_task("profile", n_samples=300, seed=0, batch_size=32),
        "sim_retrieval": data.load_task("retrieval", n_samples=300, seed=0, batch_size=32),
        "csv_few": _load_criteo(
            _write_criteo(root / "few.csv", n_numeric=3, n_categorical=3, sequence=True),
            sequence=True,
        ),
        "csv_criteo": _load_criteo(_write_criteo(root / "criteo.csv")),
        "libfm": data.load_libfm(_write_libfm(root / "train.libfm"), batch_size=32),
        "movielens_ctr": data.load_movielens(
            ratings, sequence_length=5, negatives=1, batch_size=32
        ),
        "movielens_retrieval": data.load_movielens(
            ratings, task="retrieval", sequence_length=5, batch_size=32
        ),
    }


def _build(name: str, task: data.TaskData) -> keras.Model:
    if name == "two_tower":
        return models.build(name, task.schema, size="tiny", catalog=task.info["catalog"])
    return models.build(name, task.schema, size=None if name == "lr" else "tiny")


def _compatible(name: str, schema: str) -> bool:
    retrieval = schema.endswith("retrieval")
    if name == "two_tower":
        return retrieval
    if retrieval:
        return False
    if name == "transformer":  # needs a sequence feature
        return schema not in ("csv_criteo", "libfm")
    return True


MODELS = ("lr", "wide_deep", "dcn", "transformer", "two_tower")
GRID = [(m, s) for m, s in itertools.product(MODELS, SCHEMAS) if _compatible(m, s)]


# --------------------------------------------------------------------------- helpers


def _batch(model: keras.Model, task: data.TaskData) -> dict[str, tf.Tensor]:
    features, _ = next(iter(task.test.unbatch().batch(16)))
    return {name: features[name] for name in model.input_names}


def _quantizer_state(model: keras.Model) -> dict[str, np.ndarray]:
    """Every quantizer variable (ranges, ``seen``) by layer and variable name."""
    state: dict[str, np.ndarray] = {}
    for layer in model.layers:
        groups = [
            getattr(layer, "quantizer_vars", None),
            getattr(layer, "_output_quantizer_vars", None),
        ]
        groups += [variables for _, _, variables in getattr(layer, "_weight_vars", [])]
        for activation in getattr(layer, "_quantize_activations", []):
            groups += [
                getattr(activation, "_pre_activation_vars", None),
                getattr(activation, "_post_activation_vars", None),
            ]
        for group in filter(None, groups):
            for key, variable in group.items():
                local = variable.name.split(":")[0].split("/")[-1]
                state[f"{layer.name}/{local}/{key}"] = variable.numpy()
    return state


def _outputs(model: keras.Model, features: dict[str, tf.Tensor]) -> list[np.ndarray]:
    return [np.asarray(t) for t in tf.nest.flatten(model(features, training=False))]


def _roundtrip(model: keras.Model, task: data.TaskData, path: Path) -> tuple[keras.Model, ...]:
    """QAT ``model``, fit 2 steps (sets and moves the activation ranges), save, load."""
    qat = quantize(model)
    models.compile_for_task(qat, task.schema, learning_rate=1e-3)
    qat.run_eagerly = True  # eager steps: no tf.function tracing in a test
    qat.fit(task.train.take(2), epochs=1, verbose=0)
    qat.run_eagerly = False  # not saved either way; the loaded model starts compiled as usual
    qat.save(path)
    return qat, load_quantized(path)


def _assert_same(qat: keras.Model, again: keras.Model, task: data.TaskData) -> None:
    assert is_quantized(again)
    features = _batch(qat, task)
    for got, want in zip(_outputs(again, features), _outputs(qat, features), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)
    assert quantizer_ranges(again) == quantizer_ranges(qat)
    before, after = _quantizer_state(qat), _quantizer_state(again)
    assert sorted(after) == sorted(before)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    # same trainable variables in the same order (the optimizer's slots are restored by order);
    # a loaded model's variables lack the layer scope in their names ("kernel:0"), as in Keras
    assert _trainable(again) == _trainable(qat)


def _trainable(model: keras.Model) -> list[tuple[str, tuple[int, ...]]]:
    return [(w.name.split("/")[-1], tuple(w.shape)) for w in model.trainable_weights]


def _assert_trains(again: keras.Model, task: data.TaskData) -> None:
    """The loaded model fits again: finite loss, and its weights and ranges move."""
    weights = [w.numpy().copy() for w in again.trainable_weights]  # names repeat ("kernel:0")
    ranges = quantizer_ranges(again)
    again.run_eagerly = True  # one eager step: no tf.function tracing in a test
    history = again.fit(task.train.take(1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    moved = [
        w.name
        for w, before in zip(again.trainable_weights, weights, strict=True)
        if not np.array_equal(w.numpy(), before)
    ]
    assert moved, f"no trainable weight of {again.name} moved in the fit after loading"
    assert quantizer_ranges(again) != ranges


# --------------------------------------------------------------------------- the bug


def test_criteo_layout_qat_model_saves_and_loads(tmp_path):
    """13 numeric columns with missing values + 26 categorical: the layout of issue 13."""
    task = _load_criteo(_write_criteo(tmp_path / "criteo.csv"))
    assert sum(f.kind == "numeric" for f in task.schema.features) == 13
    assert sum(f.kind == "categorical" for f in task.schema.features) == 26
    keras.utils.set_random_seed(0)
    model = models.build("dcn", task.schema, size="tiny")
    qat, again = _roundtrip(model, task, tmp_path / "criteo_qat.keras")
    _assert_same(qat, again, task)
    inputs = {
        n.inbound_layers.name
        for lyr in again.layers
        if type(lyr).__name__.endswith("QuantizeLayer")
        for n in lyr._inbound_nodes
    }
    assert inputs == {f"I{i}" for i in range(1, 14)}  # every numeric input keeps its quantizer
    _assert_trains(again, task)


@pytest.mark.parametrize("n_numeric", [1, 7])
def test_input_quantizers_survive_the_round_trip_at_any_numeric_count(tmp_path, n_numeric):
    """A float input feeding one Concatenate of 2-6 inputs loses its quantizer in TFMOT's
    layout; one feeding anything else (1 numeric column: a Dense; 7: a 7-input Concatenate)
    keeps it, and such a QAT model failed to load."""
    task = _load_criteo(
        _write_criteo(tmp_path / "c.csv", n_numeric=n_numeric, n_categorical=2, rows=120)
    )
    model = models.build("wide_deep", task.schema, size="tiny")
    qat, again = _roundtrip(model, task, tmp_path / "qat.keras")
    _assert_same(qat, again, task)


# --------------------------------------------------------------------------- the grid


@pytest.mark.slow
@pytest.mark.parametrize(("name", "schema"), GRID, ids=[f"{m}-{s}" for m, s in GRID])
def test_every_reference_model_on_every_schema_round_trips(tasks, tmp_path, name, schema):
    task = tasks[schema]
    keras.utils.set_random_seed(0)
    model = _build(name, task)
    qat, again = _roundtrip(model, task, tmp_path / f"{name}_{schema}.keras")
    _assert_same(qat, again, task)
    _assert_trains(again, task)


def test_grid_covers_every_builder_and_loader():
    """A builder added to models.build must join the grid (names from build's own error)."""
    with pytest.raises(ValueError, match="valid names are") as error:
        models.build("no_such_model", data.load_task("ctr", n_samples=100).schema)
    names = set(re.findall(r"'(\w+)'", str(error.value).split("valid names are", 1)[1]))
    aliases = {"logistic_regression": "lr", "sequence_transformer": "transformer"}
    assert {aliases.get(n, n) for n in names} == set(MODELS) == {m for m, _ in GRID}
    assert {s for _, s in GRID} == set(SCHEMAS)


def test_attention_wrapper_takes_attentions_signature_and_round_trips(tmp_path):
    tokens = keras.Input((4, 8), name="tokens")
    mask = keras.Input((1, 4), name="mask")
    attended = keras.layers.MultiHeadAttention(2, 4, name="mha")(
        tokens, tokens, attention_mask=mask
    )
    out = keras.layers.Dense(1, name="out")(keras.layers.Flatten(name="flat")(attended))
    qat = quantize(keras.Model({"tokens": tokens, "mask": mask}, out))
    wrapper = qat.get_layer("mha")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 4, 8)), tf.float32)
    full, first_only = tf.ones((2, 1, 4)), tf.constant([[[1.0, 0, 0, 0]]] * 2)
    assert not np.allclose(
        wrapper(x, x, attention_mask=full), wrapper(x, x, attention_mask=first_only)
    )  # the mask is used
    np.testing.assert_allclose(wrapper(x, value=x, key=x), wrapper(x, x), atol=1e-6)
    with pytest.raises(
        ValueError, match="Layer 'mha': quantized attention does not return attention scores"
    ):
        wrapper(x, x, return_attention_scores=True)
    qat.save(tmp_path / "mha.keras")
    again = load_quantized(tmp_path / "mha.keras")
    features = {"tokens": x, "mask": first_only}
    np.testing.assert_allclose(again(features), qat(features), atol=1e-6)


def test_tfmot_quantize_layer_builds_twice_and_tfcompress_one_once():
    """Pins the TFMOT hook behind tfcompress's QuantizeLayer: drop it once TFMOT sets `built`."""
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

    from tfcompress.quantization.configs import ActivationQuantizer, QuantizeLayer

    tfmot_layer = quantize_layer.QuantizeLayer(ActivationQuantizer(), name="tfmot")
    tfmot_layer.build_from_config({"input_shape": [None, 1]})
    assert not tfmot_layer.built
    tfmot_layer(tf.zeros((1, 1)))
    assert len(tfmot_layer.weights) == 7  # min/max/seen twice + optimizer_step
    fixed = QuantizeLayer(ActivationQuantizer(), name="fixed")
    fixed.build_from_config({"input_shape": [None, 1]})
    assert fixed.built and fixed.get_build_config() == {"input_shape": (None, 1)}
    fixed(tf.zeros((1, 1)))
    assert sorted(w.name.split("/")[-1] for w in fixed.weights) == [
        "fixed_max:0",
        "fixed_min:0",
        "fixed_seen:0",
        "optimizer_step:0",
    ]


def test_files_saved_with_tfmots_quantize_layer_load(tmp_path):
    """Files written before the fix hold TFMOT's QuantizeLayer (same class name, same weight
    paths): those without an input quantizer loaded then and still do; those with one, which
    never loaded, load now."""
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

    a, b, c = (keras.Input((1,), name=n) for n in "abc")
    direct = keras.layers.Dense(2, name="direct")(a)  # `a` keeps its input quantizer
    joined = keras.layers.Concatenate(name="bc")([b, c])  # TFMOT drops b's and c's
    out = keras.layers.Dense(1, name="out")(keras.layers.Concatenate(name="all")([direct, joined]))
    qat = quantize(keras.Model({"a": a, "b": b, "c": c}, out))
    features = {n: tf.constant([[0.5], [-1.0], [2.0]]) for n in "abc"}
    qat.compile("sgd", "mse")
    qat.run_eagerly = True
    qat.fit(features, tf.ones((3, 1)), verbose=0)  # moves the input range of `a`
    inputs = [lyr for lyr in qat.layers if isinstance(lyr, quantize_layer.QuantizeLayer)]
    assert len(inputs) == 3 and all(type(lyr) is not quantize_layer.QuantizeLayer for lyr in inputs)
    assert [lyr.quantizer is not None for lyr in inputs] == [True, False, False]
    for layer in inputs:
        layer.__class__ = quantize_layer.QuantizeLayer  # as saved before the fix
    qat.save(tmp_path / "old.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "old.keras").read("config.json"))
    modules = {
        lyr["module"] for lyr in config["config"]["layers"] if lyr["class_name"] == "QuantizeLayer"
    }
    assert modules == {
        "tensorflow_model_optimization.python.core.quantization.keras.quantize_layer"
    }
    again = load_quantized(tmp_path / "old.keras")
    np.testing.assert_allclose(_outputs(again, features), _outputs(qat, features), atol=1e-6)
    assert quantizer_ranges(again) == quantizer_ranges(qat)
    a_range = (
        quantizer_ranges(again)["quant/quantize_layer/min"],
        quantizer_ranges(again)["quant/quantize_layer/max"],
    )
    assert a_range == (-1.0, 2.0)  # the first batch's range of `a`, not TFMOT's [-6, 6]
