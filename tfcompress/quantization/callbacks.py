"""Callbacks and training helpers for QAT: :class:`QuantizationLogger` (quantizer ranges in
``logs``) and :func:`fit_then_quantize` (float epochs, then QAT, epochs numbered on).

Example:
    >>> qat, hist = fit_then_quantize(model, task.train, float_epochs=4, qat_epochs=2,
    ...                               validation_data=task.validation)  # doctest: +SKIP
    >>> hist["qat"].history["quant/logits/max"]  # doctest: +SKIP
    [3.1, 3.2]
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tfcompress._compat import (
    activation_quantizer_vars,
    flatten_layers,
    output_quantizer_vars,
    quantized_weights,
)
from tfcompress._keras import check_model, keras
from tfcompress.quantization import configs as qc
from tfcompress.quantization.qat import is_quantized, quantize

# TFMOT is imported after keras_compat, which makes it use tf_keras (Keras 2).
_log = logging.getLogger("tfcompress")

from tfcompress._compat import quantize_layer, quantize_wrapper  # noqa: E402

__all__ = ["QuantizationLogger", "fit_then_quantize", "quantizer_ranges"]


def _range(variables: Any) -> tuple[float, float] | None:
    if not variables or "min_var" not in variables:
        return None
    lo = np.asarray(variables["min_var"].numpy()).min()
    hi = np.asarray(variables["max_var"].numpy()).max()
    return float(lo), float(hi)


def quantizer_ranges(model: keras.Model, prefix: str = "quant") -> dict[str, float]:
    """Current range of every quantizer of a QAT model, flat (for logs and TensorBoard).

    Keys: ``{prefix}/<layer>/min|max`` (the layer's output or activation range, or an input
    quantizer's range) and ``{prefix}/<layer>/<weight>/min|max`` (weight ranges; for tables
    quantized per row, the largest absolute value, i.e. the widest row's range).

    Example:
        >>> sorted(quantizer_ranges(qat))[:2]  # doctest: +SKIP
        ['quant/quant_cross_0/kernel/max', 'quant/quant_cross_0/kernel/min']
    """
    check_model(model, "model")
    out: dict[str, float] = {}

    def put(key: str, rng: tuple[float, float] | None) -> None:
        if rng is not None:
            out[f"{key}/min"], out[f"{key}/max"] = rng

    for layer in flatten_layers(model, include_self=False, recursive=True):
        base = f"{prefix}/{layer.name}"
        if isinstance(layer, quantize_layer.QuantizeLayer):
            put(base, _range(getattr(layer, "quantizer_vars", None)))
            continue
        if not isinstance(layer, quantize_wrapper.QuantizeWrapper):
            continue
        rng = _range(output_quantizer_vars(layer))
        for variables in activation_quantizer_vars(layer):
            rng = rng or _range(variables)
        put(base, rng)
        for weight, quantizer, variables in quantized_weights(layer):
            name = weight.name.split(":")[0].split("/")[-1]
            wr = _range(variables)
            if wr is None and isinstance(quantizer, qc.RowQuantizer):
                peak = float(np.abs(weight.numpy()).max())
                wr = (-peak, peak)
            put(f"{base}/{name}", wr)
    return out


class QuantizationLogger(keras.callbacks.Callback):
    """Publishes :func:`quantizer_ranges` into ``logs`` at the end of every epoch.

    Put it before ``TensorBoard`` in the callbacks list so TensorBoard writes the ranges;
    ``History`` always records them.

    Args:
        prefix: key prefix (``"quant"``).

    Example:
        >>> qat.fit(train, epochs=2, callbacks=[QuantizationLogger()])  # doctest: +SKIP
    """

    def __init__(self, prefix: str = "quant") -> None:
        super().__init__()
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"`prefix` must be a non-empty string, received {prefix!r}.")
        self.prefix = prefix

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not is_quantized(self.model):
            _log.warning(
                "QuantizationLogger: model %r has no quantizers; nothing will be logged. Use "
                "it with the model returned by tfcompress.quantize().",
                self.model.name,
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs.update(quantizer_ranges(self.model, self.prefix))


def fit_then_quantize(
    model: keras.Model,
    x: Any = None,
    *,
    float_epochs: int,
    qat_epochs: int,
    quantize_kwargs: dict[str, Any] | None = None,
    learning_rate: float | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    **fit_kwargs: Any,
) -> tuple[keras.Model, dict[str, keras.callbacks.History | None]]:
    """Train ``model`` in float, then quantize it and continue with QAT (the two-phase fit).

    ``model`` must be compiled. The QAT model is compiled like ``model`` (same loss and
    metrics, a fresh optimizer from the same config, ``learning_rate`` if given) and trained
    from epoch ``float_epochs`` on with :class:`QuantizationLogger` added.

    Args:
        model: a compiled functional/Sequential model.
        x: training data (anything ``model.fit`` takes).
        float_epochs: epochs of float training first (>= 0).
        qat_epochs: epochs of QAT afterwards (>= 1).
        quantize_kwargs: arguments of :func:`quantize` (``layers``, ``skip``, ``scheme``...).
        learning_rate: learning rate of the QAT phase (default: the optimizer's own).
        callbacks: callbacks of both phases.
        **fit_kwargs: passed to both ``fit`` calls (``validation_data``, ``verbose``...).

    Returns:
        ``(qat_model, {"float": History or None, "qat": History})``.

    Raises:
        ValueError: ``model`` not compiled, bad epochs or learning rate.

    Example:
        >>> qat, hist = fit_then_quantize(
        ...     model, train, float_epochs=3, qat_epochs=1)  # doctest: +SKIP
    """
    check_model(model, "model")
    for value, name, low in ((float_epochs, "float_epochs", 0), (qat_epochs, "qat_epochs", 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}, received {value!r}.")
    if learning_rate is not None and (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not learning_rate > 0
    ):
        raise ValueError(f"`learning_rate` must be a float > 0, received {learning_rate!r}.")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled_loss", None):
        raise ValueError(
            f"fit_then_quantize: model {model.name!r} is not compiled; call model.compile(...) "
            "(or tfcompress.models.compile_for_task) first."
        )
    for key in ("epochs", "initial_epoch"):
        if key in fit_kwargs:
            raise ValueError(f"fit_then_quantize: pass float_epochs/qat_epochs instead of `{key}`.")
    callbacks = list(callbacks or [])
    first = None
    if float_epochs:
        first = model.fit(x, epochs=int(float_epochs), callbacks=callbacks, **fit_kwargs)
    qat = quantize(model, **(quantize_kwargs or {}))
    with model.distribute_strategy.scope():
        qat.compile_from_config(model.get_compile_config())
        if learning_rate is not None:
            keras.backend.set_value(qat.optimizer.learning_rate, float(learning_rate))
    second = qat.fit(
        x,
        epochs=int(float_epochs + qat_epochs),
        initial_epoch=int(float_epochs),
        callbacks=[QuantizationLogger(), *callbacks],
        **fit_kwargs,
    )
    return qat, {"float": first, "qat": second}
