"""The ``[export]`` and ``[benchmark]`` parts of a recipe: :class:`ExportSpec` and
:class:`BenchmarkSpec` (import them from :mod:`tfcompress.recipe`).

Example:
    >>> ExportSpec(tflite=["float", "int8"]).tflite
    ('float', 'int8')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tfcompress.evaluation.benchmarking import TIMINGS
from tfcompress.recipe._files import RecipeError, check_bool, check_choice, check_int, fail, show
from tfcompress.recipe._spec_base import _set, _SpecMixin

__all__ = ["TFLITE_MODES", "BenchmarkSpec", "ExportSpec"]

#: ``ExportSpec.tflite`` modes (``"float"`` is an unquantized float32 model).
TFLITE_MODES = ("float", "dynamic", "int8", "float16", "int16x8")


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
        timing: what a ``.tflite`` latency measures (``benchmark(timing=...)``):
            ``"invoke"`` (the file's own run, what a native server pays) or ``"call"`` (the
            Python call, inputs copied in and out: ~3 µs more a call). Part of the benchmark's
            cache key, so a run's table never mixes the two.

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
    timing: str = "invoke"

    def __post_init__(self) -> None:
        check_bool(self.enabled, "enabled", example="enabled = true")
        check_choice(self.timing, "timing", TIMINGS, example='timing = "invoke"')
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
