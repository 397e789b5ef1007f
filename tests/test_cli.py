import json
import re
import subprocess
import sys

import pytest

from tfcompress import __version__
from tfcompress.cli import main


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfcompress.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tfcompress {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "demo" in out and "usage: tfcompress" in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: tfcompress" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["demo", "--epochs", "0"], ["demo", "--samples", "many"]])
def test_bad_arguments_are_rejected_with_the_value(bad, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(bad)
    assert exit_info.value.code == 2
    assert "expected a positive integer, received" in capsys.readouterr().err


def test_a_bad_recipe_is_a_clean_error_naming_line_and_key(tmp_path, capsys):
    recipe = tmp_path / "bad.toml"
    recipe.write_text('name = "x"\n[model]\nname = "gpt5"\nepochs = 1\n')
    assert main(["run", str(recipe), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "tfcompress run: error:" in err and "line 3, model.name" in err and "gpt5" in err
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not the directory of a finished run" in capsys.readouterr().err


def test_demo_prints_its_recipe_which_loads_back(tmp_path, capsys):
    from tfcompress.recipe import demo_recipe, loads_recipe

    assert main(["demo", "--samples", "5000", "--print-recipe"]) == 0
    assert loads_recipe(capsys.readouterr().out) == demo_recipe(samples=5000)


@pytest.fixture(scope="module")
def saved_ctr_model(tmp_path_factory):
    from tfcompress import data, models

    task = data.load_task("ctr", n_samples=2_000, seed=0)
    model = models.compile_for_task(models.dcn(task.schema, size="tiny"), task.schema)
    model.fit(task.train, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("cli") / "tiny_ctr.keras"
    model.save(path)
    return path


def test_export_tflite_and_savedmodel_then_bench(saved_ctr_model, tmp_path, capsys):
    tfl = tmp_path / "out" / "m.tflite"
    data_args = ["--data", "ctr", "--samples", "2000"]
    assert main(["export", str(saved_ctr_model), "-o", str(tfl), *data_args]) == 0
    out = capsys.readouterr().out
    assert tfl.is_file() and f"Wrote {tfl}" in out
    diff = float(re.search(r"parity max_abs_diff: (\S+)", out).group(1))
    assert diff <= 1e-4
    manifest = json.loads((tfl.parent / "manifest.json").read_text())
    assert "m.tflite" in json.dumps(manifest)

    sm = tmp_path / "out" / "sm"
    assert main(["export", str(saved_ctr_model), "--format", "savedmodel", "-o", str(sm)]) == 0
    assert (sm / "saved_model.pb").is_file()
    capsys.readouterr()

    report = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            f"keras={saved_ctr_model}",
            f"float={tfl}",
            f"xla={sm}",
            "--repeats",
            "3",
            "--timing",
            "call",
            "--json",
            str(report),
            *data_args,
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    table = captured.out
    assert "\r" not in captured.err  # not a terminal: no redrawn progress bar
    assert table.count("\n| ") >= 3 and "float" in table and "xla" in table
    rows = json.loads(report.read_text())
    assert "keras" in json.dumps(rows) and "float" in json.dumps(rows)
    assert rows["settings"]["timing"] == "call" and "the Python call" in table
    from tfcompress.cli._parser import TIMING_CHOICES
    from tfcompress.evaluation import TIMINGS

    assert TIMING_CHOICES == TIMINGS  # the parser's copy (it imports no TensorFlow)


def test_export_int8_prints_the_quality_change(saved_ctr_model, tmp_path, capsys):
    tfl = tmp_path / "m8.tflite"
    argv = [
        "export",
        str(saved_ctr_model),
        "-o",
        str(tfl),
        "--quantization",
        "int8",
        "--data",
        "ctr",
        "--samples",
        "2000",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    delta = float(re.search(r"auc change against the Keras model: (\S+)", out).group(1))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert delta == pytest.approx(
        manifest["artifacts"]["m8.tflite"]["parity"]["quality_delta"]["auc"], abs=1e-4
    )
    assert abs(delta) < 0.05


def test_export_refuses_a_keras3_file(tmp_path, capsys):
    import os
    import subprocess
    import sys

    path = tmp_path / "k3.keras"
    code = (
        "import keras, sys; keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])"
        ".save(sys.argv[1])"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True, timeout=120)
    assert main(["export", str(path)]) == 2
    assert "saved by Keras 3" in capsys.readouterr().err


def test_bench_refuses_a_changed_file_unless_no_verify(saved_ctr_model, tmp_path, capsys):
    tfl = tmp_path / "m.tflite"
    data_args = ["--data", "ctr", "--samples", "2000"]
    assert main(["export", str(saved_ctr_model), "-o", str(tfl), *data_args]) == 0
    with open(tfl, "ab") as f:  # changed after the export, still a valid model
        f.write(b"\0" * 16)
    capsys.readouterr()
    assert main(["bench", f"m={tfl}", "--repeats", "2", *data_args]) == 2
    assert "does not match" in capsys.readouterr().err
    assert main(["bench", f"m={tfl}", "--repeats", "2", "--no-verify", *data_args]) == 0
    assert "| m (baseline) |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "nope.keras"], "`MODEL` 'nope.keras' does not exist"),
        (["export", "model.h5"], "must be a .keras file"),
        (["export", "{model}", "--quantization", "int8"], "pass --data"),
        (
            ["export", "{model}", "--format", "savedmodel", "--quantization", "dynamic"],
            "applies to --format tflite only",
        ),
        (["bench", "a={model}", "a={model}", "--data", "ctr"], "is given twice"),
        (["export", "{model}", "--data", "clicks.csv"], "name its label column with --label"),
    ],
)
def test_export_and_bench_bad_input(argv, message, saved_ctr_model, capsys):
    argv = [a.replace("{model}", str(saved_ctr_model)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bench_reads_its_data_without_tfmot():
    """`tfcompress bench --data` loads data without importing the techniques (TFMOT): the
    CLI's data path goes through tfcompress.recipe._data, not the recipe runner."""
    code = (
        "import sys\n"
        "from tfcompress.cli import _build_parser, _read_data\n"
        "args = _build_parser().parse_args(\n"
        "    ['bench', 'm=model.tflite', '--data', 'ctr', '--samples', '300'])\n"
        "task = _read_data(args)\n"
        "print(task.schema.task, 'tensorflow_model_optimization' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["binary", "False"]


def test_export_chooses_the_table_storage_and_fusing(saved_ctr_model, tmp_path, capsys):
    from tfcompress.cli._parser import EMBEDDING_CHOICES
    from tfcompress.quantization.embedding import EMBEDDING_MODES

    assert EMBEDDING_CHOICES == EMBEDDING_MODES  # the parser's copy (it imports no TensorFlow)
    tfl = tmp_path / "m4.tflite"
    argv = ["export", str(saved_ctr_model), "-o", str(tfl), "--embeddings", "int4_compact"]
    assert main([*argv, "--fuse-embeddings", "off", "--data", "ctr", "--samples", "2000"]) == 0
    assert f"Wrote {tfl}" in capsys.readouterr().out
    options = json.loads((tmp_path / "manifest.json").read_text())["artifacts"]["m4.tflite"]
    assert options["options"]["embeddings"] == "int4_compact"
    assert options["options"]["fused_embeddings"] is None
    argv = ["export", str(saved_ctr_model), "--format", "savedmodel", "--embeddings", "int4"]
    assert main(argv) == 2
    assert "apply to --format tflite only" in capsys.readouterr().err
