"""The notebooks in notebooks/ run top to bottom (at SMALL size), and are committed clean.

The slow tests execute each notebook in a fresh Jupyter kernel of this interpreter with
``TFCOMPRESS_NOTEBOOK_SMALL=1``; the notebooks assert their own figures (sparsity reached,
parity, size ratios), so a silent break fails here with the failing cell and its traceback.
Artifacts land in ``savedmodels/notebooks/`` (ignored by git). Run one with
``pytest -m slow -s tests/test_notebooks.py -k quickstart`` (``-s`` prints the execution time).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
#: Every notebook in notebooks/: a new notebook must be added here, so that it is executed.
NOTEBOOKS = (
    "01_quickstart.ipynb",
    "02_distill_profile_transformer.ipynb",
    "03_fit_callbacks_tensorboard.ipynb",
    "04_multi_device_strategy.ipynb",
)
SMALL_SWITCH = 'SMALL = os.environ.get("TFCOMPRESS_NOTEBOOK_SMALL") == "1"'
CELL_TIMEOUT_S = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours of IPython tracebacks


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def test_notebooks_are_exactly_the_executed_ones():
    found = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert found == sorted(NOTEBOOKS), (
        f"notebooks/ holds {found}; tests/test_notebooks.py executes {sorted(NOTEBOOKS)}. Add a "
        "new notebook to NOTEBOOKS (or remove a stale one)."
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean_with_small_switch(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert SMALL_SWITCH in code[0].source, f"{name}: the first code cell must read the switch"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{name}: clear the outputs of cells {dirty} before committing"
    # Sanity checks in the cells make a silent break fail.
    assert sum(c.source.count("assert ") for c in code) >= 3, name
    # Markdown cells explain; results are printed by the code.
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 4, name


def _running_cell(nb: nbformat.NotebookNode) -> str:
    """The source of the code cell that started but did not finish (nbclient's timing)."""
    for cell in nb.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" not in timing:
            return cell.source
    return "(unknown cell)"


def _kernel_manager(spec_root: Path) -> KernelManager:
    """A kernel manager whose "python3" kernel is this interpreter (the one with tfcompress).

    A kernelspec found on JUPYTER_PATH could start another Python; this one cannot.
    """
    spec_dir = spec_root / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tfcompress tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    km = KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_root)])
    )
    assert km.kernel_spec.argv[0] == sys.executable, km.kernel_spec.argv
    return km


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TFCOMPRESS_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # same devices on any machine
    python_path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv(  # this checkout's tfcompress, installed or not
        "PYTHONPATH", os.pathsep.join([str(ROOT), *([python_path] if python_path else [])])
    )
    nb = _read(name)
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path / "kernels"),
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as e:  # its message holds the cell's source and the traceback
        pytest.fail(f"{name}: a cell failed\n{_ANSI.sub('', str(e))}", pytrace=False)
    except CellTimeoutError as e:  # its message holds the cell's source
        pytest.fail(f"{name}: a cell ran past {CELL_TIMEOUT_S} s\n{e}", pytrace=False)
    except DeadKernelError as e:
        pytest.fail(f"{name}: the kernel died ({e}) in the cell:\n{_running_cell(nb)}",
                    pytrace=False)
    seconds = time.perf_counter() - start
    print(f"{name}: executed in {seconds:.1f} s (SMALL)")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), name
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
