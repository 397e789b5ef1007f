"""TensorBoard for compression runs: :class:`CompressionTensorBoard` (sparsity and quantizer ranges
beside the loss), :func:`log_hparams`, :func:`log_text`, :func:`log_stage_summary`, and readers.

Scalars are float32 summaries (what TensorBoard's default loader reads); ``gs://`` paths work.

Example:
    >>> import tempfile
    >>> logdir = tempfile.mkdtemp()
    >>> log_stage_summary(logdir, "prune", {"sparsity": 0.5})
    >>> read_scalars(logdir)["prune/summary"]["sparsity"]
    [(0, 0.5)]
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorboard.plugins.hparams import api as hp

from tfcompress._compat import flatten_layers, quantized_weights, train_summary_writer
from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import check_bool, check_int
from tfcompress.callbacks._events import (
    _check_log_dir,
    _check_tag,
    _join,
    _scalar,
    _text,
    _write,
    read_hparams,
    read_scalars,
    read_text,
)
from tfcompress.evaluation.report import BenchmarkReport
from tfcompress.pruning.masks import sparsity_logs
from tfcompress.pruning.report import find_wrappers, weight_label
from tfcompress.pruning.schedule import PruneLowMagnitude
from tfcompress.quantization.callbacks import quantizer_ranges

__all__ = [
    "CompressionTensorBoard",
    "log_hparams",
    "log_stage_summary",
    "log_text",
    "read_hparams",
    "read_scalars",
    "read_text",
]

_log = logging.getLogger("tfcompress")

# TFMOT is imported after keras_compat, which makes it use tf_keras (Keras 2).
from tfcompress._compat import quantize_wrapper  # noqa: E402

_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")
_UNSAFE_RUN_CHARS = re.compile(r"[^A-Za-z0-9_.\-+=@,]")
HParamValue = str | int | float | bool


# ---------------------------------------------------------------------- the callback


def _student_and_teacher(model: keras.Model) -> tuple[keras.Model, keras.Model | None]:
    """A distiller-like model (``.student`` and ``.teacher`` Keras models) -> its parts."""
    student = getattr(model, "student", None)
    teacher = getattr(model, "teacher", None)
    if isinstance(student, keras.Model) and isinstance(teacher, keras.Model):
        return student, teacher
    return model, None


class CompressionTensorBoard(keras.callbacks.TensorBoard):
    """Keras' ``TensorBoard`` plus compression summaries, for any ``model.fit``.

    At the end of every epoch, before Keras writes ``logs`` as ``epoch_<key>`` scalars of the
    ``train`` run, it adds the keys that are not already there (so the values of a
    :class:`~tfcompress.PruningCallback` or :class:`~tfcompress.QuantizationLogger` listed
    before it win, and nothing is written twice):

    - ``sparsity`` (zeros over all pruned weights) and ``sparsity/<layer path>``, measured on
      ``weight * mask`` of the model's pruning wrappers, through nested models and a
      Distiller's ``student`` (the same keys as :class:`~tfcompress.PruningCallback`);
    - ``quant/<layer>/min|max`` and ``quant/<layer>/<weight>/min|max`` from
      :func:`~tfcompress.quantizer_ranges` (of the student for a Distiller).

    A model without pruning or quantization gets nothing added (a plain ``TensorBoard``).
    The added keys also reach ``History`` and the callbacks listed after this one, as with
    :class:`~tfcompress.PruningCallback`. With ``weight_histograms`` it also writes, every
    epoch, a histogram ``weights/<layer>/<weight>`` of each pruned weight (after masking) and
    of each quantized layer's float weights. The Distiller's ``student_loss``,
    ``distillation_loss`` and ``feature_loss`` are Keras metrics, so they appear as
    ``epoch_student_loss``... without anything added here.

    Args:
        log_dir: directory of the event files (``train/`` and ``validation/`` runs).
        sparsity: add the sparsity keys.
        quantizer_ranges: add the quantizer range keys.
        weight_histograms: write histograms of the pruned/quantized weights.
        **tensorboard_kwargs: the arguments of ``keras.callbacks.TensorBoard``
            (``histogram_freq``, ``write_graph``, ``update_freq``, ``profile_batch``...).

    Raises:
        TypeError: ``log_dir`` is not a path, a flag is not a bool.

    Example:
        >>> pruned.fit(x, y, epochs=3, callbacks=[tfcompress.PruningCallback(),
        ...            CompressionTensorBoard("runs/prune")])  # doctest: +SKIP
        >>> read_scalars("runs/prune")["train"]["epoch_sparsity"][-1]  # doctest: +SKIP
        (2, 0.8)
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        sparsity: bool = True,
        quantizer_ranges: bool = True,
        weight_histograms: bool = False,
        **tensorboard_kwargs: Any,
    ) -> None:
        path = _check_log_dir(log_dir)
        self.sparsity = check_bool(sparsity, "sparsity")
        self.quantizer_ranges = check_bool(quantizer_ranges, "quantizer_ranges")
        self.weight_histograms = check_bool(weight_histograms, "weight_histograms")
        if "log_dir" in tensorboard_kwargs:
            raise TypeError("`log_dir` given twice; pass it once, as the first argument.")
        super().__init__(log_dir=path, **tensorboard_kwargs)
        self._wrappers: list[tuple[str, PruneLowMagnitude]] = []
        self._quant_model: keras.Model | None = None

    def set_model(self, model: keras.Model) -> None:
        check_model(model, "model")
        super().set_model(model)
        student, teacher = _student_and_teacher(model)
        wrappers = find_wrappers(model)
        if teacher is not None:
            teacher_layers = {id(layer) for layer in flatten_layers(teacher, include_self=True)}
            wrappers = [(p, w) for p, w in wrappers if id(w) not in teacher_layers]
        self._wrappers = wrappers
        self._quant_model = student
        _log.debug(
            "CompressionTensorBoard: model %r has %d pruning wrappers.", model.name, len(wrappers)
        )

    def compression_logs(self) -> dict[str, float]:
        """The sparsity and quantizer-range figures of the model now (what is added to logs).

        Example:
            >>> callback.compression_logs()["sparsity"]  # doctest: +SKIP
            0.5
        """
        out: dict[str, float] = {}
        if self.sparsity and self._wrappers:
            out.update(sparsity_logs(self._wrappers))
        if self.quantizer_ranges and self._quant_model is not None:
            out.update(quantizer_ranges(self._quant_model, "quant"))
        return out

    def _histograms(self) -> list[tuple[str, tf.Tensor]]:
        items: list[tuple[str, tf.Tensor]] = []
        for path, wrapper in self._wrappers:
            for weight, mask, _ in wrapper.pruning_vars:
                value = tf.convert_to_tensor(weight) * tf.cast(
                    tf.convert_to_tensor(mask), weight.dtype
                )
                items.append((f"weights/{path}/{weight_label(wrapper.layer, weight)}", value))
        if self._quant_model is not None:
            for layer in flatten_layers(self._quant_model, include_self=False, recursive=True):
                if not isinstance(layer, quantize_wrapper.QuantizeWrapper):
                    continue
                for weight, _, _ in quantized_weights(layer):
                    name = weight.name.split(":")[0].split("/")[-1]
                    items.append((f"weights/{layer.name}/{name}", tf.convert_to_tensor(weight)))
        return items

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            for key, value in self.compression_logs().items():
                logs.setdefault(key, value)
        super().on_epoch_end(epoch, logs)
        if self.weight_histograms:
            histograms = self._histograms()
            if histograms:
                with train_summary_writer(self).as_default(), tf.summary.record_if(True):
                    for tag, value in histograms:
                        tf.summary.histogram(tag, value, step=epoch)


# ---------------------------------------------------------------------- writing


def log_text(log_dir: str | os.PathLike, tag: str, markdown: str, step: int = 0) -> str:
    """Write ``markdown`` as a text summary (TensorBoard's Text tab renders Markdown).

    Args:
        log_dir: the run directory the event file goes to (created with its parents).
        tag: the summary tag, e.g. ``"report/benchmark"``.
        markdown: the text (Markdown tables render as tables).
        step: the step to record it at.

    Returns:
        The directory of the event file (``log_dir``).

    Raises:
        TypeError: ``log_dir`` not a path, ``tag``/``markdown`` not strings.
        ValueError: a tag TensorBoard would rename, a negative step.

    Example:
        >>> log_text("runs/x", "report/benchmark", report.to_markdown())  # doctest: +SKIP
        'runs/x'
    """
    path = _check_log_dir(log_dir)
    tag = _check_tag(tag, "tag")
    if not isinstance(markdown, str):
        raise TypeError(
            f"`markdown` must be a str, received {type(markdown).__name__}: {markdown!r:.80}; "
            "e.g. report.to_markdown()."
        )
    step = check_int(step, "step", minimum=0)
    _write(path, lambda: _text(tag, markdown, step))
    return path


def log_stage_summary(
    log_dir: str | os.PathLike, stage: str, scalars: Mapping[str, float], step: int = 0
) -> None:
    """Write the final figures of a pipeline stage as scalars of the run ``<stage>/summary``.

    Args:
        log_dir: the experiment's log directory.
        stage: the stage name (``"distill"``, ``"prune"``...): letters, digits, ``_.-``.
        scalars: tag -> number, e.g. ``{"test/auc": 0.71, "sparsity": 0.8, "seconds": 12.0}``;
            None values (an undefined metric, e.g. AUC on one class) are skipped. Tags are
            written exactly as given (``"test/recall@10"`` stays so); values as float32 (a
            value beyond its range logs a warning and shows as inf).
        step: the step to record them at.

    Raises:
        TypeError: ``log_dir`` not a path, ``scalars`` not a mapping or a value not a number.
        ValueError: a bad stage name or tag, a negative step.

    Example:
        >>> log_stage_summary("runs/x", "prune", {"sparsity": 0.8})  # doctest: +SKIP
    """
    path = _check_log_dir(log_dir)
    if not isinstance(stage, str) or not _SEGMENT.fullmatch(stage) or stage in (".", ".."):
        raise ValueError(
            f"`stage` must be a name of letters, digits, '_', '.' or '-' (one directory "
            f"level), received {stage!r}; e.g. 'prune'."
        )
    if not isinstance(scalars, Mapping):
        raise TypeError(
            f"`scalars` must be a mapping of tag -> number, received "
            f"{type(scalars).__name__}: {scalars!r:.80}."
        )
    values: dict[str, float] = {}
    for name, value in scalars.items():
        _check_tag(name, "scalars key")
        if value is None:
            _log.debug("log_stage_summary: %s/%s is None; not written.", stage, name)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"`scalars[{name!r}]` must be a real number, received "
                f"{type(value).__name__}: {value!r:.80}."
            )
        values[name] = float(value)
    step = check_int(step, "step", minimum=0)

    def body() -> None:
        for name, value in values.items():
            _scalar(name, value, step)

    _write(_join(path, stage, "summary"), body)


def _run_dir_name(name: str) -> str:
    safe = _UNSAFE_RUN_CHARS.sub("_", name).strip()
    return safe if safe and safe not in (".", "..") else f"_{safe or 'variant'}"


def _check_hparams(hparams: Any, report: BenchmarkReport) -> dict[str, dict[str, HParamValue]]:
    if hparams is None:
        return {}
    if not isinstance(hparams, Mapping):
        raise TypeError(
            "`hparams` must be a mapping of variant name -> {hparam name: value}, received "
            f"{type(hparams).__name__}: {hparams!r:.80}."
        )
    unknown = [name for name in hparams if name not in report.names]
    if unknown:
        raise ValueError(
            f"`hparams` names variants {unknown} that are not in the report; the report's "
            f"variants are {report.names}."
        )
    out: dict[str, dict[str, HParamValue]] = {}
    for variant, values in hparams.items():
        if not isinstance(values, Mapping):
            raise TypeError(
                f"`hparams[{variant!r}]` must be a mapping of hparam name -> value, received "
                f"{type(values).__name__}: {values!r:.80}."
            )
        checked: dict[str, HParamValue] = {}
        for key, value in values.items():
            if not isinstance(key, str) or not key:
                raise TypeError(
                    f"`hparams[{variant!r}]` keys must be non-empty strings, received {key!r}."
                )
            if isinstance(value, np.generic):
                value = value.item()
            if not isinstance(value, (str, int, float, bool)):
                raise TypeError(
                    f"`hparams[{variant!r}][{key!r}]` must be a str, int, float or bool "
                    f"(what the HParams dashboard can show), received "
                    f"{type(value).__name__}: {value!r:.80}. Log e.g. str(value) or one "
                    "hparam per element."
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(
                    f"`hparams[{variant!r}][{key!r}]` must be finite, received {value!r}."
                )
            checked[key] = value
        out[variant] = checked
    return out


def _domain(name: str, values: list[HParamValue]) -> hp.Discrete | None:
    kinds = {
        bool if isinstance(v, bool) else (float if isinstance(v, (int, float)) else str)
        for v in values
    }
    if len(kinds) != 1:
        _log.warning(
            "log_hparams: hparam %r mixes value types (%s); it gets no domain in the "
            "HParams config.",
            name,
            ", ".join(sorted(k.__name__ for k in kinds)),
        )
        return None
    (kind,) = kinds
    if kind is float and not all(type(v) is int for v in values):
        values = [float(v) for v in values]  # ints and floats: one float domain
    unique: list[HParamValue] = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return hp.Discrete(unique)


def _variant_scalars(
    report: BenchmarkReport, name: str, ratios: Mapping[str, Any]
) -> dict[str, float]:
    row = report.row(name)
    out: dict[str, float] = {}
    for metric, value in row.quality.items():
        if value is not None:
            out[f"quality/{metric}"] = float(value)
    for tag, value in (
        ("size/bytes", row.bytes),
        ("size/gzip_bytes", row.gzip_bytes),
        ("size/params", row.params),
        ("memory/peak_mb", row.peak_memory_mb),
    ):
        if value is not None:
            out[tag] = float(value)
    for batch, latency in sorted(row.latency_ms.items()):
        if latency.get("median") is not None:
            out[f"latency/b{batch}_ms"] = float(latency["median"])
    rat = ratios[name]
    for key in ("size_x", "gzip_size_x"):
        if rat[key] is not None:
            out[f"ratio/{key}"] = float(rat[key])
    for batch, speed in sorted(rat["speed_x"].items()):
        if speed is not None:
            out[f"ratio/speed_x_b{batch}"] = float(speed)
    return out


def log_hparams(
    log_dir: str | os.PathLike,
    report: BenchmarkReport,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    baseline: str | None = None,
) -> list[str]:
    """Write a benchmark report to TensorBoard's HParams dashboard, one session per variant.

    ``log_dir/`` gets the experiment config (every hparam with a ``Discrete`` domain of the
    values seen, every metric); ``log_dir/<variant>/`` gets the variant's hparams and, at
    step 0, the scalars ``quality/<metric>`` (None skipped), ``size/bytes``,
    ``size/gzip_bytes``, ``size/params``, ``memory/peak_mb`` (when measured),
    ``latency/b<batch>_ms`` (median), ``ratio/size_x``, ``ratio/gzip_size_x`` and
    ``ratio/speed_x_b<batch>`` (against ``baseline``), float32 scalars under the metric tags
    of the config, so the HParams dashboard shows them as metric columns of each session.
    Characters other than letters, digits and ``_.-+=@,`` in a variant name become ``_`` in
    its directory name.

    Args:
        log_dir: the experiment's log directory.
        report: the benchmark to show.
        hparams: variant name -> {hparam name: str/int/float/bool}; every variant also gets
            ``variant`` (its name) and ``format`` (its row's format) unless given here.
        baseline: the variant ratios are computed against (default: ``report.baseline``).

    Returns:
        The run directories written, in the report's order.

    Raises:
        TypeError: ``log_dir`` not a path, ``report`` not a BenchmarkReport, an hparam value
            that is not a str/int/float/bool.
        ValueError: a variant name (in ``hparams`` or ``baseline``) not in the report.

    Example:
        >>> runs = log_hparams("runs/x", report, {"int8": {"bits": 8}})  # doctest: +SKIP
        >>> read_hparams("runs/x")["int8"]["bits"]  # doctest: +SKIP
        8.0
    """
    path = _check_log_dir(log_dir)
    if not isinstance(report, BenchmarkReport):
        raise TypeError(
            f"`report` must be a tfcompress.evaluation.BenchmarkReport, received "
            f"{type(report).__name__}: {report!r:.80}; get one from tfcompress.benchmark(...)."
        )
    if baseline is not None and not isinstance(baseline, str):
        raise TypeError(f"`baseline` must be a variant name (str) or None, received {baseline!r}.")
    base = baseline if baseline is not None else report.baseline
    report.row(base)  # ValueError listing the report's names
    given = _check_hparams(hparams, report)
    ratios = report.ratios(base)

    dirs: dict[str, str] = {}
    for name in report.names:
        run = _run_dir_name(name)
        if run in dirs.values():
            raise ValueError(
                f"variant names {report.names} map to the same run directory {run!r}; rename "
                "the variants so that they differ in letters, digits or '_.-'."
            )
        dirs[name] = run

    sessions: dict[str, dict[str, HParamValue]] = {}
    scalars: dict[str, dict[str, float]] = {}
    for name in report.names:
        values: dict[str, HParamValue] = {"variant": name, "format": report.row(name).format}
        values.update(given.get(name, {}))
        sessions[name] = values
        scalars[name] = _variant_scalars(report, name, ratios)

    hparam_names: list[str] = []
    for values in sessions.values():
        hparam_names += [k for k in values if k not in hparam_names]
    config_hparams = [
        hp.HParam(key, _domain(key, [v[key] for v in sessions.values() if key in v]))
        for key in hparam_names
    ]
    metric_tags: list[str] = []
    for values in scalars.values():
        metric_tags += [k for k in values if k not in metric_tags]
    metrics = [hp.Metric(tag, display_name=tag) for tag in metric_tags]

    _write(path, lambda: hp.hparams_config(hparams=config_hparams, metrics=metrics))
    written = []
    for name in report.names:
        run_dir = _join(path, dirs[name])

        def body(name: str = name) -> None:
            hp.hparams(sessions[name], trial_id=name)
            for tag, value in scalars[name].items():
                _scalar(tag, value, 0)

        _write(run_dir, body)
        written.append(run_dir)
    _log.info("log_hparams: wrote %d variants to %s.", len(written), path)
    return written
