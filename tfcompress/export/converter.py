"""Running the TFLite converter quietly (its C++ output captured), through a SavedModel signature,
with calibration progress; :class:`ConversionError` carries the output when it fails.

Example:
    >>> with captured_output() as out:  # doctest: +SKIP
    ...     flatbuffer = converter.convert()
    >>> "fully_quantize" in out.text  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import numpy as np

from tfcompress._keras import keras, tf
from tfcompress.export.converter_errors import describe_conversion_failure
from tfcompress.export.ptq import QuantizationConfig

_log = logging.getLogger("tfcompress")

__all__ = [
    "SIGNATURE_KEY",
    "CapturedOutput",
    "ConversionError",
    "calibration_dataset",
    "captured_output",
    "convert",
    "saved_model_for_conversion",
]

#: the signature every exported file carries
SIGNATURE_KEY = "serving_default"
#: lines of converter output quoted in an error message (the whole text is on the exception)
ERROR_TAIL_LINES = 40


class ConversionError(ValueError):
    """The TFLite converter failed; ``converter_output`` holds what it printed (fd 1 and 2)."""

    def __init__(self, message: str, converter_output: str = "") -> None:
        tail = _tail(converter_output)
        super().__init__(message + (f"\nConverter output (last lines):\n{tail}" if tail else ""))
        self.summary = message  # what failed and what to do, without the output
        self.converter_output = converter_output


class CapturedOutput:
    """What :func:`captured_output` caught, and a stream to the real stderr meanwhile.

    Attributes:
        text: everything written to fd 1 and 2 inside the block (set when the block ends).
        active: whether the file descriptors were redirected (False when fd 1/2 are closed).
    """

    def __init__(self) -> None:
        self.text = ""
        self.active = False
        self._stderr_fd: int | None = None
        self._terminal: TextIO | None = None

    @property
    def terminal(self) -> TextIO:
        """A text stream to the stderr of before the capture (for progress bars)."""
        if self._stderr_fd is None:
            return sys.stderr
        if self._terminal is None:
            self._terminal = io.TextIOWrapper(
                os.fdopen(os.dup(self._stderr_fd), "wb", buffering=0),
                encoding="utf-8",
                errors="replace",
                line_buffering=False,
                write_through=True,
            )
        return self._terminal

    def _close_terminal(self) -> None:
        if self._terminal is not None:
            with contextlib.suppress(OSError, ValueError):
                self._terminal.close()
            self._terminal = None


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def captured_output() -> Iterator[CapturedOutput]:
    """Redirect file descriptors 1 and 2 into a temporary file for the duration of the block.

    Catches what C++ code prints (TF's converter, LiteRT) as well as Python writes to
    ``sys.stdout``/``sys.stderr``. An exception leaving the block carries the text as a note
    (Python >= 3.11). When fd 1 or 2 cannot be duplicated, nothing is redirected.

    Example:
        >>> with captured_output() as out:
        ...     _ = os.write(2, b"chatter\\n")
        >>> out.text
        'chatter\\n'
    """
    captured = CapturedOutput()
    _flush_std_streams()
    with tempfile.TemporaryFile(prefix="tfcompress_convert_", suffix=".log") as sink:
        saved: list[int] = []
        try:
            saved = [os.dup(1), os.dup(2)]
        except OSError:
            for fd in saved:
                os.close(fd)
            saved = []
        try:
            if saved:
                os.dup2(sink.fileno(), 1)
                os.dup2(sink.fileno(), 2)
                captured.active = True
                captured._stderr_fd = saved[1]
            try:
                yield captured
            except BaseException as e:
                _flush_std_streams()
                text = _read(sink)
                if text.strip() and hasattr(e, "add_note"):
                    e.add_note(f"Output while exporting (last lines):\n{_tail(text)}")
                raise
        finally:
            _flush_std_streams()
            captured._close_terminal()
            if saved:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)
            captured._stderr_fd = None
            captured.text = _read(sink)


def _read(sink: Any) -> str:
    sink.flush()
    sink.seek(0)
    return sink.read().decode("utf-8", errors="replace")


def _tail(text: str, lines: int = ERROR_TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _tracked_variables(model: keras.Model, concrete: Any) -> list[tf.Variable]:
    """The model's variables plus any other variable the serving function reads."""
    seen: dict[int, tf.Variable] = {}
    for v in [*model.variables, *getattr(concrete, "variables", ())]:
        seen.setdefault(id(v), v)
    return list(seen.values())


@contextlib.contextmanager
def saved_model_for_conversion(model: keras.Model, concrete: Any) -> Iterator[str]:
    """Save ``concrete`` as the ``serving_default`` signature of a temporary SavedModel.

    The SavedModel tracks the model's variables (and any other variable the function reads)
    through a plain module, which spares the save re-tracing every Keras layer; when the
    function reads another resource (a lookup table), the model itself is tracked.

    Args:
        model: the model whose serving function ``concrete`` is.
        concrete: the concrete serving function (inputs keyed by name).

    Yields:
        The SavedModel directory (removed afterwards).

    Raises:
        ValueError: the function cannot be saved (names the model and the fix).

    Example:
        >>> with saved_model_for_conversion(model, fn) as d:  # doctest: +SKIP
        ...     converter = tf.lite.TFLiteConverter.from_saved_model(d, [SIGNATURE_KEY])
    """
    with tempfile.TemporaryDirectory(prefix="tfcompress_convert_") as directory:
        holder = tf.Module()
        holder.model_variables = _tracked_variables(model, concrete)
        signatures = {SIGNATURE_KEY: concrete}
        try:
            tf.saved_model.save(holder, directory, signatures=signatures)
        except (AssertionError, ValueError, TypeError):
            holder.model = model  # e.g. a lookup table: reachable through the model's layers
            try:
                tf.saved_model.save(holder, directory, signatures=signatures)
            except (AssertionError, ValueError, TypeError) as e:
                raise ValueError(
                    f"model {model.name!r}: its serving function cannot be saved for the TFLite "
                    f"converter: {str(e).splitlines()[0]} Every TF object call() uses (variables, "
                    "lookup tables, sub-models) must be an attribute of the model or of one of its "
                    "layers, not a global or an object Keras does not track."
                ) from e
        yield directory


def calibration_dataset(
    examples: Sequence[dict[str, np.ndarray]],
    *,
    progress: bool = False,
    stream: TextIO | None = None,
    label: str = "calibrating",
) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """The converter's ``representative_dataset``: the examples, with a tqdm bar if asked.

    Args:
        examples: one dict of arrays (batch of 1) per calibration step.
        progress: show a progress bar.
        stream: where the bar goes (default: ``sys.stderr``; pass
            :attr:`CapturedOutput.terminal` while fd 2 is captured).
        label: the bar's description.

    Example:
        >>> gen = calibration_dataset([{"x": np.zeros((1, 2))}])
        >>> len(list(gen()))
        1
    """

    def generate() -> Iterator[dict[str, np.ndarray]]:
        if not progress:
            yield from examples
            return
        from tqdm import tqdm  # only when shown

        with tqdm(
            total=len(examples),
            desc=label,
            unit="step",
            file=stream or sys.stderr,
            leave=True,
            dynamic_ncols=True,
        ) as bar:
            for example in examples:
                yield example
                bar.update(1)

    return generate


def convert(
    make_converter: Callable[[], Any], config: QuantizationConfig, model: Any = None
) -> bytes:
    """Run ``make_converter().convert()``; every converter failure is re-raised as a
    :class:`ConversionError` naming the mode, the op and layer the converter names, and the fix
    (chained from the converter's own exception).

    Example:
        >>> flatbuffer = convert(make_converter, resolve_quantization("int8"))  # doctest: +SKIP
    """
    converter = make_converter()  # ours: its errors are already clear
    try:
        with warnings.catch_warnings():
            # TF's calibrator still runs the deprecated tf.lite.Interpreter internally.
            warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
            return converter.convert()
    except Exception as e:
        if "Max and min for dynamic tensors" in str(e):
            # The int16x8 quantizer tries to quantize the int32 inputs of comparisons such as the
            # NOT_EQUAL of `ids != 0` (Embedding(mask_zero=True)) and has no op deny-list.
            raise ValueError(
                f"quantization={config.name!r} cannot quantize an op that reads an integer id "
                f"input ({str(e).splitlines()[0]}). A comparison on ids (e.g. `ids != 0` or "
                "Embedding(mask_zero=True)) causes it: build the padding mask as "
                "tf.minimum(tf.maximum(ids, 0), 1) like tfcompress.models.layers.PaddingMask, "
                "or use quantization='int8' or 'dynamic' for this model."
            ) from e
        name = getattr(model, "name", None)
        error = ConversionError(
            "TFLite conversion"
            + (f" of model {name!r}" if name else "")
            + f" with quantization={config.name!r} failed: "
            + describe_conversion_failure(f"{e}", model, config.name)
        )
        # the whole text, MLIR included (export_tflite puts the captured output there instead)
        error.converter_output = f"{type(e).__name__}: {e}"
        raise error from e
