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


def test_unknown_model_is_a_clean_error(capsys):
    code = main(["demo", "--samples", "2000", "--epochs", "1", "--model", "gpt5", "--no-export"])
    assert code == 2
    err = capsys.readouterr().err
    assert "tfcompress demo: error:" in err and "gpt5" in err


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
    code = main(["bench", f"keras={saved_ctr_model}", f"float={tfl}", f"xla={sm}",
                 "--repeats", "3", "--json", str(report), *data_args])
    assert code == 0
    table = capsys.readouterr().out
    assert table.count("\n| ") >= 3 and "float" in table and "xla" in table
    rows = json.loads(report.read_text())
    assert "keras" in json.dumps(rows) and "float" in json.dumps(rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "nope.keras"], "must be an existing .keras file"),
        (["export", "{model}", "--quantization", "int8"], "pass --data"),
        (["export", "{model}", "--format", "savedmodel", "--quantization", "dynamic"],
         "applies to --format tflite only"),
        (["bench", "a={model}", "a={model}", "--data", "ctr"], "is given twice"),
        (["export", "{model}", "--data", "clicks.csv"], "name its label column with --label"),
    ],
)
def test_export_and_bench_bad_input(argv, message, saved_ctr_model, capsys):
    argv = [a.replace("{model}", str(saved_ctr_model)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_demo_trains_exports_and_benchmarks(tmp_path):
    out_dir = tmp_path / "demo"
    proc = _run("demo", "--out", str(out_dir))  # the README's demo, default settings
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(r"Test AUC (\d\.\d+) \| logloss (\d\.\d+)", proc.stdout)
    assert match, proc.stdout[-3000:]
    auc, logloss = float(match.group(1)), float(match.group(2))
    assert auc > 0.69  # reached: 0.71 (oracle 0.86, logistic regression 0.62)
    assert 0.0 < logloss < 0.6
    for name in ("ctr.keras", "ctr_float.tflite", "ctr_dynamic.tflite", "ctr_int8.tflite",
                 "ctr_float16.tflite", "ctr_int16x8.tflite", "ctr_xla_savedmodel",
                 "manifest.json", "benchmark.json"):
        assert (out_dir / name).exists(), name
    bench = json.loads((out_dir / "benchmark.json").read_text())
    assert bench["baseline"] == "keras"
    assert len(bench["rows"]) == 7
    assert re.search(r"^\| tflite_int8 \| tflite \|", proc.stdout, re.M)
    rows = {row["name"]: row for row in bench["rows"]}
    keras_auc = rows["keras"]["quality"]["auc"]
    assert abs(keras_auc - auc) < 0.005  # Keras' binned AUC vs the benchmark's exact one
    for exact in ("tflite_float", "savedmodel_xla"):  # float exports keep the model's quality
        assert abs(rows[exact]["quality"]["auc"] - keras_auc) < 1e-4
    assert rows["tflite_dynamic"]["bytes"] * 2.5 < rows["tflite_float"]["bytes"]
    for quantized in ("tflite_int8", "tflite_int16x8", "tflite_float16"):
        assert abs(rows[quantized]["quality"]["auc"] - keras_auc) < 0.01, quantized
