"""The parts of a :class:`tfcompress.recipe.Recipe` (data, model, stages, exports, benchmark):
frozen dataclasses that validate themselves and round-trip through ``get_config``.

Example:
    >>> PruneStage(sparsity=0.7).get_config()["kind"]
    'prune'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from tfcompress.distillation.losses import KD_LOSS_NAMES
from tfcompress.distribute.strategy import STRATEGY_NAMES
from tfcompress.models import MODEL_NAMES as _MODEL_NAMES
from tfcompress.models import SIZES, resolve_size
from tfcompress.quantization.configs import SCHEMES
from tfcompress.recipe._data import DATA_FORMATS, DataSpec  # noqa: F401 - the [data] part
from tfcompress.recipe._files import (
    RecipeError,
    check_bool,
    check_choice,
    check_int,
    check_keys,
    check_number,
    check_run_name,
    check_strings,
    fail,
    freeze,
    plain,
    show,
)

#: Names accepted by ``ModelSpec.name`` (those of :func:`tfcompress.models.build`).
MODEL_NAMES: tuple[str, ...] = _MODEL_NAMES
#: ``DistillStage.loss`` values: ``"auto"`` or a :func:`tfcompress.get_distillation_loss` name.
DISTILLATION_LOSSES: tuple[str, ...] = ("auto", *sorted(KD_LOSS_NAMES))
#: ``ExportSpec.tflite`` modes (``"float"`` is an unquantized float32 model).
TFLITE_MODES = ("float", "dynamic", "int8", "float16", "int16x8")
#: ``Recipe.strategy`` values (names of :func:`tfcompress.distribute.get_strategy`).
RECIPE_STRATEGIES: tuple[str, ...] = tuple(
    name for name in ("default", "mirrored", "auto", "multi_worker") if name in STRATEGY_NAMES
)


def _nested(value: Any, key: str, cls: type, what: str, example: str) -> Any:
    """``value`` as a ``cls`` object: kept if it is one, built with ``from_config`` if a table."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        try:
            return cls.from_config(value)
        except RecipeError as err:
            raise err.under(key) from None
    raise fail(key, f"a table ({what}) or a {cls.__name__}", value, example, typed=True)


_REQUIRED_EXAMPLES = {
    "name": 'name = "ctr_prune_int8"',
    "model": '[model] name = "dcn" epochs = 3',
    "student": 'student = { name = "dcn", size = "student" }',
}


def _from_config(
    cls: type, config: Mapping[str, Any], what: str, example: str, extra: tuple = ()
) -> Any:
    names = [f.name for f in fields(cls)]
    check_keys(config, None, [*names, *extra], what, example)
    for f in fields(cls):
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and f.name not in config:
            raise RecipeError(
                f"{what} needs {f.name}: expected {f.name}, received nothing; e.g. "
                f"{_REQUIRED_EXAMPLES.get(f.name, f.name + ' = ...')}",
                key=f.name,
            )
    return cls(**{k: v for k, v in config.items() if k not in extra})


def _get_config(obj: Any) -> dict[str, Any]:
    return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- data and model


class _SpecMixin:
    """``get_config``/``from_config`` of the recipe's tables (``[model]``, ``[export]``, ...)."""

    _WHAT: ClassVar[str]  # how errors name the table, e.g. "a model"
    _EXAMPLE: ClassVar[str]  # an example line for error messages

    def get_config(self) -> dict[str, Any]:
        """Every field (defaults included) as plain JSON types."""
        return _get_config(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """Build from a ``get_config()`` dict; unknown keys raise a :class:`RecipeError`."""
        return _from_config(cls, config, cls._WHAT, cls._EXAMPLE)


@dataclass(frozen=True)
class ModelSpec(_SpecMixin):
    """A model: a reference model built by name (and trained), or a saved ``.keras`` file.

    Attributes:
        name: a :func:`tfcompress.models.build` name (``"dcn"``, ``"sequence_transformer"``,
            ...), or None with ``path``.
        size: ``"tiny"``, ``"student"``, ``"teacher"`` or a table of size overrides
            (``{base = "student", mlp_units = [32]}``).
        path: a saved ``.keras`` model instead of ``name``.
        epochs: training epochs before the stages (0: use the model as is). A model built from
            ``name`` as the recipe's model needs >= 1; a distillation student needs 0.
        learning_rate: the Adam learning rate (> 0); stages default to it.
        patience: early-stopping patience on the validation metric (>= 0; 0 turns it off).

    Example:
        >>> ModelSpec(name="dcn", size={"base": "tiny", "mlp_units": [16]}).size["mlp_units"]
        (16,)
    """

    _WHAT: ClassVar[str] = "a model"
    _EXAMPLE: ClassVar[str] = '[model] name = "dcn"'
    name: str | None = None
    size: str | Mapping[str, Any] = "student"
    path: str | None = None
    epochs: int = 0
    learning_rate: float = 5e-3
    patience: int = 2

    def __post_init__(self) -> None:
        path = os.fspath(self.path) if isinstance(self.path, os.PathLike) else self.path
        example = 'name = "dcn"'
        if self.name is not None and path is not None:
            raise RecipeError(
                f"give either name (a reference model) or path (a saved .keras file), not "
                f"both; received name = {show(self.name)} and path = {show(path)}. Remove one.",
                key="path",
            )
        if self.name is None and path is None:
            raise RecipeError(
                f"expected name (one of {', '.join(MODEL_NAMES)}) or path (a saved .keras "
                f"file), received neither; e.g. {example}",
                key="name",
            )
        if self.name is not None:
            check_choice(self.name, "name", MODEL_NAMES, example=example)
        if path is not None and (not isinstance(path, str) or not path.endswith(".keras")):
            raise fail(
                "path",
                "the path of a saved .keras model file",
                path,
                'path = "models/ctr.keras"',
                typed=not isinstance(path, str),
            )
        size = self.size
        sizes = tuple(sorted(SIZES))
        if isinstance(size, Mapping):
            size = freeze(size)
            try:
                resolve_size(size, "student", self.name or "model")
            except (ValueError, TypeError) as err:
                raise RecipeError(
                    f"expected a table overriding some of "
                    f"{', '.join(sorted(SIZES['student']))} (and base, one of "
                    f"{', '.join(sizes)}), received {show(size)} ({str(err).rstrip('.')}); e.g. "
                    'size = { base = "tiny", mlp_units = [16] }',
                    key="size",
                ) from None
        else:
            check_choice(
                size,
                "size",
                sizes,
                example='size = "student"',
                note=' (or a table of overrides: { base = "tiny", mlp_units = [16] })',
            )
        _set(self, "path", path)
        _set(self, "size", size)
        _set(self, "epochs", check_int(self.epochs, "epochs", minimum=0, example="epochs = 3"))
        _set(
            self,
            "learning_rate",
            check_number(
                self.learning_rate, "learning_rate", low=0, example="learning_rate = 0.005"
            ),
        )
        _set(
            self,
            "patience",
            check_int(self.patience, "patience", minimum=0, example="patience = 2"),
        )


# --------------------------------------------------------------------------- stages


def _check_stage(stage: Any, default_epochs: int) -> None:
    if hasattr(stage, "distill"):
        check_bool(stage.distill, "distill", example="distill = true")
    name = stage.kind if stage.name is None else stage.name
    _set(stage, "name", check_run_name(name, "name", example=f'name = "{stage.kind}_1"'))
    _set(
        stage,
        "epochs",
        check_int(stage.epochs, "epochs", minimum=1, example=f"epochs = {default_epochs}"),
    )
    if stage.learning_rate is not None:
        _set(
            stage,
            "learning_rate",
            check_number(
                stage.learning_rate, "learning_rate", low=0, example="learning_rate = 0.001"
            ),
        )


def _check_filters(stage: Any) -> None:
    for key in ("layers", "skip"):
        _set(
            stage,
            key,
            check_strings(getattr(stage, key), key, example=f'{key} = ["logits", "emb_.*"]'),
        )


class _StageMixin:
    """``get_config``/``from_config`` shared by the stage classes (``kind`` included)."""

    kind: ClassVar[str]

    def get_config(self) -> dict[str, Any]:
        """Every field (defaults included) as plain JSON types, with ``kind`` first."""
        return {"kind": self.kind, **_get_config(self)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """Build from a ``get_config()`` dict (``kind``, if present, must be this kind)."""
        if isinstance(config, Mapping) and "kind" in config and config["kind"] != cls.kind:
            raise fail(
                "kind", f'"{cls.kind}" for a {cls.__name__}', config["kind"], f'kind = "{cls.kind}"'
            )
        return _from_config(
            cls, config, f"a {cls.kind} stage", f'[[stages]] kind = "{cls.kind}"', extra=("kind",)
        )


@dataclass(frozen=True)
class DistillStage(_StageMixin):
    """Distill the current model (the teacher) into a student, which then replaces it.

    Attributes:
        student: the student (``name`` + ``size`` or ``path``); its ``epochs`` must be 0, the
            stage trains it.
        alpha: weight of the distillation loss in [0, 1]; the hard-label (student) loss gets
            1 - alpha (as in :class:`tfcompress.Distiller`).
        temperature: the distillation temperature (> 0).
        loss: ``"auto"`` or a :func:`tfcompress.get_distillation_loss` name.
        train_alone: also train the student without the teacher, as a reference variant.
        name, epochs, learning_rate: the stage's name, fine-tune epochs and learning rate
            (None: the model's).

    Example:
        >>> DistillStage(student=ModelSpec(name="dcn", size="student")).epochs
        3
    """

    kind: ClassVar[str] = "distill"
    student: ModelSpec
    alpha: float = 0.5
    temperature: float = 2.0
    loss: str = "auto"
    train_alone: bool = False
    name: str | None = None
    epochs: int = 3
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        example = 'student = { name = "dcn", size = "student" }'
        student = _nested(self.student, "student", ModelSpec, "the student model", example)
        if student.epochs != 0:
            raise RecipeError(
                f"expected 0 (the distill stage trains the student; set the stage's epochs "
                f"instead), received {show(student.epochs)}; e.g. remove student.epochs",
                key="student.epochs",
            )
        _set(self, "student", student)
        _set(
            self,
            "alpha",
            check_number(self.alpha, "alpha", low=0, high=1, closed="[]", example="alpha = 0.5"),
        )
        _set(
            self,
            "temperature",
            check_number(self.temperature, "temperature", low=0, example="temperature = 2.0"),
        )
        check_choice(self.loss, "loss", DISTILLATION_LOSSES, example='loss = "auto"')
        check_bool(self.train_alone, "train_alone", example="train_alone = true")
        _check_stage(self, 3)


@dataclass(frozen=True)
class PruneStage(_StageMixin):
    """Magnitude pruning during fine-tuning (:func:`tfcompress.prune`), then ``strip``.

    Attributes:
        sparsity: target fraction of zeros in (0, 1); None: ``prune``'s default (0.8, or 0.5
            for ``"2:4"``).
        structure: None (unstructured) or ``"2:4"`` (sparsity then 0.5).
        layers: layer names or regexes to prune (None: all).
        skip: layer names or regexes not to prune.
        name, epochs, learning_rate: see :class:`DistillStage`.
        distill: fine-tune inside a Distiller with the teacher of the recipe's last distill
            stage before it (distillation-aware pruning / QAT, with that stage's alpha,
            temperature and loss) instead of on the labels alone.

    Example:
        >>> PruneStage(sparsity=0.7, skip=["logits"]).skip
        ('logits',)
    """

    kind: ClassVar[str] = "prune"
    sparsity: float | None = None
    structure: str | None = None
    layers: tuple[str, ...] | None = None
    skip: tuple[str, ...] | None = None
    name: str | None = None
    epochs: int = 2
    learning_rate: float | None = None
    distill: bool = False

    def __post_init__(self) -> None:
        if self.sparsity is not None:
            _set(
                self,
                "sparsity",
                check_number(self.sparsity, "sparsity", low=0, high=1, example="sparsity = 0.7"),
            )
        note = (
            " (YAML reads an unquoted 2:4 as the base-60 number 124: quote it)"
            if isinstance(self.structure, int)
            else ""
        )
        check_choice(
            self.structure, "structure", (None, "2:4"), example='structure = "2:4"', note=note
        )
        if self.structure == "2:4" and self.sparsity not in (None, 0.5):
            raise RecipeError(
                f'structure = "2:4" fixes the sparsity at 0.5, received sparsity = '
                f"{show(self.sparsity)}; remove sparsity, or remove structure for unstructured "
                "pruning.",
                key="sparsity",
            )
        _check_filters(self)
        _check_stage(self, 2)


@dataclass(frozen=True)
class ShrinkStage(_StageMixin):
    """Remove whole units, embedding dimensions and heads (:func:`tfcompress.shrink`).

    Attributes:
        ratio: the fraction of units removed, in (0, 1).
        criterion: ``"l2"`` (weight norms) or ``"activation"`` (mean activations on data).
        layers, skip: layer names or regexes to shrink / to leave alone.
        name, epochs, learning_rate: see :class:`DistillStage`.
        distill: fine-tune with the teacher; see :class:`PruneStage`.

    Example:
        >>> ShrinkStage(ratio=0.25).criterion
        'l2'
    """

    kind: ClassVar[str] = "shrink"
    ratio: float = 0.5
    criterion: str = "l2"
    layers: tuple[str, ...] | None = None
    skip: tuple[str, ...] | None = None
    name: str | None = None
    epochs: int = 2
    learning_rate: float | None = None
    distill: bool = False

    def __post_init__(self) -> None:
        _set(self, "ratio", check_number(self.ratio, "ratio", low=0, high=1, example="ratio = 0.5"))
        check_choice(self.criterion, "criterion", ("l2", "activation"), example='criterion = "l2"')
        _check_filters(self)
        _check_stage(self, 2)


@dataclass(frozen=True)
class QuantizeStage(_StageMixin):
    """Quantization-aware training (:func:`tfcompress.quantize`); must be the last stage.

    Attributes:
        scheme: ``"int8"`` (weights and activations) or ``"int8_weights"``.
        layers, skip: layer names or regexes to quantize / to keep float.
        name, epochs, learning_rate: see :class:`DistillStage`.
        distill: fine-tune with the teacher; see :class:`PruneStage`.

    Example:
        >>> QuantizeStage(scheme="int8_weights").get_config()["kind"]
        'quantize'
    """

    kind: ClassVar[str] = "quantize"
    scheme: str = "int8"
    layers: tuple[str, ...] | None = None
    skip: tuple[str, ...] | None = None
    name: str | None = None
    epochs: int = 2
    learning_rate: float | None = None
    distill: bool = False

    def __post_init__(self) -> None:
        check_choice(self.scheme, "scheme", tuple(sorted(SCHEMES)), example='scheme = "int8"')
        _check_filters(self)
        _check_stage(self, 2)


Stage = DistillStage | PruneStage | ShrinkStage | QuantizeStage
STAGE_KINDS: dict[str, type] = {
    "distill": DistillStage,
    "prune": PruneStage,
    "shrink": ShrinkStage,
    "quantize": QuantizeStage,
}


def stage_from_config(config: Mapping[str, Any]) -> Stage:
    """Build a stage from a table with a ``kind`` (``"distill"``, ``"prune"``, ...).

    Args:
        config: the stage's table, e.g. ``{"kind": "prune", "sparsity": 0.7}``.

    Returns:
        The stage object of that kind.

    Raises:
        RecipeError: not a table, a missing or unknown kind, or a bad stage option.

    Example:
        >>> stage_from_config({"kind": "shrink", "ratio": 0.25}).ratio
        0.25
    """
    kinds = ", ".join(f'"{k}"' for k in STAGE_KINDS)
    if not isinstance(config, Mapping):
        raise fail(
            None, f"a stage table with a kind ({kinds})", config, 'kind = "prune"', typed=True
        )
    if "kind" not in config:
        raise RecipeError(
            f"the stage has no kind: expected kind = one of {kinds}, received a stage with "
            f'keys {show(sorted(map(str, config)))}; e.g. kind = "prune"',
            key="kind",
        )
    kind = config["kind"]
    check_choice(kind, "kind", tuple(STAGE_KINDS), example='kind = "prune"')
    return STAGE_KINDS[kind].from_config(config)


# --------------------------------------------------------------------------- export, benchmark


@dataclass(frozen=True)
class ExportSpec(_SpecMixin):
    """What the run exports.

    Attributes:
        tflite: TFLite modes among ``"float"``, ``"dynamic"``, ``"int8"``, ``"float16"``,
            ``"int16x8"`` (no duplicates; empty: no TFLite file).
        saved_model: also export a SavedModel.
        jit_compile: XLA-compile the SavedModel's serving function.

    Example:
        >>> ExportSpec(tflite=["float", "int8"]).tflite
        ('float', 'int8')
    """

    _WHAT: ClassVar[str] = "the export"
    _EXAMPLE: ClassVar[str] = '[export] tflite = ["int8"]'
    tflite: tuple[str, ...] = ("int8",)
    saved_model: bool = True
    jit_compile: bool = True

    def __post_init__(self) -> None:
        modes = (self.tflite,) if isinstance(self.tflite, str) else self.tflite
        example = 'tflite = ["float", "int8"]'
        if not isinstance(modes, (list, tuple)):
            raise fail("tflite", "a list of TFLite modes", modes, example, typed=True)
        for i, mode in enumerate(modes):
            check_choice(mode, f"tflite[{i}]", TFLITE_MODES, example=example)
            if mode in modes[:i]:
                raise RecipeError(
                    f"the mode {show(mode)} is listed twice in {show(modes)}; list each mode once.",
                    key=f"tflite[{i}]",
                )
        _set(self, "tflite", tuple(modes))
        check_bool(self.saved_model, "saved_model", example="saved_model = true")
        check_bool(self.jit_compile, "jit_compile", example="jit_compile = true")


@dataclass(frozen=True)
class BenchmarkSpec(_SpecMixin):
    """How the exported variants are compared.

    Attributes:
        enabled: run the benchmark at all.
        batch_sizes: latency batch sizes (each >= 1, no duplicates).
        repeats: timed runs per batch size (>= 1).
        threads: CPU threads per variant (>= 1).
        max_examples: quality is measured on at most this many test examples; the default
            None (``"all"`` in a file, since TOML has no null) measures every test example,
            the same definition as the stage table's.

    Example:
        >>> BenchmarkSpec(batch_sizes=[1, 64]).batch_sizes
        (1, 64)
    """

    _WHAT: ClassVar[str] = "the benchmark"
    _EXAMPLE: ClassVar[str] = "[benchmark] repeats = 30"
    enabled: bool = True
    batch_sizes: tuple[int, ...] = (1, 256)
    repeats: int = 30
    threads: int = 1
    max_examples: int | None = None

    def __post_init__(self) -> None:
        check_bool(self.enabled, "enabled", example="enabled = true")
        sizes = self.batch_sizes
        example = "batch_sizes = [1, 256]"
        if isinstance(sizes, int) and not isinstance(sizes, bool):
            sizes = (sizes,)
        if not isinstance(sizes, (list, tuple)) or not sizes:
            raise fail(
                "batch_sizes",
                "a non-empty list of batch sizes",
                sizes,
                example,
                typed=not isinstance(sizes, (list, tuple)),
            )
        checked = []
        for i, size in enumerate(sizes):
            checked.append(check_int(size, f"batch_sizes[{i}]", minimum=1, example=example))
            if checked[-1] in checked[:-1]:
                raise RecipeError(
                    f"the batch size {size} is listed twice in {show(sizes)}; list each size once.",
                    key=f"batch_sizes[{i}]",
                )
        _set(self, "batch_sizes", tuple(checked))
        _set(self, "repeats", check_int(self.repeats, "repeats", minimum=1, example="repeats = 30"))
        _set(self, "threads", check_int(self.threads, "threads", minimum=1, example="threads = 1"))
        if self.max_examples == "all":
            _set(self, "max_examples", None)
        if self.max_examples is not None:
            _set(
                self,
                "max_examples",
                check_int(
                    self.max_examples,
                    "max_examples",
                    minimum=1,
                    example='max_examples = 4096 (or "all" for every test example)',
                ),
            )
