"""TensorBoard event files: the writers of :mod:`tfcompress.callbacks.tensorboard` and the readers
:func:`read_scalars`, :func:`read_text`, :func:`read_hparams` (through TensorBoard's own loader).

Example:
    >>> import tempfile
    >>> from tfcompress.callbacks.tensorboard import log_stage_summary
    >>> logdir = tempfile.mkdtemp()
    >>> log_stage_summary(logdir, "prune", {"sparsity": 0.5})
    >>> read_scalars(logdir)["prune/summary"]["sparsity"]
    [(0, 0.5)]
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import posixpath
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
from tensorboard.backend.event_processing import data_provider as mux_data_provider
from tensorboard.backend.event_processing import (
    plugin_event_accumulator,
    plugin_event_multiplexer,
)
from tensorboard.context import RequestContext
from tensorboard.data import grpc_provider, server_ingester
from tensorboard.data import provider as provider_lib
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata

from tfcompress._keras import tf

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


def _check_tag(tag: Any, argument: str) -> str:
    if not isinstance(tag, str):
        raise TypeError(f"`{argument}` must be a str, received {type(tag).__name__}: {tag!r:.80}.")
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


def _join(*parts: str) -> str:
    return posixpath.join(*parts) if "://" in parts[0] else os.path.join(*parts)


def _makedirs(path: str) -> str:
    tf.io.gfile.makedirs(path)
    return path


def _scalar(tag: str, value: float, step: int) -> None:
    """A float32 scalar summary under exactly ``tag``: the one scalar TensorBoard's default
    loader (the Rust data server) reads, which drops float64 scalars (issue 13).
    ``tf.summary.scalar`` would write float32 too but drops characters such as '@' from the
    tag. float32 keeps about 7 significant digits: integers above 2**24 (16.7 MB in bytes)
    are rounded to an even neighbour (40_000_123 -> 40_000_124)."""
    with np.errstate(over="ignore"):
        single = np.float32(value)
    if math.isfinite(value) and not math.isfinite(single):
        _log.warning(
            "TensorBoard scalar %r: %r is out of float32 range; TensorBoard shows %s.",
            tag,
            value,
            single,
        )
    tf.summary.write(
        tag,
        tf.constant(single, tf.float32),
        step=step,
        metadata=scalar_metadata.create_summary_metadata(display_name=tag, description=""),
    )


def _text(tag: str, markdown: str, step: int) -> None:
    """A text summary under exactly ``tag`` (``tf.summary.text`` would drop characters such as
    '@' or ' ' from it)."""
    tf.summary.write(
        tag,
        tf.constant(markdown, tf.string),
        step=step,
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
#
# The readers ask TensorBoard's own loader, through the DataProvider API its dashboards use,
# the way `tensorboard --logdir` with its default `--load_fast=auto` does: the Rust data server
# (`tensorboard-data-server`) where it is installed, else TensorBoard's Python event multiplexer.

_ALL = 2**31 - 1  # "downsample" to at most this many points: keep them all
_LOAD_TIMEOUT_S = 600.0
# Private TensorBoard data-server hook: with `--reload=once --verbose` the server logs this line
# (rustboard_core::cli, info level) once its only load cycle is done. The server offers no other
# "loaded" signal; tests/test_tensorboard.py::test_readers_see_what_tensorboards_default_loader_sees
# pins it.
_LOADED_LINE = "Finished load cycle"
_CTX = RequestContext()


def _data_server_binary(path: str) -> str | None:
    """The Rust data server TensorBoard would load ``path`` with, or None where TensorBoard
    falls back to its Python loader (no server for this platform, a ``://`` path other than
    ``gs://``). ``TENSORBOARD_DATA_SERVER_BINARY`` overrides, as for TensorBoard."""
    if "://" in path and not path.startswith("gs://"):
        return None
    try:
        return server_ingester.get_server_binary().path
    except server_ingester.NoDataServerError as e:
        _log.debug("TensorBoard readers: no data server (%s); using the Python loader.", e)
        return None


class _DataServer:
    """``tensorboard-data-server --logdir path --reload=once``, loaded, as a DataProvider."""

    def __init__(self, binary: str, path: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tfcompress_tb_")
        port_file = os.path.join(self._tmp.name, "port")
        error_file = os.path.join(self._tmp.name, "error")
        env = {**os.environ, "RUST_LOG": "info"}
        self._process = subprocess.Popen(
            [
                binary,
                f"--logdir={path}",
                "--reload=once",
                "--port=0",
                f"--port-file={port_file}",
                f"--error-file={error_file}",
                "--die-after-stdin",
                "--verbose",
                "--samples-per-plugin=scalars=all,text=all,hparams=all",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            errors="replace",
        )
        self._channel: grpc.Channel | None = None
        self._log: list[str] = []
        self._done = threading.Event()  # loaded, or the server's output ended
        self._loaded = False
        threading.Thread(target=self._drain, name="tfcompress-tb-reader", daemon=True).start()
        try:
            self._done.wait(_LOAD_TIMEOUT_S)
            if not self._loaded:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=5)
                status = self._process.poll()
                error = ""
                if os.path.exists(error_file):
                    with open(error_file, encoding="utf-8", errors="replace") as f:
                        error = f.read().strip()
                raise RuntimeError(
                    f"TensorBoard's data server ({binary}) did not load {path!r}"
                    + (
                        f" within {_LOAD_TIMEOUT_S:.0f} s"
                        if status is None
                        else f": it exited with status {status}"
                    )
                    + f"; {error or ''.join(self._log[-20:]).strip() or 'no output'}. Set "
                    "TENSORBOARD_DATA_SERVER_BINARY to a missing file to read with TensorBoard's "
                    "Python loader instead."
                )
            with open(port_file, encoding="ascii") as f:
                address = f"localhost:{int(f.read())}"
            self._channel = grpc.insecure_channel(
                address, options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
            )
            self.provider = grpc_provider.GrpcDataProvider(
                address, grpc_provider.make_stub(self._channel)
            )
        except BaseException:
            self.close()
            raise

    def _drain(self) -> None:
        for line in self._process.stderr or ():
            self._log.append(line)
            if _LOADED_LINE in line:
                self._loaded = True
                self._done.set()
        self._done.set()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._process.poll() is None:
            if self._process.stdin is not None:
                self._process.stdin.close()  # --die-after-stdin
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._tmp.cleanup()


@contextlib.contextmanager
def _loaded(log_dir: Any) -> Iterator[provider_lib.DataProvider]:
    """TensorBoard's data provider over ``log_dir``, loaded completely."""
    path = _check_log_dir(log_dir)
    if not tf.io.gfile.isdir(path):
        raise ValueError(
            f"`log_dir` {path!r} does not exist; pass the directory TensorBoard logs were "
            "written to."
        )
    binary = _data_server_binary(path)
    if binary is None:
        multiplexer = plugin_event_multiplexer.EventMultiplexer(
            size_guidance={plugin_event_accumulator.TENSORS: 0}
        )  # 0: keep every point
        multiplexer.AddRunsFromDirectory(path)
        multiplexer.Reload()
        yield mux_data_provider.MultiplexerDataProvider(multiplexer, path)
        return
    server = _DataServer(binary, os.path.abspath(path) if "://" not in path else path)
    try:
        yield server.provider
    finally:
        server.close()


def _read(
    provider: provider_lib.DataProvider, plugin: str, scalars: bool
) -> dict[str, dict[str, list[Any]]]:
    """``{run: {tag: [datum, ...]}}`` of every non-empty time series of ``plugin``."""
    lister = provider.list_scalars if scalars else provider.list_tensors
    reader = provider.read_scalars if scalars else provider.read_tensors
    listed = lister(_CTX, experiment_id="", plugin_name=plugin)
    if not listed:
        return {}
    runs = sorted(listed)
    tags = sorted({tag for run_tags in listed.values() for tag in run_tags})
    data = reader(
        _CTX,
        experiment_id="",
        plugin_name=plugin,
        downsample=_ALL,
        run_tag_filter=provider_lib.RunTagFilter(runs=runs, tags=tags),
    )
    out: dict[str, dict[str, list[Any]]] = {}
    for run in runs:
        for tag in sorted(listed[run]):
            series = data.get(run, {}).get(tag, [])
            if series:
                out.setdefault(run, {})[tag] = series
    return out


def read_scalars(log_dir: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Read every scalar below ``log_dir`` as TensorBoard shows it: ``{run: {tag: [(step,
    value), ...]}}``.

    Loaded by TensorBoard itself, as ``tensorboard --logdir log_dir`` loads it by default: its
    Rust data server where installed (which reads TF1 ``simple_value`` scalars and float32
    scalar tensors, and skips float64 ones), else its Python loader. Runs are directories
    relative to ``log_dir`` (``"train"``, ``"int8"``, ``"prune/summary"``; ``"."`` for
    ``log_dir`` itself); a run or tag without a scalar TensorBoard shows is left out. Values
    are in step order; a step written again replaces the later ones, as in TensorBoard.

    Raises:
        TypeError: ``log_dir`` not a path.
        ValueError: ``log_dir`` does not exist.
        RuntimeError: TensorBoard's data server failed to load ``log_dir``.

    Example:
        >>> read_scalars("runs/x")["train"]["epoch_sparsity"]  # doctest: +SKIP
        [(0, 0.31), (1, 0.5)]
    """
    with _loaded(log_dir) as provider:
        series = _read(provider, scalar_metadata.PLUGIN_NAME, scalars=True)
    return {
        run: {tag: [(int(d.step), float(d.value)) for d in data] for tag, data in tags.items()}
        for run, tags in series.items()
    }


def read_text(log_dir: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, str]]]]:
    """Read every text summary below ``log_dir`` as TensorBoard's Text dashboard gets it:
    ``{run: {tag: [(step, markdown), ...]}}`` (the Markdown before rendering; the elements
    of a text tensor joined by newlines).

    Raises:
        TypeError: ``log_dir`` not a path.
        ValueError: ``log_dir`` does not exist.
        RuntimeError: TensorBoard's data server failed to load ``log_dir``.

    Example:
        >>> read_text("runs/x")["."]["report/benchmark"][0][1][:9]  # doctest: +SKIP
        '| variant'
    """
    with _loaded(log_dir) as provider:
        series = _read(provider, text_metadata.PLUGIN_NAME, scalars=False)
    out: dict[str, dict[str, list[tuple[int, str]]]] = {}
    for run, tags in series.items():
        for tag, data in tags.items():
            out.setdefault(run, {})[tag] = [
                (
                    int(d.step),
                    "\n".join(
                        item.decode("utf-8") if isinstance(item, bytes) else str(item)
                        for item in np.asarray(d.numpy).reshape(-1)
                    ),
                )
                for d in data
            ]
    return out


def read_hparams(log_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read the hparams of every HParams session below ``log_dir``: ``{run: {hparam: value}}``.

    The sessions the HParams dashboard lists, loaded by TensorBoard (see
    :func:`read_scalars`) and parsed from the hparams plugin's ``session_start_info``. Numbers
    come back as float (TensorBoard stores them as doubles). A run TensorBoard keeps the first
    session of, as its dashboard does.

    Raises:
        TypeError: ``log_dir`` not a path.
        ValueError: ``log_dir`` does not exist.
        RuntimeError: TensorBoard's data server failed to load ``log_dir``.

    Example:
        >>> read_hparams("runs/x")["int8"]["format"]  # doctest: +SKIP
        'tflite'
    """
    with _loaded(log_dir) as provider:
        listed = provider.list_tensors(_CTX, experiment_id="", plugin_name=hp_metadata.PLUGIN_NAME)
    out: dict[str, dict[str, Any]] = {}
    for run in sorted(listed):
        series = listed[run].get(hp_metadata.SESSION_START_INFO_TAG)
        if series is None:
            continue
        info = hp_metadata.parse_session_start_info_plugin_data(series.plugin_content)
        values: dict[str, Any] = {}
        for key, proto in info.hparams.items():
            kind = proto.WhichOneof("kind")
            values[key] = getattr(proto, kind) if kind else None
        out[run] = dict(sorted(values.items()))
    return out
