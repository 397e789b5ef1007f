"""Quantization-aware training that works on e-commerce models: :func:`quantize` (TFMOT
underneath, layer by layer; the per-layer policy: docs/quantization.md).

Example:
    >>> from tfcompress import data, models
    >>> task = data.load_task("ctr", n_samples=2_000)
    >>> qat = quantize(models.dcn(task.schema, size="tiny"))  # doctest: +SKIP
    >>> qat.compression_report["emb_user_id"].applied  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np

from tfcompress._compat import (
    attention_input_shapes,
    attention_kernel_attrs,
    is_graph_network,
    quantize_registry_entry,
    quantized_weights,
    reclass,
    set_variable_constraint,
)
from tfcompress._keras import check_model, keras, tf
from tfcompress._layers import CompressionReport, LayerDecision, LayerFilter, match_layers
from tfcompress._validation import check_functional
from tfcompress.models import layers as tfc_layers
from tfcompress.quantization import configs as qc
from tfcompress.quantization.composite import plan_custom, wrap_composite
from tfcompress.quantization.rebuild import copy_graph, rebuild_error, rebuild_objects
from tfcompress.quantization.registry import _HANDLERS, _handler_for, _Plan
from tfcompress.quantization.saving import (
    is_quantized,
    load_quantized,
    quantize_scope,
    strip_quantization,
)

# TFMOT is imported after keras_compat, which makes it use tf_keras (Keras 2).
_log = logging.getLogger("tfcompress")

import tensorflow_model_optimization as tfmot  # noqa: E402

from tfcompress._compat import (  # noqa: E402
    default_8bit_quantize_registry,
    quantize_layer,
    quantize_wrapper,
)
from tfcompress._compat import quantize_annotate as _quantize_annotate  # noqa: E402

#: the wrapper quantize_annotate_layer returns (TFMOT 0.8.1, not exported; see tfcompress._compat)
QuantizeAnnotate = _quantize_annotate.QuantizeAnnotate

QuantizationScheme = qc.QuantizationScheme
SCHEMES = qc.SCHEMES

__all__ = [
    "SCHEMES",
    "QuantizationScheme",
    "is_quantized",
    "load_quantized",
    "quantize",
    "quantize_scope",
    "strip_quantization",
]

_qk = tfmot.quantization.keras

#: tfcompress layers without weights: they run as they are inside a QAT model.
_PASS_THROUGH = (
    tfc_layers.MaskedMean,
    tfc_layers.PaddingMask,
    tfc_layers.TokenAt,
    tfc_layers.L2Normalize,
    tfc_layers.Catalog,
    tfc_layers.CatalogLogits,
)
_WEIGHT = "int8 weights (per tensor)"


def _activation_name(activation: Any) -> str:
    return getattr(activation, "__name__", type(activation).__name__)


def _has_float_weights(layer: Any) -> bool:
    return any(w.dtype.is_floating for w in layer.trainable_weights)


def _plan_nested_model(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    return _Plan(
        "float",
        reason="nested subclassed (or unbuilt) model: TFMOT rebuilds functional and "
        "Sequential models only; build it with the functional API to quantize it",
        strict_ok=False,
    )


def _plan_embedding(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    g = qc.embedding_granularity(scheme, layer.output_dim)
    cfg = qc.LayerQuantizeConfig(
        table_attr="embeddings",
        quantize_output=scheme.activations,
        granularity=g,
        weight_bits=scheme.weight_bits,
    )
    per = "per row" if g == "row" else "per table"
    return _Plan("annotate", f"int8 table ({per}){_out(scheme)}; ids not quantized", config=cfg)


def _plan_attention(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    cfg = qc.LayerQuantizeConfig(
        attention_kernel_attrs(), quantize_output=scheme.activations, weight_bits=scheme.weight_bits
    )
    return _Plan(
        "multi",
        f"int8 query/key/value/output kernels (per tensor){_out(scheme)}; softmax float",
        config=cfg,
    )


def _plan_dense(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    acts = scheme.activations
    fused = acts and _activation_name(layer.activation) in qc.SUPPORTED_ACTIVATIONS
    cfg = qc.LayerQuantizeConfig(
        ["kernel"],
        ["activation"] if fused else [],
        quantize_output=acts and not fused,
        weight_bits=scheme.weight_bits,
    )
    return _Plan(
        "annotate", f"{_WEIGHT} on kernel{' + int8 activation' if acts else ''}", config=cfg
    )


def _plan_cross(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    names = ["kernel"] + (["kernel_v"] if layer.kernel_v is not None else [])
    cfg = qc.LayerQuantizeConfig(
        names, quantize_output=scheme.activations, weight_bits=scheme.weight_bits
    )
    return _Plan("annotate", f"{_WEIGHT} on {', '.join(names)}{_out(scheme)}", config=cfg)


def _plan_position(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    cfg = qc.LayerQuantizeConfig(
        ["embeddings"], quantize_output=scheme.activations, weight_bits=scheme.weight_bits
    )
    return _Plan("annotate", f"{_WEIGHT} on the position table{_out(scheme)}", config=cfg)


def _plan_layer_norm(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    return _Plan(
        "float",
        reason="kept float: TFMOT has no LayerNormalization config (mean/variance need "
        "float precision); the int8 export calibrates its ops",
        strict_ok=False,
    )


def _plan_pass_through(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    return _Plan(
        "pass", reason="pass-through: no weights; its int8 ranges are calibrated at export"
    )


_HANDLERS.update(
    {
        keras.Model: _plan_nested_model,
        keras.layers.Embedding: _plan_embedding,
        keras.layers.MultiHeadAttention: _plan_attention,
        keras.layers.Dense: _plan_dense,
        keras.layers.EinsumDense: _plan_dense,
        tfc_layers.Cross: _plan_cross,
        tfc_layers.PositionEmbedding: _plan_position,
        keras.layers.LayerNormalization: _plan_layer_norm,
        **dict.fromkeys(_PASS_THROUGH, _plan_pass_through),
    }
)


def _out(scheme: QuantizationScheme) -> str:
    return " + int8 output" if scheme.activations else ""


def _plan(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    """How ``layer`` is quantized: its class's registered handler, else TFMOT's registry."""
    handler = _handler_for(layer)
    if handler is not None:
        return handler(layer, scheme, registry)
    builtin = type(layer).__module__.startswith("tf_keras.")
    if builtin and registry.supports(layer) and _has_float_weights(layer):
        return _Plan("registry", "TFMOT default 8-bit config")  # Conv2D, RNNs...
    if builtin and registry.supports(layer):
        return _plan_weightless(layer, scheme, registry)
    if builtin and not _has_float_weights(layer):
        return _Plan(
            "pass",
            reason=f"pass-through: TFMOT has no config for {type(layer).__name__}, which has no "
            "weights; runs in float",
        )
    if builtin:
        return _Plan(
            "float",
            reason=f"kept float: TFMOT has no 8-bit config for {type(layer).__name__}",
            strict_ok=False,
        )
    custom = plan_custom(layer, scheme)  # through its sublayers; weightless; known tables
    if custom is not None:
        return custom
    return _Plan(
        "float",
        reason=f"kept float: unknown layer class {type(layer).__module__}."
        f"{type(layer).__name__} (no QuantizeConfig); its inputs and outputs stay float",
        strict_ok=False,
    )


def _plan_weightless(layer: Any, scheme: QuantizationScheme, registry: Any) -> _Plan:
    """A built-in layer TFMOT supports that has no float weights (Add, Activation, ...)."""
    activation = getattr(layer, "activation", None)
    name = None if activation is None else _activation_name(activation)
    if name is not None and name not in qc.SUPPORTED_ACTIVATIONS:
        return _Plan("pass", reason=f"activation {name!r} has no TFMOT quantizer; runs in float")
    if not scheme.activations:  # annotated anyway, else TFMOT adds an output quantizer
        return _Plan(
            "annotate",
            "no-op (weights-only scheme: activations stay float)",
            config=qc.LayerQuantizeConfig(),
        )
    if isinstance(layer, keras.layers.Activation):  # TFLite fixes sigmoid/softmax ranges
        quantize_output = name in ("relu", "relu6", "swish", "gelu")
    else:
        info = quantize_registry_entry(registry, layer)
        quantize_output = bool(getattr(info, "quantize_output", False))
    cfg = qc.LayerQuantizeConfig(quantize_output=quantize_output)
    detail = "int8 output range" if quantize_output else "no-op (keeps its input's range)"
    if name in ("sigmoid", "softmax", "tanh"):
        detail = f"no output quantizer (TFLite fixes the {name} output range)"
    return _Plan("annotate", detail, config=cfg)


def _skip_names(skip: Any) -> Any:
    """Expand SensitivityReport entries (anything with ``most_sensitive()``) into names."""
    entries = list(skip) if isinstance(skip, (list, tuple, set, frozenset)) else [skip]
    out: list[Any] = []
    for entry in entries:
        if hasattr(entry, "most_sensitive") and callable(entry.most_sensitive):
            out.extend(entry.most_sensitive())
        else:
            out.append(entry)
    return out


def quantize(
    model: keras.Model,
    *,
    layers: LayerFilter = None,
    skip: LayerFilter = None,
    scheme: str | QuantizationScheme = "int8",
    strict: bool = False,
    preserve_sparsity: bool | None = None,
) -> keras.Model:
    """Return a quantization-aware copy of ``model``, ready to compile and fit.

    Weights are copied; ``model`` is left untouched. See the module docstring for what each
    layer gets. Call it inside the strategy scope the model was built in (it enters the
    model's own strategy scope when called outside any).

    Args:
        model: a built functional or Sequential tf_keras model.
        layers: layer filter (name, regex, class, callable or a list) of the layers to
            quantize; default: all.
        skip: layer filter of layers to keep float, or a
            :class:`~tfcompress.evaluation.layer_sensitivity.SensitivityReport` (its
            ``most_sensitive()``
            layers), or a list mixing both.
        scheme: ``"int8"`` (weights and activations, exports to full-integer TFLite) or
            ``"int8_weights"`` (weights only), or a :class:`QuantizationScheme`.
        strict: raise instead of leaving a selected layer float (layers with float weights
            and no config, unknown layer classes, nested models).
        preserve_sparsity: keep the zeros of pruned weights at zero while QAT fine-tunes
            (pruning-preserving QAT): each trainable weight's zero pattern becomes a constraint
            that the optimizer applies after every update, so a pruned model stays as sparse
            through QAT and its int8 export. ``None`` (default) turns it on for weights that
            are at least 30% exact zeros (trained dense weights are never that), i.e. for
            models from :func:`tfcompress.pruning.strip`; ``False`` lets QAT fill them in.

    Returns:
        The QAT model, with ``compression_report`` (technique ``"quantize"``): one
        :class:`~tfcompress._layers.LayerDecision` per layer of ``model``.

    Raises:
        TypeError: ``model`` is not a tf_keras model (e.g. a Keras 3 model); bad argument types.
        ValueError: unknown scheme, a filter naming no layer, a subclassed or unbuilt model,
            nothing left to quantize, or (``strict=True``) a selected layer left float.

    Example:
        >>> qat = quantize(model, skip=keras.layers.LayerNormalization)  # doctest: +SKIP
        >>> qat.compile("adam", "binary_crossentropy")  # doctest: +SKIP
    """
    check_model(model, "model")
    scheme = qc.resolve_scheme(scheme)
    if not isinstance(strict, bool):
        raise TypeError(f"`strict` must be a bool, received {strict!r}.")
    if preserve_sparsity is not None and not isinstance(preserve_sparsity, bool):
        raise TypeError(
            f"quantize: `preserve_sparsity` must be True, False or None (auto), received "
            f"{preserve_sparsity!r}."
        )
    check_functional(model, "quantize", built=True)
    selected = None if layers is None else match_layers(model, layers, argument="layers")
    skipped: set[str] = set()
    if skip is not None:
        names = _skip_names(skip)
        skipped = match_layers(model, names, argument="skip") if names else set()
    strategy = model.distribute_strategy
    scope = (
        strategy.scope()
        if not tf.distribute.has_strategy() and strategy is not tf.distribute.get_strategy()
        else contextlib.nullcontext()
    )
    with scope:
        qat, decisions, failures = _quantize_graph(model, selected, skipped, scheme, strict)
    if qat is None:
        raise ValueError(
            f"quantize: no layer of model {model.name!r} can be quantized with the selection "
            f"layers={layers!r}, skip={skip!r}; select layers with weights (Dense, Embedding, "
            "Cross, MultiHeadAttention...)."
        )
    kept = _keep_zeros(qat, preserve_sparsity)
    qat.compression_report = CompressionReport(  # type: ignore[attr-defined]
        "quantize",
        tuple(decisions),
        {
            "scheme": scheme.get_config(),
            "strict": strict,
            "model": model.name,
            "sparsity_preserved": kept,
        },
    )
    _log.info(
        "quantize %s: %d layer(s) quantized, %d float (scheme %s)",
        model.name,
        sum(d.applied for d in decisions),
        sum(not d.applied for d in decisions),
        scheme.name,
    )
    return qat


def _is_graph_model(layer: Any) -> bool:
    return (
        isinstance(layer, keras.Model)
        and (isinstance(layer, keras.Sequential) or is_graph_network(layer))
        and layer.built
    )


def _quantize_graph(
    model: keras.Model,
    selected: set[str] | None,
    skipped: set[str],
    scheme: QuantizationScheme,
    strict: bool,
    prefix: str = "",
) -> tuple[keras.Model | None, list[LayerDecision], list[str]]:
    """QAT copy of a functional/Sequential ``model`` (None: nothing in it to quantize).

    ``selected`` (None: all) and ``skipped`` hold layer paths (``"tower/dense"``); ``prefix``
    is this model's path prefix. A nested functional or Sequential model is quantized on its
    own, recursively, and called in its place: TFMOT only wraps top-level layers.
    """
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    plans, nested, decisions, failures = _plan_layers(
        model, selected, skipped, scheme, strict, prefix, registry
    )
    if strict and failures and not prefix:
        raise ValueError(
            f"quantize(strict=True): {len(failures)} selected layer(s) of model {model.name!r} "
            "would stay float: " + "; ".join(failures) + ". Pass them in `skip` to keep them "
            "float knowingly, or use strict=False."
        )
    if not nested and not any(
        p.kind in ("annotate", "registry", "multi", "composite") for p in plans.values()
    ):
        return None, decisions, failures
    qat = _rebuild_for_qat(model, _annotator(plans, nested, registry), scheme)
    _init_weight_ranges(qat)
    _own_wrappers(qat)
    return qat, decisions, failures


def _plan_layers(
    model: keras.Model,
    selected: set[str] | None,
    skipped: set[str],
    scheme: QuantizationScheme,
    strict: bool,
    prefix: str,
    registry: Any,
) -> tuple[dict[str, _Plan], dict[str, keras.Model], list[LayerDecision], list[str]]:
    """Step 1 of `_quantize_graph`: a plan per top-level layer, nested models quantized.

    Returns (plans by layer name, quantized nested models by layer name, decisions, the
    selected layers that would stay float).
    """
    decisions: list[LayerDecision] = []
    failures: list[str] = []
    plans: dict[str, _Plan] = {}
    nested: dict[str, keras.Model] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path, cls = prefix + layer.name, type(layer).__name__
        if path in skipped:
            decisions.append(LayerDecision(path, cls, False, reason="in `skip`"))
            continue
        if _is_graph_model(layer):  # a tower: its own layers are selected by path
            inner = _quantize_nested(
                layer, path, selected, skipped, scheme, strict, decisions, failures
            )
            if inner is not None:
                nested[layer.name] = inner
            continue
        if selected is not None and path not in selected:
            decisions.append(LayerDecision(path, cls, False, reason="not in `layers`"))
            continue
        plan = _plan(layer, scheme, registry)
        plans[layer.name] = plan
        applied = plan.kind in ("annotate", "registry", "multi", "composite")
        decisions.append(LayerDecision(path, cls, applied, plan.detail, plan.reason))
        if not plan.strict_ok:
            failures.append(f"{path} ({cls}): {plan.reason}")
    return plans, nested, decisions, failures


def _quantize_nested(
    layer: keras.Model,
    path: str,
    selected: set[str] | None,
    skipped: set[str],
    scheme: QuantizationScheme,
    strict: bool,
    decisions: list[LayerDecision],
    failures: list[str],
) -> keras.Model | None:
    """Quantize the nested model ``layer`` on its own; appends its decisions and failures."""
    cls = type(layer).__name__
    inner_selected = None if selected is None or path in selected else selected
    inner, inner_decisions, inner_failures = _quantize_graph(
        layer, inner_selected, skipped, scheme, strict, prefix=path + "/"
    )
    depth = path.count("/") + 1
    direct = sum(d.applied and d.layer.count("/") == depth for d in inner_decisions)
    if inner is None:
        decisions.append(
            LayerDecision(
                path,
                cls,
                False,
                reason="nested model: none of its layers is selected and quantizable",
            )
        )
    else:
        decisions.append(
            LayerDecision(
                path,
                cls,
                True,
                f"nested model, quantized layer by layer ({direct} of its layers; see its entries)",
            )
        )
    decisions.extend(inner_decisions)
    failures.extend(inner_failures)
    return inner


def _annotator(plans: dict[str, _Plan], nested: dict[str, keras.Model], registry: Any) -> Any:
    """Step 2 of `_quantize_graph`: the clone function that annotates each layer by its plan."""

    def annotate(layer: Any) -> Any:
        if layer.name in nested:
            return nested[layer.name]
        plan = plans.get(layer.name)
        if plan is None or plan.kind in ("pass", "float"):
            if not isinstance(layer, keras.Model) and registry.supports(layer):
                # a no-op annotation: otherwise TFMOT adds its own output quantizer (range
                # [-6, 6]) to a layer that feeds an annotated one
                return _qk.quantize_annotate_layer(layer, qc.LayerQuantizeConfig())
            return layer
        if plan.kind == "multi":  # wrap a copy: the wrapper rewires the wrapped layer's kernels
            copy = type(layer).from_config(layer.get_config())
            shapes = attention_input_shapes(layer)
            copy(*(tf.zeros([1, *s[1:]]) for s in shapes))  # creates the projection weights
            copy.set_weights(layer.get_weights())
            return qc.MultiInputQuantizeWrapper(copy, plan.config, name_prefix="")
        if plan.kind == "composite":
            return wrap_composite(layer, plan.config)
        return _qk.quantize_annotate_layer(layer, plan.config)

    return annotate


def _rebuild_for_qat(model: keras.Model, annotate: Any, scheme: QuantizationScheme) -> keras.Model:
    """Step 3 of `_quantize_graph`: clone ``model``, annotate the clone, apply TFMOT's QAT."""
    objects = rebuild_objects(model)
    try:
        with quantize_scope(objects):
            # annotate a copy: annotation wires the layers into a new graph, and the user's
            # model must not gain inbound nodes (its layers' `.output` would become ambiguous)
            base = copy_graph(model)
            annotated = keras.models.clone_model(base, clone_function=annotate)
            # TFMOT hook (QuantizeAnnotate, a private path in TFMOT 0.8.1): quantize_apply needs
            # one annotated top-level layer; with only quantized towers there is none
            if any(isinstance(layer, QuantizeAnnotate) for layer in annotated.layers):
                return _qk.quantize_apply(
                    annotated,
                    scheme=qc.IntegerSafeScheme(scheme.activations),
                    quantized_layer_name_prefix="",  # same layer and output names as `model`
                )
            return annotated  # only nested models are quantized (e.g. two towers)
    except Exception as e:  # noqa: BLE001 - every TFMOT/Keras failure, re-raised with the layer
        raise rebuild_error(model, e, objects) from e


def _own_wrappers(qat: keras.Model) -> None:
    """Step 4 of `_quantize_graph`: TFMOT's layers become ours (same state, see configs)."""
    for layer in qat.layers:
        if type(layer) is quantize_layer.QuantizeLayer:
            reclass(layer, qc.QuantizeLayer)  # same state; builds once when loaded
        if type(layer) is quantize_wrapper.QuantizeWrapperV2:
            reclass(layer, qc.QATWrapper)  # same state; saves/loads and keeps masks (see there)
            layer.supports_masking = bool(getattr(layer.layer, "supports_masking", False))
        if isinstance(layer, quantize_wrapper.QuantizeWrapper):
            qc.own_trainable_weights(layer)


def _init_weight_ranges(qat: keras.Model) -> None:
    """Start every weight quantizer at its weight's range.

    TFMOT's ``LastValueQuantizer`` starts at [-6, 6] and only learns the range at the first
    training step, so a QAT model evaluated or exported before training would quantize its
    kernels to a handful of levels.
    """
    for layer in qat.layers:
        for weight, quantizer, variables in quantized_weights(layer):
            if "min_var" not in variables:
                continue
            values = weight.numpy()
            if getattr(quantizer, "symmetric", True):
                peak = float(np.abs(values).max())
                lo, hi = -peak, peak
            else:
                lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
            variables["min_var"].assign(tf.fill(variables["min_var"].shape, lo))
            variables["max_var"].assign(tf.fill(variables["max_var"].shape, hi))


#: a weight with at least this share of exact zeros counts as pruned (preserve_sparsity=None)
PRUNED_ZERO_SHARE = 0.3


def _keep_zeros(qat: keras.Model, preserve: bool | None) -> dict[str, float]:
    """Constrain the zeros of pruned weights to stay zero; returns {weight: zero share}."""
    if preserve is False:
        return {}
    kept: dict[str, float] = {}
    for weight in qat.trainable_weights:
        if weight.shape.rank is None or weight.shape.rank < 2:
            continue  # biases, quantizer ranges, norms
        value = weight.numpy()
        share = float(np.mean(value == 0))
        if share == 0 or (preserve is None and share < PRUNED_ZERO_SHARE):
            continue
        mask = tf.constant((value != 0).astype(value.dtype))

        def constraint(w: Any, mask: Any = mask) -> Any:
            return w * tf.cast(mask, w.dtype)

        for component in getattr(weight, "values", (weight,)):
            set_variable_constraint(component, constraint)  # applied after each update
        kept[weight.name] = round(share, 6)
    if kept:
        _log.info("quantize: keeping the zeros of %d pruned weight(s) through QAT", len(kept))
    return kept
