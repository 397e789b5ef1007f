"""Recipes: a declarative description of a compression run, in Python or in a TOML/YAML file
(:class:`Recipe`, :func:`load_recipe`, :func:`loads_recipe`), validated with the line of each error.

Example:
    >>> recipe = loads_recipe('''
    ... name = "ctr_small"
    ... [model]
    ... name = "dcn"
    ... epochs = 2
    ... [[stages]]
    ... kind = "prune"
    ... sparsity = 0.7
    ... ''')
    >>> recipe.stages[0].kind, recipe.stages[0].sparsity
    ('prune', 0.7)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcompress.recipe._files import (
    RecipeError,
    check_choice,
    check_int,
    check_run_name,
    describe,
    fail,
    line_for,
    show,
    toml_lines,
    toml_syntax_line,
)
from tfcompress.recipe._limits import (
    check_data_depth,
    check_size,
    check_toml_depth,
    read_text,
    strip_bom,
    yaml_tree,
)
from tfcompress.recipe._spec_base import _from_config, _get_config, _nested, _set
from tfcompress.recipe._toml import dumps_toml
from tfcompress.recipe.specs import (
    DATA_FORMATS,
    DISTILLATION_LOSSES,
    MODEL_NAMES,
    RECIPE_STRATEGIES,
    STAGE_KINDS,
    TFLITE_MODES,
    AutoStage,
    BenchmarkSpec,
    DataSpec,
    DistillStage,
    ExportSpec,
    ModelSpec,
    PruneStage,
    QuantizeStage,
    ShrinkStage,
    Stage,
    stage_from_config,
)

__all__ = [
    "DATA_FORMATS",
    "DISTILLATION_LOSSES",
    "MODEL_NAMES",
    "RECIPE_STRATEGIES",
    "STAGE_KINDS",
    "TFLITE_MODES",
    "BenchmarkSpec",
    "DataSpec",
    "AutoStage",
    "DistillStage",
    "ExportSpec",
    "ModelSpec",
    "PruneStage",
    "QuantizeStage",
    "Recipe",
    "RecipeError",
    "ShrinkStage",
    "Stage",
    "load_recipe",
    "loads_recipe",
    "stage_from_config",
]

_log = logging.getLogger("tfcompress")

# --------------------------------------------------------------------------- the recipe


def _check_model_task(spec: ModelSpec, data: DataSpec, key: str) -> None:
    if spec.name is None or data.task is None:
        return
    if (spec.name == "two_tower") != (data.task == "retrieval"):
        fix = (
            'use name = "two_tower"'
            if data.task == "retrieval"
            else 'use two_tower only with task = "retrieval"'
        )
        raise RecipeError(
            f"the model {show(spec.name)} does not fit the task {show(data.task)}: expected "
            f"{'two_tower' if data.task == 'retrieval' else 'a CTR/classification model'}; "
            f"{fix}.",
            key=f"{key}.name",
        )


def _unique_names(stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    taken = {stage.name for stage in stages}
    seen: set[str] = set()
    out = []
    for stage in stages:
        name = stage.name
        if name in seen:
            k = 2
            while f"{stage.name}_{k}" in taken:
                k += 1
            name = f"{stage.name}_{k}"
            taken.add(name)
            stage = dataclasses.replace(stage, name=name)
        seen.add(name)
        out.append(stage)
    return tuple(out)


@dataclass(frozen=True)
class Recipe:
    """A whole compression run: data, model, stages, exports and benchmark.

    Attributes:
        name: the run name, ``[A-Za-z0-9][A-Za-z0-9_.-]*`` (it becomes a directory).
        model: the model to compress (:class:`ModelSpec`; a reference model is trained first).
        data: the data (:class:`DataSpec`).
        stages: the stages, applied in order; a :class:`QuantizeStage` can only come last.
            Stage names are made unique (``"prune"``, ``"prune_2"``).
        export: what to export (:class:`ExportSpec`).
        benchmark: how to compare the variants (:class:`BenchmarkSpec`).
        strategy: ``"default"``, ``"mirrored"``, ``"auto"`` or ``"multi_worker"``.
        seed: the run seed (>= 0).

    Example:
        >>> recipe = Recipe("ctr", ModelSpec(name="dcn", epochs=2),
        ...                 stages=[PruneStage(sparsity=0.5), PruneStage(sparsity=0.7)])
        >>> [stage.name for stage in recipe.stages]
        ['prune', 'prune_2']
    """

    name: str
    model: ModelSpec
    data: DataSpec = DataSpec()
    stages: tuple[Stage, ...] = ()
    export: ExportSpec = ExportSpec()
    benchmark: BenchmarkSpec = BenchmarkSpec()
    strategy: str = "default"
    seed: int = 0

    def __post_init__(self) -> None:
        check_run_name(self.name, "name", example='name = "ctr_prune_int8"')
        _set(
            self,
            "model",
            _nested(self.model, "model", ModelSpec, "the model", '[model] name = "dcn"'),
        )
        _set(self, "data", _nested(self.data, "data", DataSpec, "the data", '[data] task = "ctr"'))
        _set(
            self,
            "export",
            _nested(self.export, "export", ExportSpec, "the exports", '[export] tflite = ["int8"]'),
        )
        _set(
            self,
            "benchmark",
            _nested(
                self.benchmark,
                "benchmark",
                BenchmarkSpec,
                "the benchmark",
                "[benchmark] repeats = 30",
            ),
        )
        stages = self.stages
        if not isinstance(stages, (list, tuple)):
            raise fail(
                "stages",
                "a list of stages ([[stages]] tables)",
                stages,
                '[[stages]] kind = "prune"',
                typed=True,
            )
        built = []
        for i, stage in enumerate(stages):
            if isinstance(stage, tuple(STAGE_KINDS.values())):
                built.append(stage)
                continue
            try:
                built.append(stage_from_config(stage))
            except RecipeError as err:
                raise err.under(f"stages[{i}]") from None
        check_choice(self.strategy, "strategy", RECIPE_STRATEGIES, example='strategy = "default"')
        _set(self, "seed", check_int(self.seed, "seed", minimum=0, example="seed = 0"))
        model = self.model
        if model.name is not None and model.epochs == 0:
            raise RecipeError(
                f"the reference model {show(model.name)} is built untrained: expected "
                "epochs >= 1, received 0; e.g. epochs = 3 (or give path = a trained .keras "
                "file instead of name)",
                key="model.epochs",
            )
        _check_model_task(model, self.data, "model")
        for i, stage in enumerate(built):
            if isinstance(stage, DistillStage):
                _check_model_task(stage.student, self.data, f"stages[{i}].student")
            if getattr(stage, "distill", False) and not any(
                isinstance(s, DistillStage) for s in built[:i]
            ):
                raise RecipeError(
                    f"distill = true fine-tunes the {stage.kind} stage with the teacher of an "
                    "earlier distill stage, and there is none before it; add a distill stage "
                    "before it, or remove distill.",
                    key=f"stages[{i}].distill",
                )
            if isinstance(stage, QuantizeStage) and i != len(built) - 1:
                after = ", ".join(s.kind for s in built[i + 1 :])
                raise RecipeError(
                    f"a quantize stage must be the last stage (pruning, shrinking or "
                    f"distilling a QAT model is not supported), received {after} after it; "
                    "move the quantize stage to the end.",
                    key=f"stages[{i}]",
                )
        _set(self, "stages", _unique_names(tuple(built)))

    # ------------------------------------------------------------------ configs

    def get_config(self) -> dict[str, Any]:
        """The full, canonical config (defaults filled in), JSON-ready.

        Example:
            >>> Recipe("r", ModelSpec(name="dcn", epochs=1)).get_config()["data"]["task"]
            'ctr'
        """
        return _get_config(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, source: str | None = None) -> Recipe:
        """Build a recipe from a config dict (the tree of a recipe file).

        Args:
            config: ``{"name": ..., "model": {...}, "stages": [{"kind": ...}, ...], ...}``.
            source: where the config came from, for error messages.

        Raises:
            RecipeError: any invalid, unknown or missing key (``err.key`` is its path).

        Example:
            >>> Recipe.from_config({"name": "r", "model": {"name": "dcn", "epochs": 1}}).seed
            0
        """
        try:
            return _from_config(cls, config, "a recipe", 'name = "run" and a [model] table')
        except RecipeError as err:
            raise err.at(source=source) from None

    def stage_config(self, index: int) -> dict[str, Any]:
        """Everything that determines the model after stage ``index`` (-1: before any stage).

        The pipeline uses it (through :meth:`stage_key`) as a cache key. Stage names are left
        out: renaming a stage does not change its model.

        Example:
            >>> r = Recipe("r", ModelSpec(name="dcn", epochs=1), stages=[PruneStage()])
            >>> r.stage_config(-1)["stages"], len(r.stage_config(0)["stages"])
            ([], 1)
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"`index` must be an int, received {describe(index)}.")
        if not -1 <= index < len(self.stages):
            raise ValueError(
                f"`index` must be in [-1, {len(self.stages) - 1}] for a recipe with "
                f"{len(self.stages)} stages, received {index}; -1 is the trained input model."
            )
        stages = []
        for stage in self.stages[: index + 1]:
            config = stage.get_config()
            config.pop("name")
            stages.append(config)
        return {
            "seed": self.seed,
            "strategy": self.strategy,
            "data": self.data.get_config(),
            "model": self.model.get_config(),
            "stages": stages,
        }

    def stage_key(self, index: int) -> str:
        """The sha256 hex digest of :meth:`stage_config` (as sorted-key JSON).

        Example:
            >>> r = Recipe("r", ModelSpec(name="dcn", epochs=1))
            >>> len(r.stage_key(-1))
            64
        """
        text = json.dumps(self.stage_config(index), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_toml(self) -> str:
        """A readable TOML text that :func:`loads_recipe` reads back to an equal recipe.

        Example:
            >>> r = Recipe("r", ModelSpec(name="dcn", epochs=1))
            >>> loads_recipe(r.to_toml()) == r
            True
        """
        config = self.get_config()
        if config["benchmark"]["max_examples"] is None:  # TOML has no null
            config["benchmark"]["max_examples"] = "all"
        return dumps_toml(config, header=f"tfcompress recipe {self.name!r} (load_recipe reads it)")


# --------------------------------------------------------------------------- files

_SUFFIXES = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}


def loads_recipe(text: str, format: str = "toml", *, source: str | None = None) -> Recipe:
    """Parse and validate a recipe from TOML or YAML text.

    Args:
        text: the recipe text.
        format: ``"toml"`` or ``"yaml"`` (``"yml"``).
        source: a label for error messages (e.g. the file name).

    Returns:
        The validated recipe.

    Raises:
        RecipeError: a syntax error (with its line), an invalid recipe (with the line, key
            path and received value), or a text past the loader's limits: over 1 MiB, values
            nested more than 32 deep, YAML aliases expanding to over 100,000 values or
            referring to themselves. A leading UTF-8 BOM is dropped.
        TypeError: ``text`` is not a string.

    Example:
        >>> loads_recipe("name: r\\nmodel: {name: dcn, epochs: 1}\\n", "yaml").model.name
        'dcn'
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be the recipe text (a str), received {describe(text)}.")
    fmt = format.lower() if isinstance(format, str) else format
    if fmt not in ("toml", "yaml", "yml"):
        raise ValueError(f"`format` must be 'toml' or 'yaml', received {format!r}.")
    config, lines = _parse(strip_bom(text), fmt, source)
    return _build(config, lines, source, fmt)


def _build(config: Any, lines: dict[str, int], source: str | None, fmt: str) -> Recipe:
    """The validated recipe of a parsed config; errors get their line and source."""
    try:
        recipe = Recipe.from_config(config, source=source)
    except RecipeError as err:
        raise err.at(line_for(lines, err.key), source) from None
    _log.debug("Loaded recipe %r from %s.", recipe.name, source or f"{fmt} text")
    return recipe


def _parse(text: str, fmt: str, source: str | None) -> tuple[Any, dict[str, int]]:
    """The config tree of a recipe text and its key-path -> line map, within the limits."""
    try:
        check_size(text)
        if fmt == "toml":
            check_toml_depth(text)
    except RecipeError as err:
        raise err.at(source=source) from None
    if fmt == "toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise RecipeError(
                f"TOML syntax error: {err}; fix the syntax (strings need quotes, tables are "
                "[name], stages are [[stages]], lists are [a, b]).",
                line=toml_syntax_line(err),
                source=source,
            ) from None
        lines = toml_lines(text)
    else:
        try:
            config, lines = yaml_tree(text)
        except RecipeError as err:
            raise err.at(source=source) from None
        if config is None:
            config = {}
    try:
        check_data_depth(config)  # a long dotted TOML key nests without brackets
    except RecipeError as err:
        raise err.at(line_for(lines, err.key), source) from None
    return config, lines


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Load and validate a recipe file (``.toml``, ``.yaml`` or ``.yml``).

    Args:
        path: the recipe file.

    Returns:
        The validated recipe.

    Raises:
        FileNotFoundError: no file at ``path``.
        RecipeError: unsupported suffix, unreadable text, a syntax error or an invalid recipe;
            the message names the file, the line and the key path.

    Relative ``data.path``, ``model.path`` and ``stages[i].student.path`` are read from the
    recipe file's folder (not the working directory) and become absolute paths in the
    returned recipe; a missing one logs a warning naming the folder it tried.
        TypeError: ``path`` is not a path.

    Example:
        >>> load_recipe("recipes/demo.toml").name  # doctest: +SKIP
        'demo'
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a file path, received {describe(path)}.")
    source = os.fspath(path)
    file = Path(source)
    if not file.exists():
        raise FileNotFoundError(
            f"Recipe file not found: {source!r} (working directory {os.getcwd()!r}); check "
            "the path, or start from recipes/demo.toml."
        )
    if file.is_dir():
        raise RecipeError(
            f"{source!r} is a directory; give the recipe file inside it.", source=source
        )
    fmt = _SUFFIXES.get(file.suffix.lower())
    if fmt is None:
        raise RecipeError(
            f"unsupported recipe file suffix {file.suffix or '(none)'!r}; expected one of "
            f"{', '.join(_SUFFIXES)}. Rename the file or convert it to TOML or YAML.",
            source=source,
        )
    try:
        text = read_text(file)  # at most 1 MiB, a UTF-8 BOM dropped
    except RecipeError as err:
        raise err.at(source=source) from None
    config, lines = _parse(text, fmt, source)
    recipe = _build(config, lines, source, fmt)  # errors quote the paths as written
    if resolve_recipe_paths(config, source, lines):  # relative paths: from the recipe's folder
        recipe = _build(config, lines, source, fmt)
    return recipe


# --------------------------------------------------------------------------- file paths


def resolve_recipe_paths(
    config: Any, recipe_file: str, lines: Mapping[str, int] | None = None
) -> bool:
    """Make the relative ``path`` keys of a recipe file's config relative to the file's folder.

    ``data.path``, ``model.path`` and ``stages[i].student.path`` written as relative paths
    (``"clicks.csv"``, ``"../data/u.data"``) become absolute paths in the folder of
    ``recipe_file``, so a run reads the same files from any working directory (``~`` is
    expanded; absolute paths are kept). A relative path whose file does not exist logs a
    warning that names the key, its line, the file tried and the folder, since the run will
    fail on it. Values that are not non-empty strings are left to validation. Recipes built in
    Python (no file) are not touched: their paths stay relative to the working directory.

    Args:
        config: the parsed recipe tree (changed in place).
        recipe_file: the recipe file the config was read from.
        lines: key path -> line in the file, for the warning.

    Returns:
        Whether any path was changed.

    Example:
        >>> config = {"data": {"path": "clicks.csv"}}
        >>> resolve_recipe_paths(config, "/project/recipes/r.toml")  # doctest: +SKIP
        >>> config["data"]["path"]  # doctest: +SKIP
        '/project/recipes/clicks.csv'
    """
    if not isinstance(config, Mapping):
        return False
    changed = False
    folder = os.path.dirname(os.path.abspath(recipe_file))
    tables: list[tuple[str, Any]] = [("data", config.get("data")), ("model", config.get("model"))]
    stages = config.get("stages")
    if isinstance(stages, list):
        for i, stage in enumerate(stages):
            if isinstance(stage, Mapping):
                tables.append((f"stages[{i}].student", stage.get("student")))
    for key, table in tables:
        written = table.get("path") if isinstance(table, dict) else None
        if not isinstance(written, str) or not written:
            continue
        expanded = os.path.expanduser(written)
        if os.path.isabs(expanded):
            changed |= expanded != written
            table["path"] = expanded
            continue
        resolved = os.path.normpath(os.path.join(folder, expanded))
        table["path"] = resolved
        changed = True
        if not os.path.exists(resolved):
            where = RecipeError(
                f"no file {resolved!r} (written {written!r}); relative paths are read from the "
                f"recipe's folder {folder!r}, not the working directory {os.getcwd()!r}. Fix "
                "the path (relative to the recipe file) or give an absolute one.",
                key=f"{key}.path",
                line=(lines or {}).get(f"{key}.path"),
                source=recipe_file,
            )
            _log.warning("%s", where)
    return changed
