"""The parts of a :class:`tfcompress.recipe.Recipe` (data, model, stages, exports, benchmark):
frozen dataclasses that validate themselves and round-trip through ``get_config``.

Example:
    >>> PruneStage(sparsity=0.7).get_config()["kind"]
    'prune'
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
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
    check_number,
    check_run_name,
    check_strings,
    fail,
    freeze,
    show,
)
from tfcompress.recipe._output_specs import (  # noqa: F401 - the [export] and [benchmark] parts
    TFLITE_MODES,
    BenchmarkSpec,
    ExportSpec,
)
from tfcompress.recipe._spec_base import _from_config, _get_config, _nested, _set, _SpecMixin

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: Names accepted by ``ModelSpec.name`` (those of :func:`tfcompress.models.build`).
MODEL_NAMES: tuple[str, ...] = _MODEL_NAMES
#: ``DistillStage.loss`` values: ``"auto"`` or a :func:`tfcompress.get_distillation_loss` name.
DISTILLATION_LOSSES: tuple[str, ...] = ("auto", *sorted(KD_LOSS_NAMES))
#: ``Recipe.strategy`` values (names of :func:`tfcompress.distribute.get_strategy`).
RECIPE_STRATEGIES: tuple[str, ...] = tuple(
    name for name in ("default", "mirrored", "auto", "multi_worker") if name in STRATEGY_NAMES
)


def _check_student_loss_weight(stage: Any) -> None:
    """The weight of the labels' loss in a distilled fit, in [0, 1] (distill and auto stages)."""
    _set(
        stage,
        "student_loss_weight",
        check_number(
            stage.student_loss_weight,
            "student_loss_weight",
            low=0,
            high=1,
            closed="[]",
            example="student_loss_weight = 0.5",
        ),
    )


# --------------------------------------------------------------------------- data and model


def _check_imports(value: Any) -> tuple[str, ...]:
    """``[model] imports``: a list of dotted module names (a single string is a list of one)."""
    example = 'imports = ["tensorflow_recommenders"]'
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise fail("imports", "a list of module names", value, example, typed=True)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _MODULE_NAME.match(item):
            raise fail(
                f"imports[{i}]",
                "a dotted Python module name (a string)",
                item,
                example,
                typed=not isinstance(item, str),
            )
    return tuple(value)


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
        imports: modules imported before the run loads any model, for the layer classes they
            register (``["tensorflow_recommenders"]`` for a model with TFRS ``Cross`` layers).

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
    imports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        path = os.fspath(self.path) if isinstance(self.path, os.PathLike) else self.path
        _set(self, "imports", _check_imports(self.imports))
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
        """Every field (defaults included) as plain JSON types, with ``kind`` first and the
        shared fields (``name``, ``epochs``, ``learning_rate``, ``distill``) last."""
        config = _get_config(self)
        own = {k: v for k, v in config.items() if k not in _SHARED_FIELDS}
        return {"kind": self.kind, **own, **{k: config[k] for k in _SHARED_FIELDS if k in config}}

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


#: the fields every stage has (:class:`_Stage`, :class:`_FineTuneStage`), in get_config order
_SHARED_FIELDS = ("name", "epochs", "learning_rate", "distill")


@dataclass(frozen=True, kw_only=True)
class _Stage(_StageMixin):
    """The fields every stage has, validated once.

    Attributes:
        name: the stage's name (default: its kind; made unique in a recipe).
        epochs: fine-tune epochs (>= 1).
        learning_rate: the Adam learning rate (> 0; None: the model's).
    """

    name: str | None = None
    epochs: int = 2
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        self._check_options()
        self._check_shared()

    def _check_options(self) -> None:
        """Validate (and normalise) the stage's own fields; errors before the shared ones'."""

    def _check_shared(self) -> None:
        name = self.kind if self.name is None else self.name
        _set(self, "name", check_run_name(name, "name", example=f'name = "{self.kind}_1"'))
        default = self.__dataclass_fields__["epochs"].default
        _set(
            self,
            "epochs",
            check_int(self.epochs, "epochs", minimum=1, example=f"epochs = {default}"),
        )
        if self.learning_rate is not None:
            _set(
                self,
                "learning_rate",
                check_number(
                    self.learning_rate, "learning_rate", low=0, example="learning_rate = 0.001"
                ),
            )


@dataclass(frozen=True, kw_only=True)
class _FineTuneStage(_Stage):
    """A stage that fine-tunes a compressed model, on the labels or with the teacher.

    Attributes:
        distill: fine-tune inside a Distiller with the teacher of the recipe's last distill
            stage before it (distillation-aware pruning / QAT, with that stage's
            student_loss_weight, temperature and loss) instead of on the labels alone.
    """

    distill: bool = False

    def _check_shared(self) -> None:
        check_bool(self.distill, "distill", example="distill = true")
        super()._check_shared()


@dataclass(frozen=True)
class DistillStage(_Stage):
    """Distill the current model (the teacher) into a student, which then replaces it.

    Attributes:
        student: the student (``name`` + ``size`` or ``path``); its ``epochs`` must be 0, the
            stage trains it.
        student_loss_weight: weight of the hard-label (student) loss in [0, 1]; the
            distillation loss gets 1 - student_loss_weight (as in
            :class:`tfcompress.Distiller`). ``alpha = x`` (the distillation loss's weight)
            still loads for one release, as ``student_loss_weight = 1 - x``, with a
            DeprecationWarning.
        temperature: the distillation temperature (> 0).
        loss: ``"auto"`` or a :func:`tfcompress.get_distillation_loss` name.
        train_alone: also train the student without the teacher, as a reference variant.
        name, epochs, learning_rate: the stage's name, fine-tune epochs (default 3) and
            learning rate (None: the model's).

    Example:
        >>> DistillStage(student=ModelSpec(name="dcn", size="student")).epochs
        3
    """

    kind: ClassVar[str] = "distill"
    student: ModelSpec
    student_loss_weight: float = 0.5
    temperature: float = 2.0
    loss: str = "auto"
    train_alone: bool = False
    epochs: int = dataclasses.field(default=3, kw_only=True)

    def _check_options(self) -> None:
        example = 'student = { name = "dcn", size = "student" }'
        student = _nested(self.student, "student", ModelSpec, "the student model", example)
        if student.epochs != 0:
            raise RecipeError(
                f"expected 0 (the distill stage trains the student; set the stage's epochs "
                f"instead), received {show(student.epochs)}; e.g. remove student.epochs",
                key="student.epochs",
            )
        _set(self, "student", student)
        _check_student_loss_weight(self)
        _set(
            self,
            "temperature",
            check_number(self.temperature, "temperature", low=0, example="temperature = 2.0"),
        )
        check_choice(self.loss, "loss", DISTILLATION_LOSSES, example='loss = "auto"')
        check_bool(self.train_alone, "train_alone", example="train_alone = true")

    @property
    def alpha(self) -> float:
        """Deprecated: the distillation loss's weight, ``1 - student_loss_weight``."""
        warnings.warn(
            "DistillStage.alpha is deprecated; read student_loss_weight (alpha is "
            "1 - student_loss_weight).",
            DeprecationWarning,
            stacklevel=2,
        )
        return 1.0 - self.student_loss_weight

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """Build from a ``get_config()`` dict; a deprecated ``alpha`` key is read as
        ``student_loss_weight = 1 - alpha`` (with a DeprecationWarning)."""
        if isinstance(config, Mapping) and "alpha" in config:
            config = {k: v for k, v in config.items() if k != "alpha"} | {
                "student_loss_weight": _from_alpha(config["alpha"], config)
            }
        return super().from_config(config)


def _from_alpha(alpha: Any, given: Mapping[str, Any]) -> float:
    """``student_loss_weight`` of a deprecated ``alpha``, warned; both given is an error."""
    if "student_loss_weight" in given:
        raise RecipeError(
            f"give student_loss_weight or the deprecated alpha, not both; received alpha = "
            f"{show(alpha)} and student_loss_weight = {show(given['student_loss_weight'])}. "
            "Remove alpha.",
            key="alpha",
        )
    alpha = check_number(alpha, "alpha", low=0, high=1, closed="[]", example="alpha = 0.5")
    weight = 1.0 - alpha
    warnings.warn(
        f"the distill stage's alpha is deprecated; write student_loss_weight = {weight:.6g} "
        f"(= 1 - alpha) instead of alpha = {alpha:g}.",
        DeprecationWarning,
        stacklevel=3,
    )
    return weight


_NOT_GIVEN: Any = object()
_dataclass_init = DistillStage.__init__


@functools.wraps(_dataclass_init)
def _init_accepting_alpha(self: DistillStage, *args: Any, alpha: Any = _NOT_GIVEN, **kwargs: Any):
    # DistillStage(alpha=x) keeps working for one release, as student_loss_weight = 1 - x
    if alpha is not _NOT_GIVEN:
        kwargs["student_loss_weight"] = _from_alpha(alpha, kwargs)
    _dataclass_init(self, *args, **kwargs)


DistillStage.__init__ = _init_accepting_alpha  # type: ignore[method-assign]


@dataclass(frozen=True)
class PruneStage(_FineTuneStage):
    """Magnitude pruning during fine-tuning (:func:`tfcompress.prune`), then ``strip``.

    Attributes:
        sparsity: target fraction of zeros in (0, 1); None: ``prune``'s default (0.8, or 0.5
            for ``"2:4"``).
        structure: None (unstructured) or ``"2:4"`` (sparsity then 0.5).
        layers: layer names or regexes to prune (None: all).
        skip: layer names or regexes not to prune.
        name, epochs, learning_rate: see :class:`DistillStage` (epochs default 2).
        distill: fine-tune inside a Distiller with the teacher of the recipe's last distill
            stage before it (distillation-aware pruning / QAT, with that stage's
            student_loss_weight, temperature and loss) instead of on the labels alone.

    Example:
        >>> PruneStage(sparsity=0.7, skip=["logits"]).skip
        ('logits',)
    """

    kind: ClassVar[str] = "prune"
    sparsity: float | None = None
    structure: str | None = None
    layers: tuple[str, ...] | None = None
    skip: tuple[str, ...] | None = None

    def _check_options(self) -> None:
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


@dataclass(frozen=True)
class ShrinkStage(_FineTuneStage):
    """Remove whole units, embedding dimensions and heads (:func:`tfcompress.shrink`).

    Attributes:
        ratio: the fraction of units removed, in (0, 1).
        criterion: ``"l2"`` (weight norms) or ``"activation"`` (mean activations on data).
        layers, skip: layer names or regexes to shrink / to leave alone.
        name, epochs, learning_rate: see :class:`DistillStage` (epochs default 2).
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

    def _check_options(self) -> None:
        _set(self, "ratio", check_number(self.ratio, "ratio", low=0, high=1, example="ratio = 0.5"))
        check_choice(self.criterion, "criterion", ("l2", "activation"), example='criterion = "l2"')
        _check_filters(self)


@dataclass(frozen=True)
class QuantizeStage(_FineTuneStage):
    """Quantization-aware training (:func:`tfcompress.quantize`); must be the last stage.

    Attributes:
        scheme: ``"int8"`` (weights and activations) or ``"int8_weights"``.
        layers, skip: layer names or regexes to quantize / to keep float.
        name, epochs, learning_rate: see :class:`DistillStage` (epochs default 2).
        distill: fine-tune with the teacher; see :class:`PruneStage`.

    Example:
        >>> QuantizeStage(scheme="int8_weights").get_config()["kind"]
        'quantize'
    """

    kind: ClassVar[str] = "quantize"
    scheme: str = "int8"
    layers: tuple[str, ...] | None = None
    skip: tuple[str, ...] | None = None

    def _check_options(self) -> None:
        check_choice(self.scheme, "scheme", tuple(sorted(SCHEMES)), example='scheme = "int8"')
        _check_filters(self)


@dataclass(frozen=True)
class AutoStage(_Stage):
    """Accuracy-aware compression (:func:`tfcompress.compress`) of the current model.

    The search distils from the recipe's teacher (that of the last distill stage before it; the
    model itself without one) and judges every candidate on the validation split. Its chosen
    TFLite file joins the run's benchmark; the model it hands to later stages is its input,
    unchanged (docs/recipes.md), so it may stand anywhere before a quantize stage.

    Attributes:
        max_loss: the tolerated loss of ``metric`` in (0, 1] (0.002 = 0.2 AUC point).
        metric: ``"auc"``, ``"logloss"`` or ``"accuracy"``.
        rule: ``"ci"`` (the 95% CI's worst end within max_loss) or ``"point"``.
        objective: ``"latency"`` (batch 256), ``"latency_b1"``, ``"size"`` or ``"flops"``.
        runtime: ``"tflite"`` or ``"saved_model"``.
        budget: the search's wall-time limit (``"20m"``, seconds, or None: none).
        steps: bisection steps on the shrink ratio (>= 1).
        student_loss_weight: the hard-label loss's weight in each distilled fine-tune, [0, 1].
        name, epochs, learning_rate: see :class:`DistillStage` (epochs per fine-tune, default 2).

    Example:
        >>> AutoStage(max_loss=0.002, steps=2).get_config()["kind"]
        'auto'
    """

    kind: ClassVar[str] = "auto"
    max_loss: float = 0.001
    metric: str = "auc"
    rule: str = "ci"
    objective: str = "latency"
    runtime: str = "tflite"
    budget: str | float | None = None
    steps: int = 3
    student_loss_weight: float = 0.5

    def _check_options(self) -> None:
        from tfcompress.search.space import METRICS, OBJECTIVES, RULES, RUNTIMES, parse_budget

        number = functools.partial(check_number, low=0, high=1, closed="(]")
        _set(self, "max_loss", number(self.max_loss, "max_loss", example="max_loss = 0.002"))
        for key, choices in (
            ("metric", METRICS),
            ("rule", RULES),
            ("objective", OBJECTIVES),
            ("runtime", RUNTIMES),
        ):
            check_choice(getattr(self, key), key, choices, example=f'{key} = "{choices[0]}"')
        try:
            parse_budget(self.budget)
        except (TypeError, ValueError):
            raise fail(
                "budget",
                'a time ("90s", "20m", "1.5h") or seconds > 0',
                self.budget,
                'budget = "20m"',
                typed=not isinstance(self.budget, (str, int, float)),
            ) from None
        _set(self, "steps", check_int(self.steps, "steps", minimum=1, example="steps = 3"))
        _check_student_loss_weight(self)


Stage = DistillStage | PruneStage | ShrinkStage | QuantizeStage | AutoStage
STAGE_KINDS: dict[str, type] = {
    "distill": DistillStage,
    "prune": PruneStage,
    "shrink": ShrinkStage,
    "quantize": QuantizeStage,
    "auto": AutoStage,
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
