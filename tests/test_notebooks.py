"""The notebooks in notebooks/ run top to bottom (at SMALL size), and are committed clean.

The slow tests execute each notebook in a fresh Jupyter kernel of this interpreter with
``TFCOMPRESS_NOTEBOOK_SMALL=1``; the notebooks assert their own figures (sparsity reached,
parity, size ratios), so a silent break fails here with the failing cell and its traceback.
Artifacts land in ``savedmodels/notebooks/`` (ignored by git). Run one with
``pytest -m slow -s tests/test_notebooks.py -k quickstart`` (``-s`` prints the execution time).
A fast check resolves every ``tfcompress`` name the code cells use, so a renamed or moved name
fails without executing anything.
"""

from __future__ import annotations

import ast
import importlib
import inspect
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
    "05_embeddings.ipynb",
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
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"{name}: clear the outputs of cells {dirty} before committing"
    # Sanity checks in the cells make a silent break fail.
    assert sum(c.source.count("assert ") for c in code) >= 3, name
    # Markdown cells explain; results are printed by the code.
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 4, name


def _library_references(source: str, roots: dict[str, str] | None = None) -> set[str]:
    """The dotted tfcompress names a code cell uses.

    ``tfcompress.a.b`` attribute chains, ``from tfcompress.x import y`` (``tfcompress.x.y``)
    and chains on such imported names (``data.load_task`` -> ``tfcompress.data.load_task``).
    ``roots`` (name in the kernel -> what it stands for) carries the imports of earlier cells
    of the notebook and is updated with this cell's. Lines of IPython magics (``%...``,
    ``!...``) are skipped.
    """
    code = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )
    tree = ast.parse(code)
    roots = {} if roots is None else roots
    roots.setdefault("tfcompress", "tfcompress")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tfcompress":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                roots[alias.asname or alias.name] = full
                found.add(full)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tfcompress":
                    found.add(alias.name)
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if chain and isinstance(node, ast.Name) and node.id in roots:
            found.add(".".join([roots[node.id], *reversed(chain)]))
    return found


def _unresolved(dotted: str) -> str | None:
    """None when ``dotted`` names something the library has, else why not.

    A missing attribute of a module falls back to importing it as a submodule (a notebook
    reaches ``tfcompress.x.y`` once something imported ``tfcompress.x``).
    """
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            if not inspect.ismodule(obj):
                return f"{'.'.join(parts[: i - 1])} ({type(obj).__name__}) has no {part!r}"
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                return f"module {'.'.join(parts[: i - 1])} has no {part!r}"
    return None


def test_notebooks_use_only_names_the_library_has():
    """A renamed or moved public name breaks a notebook here, without executing it."""
    missing = {}
    for name in NOTEBOOKS:
        roots: dict[str, str] = {}  # the kernel's imports, cell after cell
        for i, cell in enumerate(_read(name).cells):
            if cell.cell_type != "code":
                continue
            for ref in sorted(_library_references(cell.source, roots)):
                if (why := _unresolved(ref)) is not None:
                    missing[f"{name} cell {i}: {ref}"] = why
    assert not missing, missing


def test_library_reference_check_catches_moved_names():
    source = (
        "import tfcompress\n"
        "from tfcompress import data as d, models\n"
        "from tfcompress.pruning import no_such_name\n"
        "%load_ext tensorboard\n"
        "report = tfcompress.sensitivity.layer_sensitivity(model)\n"
        "task = d.load_task('ctr')\n"
        "model = models.no_such_builder(task.schema)\n"
    )
    roots: dict[str, str] = {}
    refs = _library_references(source, roots)
    assert {
        "tfcompress.sensitivity.layer_sensitivity",
        "tfcompress.data.load_task",
        "tfcompress.models.no_such_builder",
        "tfcompress.pruning.no_such_name",
    } <= refs, refs
    assert "task.schema" not in refs and not any(r.startswith("tfcompress.task") for r in refs)
    # a later cell of the same notebook uses the names an earlier cell imported
    assert _library_references("x = d.no_such_loader()", roots) == {
        "tfcompress.data.no_such_loader"
    }
    # tfcompress.sensitivity is the function now (the module is
    # tfcompress.evaluation.layer_sensitivity)
    assert _unresolved("tfcompress.sensitivity.layer_sensitivity") == (
        "tfcompress.sensitivity (function) has no 'layer_sensitivity'"
    )
    assert _unresolved("tfcompress.models.no_such_builder") == (
        "module tfcompress.models has no 'no_such_builder'"
    )
    assert _unresolved("tfcompress.pruning.no_such_name") == (
        "module tfcompress.pruning has no 'no_such_name'"
    )
    assert _unresolved("tfcompress.data.load_task") is None
    assert _unresolved("tfcompress.evaluation.layer_sensitivity.SensitivityReport") is None


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
        pytest.fail(
            f"{name}: the kernel died ({e}) in the cell:\n{_running_cell(nb)}", pytrace=False
        )
    seconds = time.perf_counter() - start
    print(f"{name}: executed in {seconds:.1f} s (SMALL)")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), name
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
