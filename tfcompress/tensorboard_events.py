"""TensorBoard event files: argument checks and writers shared by :mod:`tfcompress.tensorboard`,
and the readers :func:`read_scalars`, :func:`read_text` and :func:`read_hparams`.

The readers load event files back ("does my sparsity show up?") without starting TensorBoard;
they are re-exported by :mod:`tfcompress.tensorboard`. Paths go through ``tf.io.gfile``, so
``gs://`` log directories work like local ones.

Example:
    >>> import tempfile
    >>> from tfcompress.tensorboard import log_stage_summary
    >>> logdir = tempfile.mkdtemp()
    >>> log_stage_summary(logdir, "prune", {"sparsity": 0.5})
    >>> read_scalars(logdir)["prune/summary"]["sparsity"]
    [(0, 0.5)]
"""

from __future__ import annotations

import logging
import os
import posixpath
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata

from tfcompress.keras_compat import tf

__all__ = ["read_hparams", "read_scalars", "read_text"]

_log = logging.getLogger("tfcompress")

# ---------------------------------------------------------------------- argument checks


def _check_log_dir(log_dir: Any, argument: str = "log_dir") -> str:
    if isinstance(log_dir, bool) or not isinstance(log_dir, (str, os.PathLike)):
        raise TypeError(
            f"`{argument}` must be a directory path (str or os.PathLike), received "
            f"{type(log_dir).__name__}: {log_dir!r:.80}. Pass e.g. 'runs/experiment1'."
        )
    path = os.fspath(log_dir)
    if not isinstance(path, str):
        raise TypeError(
            f"`{argument}` must be a text path, received the bytes path {path!r:.80}; decode it."
        )
    if not path.strip():
        raise ValueError(f"`{argument}` must be a non-empty path, received {path!r}.")
    if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
        raise ValueError(
            f"`{argument}` {path!r} exists and is a file, not a directory; pass a directory "
            "path for the TensorBoard event files."
        )
    return path


def _check_bool(value: Any, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{argument}` must be True or False, received {value!r}.")
    return value


def _check_tag(tag: Any, argument: str) -> str:
    if not isinstance(tag, str):
        raise TypeError(
            f"`{argument}` must be a str, received {type(tag).__name__}: {tag!r:.80}."
        )
    if (
        not tag
        or tag != tag.strip()
        or any(not part for part in tag.split("/"))
        or any(not ch.isprintable() for ch in tag)
    ):
        raise ValueError(
            f"`{argument}` {tag!r} is not a valid TensorBoard tag: it must be non-empty, "
            "printable, without surrounding spaces, with non-empty parts between '/' (e.g. "
            "'report/benchmark')."
        )
    return tag


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"`step` must be an int >= 0, received {type(step).__name__}: {step!r}.")
    if step < 0:
        raise ValueError(f"`step` must be an int >= 0, received {step!r}.")
    return int(step)


def _join(*parts: str) -> str:
    return posixpath.join(*parts) if "://" in parts[0] else os.path.join(*parts)


def _makedirs(path: str) -> str:
    tf.io.gfile.makedirs(path)
    return path


def _scalar64(tag: str, value: float, step: int) -> None:
    """A scalar summary under exactly ``tag``, kept as float64 (``tf.summary.scalar`` casts to
    float32, which rounds byte counts above 2**24, and drops characters such as '@' from the
    tag); TensorBoard's scalars plugin reads either."""
    tf.summary.write(
        tag, tf.constant(value, tf.float64), step=step,
        metadata=scalar_metadata.create_summary_metadata(display_name=tag, description=""),
    )


def _text(tag: str, markdown: str, step: int) -> None:
    """A text summary under exactly ``tag`` (``tf.summary.text`` would drop characters such as
    '@' or ' ' from it)."""
    tf.summary.write(
        tag, tf.constant(markdown, tf.string), step=step,
        metadata=text_metadata.create_summary_metadata(display_name=tag, description=""),
    )


def _write(directory: str, body: Any) -> None:
    """Run ``body()`` with a summary writer for ``directory`` as default; close it after."""
    writer = tf.summary.create_file_writer(_makedirs(directory))
    try:
        with writer.as_default(), tf.summary.record_if(True):
            body()
        writer.flush()
    finally:
        writer.close()


# ---------------------------------------------------------------------- reading


def _event_files(log_dir: str) -> list[tuple[str, str]]:
    """``(run, file)`` of every event file below ``log_dir``, run ``"."`` for the root."""
    out = []
    for directory, _, files in tf.io.gfile.walk(log_dir):
        rel = os.path.relpath(directory, log_dir) if "://" not in log_dir else \
            directory[len(log_dir):].strip("/") or "."
        rel = rel.replace(os.sep, "/")
        for file in sorted(files):
            if "tfevents" in file:
                out.append((rel, _join(directory, file)))
    return sorted(out)


def _values(log_dir: Any) -> Any:
    """Yield ``(run, step, value, plugin_name)`` of every summary value below ``log_dir``."""
    path = _check_log_dir(log_dir)
    if not tf.io.gfile.isdir(path):
        raise ValueError(
            f"`log_dir` {path!r} does not exist; pass the directory TensorBoard logs were "
            "written to."
        )
    for run, file in _event_files(path):
        plugins: dict[str, str] = {}  # tag -> plugin, from the first value that names it
        for event in _events(file):
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                    plugins.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
                yield run, int(event.step), value, plugins.get(value.tag, "")


def _events(file: str) -> Any:
    """The ``Event`` protos of one event file; stops at a truncated last record (a writer
    still open), which the next read sees complete."""
    records = iter(tf.data.TFRecordDataset(file))
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except tf.errors.DataLossError:
            _log.debug("read_scalars: %s ends in a partial record (still being written).", file)
            return
        yield event_pb2.Event.FromString(record.numpy())


def read_scalars(log_dir: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Read every scalar below ``log_dir``: ``{run: {tag: [(step, value), ...]}}``.

    Runs are directories relative to ``log_dir`` (``"train"``, ``"int8"``,
    ``"prune/summary"``; ``"."`` for ``log_dir`` itself). Both TF1 ``simple_value`` scalars
    and TF2 tensor scalars are read; values are in the order written.

    Raises:
        TypeError: ``log_dir`` not a path.
        ValueError: ``log_dir`` does not exist.

    Example:
        >>> read_scalars("runs/x")["train"]["epoch_sparsity"]  # doctest: +SKIP
        [(0, 0.31), (1, 0.5)]
    """
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run, step, value, plugin in _values(log_dir):
        if value.HasField("simple_value"):
            number = float(value.simple_value)
        elif value.HasField("tensor") and plugin in ("scalars", ""):
            array = tf.make_ndarray(value.tensor)
            if array.ndim != 0 or array.dtype.kind not in "biuf":
                continue
            number = float(array)
        else:
            continue
        out.setdefault(run, {}).setdefault(value.tag, []).append((step, number))
    return out


def read_text(log_dir: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, str]]]]:
    """Read every text summary below ``log_dir``: ``{run: {tag: [(step, text), ...]}}``.

    Raises:
        TypeError: ``log_dir`` not a path.
        ValueError: ``log_dir`` does not exist.

    Example:
        >>> read_text("runs/x")["."]["report/benchmark"][0][1][:9]  # doctest: +SKIP
        '| variant'
    """
    out: dict[str, dict[str, list[tuple[int, str]]]] = {}
    for run, step, value, plugin in _values(log_dir):
        if plugin != "text" or not value.HasField("tensor"):
            continue
        array = np.asarray(tf.make_ndarray(value.tensor)).reshape(-1)
        text = "\n".join(
            item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in array
        )
        out.setdefault(run, {}).setdefault(value.tag, []).append((step, text))
    return out


def read_hparams(log_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read the hparams of every HParams session below ``log_dir``: ``{run: {hparam: value}}``.

    Parsed from the hparams plugin's ``session_start_info`` summaries (what the HParams
    dashboard lists). Numbers come back as float (TensorBoard stores them as doubles);
    the last session written to a run wins.

    Raises:
        TypeError: ``log_dir`` not a path.
        ValueError: ``log_dir`` does not exist.

    Example:
        >>> read_hparams("runs/x")["int8"]["format"]  # doctest: +SKIP
        'tflite'
    """
    out: dict[str, dict[str, Any]] = {}
    for run, _, value, plugin in _values(log_dir):
        if plugin != hp_metadata.PLUGIN_NAME or value.tag != hp_metadata.SESSION_START_INFO_TAG:
            continue
        info = hp_metadata.parse_session_start_info_plugin_data(
            value.metadata.plugin_data.content
        )
        values: dict[str, Any] = {}
        for key, proto in info.hparams.items():
            kind = proto.WhichOneof("kind")
            values[key] = getattr(proto, kind) if kind else None
        out[run] = dict(sorted(values.items()))
    return out
