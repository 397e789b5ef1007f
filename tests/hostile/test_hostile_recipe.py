"""Hostile recipe files: loading is bounded (size, depth, alias expansion) and never hangs;
relative paths resolve against the recipe's folder; a UTF-8 BOM is accepted.

The bounded-work tests load the recipe in a child process with a timeout, so a regression shows
as a failed test (the child is killed) rather than a hung suite.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfcompress.recipe import DataSpec, ModelSpec, Recipe, RecipeError, load_recipe, loads_recipe

HEAD = 'name = "run"\n[model]\nname = "dcn"\nepochs = 1\n'
YAML_HEAD = "name: run\nmodel: {name: dcn, epochs: 1}\n"


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    rows = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        rows.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return YAML_HEAD + "\n".join(rows) + "\n"


_NESTED = "[" * 10_000 + "]" * 10_000
# The hostile files, loaded in this order by one child process (the bomb last: a hang there
# still leaves the others' results).
HOSTILE = {
    "loop.yaml": YAML_HEAD + "loop: &a [1, *a]\n",
    "deep.toml": HEAD + f"deep = {_NESTED}\n",
    "deep.yaml": YAML_HEAD + f"deep: {_NESTED}\n",
    "deep_tables.yaml": YAML_HEAD + "deep: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n",
    "dotted.toml": HEAD + "[model.size." + ".".join(["a"] * 5_000) + "]\nx = 1\n",
    "huge.toml": HEAD + "# " + "x" * (2 << 20) + "\n",
    "bomb.yaml": _alias_bomb(),
}
_TIMEOUT_S = 120.0  # the child imports TensorFlow (5-15 s on a loaded 2-core machine)

# Loads each recipe file of argv[1:] and prints "<file>\t<ErrorType>: <message>" (or "loaded").
_CHILD = textwrap.dedent(
    """
    import sys
    from tfcompress.recipe import load_recipe
    for path in sys.argv[1:]:
        try:
            load_recipe(path)
        except BaseException as err:
            result = type(err).__name__ + ": " + str(err).replace("\\n", " ")
        else:
            result = "loaded"
        print(path + "\\t" + result, flush=True)
    """
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict[str, str]:
    """``{file name: "<ErrorType>: <message>" or "loaded"}`` for every file of ``HOSTILE``.

    A file missing from the result did not return within ``_TIMEOUT_S`` (a hang).
    """
    folder = tmp_path_factory.mktemp("hostile")
    paths = []
    for name, text in HOSTILE.items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(str(folder / name))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, *paths],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        ).stdout
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
    results = {}
    for row in out.splitlines():
        path, _, result = row.partition("\t")
        if result:
            results[Path(path).name] = f"{path}\t{result}"
    return results


def _result(loaded: dict[str, str], name: str) -> tuple[str, str]:
    """``(path, result)`` of one hostile file; fails the test if loading it did not return."""
    if name not in loaded:
        pytest.fail(f"loading {name} did not return within {_TIMEOUT_S:.0f} s (a hang)")
    path, _, result = loaded[name].partition("\t")
    return path, result


@pytest.mark.multiprocess
def test_yaml_alias_bomb_is_refused_quickly(loaded):
    path, line = _result(loaded, "bomb.yaml")
    assert line.startswith(f"RecipeError: {path} line 8: "), line  # a5: 9**6 values
    assert "aliases expand to more than 100000 values" in line, line
    assert "Remove the aliases (write the values out)" in line, line


@pytest.mark.multiprocess
def test_yaml_self_referential_alias_is_refused(loaded):
    path, line = _result(loaded, "loop.yaml")
    assert line.startswith(f"RecipeError: {path} line 3: "), line
    assert "alias *a refers to the value that contains it" in line, line


@pytest.mark.multiprocess
@pytest.mark.parametrize(
    "name, where",
    [
        ("deep.toml", "line 5: "),
        ("deep.yaml", "line 3: "),
        ("deep_tables.yaml", "line 3: "),
        ("dotted.toml", "line 5, model.size." + ".".join(["a"] * 30) + ": "),
    ],
)
def test_deep_nesting_is_refused_without_recursion_error(loaded, name, where):
    path, line = _result(loaded, name)
    assert line.startswith(f"RecipeError: {path} {where}"), line
    assert "values nested more than 32 deep" in line, line
    assert "Flatten the value" in line, line


@pytest.mark.multiprocess
def test_oversized_file_is_refused_before_reading_it_all(loaded):
    path, line = _result(loaded, "huge.toml")
    assert line.startswith(f"RecipeError: {path}: "), line
    assert "larger than the 1 MiB limit for recipe files" in line, line
    with pytest.raises(RecipeError, match=r"^the recipe text is larger than the 1 MiB limit"):
        loads_recipe(HEAD + "#" * (1 << 20))


def test_bounds_leave_ordinary_recipes_alone(tmp_path):
    # nesting up to the limit and a few aliases are fine
    yaml_text = (
        YAML_HEAD + "stages:\n  - &p {kind: prune, sparsity: 0.5}\n"
        "  - {kind: prune, sparsity: 0.7}\n"
    )
    assert [s.sparsity for s in loads_recipe(yaml_text, "yaml").stages] == [0.5, 0.7]
    with pytest.raises(RecipeError, match=r'unknown key "deep"'):
        loads_recipe(HEAD + "deep = " + "[" * 30 + "]" * 30 + "\n")


@pytest.mark.parametrize(
    "fmt, text",
    [
        ("toml", HEAD + '[[stages]]\nkind = "prune"\nsparsity = 0.6\n'),
        ("yaml", YAML_HEAD + "stages:\n  - {kind: prune, sparsity: 0.6}\n"),
    ],
)
def test_utf8_bom_is_accepted(tmp_path, fmt, text):
    path = tmp_path / f"bom.{fmt}"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    recipe = load_recipe(path)
    assert (recipe.name, recipe.stages[0].sparsity) == ("run", 0.6)
    assert loads_recipe("\ufeff" + text, fmt).stages[0].sparsity == 0.6


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    (folder / "clicks.csv").write_text("y,x\n1,2\n", encoding="utf-8")
    (folder / "teacher.keras").write_bytes(b"")
    path = folder / "r.toml"
    path.write_text(
        'name = "run"\n[model]\npath = "teacher.keras"\n[data]\npath = "clicks.csv"\nlabel = "y"\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(path)
    assert recipe.data.path == str(folder / "clicks.csv")
    assert recipe.model.path == str(folder / "teacher.keras")
    # a relative recipe path too: the folder is made absolute
    monkeypatch.chdir(tmp_path / "project")
    assert load_recipe("recipes/r.toml").data.path == str(folder / "clicks.csv")
    # absolute paths are kept; recipes built in Python stay relative to the working directory
    path.write_text(
        f'name = "run"\n[model]\nname = "dcn"\nepochs = 1\n'
        f'[data]\npath = "{elsewhere / "d.csv"}"\nlabel = "y"\n',
        encoding="utf-8",
    )
    assert load_recipe(path).data.path == str(elsewhere / "d.csv")
    assert (
        Recipe("r", ModelSpec(name="dcn", epochs=1), DataSpec(path="d.csv", label="y")).data.path
        == "d.csv"
    )
    assert loads_recipe(HEAD + '[data]\npath = "d.csv"\nlabel = "y"\n').data.path == "d.csv"


def test_missing_relative_data_file_names_the_folder_tried(tmp_path, caplog):
    folder = tmp_path / "recipes"
    folder.mkdir()
    path = folder / "r.yaml"
    path.write_text(YAML_HEAD + "data: {path: data/nope.csv, label: y}\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        recipe = load_recipe(path)
    assert recipe.data.path == str(folder / "data" / "nope.csv")
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"{path} line 3, data.path: no file {str(folder / 'data' / 'nope.csv')!r}" in m
        and f"relative paths are read from the recipe's folder {str(folder)!r}" in m
        for m in messages
    ), messages
