"""Recipes: the declarative description of a compression run and its TOML/YAML files."""

import dataclasses
import json
import pickle
from pathlib import Path

import pytest

from tfcompress.recipe import (
    STAGE_KINDS,
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
    demo_recipe,
    load_recipe,
    loads_recipe,
    stage_from_config,
)
from tfcompress.recipe._files import toml_lines
from tfcompress.recipe._limits import yaml_tree

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

# The example of the recipe documentation, in both formats.
EXAMPLE_TOML = """\
name = "ctr_distill_prune_qat"
seed = 0
strategy = "default"

[data]
task = "ctr"
samples = 40000
batch_size = 512

[model]                 # the model to compress (here: the teacher, trained first)
name = "sequence_transformer"
size = "teacher"
epochs = 3

[[stages]]
kind = "distill"
student = { name = "dcn", size = "student" }
epochs = 3
temperature = 2.0

[[stages]]
kind = "prune"
sparsity = 0.7
epochs = 2

[[stages]]
kind = "quantize"
epochs = 2

[export]
tflite = ["float", "int8"]
saved_model = true

[benchmark]
batch_sizes = [1, 256]
repeats = 30
"""

EXAMPLE_YAML = """\
name: ctr_distill_prune_qat
seed: 0
strategy: default
data: {task: ctr, samples: 40000, batch_size: 512}
model:
  name: sequence_transformer
  size: teacher
  epochs: 3
stages:
  - kind: distill
    student: {name: dcn, size: student}
    epochs: 3
    temperature: 2.0
  - {kind: prune, sparsity: 0.7, epochs: 2}
  - kind: quantize
    epochs: 2
export:
  tflite: [float, int8]
  saved_model: true
benchmark:
  batch_sizes: [1, 256]
  repeats: 30
"""

# Line 1..4 of every TOML mistake below; the mistakes start at line 5.
HEAD = 'name = "run"\n[model]\nname = "dcn"\nepochs = 1\n'
YHEAD = "name: run\nmodel:\n  name: dcn\n  epochs: 1\n"


def _recipe(**overrides):
    kwargs = {"name": "run", "model": ModelSpec(name="dcn", size="tiny", epochs=1)}
    kwargs.update(overrides)
    return Recipe(**kwargs)


# --------------------------------------------------------------------------- good recipes


def test_demo_toml_is_demo_recipe():
    loaded = load_recipe(RECIPES / "demo.toml")
    assert loaded == demo_recipe()
    assert [s.kind for s in loaded.stages] == ["distill", "auto", "prune", "quantize"]
    assert loaded.stages[0].student == ModelSpec(name="dcn", size="student")
    assert loaded.stages[0].epochs == 6 and loaded.stages[2].sparsity == 0.7
    assert loaded.stages[1].max_loss == 0.002 and loaded.stages[1].objective == "size"
    assert loaded.data.batch_size == 256 and loaded.export.tflite == ("int8",)
    # 51k validation and test examples: the paired CI resolves the auto stage's 0.002 AUC
    assert loaded.data.split == (0.32, 0.34, 0.34) and loaded.data.samples == 150_000
    custom = demo_recipe(samples=2_000, teacher_epochs=1, epochs=1, seed=3, name="quick")
    assert (custom.data.samples, custom.data.seed, custom.seed) == (2000, 3, 3)
    assert custom.name == "quick"
    assert [s.epochs for s in custom.stages] == [4, 1, 1, 1] and custom.model.epochs == 1


def test_yaml_example_loads():
    recipe = load_recipe(str(RECIPES / "ctr_prune_quantize.yaml"))
    assert recipe.name == "ctr_prune_quantize"
    assert recipe.model == ModelSpec(name="dcn", size="student", epochs=6, learning_rate=5e-3)
    prune, quant = recipe.stages
    assert isinstance(prune, PruneStage) and prune.sparsity == 0.5 and prune.skip == ("logits",)
    assert isinstance(quant, QuantizeStage) and quant.learning_rate == 5e-4
    assert recipe.export.tflite == ("dynamic", "int8")


def test_toml_and_yaml_of_the_same_tree_are_equal():
    from_toml = loads_recipe(EXAMPLE_TOML)
    from_yaml = loads_recipe(EXAMPLE_YAML, "yaml")
    assert from_toml == from_yaml
    assert hash(from_toml) == hash(from_yaml)
    assert from_toml.stages[0].temperature == 2.0 and from_toml.export.jit_compile is True


def test_defaults_are_filled_in():
    config = loads_recipe(HEAD).get_config()
    file_options = (
        "split",
        "split_mode",
        "time_column",
        "user_column",
        "drop",
        "numeric",
        "categorical",
        "sequence",
        "timestamps",
        "timestamp_features",
        "hash_buckets",
        "max_vocab",
        "hash_threshold",
        "numeric_fill",
        "delimiter",
        "header",
        "sequence_separator",
        "sequence_length",
        "min_rating",
        "negatives",
        "n_features",
        "max_fields",
    )
    assert config["data"] == {
        "task": "ctr",
        "path": None,
        "format": "auto",
        "label": None,
        "samples": 20_000,
        "seed": 0,
        "batch_size": 256,
        "strict": False,
        **dict.fromkeys(file_options),
    }
    assert config["model"] == {
        "name": "dcn",
        "size": "student",
        "path": None,
        "epochs": 1,
        "learning_rate": 5e-3,
        "patience": 2,
        "imports": [],
    }
    assert config["export"] == {"tflite": ["int8"], "saved_model": True, "jit_compile": True}
    assert config["benchmark"] == {
        "enabled": True,
        "batch_sizes": [1, 256],
        "repeats": 30,
        "threads": 1,
        "max_examples": None,
        "timing": "invoke",
    }
    assert (config["stages"], config["strategy"], config["seed"]) == ([], "default", 0)
    stages = loads_recipe(
        HEAD + '[[stages]]\nkind = "distill"\nstudent = {name = "lr"}\n'
        '[[stages]]\nkind = "shrink"\n'
    ).get_config()["stages"]
    assert stages[0] == {
        "kind": "distill",
        "student": ModelSpec(name="lr").get_config(),
        "student_loss_weight": 0.5,
        "temperature": 2.0,
        "loss": "auto",
        "train_alone": False,
        "name": "distill",
        "epochs": 3,
        "learning_rate": None,
    }
    assert stages[1] == {
        "kind": "shrink",
        "ratio": 0.5,
        "criterion": "l2",
        "layers": None,
        "skip": None,
        "name": "shrink",
        "epochs": 2,
        "learning_rate": None,
        "distill": False,
    }


def _rich_recipe():
    return _recipe(
        model=ModelSpec(
            name="dcn",
            size={"base": "tiny", "mlp_units": [16, 8]},
            epochs=2,
            learning_rate=1e-3,
            patience=0,
        ),
        data=DataSpec(path="data/clicks.csv", label="click", samples=500, batch_size=64),
        stages=[
            {
                "kind": "distill",
                "student": {"name": "lr"},
                "loss": "binary",
                "student_loss_weight": 0.5,
                "train_alone": True,
            },
            ShrinkStage(ratio=0.25, criterion="activation", skip=["logits"]),
            PruneStage(structure="2:4", layers=["mlp_.*", "cross_1"], learning_rate=1e-4),
            QuantizeStage(scheme="int8_weights", skip="emb_.*"),
        ],
        export=ExportSpec(tflite=["dynamic"], saved_model=False, jit_compile=False),
        benchmark=BenchmarkSpec(enabled=False, batch_sizes=[8], max_examples=None),
        strategy="mirrored",
        seed=7,
    )


@pytest.mark.parametrize("make", [demo_recipe, _rich_recipe, lambda: loads_recipe(EXAMPLE_TOML)])
def test_get_config_and_to_toml_round_trip(make):
    recipe = make()
    config = recipe.get_config()
    assert json.loads(json.dumps(config)) == config  # plain JSON types only
    assert Recipe.from_config(config) == recipe
    text = recipe.to_toml()
    assert loads_recipe(text) == recipe
    assert loads_recipe(text).to_toml() == text
    for stage in recipe.stages:
        assert type(stage).from_config(stage.get_config()) == stage
        assert stage_from_config(stage.get_config()) == stage


def test_lists_become_tuples_and_recipes_are_hashable():
    recipe = _rich_recipe()
    assert recipe.model.size == {"base": "tiny", "mlp_units": (16, 8)}
    assert recipe.model.size["mlp_units"] == (16, 8)
    assert recipe.stages[2].layers == ("mlp_.*", "cross_1")
    assert recipe.stages[3].skip == ("emb_.*",)
    assert recipe.export.tflite == ("dynamic",) and recipe.benchmark.batch_sizes == (8,)
    assert isinstance(recipe.stages[0], DistillStage) and recipe.stages[0].student.name == "lr"
    assert recipe.data.task is None  # the default task gives way to a file
    assert recipe.data.resolved_format == "csv" and DataSpec().resolved_format is None
    formats = {
        p: DataSpec(path=p).resolved_format
        for p in ("ml/ratings.csv", "ml-1m/ratings.dat", "criteo.libfm", "a.data")
    }
    assert formats == {
        "ml/ratings.csv": "movielens",
        "ml-1m/ratings.dat": "movielens",
        "criteo.libfm": "libfm",
        "a.data": "movielens",
    }
    assert DataSpec(path="day_0.csv.gz", label="click").resolved_format == "csv"
    assert DataSpec(path="x.txt", format="csv", label="y").resolved_format == "csv"
    assert len({recipe, _rich_recipe()}) == 1
    assert pickle.loads(pickle.dumps(recipe)) == recipe
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.seed = 1  # type: ignore[misc]


def test_stage_names_are_made_unique():
    recipe = _recipe(
        stages=[
            PruneStage(sparsity=0.5),
            PruneStage(name="prune_2"),
            PruneStage(sparsity=0.8),
            ShrinkStage(),
            QuantizeStage(),
        ]
    )
    assert [s.name for s in recipe.stages] == ["prune", "prune_2", "prune_3", "shrink", "quantize"]
    assert recipe.stages[2].sparsity == 0.8
    assert Recipe.from_config(recipe.get_config()) == recipe
    loaded = loads_recipe(HEAD + '[[stages]]\nkind = "prune"\n[[stages]]\nkind = "prune"\n')
    assert [s.name for s in loaded.stages] == ["prune", "prune_2"]


def test_stage_key_follows_what_determines_each_model():
    base = _recipe(stages=[PruneStage(sparsity=0.5), ShrinkStage(), QuantizeStage()])
    keys = [base.stage_key(i) for i in range(-1, 3)]
    assert len(set(keys)) == 4 and all(len(k) == 64 for k in keys)
    assert base.stage_config(-1)["stages"] == []
    assert base.stage_config(0)["stages"] == [
        {
            "kind": "prune",
            "sparsity": 0.5,
            "structure": None,
            "layers": None,
            "skip": None,
            "epochs": 2,
            "learning_rate": None,
            "distill": False,
        }
    ]
    # An earlier stage's option changes its key and every later key ...
    earlier = dataclasses.replace(base, stages=(PruneStage(sparsity=0.6), *base.stages[1:]))
    assert [earlier.stage_key(i) for i in range(-1, 3)][0] == keys[0]
    assert all(earlier.stage_key(i) != keys[i + 1] for i in range(3))
    # ... a later stage's option leaves the earlier keys alone.
    later = dataclasses.replace(base, stages=(*base.stages[:2], QuantizeStage(epochs=5)))
    assert [later.stage_key(i) for i in range(-1, 2)] == keys[:3]
    assert later.stage_key(2) != keys[3]
    # Names, exports and the benchmark do not make another model; the model and data do.
    renamed = dataclasses.replace(
        base,
        name="other",
        export=ExportSpec(tflite=["float"]),
        stages=(PruneStage(sparsity=0.5, name="p"), *base.stages[1:]),
    )
    assert [renamed.stage_key(i) for i in range(-1, 3)] == keys
    other_data = dataclasses.replace(base, data=DataSpec(samples=1_000))
    assert other_data.stage_key(-1) != keys[0]
    with pytest.raises(ValueError, match=r"`index` must be in \[-1, 2\].*received 3"):
        base.stage_key(3)
    with pytest.raises(TypeError, match="`index` must be an int, received a string"):
        base.stage_config("0")


def test_toml_locator_maps_key_paths_to_lines():
    lines = toml_lines(
        'name = "x"  # a [comment] = 1\n'
        "[model]\n"
        'size = { base = "tiny", mlp_units = [\n'
        "  8,\n"
        "  4] }\n"
        "[[stages]]\n"
        'kind = "prune"\n'
        'layers = """a\n'
        'b"""\n'
        "[[stages]]\n"
        "'kind' = 'distill'\n"
        "[stages.student]\n"
        'name = "dcn"\n'
        'export.tflite = ["int8"]\n'
    )
    assert lines["name"] == 1 and lines["model"] == 2
    assert lines["model.size"] == 3 and lines["model.size.mlp_units"] == 3
    assert lines["model.size.mlp_units[1]"] == 5
    assert (lines["stages"], lines["stages[0]"], lines["stages[0].kind"]) == (6, 6, 7)
    assert (lines["stages[1]"], lines["stages[1].kind"]) == (10, 11)
    assert (lines["stages[1].student"], lines["stages[1].student.name"]) == (12, 13)
    assert lines["stages[1].student.export.tflite"] == 14
    data, ylines = yaml_tree("a:\n  b: [1,\n    2]\nc:\n  - x: 1\n")
    assert data == {"a": {"b": [1, 2]}, "c": [{"x": 1}]}
    assert (ylines["a.b"], ylines["a.b[1]"], ylines["c[0]"], ylines["c[0].x"]) == (2, 3, 5, 5)


# --------------------------------------------------------------------------- mistakes in files

MISTAKES = [
    # (id, format, text, key path, line, fragments of the message)
    (
        "unknown top-level key",
        "toml",
        'name = "run"\nseeed = 1\n[model]\nname = "dcn"\nepochs = 1',
        "seeed",
        2,
        ['unknown key "seeed"', 'did you mean "seed"?', "benchmark, data, export"],
    ),
    (
        "distill without a teacher",
        "toml",
        HEAD + '[[stages]]\nkind = "prune"\ndistill = true\n',
        "stages[0].distill",
        7,
        ["there is none before it", "add a distill stage"],
    ),
    (
        "distill not a bool",
        "yaml",
        YHEAD + "stages:\n  - kind: quantize\n    distill: 1\n",
        "stages[0].distill",
        7,
        ["expected true or false", "received an integer 1"],
    ),
    (
        "unknown stage key",
        "toml",
        HEAD + '[[stages]]\nkind = "prune"\nsparsty = 0.5\n',
        "stages[0].sparsty",
        7,
        ['unknown key "sparsty"', 'did you mean "sparsity"?', "valid keys for a prune stage"],
    ),
    (
        "string for a number",
        "toml",
        HEAD + '[[stages]]\nkind = "prune"\nsparsity = "0.7"\n',
        "stages[0].sparsity",
        7,
        ["expected a number in (0, 1)", 'received a string "0.7"'],
    ),
    (
        "bool for an int",
        "toml",
        'name = "run"\n[model]\nname = "dcn"\nepochs = true\n',
        "model.epochs",
        4,
        ["expected an integer >= 0", "received a boolean true"],
    ),
    (
        "float for an int",
        "yaml",
        YHEAD + "data:\n  samples: 500.0\n",
        "data.samples",
        6,
        ["expected an integer >= 100", "received a float 500.0"],
    ),
    (
        "sparsity out of range",
        "toml",
        HEAD + '[[stages]]\nkind = "prune"\n\n[[stages]]\nkind = "prune"\nsparsity = 1.5\n',
        "stages[1].sparsity",
        10,
        ["expected a number in (0, 1), received 1.5", "e.g. sparsity = 0.7"],
    ),
    (
        "epochs 0",
        "toml",
        HEAD + '[[stages]]\nkind = "shrink"\nepochs = 0\n',
        "stages[0].epochs",
        7,
        ["expected an integer >= 1, received 0"],
    ),
    (
        "negative learning rate",
        "yaml",
        YHEAD + "  learning_rate: -0.01\n",
        "model.learning_rate",
        5,
        ["expected a number > 0, received -0.01"],
    ),
    (
        "unknown stage kind",
        "toml",
        HEAD + '[[stages]]\nkind = "prunning"\n',
        "stages[0].kind",
        6,
        ['received "prunning"', 'did you mean "prune"?', '"distill", "prune"'],
    ),
    (
        "missing kind",
        "yaml",
        YHEAD + "stages:\n  - sparsity: 0.5\n",
        "stages[0].kind",
        6,
        ["the stage has no kind", '"shrink", "quantize"', '["sparsity"]'],
    ),
    (
        "missing model",
        "toml",
        'name = "run"\n[data]\ntask = "ctr"\n',
        "model",
        None,
        ["a recipe needs model", "received nothing"],
    ),
    (
        "both task and path",
        "toml",
        HEAD + '[data]\ntask = "ctr"\npath = "clicks.csv"\n',
        "data.task",
        6,
        ['received task = "ctr" and path = "clicks.csv"', "not both"],
    ),
    (
        "both name and path in model",
        "toml",
        'name = "run"\n[model]\nname = "dcn"\npath = "m.keras"\n',
        "model.path",
        4,
        ['received name = "dcn" and path = "m.keras"', "not both"],
    ),
    (
        "unknown model name",
        "toml",
        HEAD + '[[stages]]\nkind = "distill"\nstudent = { name = "dnc", size = "student" }\n',
        "stages[0].student.name",
        7,
        ['received "dnc"', 'did you mean "dcn"?', '"wide_deep"'],
    ),
    (
        "unknown tflite mode",
        "toml",
        HEAD + '[export]\ntflite = [\n  "float",\n  "int4",\n]\n',
        "export.tflite[1]",
        8,
        ['received "int4"', '"dynamic", "int8", "float16"'],
    ),
    (
        "duplicate batch sizes",
        "yaml",
        YHEAD + "benchmark:\n  batch_sizes: [1, 64, 1]\n",
        "benchmark.batch_sizes[2]",
        6,
        ["batch size 1 is listed twice in [1, 64, 1]"],
    ),
    (
        "quantize not last",
        "toml",
        HEAD + '[[stages]]\nkind = "quantize"\n[[stages]]\nkind = "prune"\n',
        "stages[0]",
        5,
        ["must be the last stage", "received prune after it", "move the quantize"],
    ),
    (
        "bad run name",
        "toml",
        'name = "my run/1"\n[model]\nname = "dcn"\nepochs = 1\n',
        "name",
        1,
        ['received "my run/1"', "letters, digits"],
    ),
    (
        "untrained reference model",
        "toml",
        'name = "run"\n[model]\nname = "dcn"\n',
        "model.epochs",
        2,
        ["expected epochs >= 1, received 0", "path = a trained .keras"],
    ),
    (
        "trained student",
        "toml",
        HEAD + '[[stages]]\nkind = "distill"\nstudent = { name = "dcn", epochs = 2 }\n',
        "stages[0].student.epochs",
        7,
        ["expected 0", "received 2"],
    ),
    (
        "unknown size",
        "yaml",
        YHEAD + "  size: huge\n",
        "model.size",
        5,
        ['received "huge"', '"student", "teacher", "tiny"'],
    ),
    (
        "2:4 read as a number by YAML",
        "yaml",
        YHEAD + "stages:\n  - kind: prune\n    structure: 2:4\n",
        "stages[0].structure",
        7,
        ["received an integer 124", "quote it"],
    ),
    (
        "model unsuited to the task",
        "toml",
        HEAD + '[data]\ntask = "retrieval"\n',
        "model.name",
        3,
        ['the model "dcn" does not fit the task "retrieval"', "two_tower"],
    ),
    (
        "duplicate YAML key",
        "yaml",
        YHEAD + "  epochs: 2\n",
        "model.epochs",
        5,
        ['key "epochs" is given twice'],
    ),
    (
        "TOML syntax error",
        "toml",
        'name = "run"\n[model]\nname = dcn\n',
        None,
        3,
        ["TOML syntax error", "at line 3"],
    ),
    (
        "YAML syntax error",
        "yaml",
        "name: run\nmodel:\n  name: dcn\n epochs: 1\n",
        None,
        4,
        ["YAML syntax error"],
    ),
]


@pytest.mark.parametrize(
    "fmt, text, key, line, fragments", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_mistakes_name_the_file_line_key_and_value(tmp_path, fmt, text, key, line, fragments):
    path = tmp_path / f"recipe.{fmt}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    err = info.value
    assert (err.key, err.line, err.source) == (key, line, str(path))
    message = str(err)
    where = f"{path} line {line}" if line else str(path)
    assert message.startswith(f"{where}, {key}: " if key else f"{where}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert isinstance(err, ValueError)


def test_file_level_errors(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(FileNotFoundError, match=r"Recipe file not found: '.*nope\.toml'"):
        load_recipe(missing)
    json_file = tmp_path / "recipe.json"
    json_file.write_text("{}")
    with pytest.raises(
        RecipeError,
        match=r"unsupported recipe file suffix '\.json'.*\.toml, "
        r"\.yaml, \.yml",
    ) as info:
        load_recipe(json_file)
    assert info.value.source == str(json_file) and info.value.line is None
    with pytest.raises(RecipeError, match="is a directory"):
        load_recipe(tmp_path)
    with pytest.raises(TypeError, match="`path` must be a file path, received an integer 3"):
        load_recipe(3)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(RecipeError, match="a recipe needs name"):
        load_recipe(empty)
    with pytest.raises(RecipeError, match=r"expected a table \(a recipe\), received a list"):
        loads_recipe("- 1\n- 2\n", "yaml")
    with pytest.raises(ValueError, match="`format` must be 'toml' or 'yaml', received 'json'"):
        loads_recipe("{}", "json")
    with pytest.raises(TypeError, match="`text` must be the recipe text"):
        loads_recipe(b'name = "x"')


# --------------------------------------------------------------------------- the Python API


def test_python_api_errors_name_the_argument():
    with pytest.raises(RecipeError, match=r"^samples: expected an integer >= 100, received -1"):
        DataSpec(samples=-1)
    assert RecipeError is not ValueError and issubclass(RecipeError, ValueError)
    with pytest.raises(RecipeError, match=r"^name: expected name .* or path .*received neither"):
        ModelSpec()
    with pytest.raises(RecipeError, match=r"^path: expected the path of a saved \.keras"):
        ModelSpec(path="model.h5")
    with pytest.raises(RecipeError, match=r"^sparsity: .*received a string \"0.7\""):
        PruneStage(sparsity="0.7")
    with pytest.raises(RecipeError, match=r'^sparsity: structure = "2:4" fixes the sparsity'):
        PruneStage(structure="2:4", sparsity=0.7)
    assert PruneStage(structure="2:4", sparsity=0.5).sparsity == 0.5
    with pytest.raises(RecipeError, match=r"^ratio: expected a number in \(0, 1\), received 1"):
        ShrinkStage(ratio=1)
    with pytest.raises(RecipeError, match=r'^scheme: .*received "int4"'):
        QuantizeStage(scheme="int4")
    with pytest.raises(RecipeError, match=r"^layers: expected a non-empty list"):
        QuantizeStage(layers=[])
    with pytest.raises(RecipeError, match=r"^skip\[1\]: .*received an integer 3"):
        ShrinkStage(skip=["a", 3])
    with pytest.raises(RecipeError, match=r"^student\.name: .*received \"bert\""):
        DistillStage(student={"name": "bert"})
    with pytest.raises(
        RecipeError, match=r"^student_loss_weight: expected a number in \[0, 1\], received 2"
    ):
        DistillStage(student=ModelSpec(name="dcn"), student_loss_weight=2)
    with pytest.raises(RecipeError, match=r'^loss: .*"listwise".*received "kl"'):
        DistillStage(student=ModelSpec(name="dcn"), loss="kl")
    with pytest.raises(RecipeError, match=r"^tflite\[1\]: the mode \"int8\" is listed twice"):
        ExportSpec(tflite=["int8", "int8"])
    with pytest.raises(RecipeError, match=r"^saved_model: expected true or false, received an "):
        ExportSpec(saved_model=1)
    with pytest.raises(RecipeError, match=r"^batch_sizes: expected a non-empty list"):
        BenchmarkSpec(batch_sizes=[])
    with pytest.raises(RecipeError, match=r"^label: the CSV file \"a.csv\" needs its label"):
        DataSpec(path="a.csv")
    with pytest.raises(
        RecipeError,
        match=r"^label: label applies to CSV files only, received "
        r'label = "click" with task = "ctr"',
    ):
        DataSpec(label="click")
    assert DataSpec(path="ml/ratings.csv").label is None  # MovieLens CSV: no label needed
    with pytest.raises(RecipeError, match=r"^format: format = \"csv\" applies to data files"):
        DataSpec(format="csv")
    with pytest.raises(RecipeError, match=r'^strategy: .*received "tpu"'):
        _recipe(strategy="tpu")
    with pytest.raises(RecipeError, match=r"^stages\[1\]\.kind: .*received \"clip\""):
        _recipe(stages=[PruneStage(), {"kind": "clip"}])
    with pytest.raises(RecipeError, match=r"^stages\[0\]: a quantize stage must be the last"):
        _recipe(stages=[QuantizeStage(), QuantizeStage()])
    with pytest.raises(RecipeError, match=r"^model: expected a table \(the model\) or a Model"):
        _recipe(model="dcn")
    with pytest.raises(RecipeError, match=r"^kind: expected \"prune\" for a PruneStage"):
        PruneStage.from_config({"kind": "shrink"})
    with pytest.raises(RecipeError, match=r"^api, data\.samples: .*received 5") as info:
        Recipe.from_config(
            {"name": "r", "model": {"name": "dcn", "epochs": 1}, "data": {"samples": 5}},
            source="api",
        )
    assert (info.value.source, info.value.line) == ("api", None)
    assert info.value.key == "data.samples"
    with pytest.raises(RecipeError, match=r'^timing: .*received "wall" .*e\.g\. timing = "invoke"'):
        BenchmarkSpec(timing="wall")
    assert BenchmarkSpec().get_config()["timing"] == "invoke"
    assert BenchmarkSpec.from_config({"timing": "call"}).timing == "call"
    assert BenchmarkSpec(max_examples="all").max_examples is None
    assert BenchmarkSpec().max_examples is None  # one quality definition: the whole test split
    assert 'max_examples = "all"' in _rich_recipe().to_toml()


def test_demo_recipe_arguments_are_checked():
    with pytest.raises(
        RecipeError,
        match=r"^teacher_epochs: expected an integer >= 1, "
        r"received 0",
    ):
        demo_recipe(teacher_epochs=0)
    with pytest.raises(
        RecipeError,
        match=r"^samples: expected an integer >= 100, received a "
        r"string",
    ):
        demo_recipe(samples="many")


def test_recipe_error_format_and_pickling():
    err = RecipeError(
        "expected a number in (0, 1), received 1.5; e.g. sparsity = 0.7",
        key="stages[1].sparsity",
        line=23,
        source="recipe.toml",
    )
    assert str(err) == (
        "recipe.toml line 23, stages[1].sparsity: expected a number in (0, 1), "
        "received 1.5; e.g. sparsity = 0.7"
    )
    assert str(RecipeError("oops")) == "oops"
    assert str(RecipeError("oops", line=3)) == "line 3: oops"
    again = pickle.loads(pickle.dumps(err))
    assert (again.key, again.line, again.source, str(again)) == (
        err.key,
        err.line,
        err.source,
        str(err),
    )
    assert str(RecipeError("bad", key="[2]").under("tflite").under("export")) == (
        "export.tflite[2]: bad"
    )
    assert set(STAGE_KINDS) == {"distill", "prune", "shrink", "quantize", "auto"}


# --------------------------------------------------------------------------- [data] file options


def _click_data(**overrides):
    options = dict(
        path="data/train_sample.csv",
        label="is_attributed",
        task="multiclass",
        drop=["attributed_time"],
        categorical=["hour"],
        numeric=["price"],
        numeric_fill="mean",
        delimiter=";",
        header=["ip", "app", "hour", "price", "click_time", "attributed_time", "is_attributed"],
        timestamps=["click_time"],
        timestamp_features="drop",
        hash_buckets={"ip": 100_000},
        max_vocab={"app": 500},
        hash_threshold=50_000,
        split=[0.7, 0.15, 0.15],
        split_mode="time",
        time_column="click_time",
        strict=True,
        sequence_length=8,
    )
    options.update(overrides)
    return DataSpec(**options)


def test_data_file_options_round_trip_and_become_loader_options():
    data = _click_data()
    recipe = _recipe(data=data)
    assert Recipe.from_config(recipe.get_config()) == recipe
    text = recipe.to_toml()
    assert loads_recipe(text) == recipe and loads_recipe(text).to_toml() == text
    assert DataSpec.from_config(data.get_config()) == data
    assert data.drop == ("attributed_time",) and data.split == (0.7, 0.15, 0.15)
    assert data.hash_buckets == {"ip": 100_000} and hash(data)
    assert data.loader_options() == {
        "task": "multiclass",
        "split": [0.7, 0.15, 0.15],
        "split_mode": "time",
        "time_column": "click_time",
        "drop": ["attributed_time"],
        "numeric": ["price"],
        "categorical": ["hour"],
        "timestamps": ["click_time"],
        "timestamp_features": "drop",
        "hash_buckets": {"ip": 100_000},
        "max_vocab": {"app": 500},
        "hash_threshold": 50_000,
        "numeric_fill": "mean",
        "delimiter": ";",
        "header": ["ip", "app", "hour", "price", "click_time", "attributed_time", "is_attributed"],
        "sequence_length": 8,
        "strict": True,
    }
    movies = loads_recipe(
        (
            HEAD + '[data]\npath = "ml-100k/u.data"\ntask = "retrieval"\n'
            'min_rating = 3.5\nnegatives = 0\nsplit_mode = "by_user"\n'
            'delimiter = "\\t"\nheader = false\n'
        ).replace('"dcn"', '"two_tower"')
    )
    assert movies.data.loader_options() == {
        "task": "retrieval",
        "split_mode": "by_user",
        "delimiter": "\t",
        "header": False,
        "min_rating": 3.5,
        "negatives": 0,
    }
    libfm = DataSpec(path="criteo.ffm", n_features=1_000_000, max_fields=39, strict=True)
    assert libfm.loader_options() == {"n_features": 1_000_000, "max_fields": 39, "strict": True}
    assert DataSpec(task="ctr", samples=500).loader_options() == {}
    assert DataSpec(path="u.data", task="ctr").task is None  # MovieLens' default task


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"split_mode": "weekly"},
            r'^split_mode: expected one of "random", "time", "by_user"'
            r' for CSV files, received "weekly"; e.g. split_mode = ',
        ),
        (
            {"split": [0.5, 0.6, 0.1]},
            r"^split: expected three fractions .* sum to 1.*received "
            r"\[0.5, 0.6, 0.1\]; e.g. split = \[0.8, 0.1, 0.1\]",
        ),
        ({"drop": ["a", 3]}, r"^drop\[1\]: expected a column name .*received an integer 3"),
        ({"drop": []}, r"^drop: expected a non-empty list of column names, received \[\]"),
        ({"drop": ["is_attributed"]}, r'^drop: "is_attributed" is the label column'),
        (
            {"numeric": ["a"], "categorical": ["a"]},
            r'^categorical: the column "a" is listed in both numeric and categorical',
        ),
        (
            {"numeric_fill": "median"},
            r'^numeric_fill: expected "mean" or a number, received '
            r'"median"; e.g. numeric_fill = "mean"',
        ),
        ({"delimiter": "::"}, r'^delimiter: expected one character, received "::"'),
        (
            {"header": "yes"},
            r"^header: expected true, false or the list of column names, "
            r'received a string "yes"',
        ),
        ({"timestamp_features": "epoch"}, r'^timestamp_features: .*received "epoch"'),
        ({"hash_buckets": {"ip": 0}}, r"^hash_buckets\.ip: expected an integer >= 1, received 0"),
        ({"max_vocab": "many"}, r"^max_vocab: expected an integer >= 1, received a string"),
        ({"strict": "yes"}, r'^strict: expected true or false, received a string "yes"'),
        (
            {"time_column": "click_time"},
            r"^time_column: time_column applies to split_mode = "
            r'"time", received .* with split_mode = null',
        ),
        (
            {"min_rating": 4},
            r"^min_rating: min_rating does not apply to CSV files, received "
            r'min_rating = 4.0 with path = "clicks.csv"; remove it \(CSV options:',
        ),
        (
            {"task": "retrieval"},
            r"^task: give either task .* not both; received task = "
            r'"retrieval" .*"binary" or "multiclass" for CSV files',
        ),
    ],
)
def test_data_file_option_errors_name_key_value_and_example(kwargs, pattern):
    with pytest.raises(RecipeError, match=pattern):
        DataSpec(path="clicks.csv", label="is_attributed", **kwargs)


def test_data_options_apply_to_their_format_and_to_files_only():
    with pytest.raises(
        RecipeError,
        match=r"^drop: drop applies to data files only, received "
        r'drop = \["x"\] with task = "ctr"; remove drop',
    ):
        DataSpec(drop=["x"])
    with pytest.raises(RecipeError, match=r"^strict: strict does not apply to MovieLens files"):
        DataSpec(path="u.data", strict=True)
    with pytest.raises(
        RecipeError,
        match=r'^split_mode: expected one of "random" for libFM '
        r'files, received "time"',
    ):
        DataSpec(path="criteo.ffm", split_mode="time")
    with pytest.raises(RecipeError, match=r"^header: expected true or false"):
        DataSpec(path="u.data", header=["user", "item", "rating", "ts"])
    with pytest.raises(RecipeError, match=r"^negatives: expected an integer >= 1, received 0"):
        DataSpec(path="u.data", negatives=0)
    assert DataSpec(path="u.data", task="retrieval", negatives=0).negatives == 0
    with pytest.raises(RecipeError, match=r"data\.drop\[0\]: expected a column name"):
        loads_recipe(HEAD + '[data]\npath = "a.csv"\nlabel = "y"\ndrop = [1]\n')
    err = None
    try:
        loads_recipe(HEAD + '[data]\npath = "a.csv"\nlabel = "y"\n\nsplit_mode = "weekly"\n')
    except RecipeError as exc:
        err = exc
    assert err is not None and (err.key, err.line) == ("data.split_mode", 9)


def test_the_stages_share_one_base_for_name_epochs_learning_rate():
    from tfcompress.recipe.specs import _FineTuneStage, _Stage

    assert all(issubclass(cls, _Stage) for cls in STAGE_KINDS.values())
    fine_tune = [k for k, cls in STAGE_KINDS.items() if issubclass(cls, _FineTuneStage)]
    assert fine_tune == ["prune", "shrink", "quantize"]
    for kind, cls in STAGE_KINDS.items():
        extra = {"student": ModelSpec(name="dcn")} if kind == "distill" else {}
        with pytest.raises(RecipeError, match=r"^epochs: expected an integer >= 1"):
            cls(epochs=0, **extra)
        with pytest.raises(RecipeError, match=r"^learning_rate: "):
            cls(learning_rate=-1.0, **extra)
        config = cls(**extra).get_config()
        assert list(config)[0] == "kind"
        shared = [k for k in config if k in ("name", "epochs", "learning_rate", "distill")]
        assert list(config)[-len(shared) :] == shared  # the shared keys last, as before
    assert DistillStage(student=ModelSpec(name="dcn")).epochs == 3
    assert PruneStage().epochs == 2


def test_distill_alpha_is_deprecated_for_student_loss_weight():
    text = (
        'name = "r"\n[model]\nname = "dcn"\nepochs = 1\n[[stages]]\nkind = "distill"\n'
        'student = { name = "dcn" }\nalpha = 0.3\n'
    )
    with pytest.warns(DeprecationWarning, match=r"student_loss_weight = 0\.7 .*alpha = 0\.3"):
        stage = loads_recipe(text).stages[0]
    assert stage.student_loss_weight == 1.0 - 0.3
    assert "alpha" not in stage.get_config()
    with pytest.warns(DeprecationWarning, match="student_loss_weight = 0.7"):
        assert DistillStage(student=ModelSpec(name="dcn"), alpha=0.3) == stage
    with pytest.warns(DeprecationWarning, match="read student_loss_weight"):
        assert stage.alpha == pytest.approx(0.3)
    with pytest.raises(RecipeError, match=r"line 8, stages\[0\]\.alpha: give student_loss_weight"):
        loads_recipe(text + "student_loss_weight = 0.5\n")
    with pytest.raises(RecipeError, match=r"alpha: expected a number in \[0, 1\], received 2"):
        loads_recipe(text.replace("0.3", "2"))
