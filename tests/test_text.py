"""The one Markdown-table renderer (tfcompress._text) and the one meaning of ``to_json``."""

import json
import re

import pytest

from tfcompress._text import escape_cell, markdown_table
from tfcompress.data import Feature, Schema
from tfcompress.evaluation import (
    BenchmarkReport,
    BenchmarkRow,
    CompressionReport,
    LayerDecision,
    SensitivityReport,
    SensitivityRow,
)
from tfcompress.pruning import SparsityReport, WeightSparsity
from tfcompress.recipe import RunReport, StageResult

_PIPE = re.compile(r"(?<!\\)\|")  # a column separator, not an escaped `\|`


def test_markdown_table_renders_head_separator_and_rows():
    table = markdown_table(["a", "b"], [[1, "x"], ["2", None]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | None |"]


def test_markdown_table_aligns_columns_on_request():
    assert markdown_table(["l", "r", "c"], [], align="lrc").splitlines()[1] == "|---|---:|:---:|"
    assert markdown_table(["l", "r"], [], align=["l", "r"]).splitlines()[1] == "|---|---:|"


def test_cells_escape_pipes_and_line_breaks():
    assert escape_cell("a|b") == "a\\|b"
    assert escape_cell("one\ntwo\r\nthree") == "one<br>two<br>three"
    row = markdown_table(["h|x"], [["c|d\ne"]]).splitlines()
    assert row[0] == "| h\\|x |" and row[2] == "| c\\|d<br>e |"


def test_markdown_table_rejects_bad_align_and_ragged_rows():
    with pytest.raises(ValueError, match=r"one letter per column \(2"):
        markdown_table(["a", "b"], [], align="l")
    with pytest.raises(ValueError, match="'l', 'r' or 'c', received 'x'"):
        markdown_table(["a"], [], align="x")
    with pytest.raises(ValueError, match=r"Row 1 of the table has 1 cell\(s\) but the head has 2"):
        markdown_table(["a", "b"], [[1, 2], [3]])


def _bench(name="m"):
    row = BenchmarkRow(name, "keras", None, "binary", {"auc": 0.7}, 100, 50, 10, {}, {}, 3.0, 64)
    return BenchmarkReport((row,), baseline=name)


def _reports(name="m"):
    """One instance of every public report class, ``name`` as its layer / variant / stage."""
    return [
        CompressionReport("prune", (LayerDecision(name, "Dense", True, "sparsity 0.5"),)),
        SensitivityReport(
            "quantize", "auc", True, 0.75, (SensitivityRow(name, "Dense", ("k",), 0.75, 0.7, 0.05),)
        ),
        SparsityReport("m", (WeightSparsity(name, "kernel", (2, 2), 3, 4, None, False),)),
        _bench(name),
        RunReport(
            "demo",
            ".",
            (StageResult(name, "prune", False, 1.0, {}, 10, 0.5, "m.keras"),),
        ),
    ]


@pytest.mark.parametrize("index", range(5))
def test_a_pipe_in_a_name_does_not_split_the_table_row(index):
    report = _reports("tower|dense")[index]
    lines = report.to_markdown().splitlines()
    head = next(k for k, line in enumerate(lines) if line.startswith("| "))
    columns = len(_PIPE.findall(lines[head]))
    row = lines[head + 2]
    assert "tower\\|dense" in row
    assert len(_PIPE.findall(row)) == columns  # before: one column too many


@pytest.mark.parametrize("report", [*_reports(), Schema((Feature("p", "numeric"),), "click")])
def test_every_report_to_json_returns_a_json_string(report):
    text = report.to_json()
    assert isinstance(text, str)
    assert json.loads(text) == json.loads(json.dumps(report.to_dict(), default=str))


def test_a_pipe_in_an_export_name_does_not_split_the_parity_table():
    report = RunReport("demo", ".", parity={"m|int8": {"max_abs_diff": 0.002, "examples": 50}})
    lines = report.to_markdown().splitlines()
    head = lines.index("| variant | parity max abs diff | Δ quality | n examples | note |")
    assert lines[head + 2] == "| m\\|int8 | 2.00e-03 | — | 50 |  |"
