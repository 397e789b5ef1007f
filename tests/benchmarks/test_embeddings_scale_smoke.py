"""benchmarks/embeddings_scale.py --smoke runs end to end and prints the table it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "embeddings_scale.py"
COLUMNS = [
    "variant",
    "table bytes",
    "table x",
    "file bytes",
    "file x",
    "test AUC",
    "ΔAUC ± 95% CI",
    "CI low",
    "b256 ms",
    "vs int8",
    "train RSS",
    "serve RSS",
]


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("MiB", "").replace("+", "").strip())


@pytest.mark.slow
@pytest.mark.multiprocess
def test_smoke_run_prints_table_bytes_ratios_auc_and_memory(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--smoke",
            "--out",
            str(tmp_path),
            "--variants",
            "int4 tables,rare ids + int4",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == COLUMNS
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(COLUMNS, cells, strict=True))
    assert list(rows) == ["float tables", "int8 tables", "int4 tables", "rare ids + int4"]
    table = {k: _number(r["table bytes"]) for k, r in rows.items()}
    # 3,000 users + 2,000 items at dim 16: 5,002 x 16 float32 rows are most of the tables
    assert table["float tables"] >= 5_002 * 16 * 4
    assert table["int4 tables"] < table["int8 tables"] < table["float tables"]
    assert _number(rows["int8 tables"]["table x"]) == pytest.approx(
        table["float tables"] / table["int8 tables"], abs=0.01
    )
    assert _number(rows["int8 tables"]["table x"]) > 3.5
    assert _number(rows["int4 tables"]["table x"]) > 5.0
    # the transform ran in its own process: fewer rows than the plain int4 tables
    assert table["rare ids + int4"] < table["int4 tables"]
    for name in ("int8 tables", "int4 tables"):
        assert _number(rows[name]["file x"]) > 1.2
        delta, half = rows[name]["ΔAUC ± 95% CI"].split("±")
        assert abs(_number(delta)) < 0.01 and 0 <= _number(half) < 0.01
    assert rows["float tables"]["ΔAUC ± 95% CI"] == "+0.00000 ± 0.00000"
    assert _number(rows["int8 tables"]["vs int8"]) == 1.0
    for row in rows.values():
        assert 0.0 < _number(row["test AUC"]) < 1.0
        assert _number(row["b256 ms"]) > 0
        # serving loads the file with LiteRT alone; training holds TensorFlow, data and Adam
        assert 1 < _number(row["serve RSS"]) < _number(row["train RSS"])
        assert _number(row["train RSS"]) > 200
    assert (tmp_path / "int4_tables.tflite").stat().st_size == _number(
        rows["int4 tables"]["file bytes"]
    )
