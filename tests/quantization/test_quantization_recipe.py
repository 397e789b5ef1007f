"""Issue 13, item 3 through the real consumer: ``tfcompress run`` on a Criteo-layout CSV.

The recipe trained every stage, then died at the int8 export, where the pipeline loads the
saved QAT model ("Layer 'quantize_layer' expected 7 variables, but received 4 variables during
loading").
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_quantization_roundtrip import _write_criteo

from tfcompress.quantization import load_quantized
from tfcompress.quantization.configs import QuantizeLayer

RECIPE = """\
name = "criteo_qat"
seed = 0
strategy = "default"

[data]
path = "criteo.csv"
label = "label"
numeric_fill = "mean"
batch_size = 64

[model]
name = "dcn"
size = "tiny"
epochs = 1

[[stages]]
kind = "quantize"
epochs = 1

[export]
tflite = ["int8"]
saved_model = false
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_cli_recipe_on_criteo_csv_exports_int8(tmp_path):
    _write_criteo(tmp_path / "criteo.csv", rows=600)
    (tmp_path / "recipe.toml").write_text(RECIPE)
    done = subprocess.run(
        [sys.executable, "-m", "tfcompress.cli", "run", "recipe.toml", "--out", "out", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "out" / "criteo_qat"
    report = json.loads((run / "report.json").read_text())
    assert report["exports"]["quantize_int8"] == "exports/quantize_int8.tflite"
    assert (run / "exports" / "quantize_int8.tflite").stat().st_size > 0
    parity = report["parity"]["quantize_int8"]
    assert parity["examples"] > 0 and np.isfinite(parity["max_abs_diff"])
    assert parity["max_abs_diff"] < 0.1
    qat = load_quantized(run / "01_quantize" / "model.keras")
    fed = {
        node.inbound_layers.name
        for layer in qat.layers
        if isinstance(layer, QuantizeLayer)
        for node in layer._inbound_nodes
    }
    assert fed == {f"I{i}" for i in range(1, 14)}  # the 13 numeric inputs, each quantized
