"""TFMOT building blocks behind :func:`tfcompress.quantize`: the scheme, the int8 row quantizer,
the layer configs and wrappers (what each is for: docs/quantization.md).

Example:
    >>> resolve_scheme("int8").activations
    True
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfcompress._compat import (
    attention_input_shapes,
    attention_projections,
    build_attention_from_signature,
    call_expects_mask,
    quantized_weights,
    set_own_trainable_weights,
)
from tfcompress._keras import keras, tf
from tfcompress.quantization.embedding import (
    check_granularity,
    fake_quantize_rows,
    resolve_granularity,
)

# TFMOT is imported after keras_compat, which makes it use tf_keras (Keras 2).
__all__ = [
    "SCHEMES",
    "ActivationQuantizer",
    "IntegerSafeScheme",
    "LayerQuantizeConfig",
    "MultiInputQuantizeWrapper",
    "QATWrapper",
    "QuantizationScheme",
    "QuantizeLayer",
    "RowQuantizer",
    "custom_objects",
    "own_trainable_weights",
    "resolve_scheme",
]

import tensorflow_model_optimization as tfmot  # noqa: E402

from tfcompress._compat import default_8bit_quantize_layout_transform as _layout  # noqa: E402
from tfcompress._compat import default_8bit_quantize_scheme as _scheme  # noqa: E402
from tfcompress._compat import default_8bit_transforms as _transforms  # noqa: E402
from tfcompress._compat import (  # noqa: E402
    model_transformer,
    quantize_layer,
    quantize_utils,
    quantize_wrapper,
)

_qk = tfmot.quantization.keras


#: Activations ``QuantizeAwareActivation`` (TFMOT) can fake-quantize inside a layer.
SUPPORTED_ACTIVATIONS = frozenset({"linear", "relu", "swish", "gelu", "softmax", "sigmoid", "tanh"})


@dataclasses.dataclass(frozen=True)
class QuantizationScheme:
    """How :func:`tfcompress.quantize` fake-quantizes a model.

    Attributes:
        name: the scheme's name (``"int8"``, ``"int8_weights"``).
        activations: also fake-quantize activations (layer outputs and float model inputs) to
            int8, so the model converts to a full-integer TFLite model (``quantization="int8"``).
            False: weights only, for dynamic-range serving (``quantization="dynamic"``).
        weight_bits: bits of the weight quantizers (8).
        embedding_granularity: scale granularity of embedding tables: ``"row"``, ``"tensor"``
            or ``"auto"`` (per row when rows have >= 32 values, else per table).
        description: one line for reports.
    """

    name: str
    activations: bool
    weight_bits: int = 8
    embedding_granularity: str = "auto"
    description: str = ""

    def get_config(self) -> dict[str, Any]:
        """The scheme as a JSON-ready dict (recorded in the report's settings)."""
        return dataclasses.asdict(self)

    def weight_quantizer(self) -> Any:
        return _qk.quantizers.LastValueQuantizer(
            num_bits=self.weight_bits, per_axis=False, symmetric=True, narrow_range=True
        )

    @staticmethod
    def activation_quantizer() -> Any:
        return ActivationQuantizer()


SCHEMES: dict[str, QuantizationScheme] = {
    "int8": QuantizationScheme(
        "int8",
        activations=True,
        description="int8 weights (per tensor, embeddings per row) + int8 activations "
        "(TFMOT default 8-bit scheme); export with quantization='int8'",
    ),
    "int8_weights": QuantizationScheme(
        "int8_weights",
        activations=False,
        description="int8 weights only (activations float); export with quantization='dynamic'",
    ),
}


def resolve_scheme(scheme: object) -> QuantizationScheme:
    """Return the :class:`QuantizationScheme` named ``scheme`` (or ``scheme`` itself).

    Raises:
        TypeError: ``scheme`` is neither a string nor a QuantizationScheme.
        ValueError: unknown name; the message lists the valid ones.

    Example:
        >>> resolve_scheme("int8_weights").activations
        False
    """
    if isinstance(scheme, QuantizationScheme):
        return scheme
    if not isinstance(scheme, str):
        raise TypeError(
            f"`scheme` must be a string or a QuantizationScheme, received "
            f"{type(scheme).__name__}: {scheme!r}. Valid schemes: {sorted(SCHEMES)}."
        )
    key = scheme.lower()
    if key not in SCHEMES:
        raise ValueError(
            f"`scheme` must be one of {sorted(SCHEMES)}; received {scheme!r}. 'int8' quantizes "
            "weights and activations, 'int8_weights' only weights."
        )
    return SCHEMES[key]


def embedding_granularity(scheme: QuantizationScheme, output_dim: int) -> str:
    """The granularity an embedding of width ``output_dim`` gets under ``scheme`` (the same
    rule as ``export_tflite``'s, so tables export on the grid they trained on)."""
    check_granularity(scheme.embedding_granularity, "embedding_granularity", allow_auto=True)
    return resolve_granularity(scheme.embedding_granularity, output_dim)


class RowQuantizer(_qk.quantizers.Quantizer):
    """Symmetric int8 fake-quantization of a 2-D table, one scale per row or per table.

    Stateless (the scales are recomputed from the current table at every step, like TFMOT's
    ``LastValueQuantizer``); gradients pass straight through.
    """

    def __init__(self, granularity: str = "row") -> None:
        self.granularity = check_granularity(granularity)

    def build(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        return {}

    def __call__(self, inputs: tf.Tensor, training: Any, weights: Any, **kwargs: Any) -> Any:
        return fake_quantize_rows(inputs, self.granularity)

    def get_config(self) -> dict[str, Any]:
        return {"granularity": self.granularity}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RowQuantizer) and other.granularity == self.granularity

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


class ActivationQuantizer(_qk.quantizers.MovingAverageQuantizer):
    """TFMOT's moving-average int8 activation quantizer, started at the first batch's range.

    TFMOT starts every activation range at [-6, 6] and moves it with an EMA of decay 0.999,
    so a short QAT fine-tune (a few hundred steps) keeps ranges near [-6, 6]: an embedding
    output of magnitude 0.05 then falls in one or two int8 steps. Here the first training
    batch sets the range, and the EMA takes over from there.

    Args:
        ema_decay: decay of the moving average of the batch ranges.
    """

    def __init__(self, ema_decay: float = 0.999, **kwargs: Any) -> None:
        kwargs.setdefault("num_bits", 8)
        kwargs.setdefault("per_axis", False)
        kwargs.setdefault("symmetric", False)
        kwargs.setdefault("narrow_range", False)
        super().__init__(**kwargs)
        self.ema_decay = float(ema_decay)

    def build(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        variables = super().build(tensor_shape, name, layer)
        variables["seen"] = layer.add_weight(
            name + "_seen",
            initializer=keras.initializers.Constant(0.0),
            trainable=False,
            shape=(),
        )
        return variables

    def __call__(self, inputs: tf.Tensor, training: Any, weights: Any, **kwargs: Any) -> Any:
        lo, hi = weights["min_var"], weights["max_var"]
        if not training:
            return tf.quantization.fake_quant_with_min_max_vars(
                inputs, lo, hi, num_bits=self.num_bits, narrow_range=self.narrow_range
            )
        seen = weights["seen"]
        decay = tf.where(seen > 0.5, self.ema_decay, 0.0)
        batch_lo = tf.minimum(tf.reduce_min(inputs), 0.0)
        batch_hi = tf.maximum(tf.reduce_max(inputs), 0.0)
        moving = tf.__internal__.train.assign_moving_average
        new_lo = moving(lo, batch_lo, decay, zero_debias=False)
        new_hi = moving(hi, batch_hi, decay, zero_debias=False)
        with tf.control_dependencies([new_lo, new_hi]):
            done = moving(seen, tf.constant(1.0), tf.constant(0.0), zero_debias=False)
        with tf.control_dependencies([done]):
            return tf.quantization.fake_quant_with_min_max_vars(
                inputs, new_lo, new_hi, num_bits=self.num_bits, narrow_range=self.narrow_range
            )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ema_decay": self.ema_decay}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ActivationQuantizer:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActivationQuantizer) and other.get_config() == self.get_config()

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


def _resolve(layer: Any, path: str) -> tuple[Any, str]:
    owner = layer
    *parents, attr = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    return owner, attr


class LayerQuantizeConfig(_qk.QuantizeConfig):
    """Fake-quantize named weights (dotted paths allowed), activations and/or the output.

    Args:
        weight_attrs: weight attributes, e.g. ``["kernel"]`` or ``["_query_dense.kernel"]``.
        activation_attrs: activation attributes fake-quantized by TFMOT's
            ``QuantizeAwareActivation`` (e.g. ``["activation"]`` of a Dense layer).
        quantize_output: fake-quantize the layer's output (int8, moving-average range).
        table_attr: an embedding-table attribute fake-quantized by :class:`RowQuantizer`.
        granularity: the table's scale granularity (``"row"`` or ``"tensor"``).
        weight_bits: bits of the weight quantizer.
    """

    def __init__(
        self,
        weight_attrs: list[str] | tuple[str, ...] = (),
        activation_attrs: list[str] | tuple[str, ...] = (),
        quantize_output: bool = False,
        table_attr: str | None = None,
        granularity: str = "row",
        weight_bits: int = 8,
    ) -> None:
        self.weight_attrs = list(weight_attrs)
        self.activation_attrs = list(activation_attrs)
        self.quantize_output = bool(quantize_output)
        self.table_attr = table_attr
        self.granularity = check_granularity(granularity)
        self.weight_bits = int(weight_bits)

    def _weight_quantizer(self) -> Any:
        return _qk.quantizers.LastValueQuantizer(
            num_bits=self.weight_bits, per_axis=False, symmetric=True, narrow_range=True
        )

    def _attrs(self) -> list[str]:
        return ([self.table_attr] if self.table_attr else []) + self.weight_attrs

    def get_weights_and_quantizers(self, layer: Any) -> list[tuple[Any, Any]]:
        pairs = []
        for path in self._attrs():
            owner, attr = _resolve(layer, path)
            quantizer = (
                RowQuantizer(self.granularity)
                if path == self.table_attr
                else self._weight_quantizer()
            )
            pairs.append((getattr(owner, attr), quantizer))
        return pairs

    def get_activations_and_quantizers(self, layer: Any) -> list[tuple[Any, Any]]:
        return [
            (getattr(layer, attr), QuantizationScheme.activation_quantizer())
            for attr in self.activation_attrs
        ]

    def set_quantize_weights(self, layer: Any, quantize_weights: list[Any]) -> None:
        paths = self._attrs()
        if len(paths) != len(quantize_weights):
            raise ValueError(
                f"Layer {layer.name!r}: {len(quantize_weights)} quantized weights for "
                f"{len(paths)} attributes {paths}."
            )
        for path, value in zip(paths, quantize_weights, strict=True):
            owner, attr = _resolve(layer, path)
            setattr(owner, attr, value)

    def set_quantize_activations(self, layer: Any, quantize_activations: list[Any]) -> None:
        for attr, activation in zip(self.activation_attrs, quantize_activations, strict=True):
            setattr(layer, attr, activation)

    def get_output_quantizers(self, layer: Any) -> list[Any]:
        return [QuantizationScheme.activation_quantizer()] if self.quantize_output else []

    def get_config(self) -> dict[str, Any]:
        return {
            "weight_attrs": self.weight_attrs,
            "activation_attrs": self.activation_attrs,
            "quantize_output": self.quantize_output,
            "table_attr": self.table_attr,
            "granularity": self.granularity,
            "weight_bits": self.weight_bits,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LayerQuantizeConfig:
        return cls(**config)


class QATWrapper(quantize_wrapper.QuantizeWrapperV2):
    """TFMOT's ``QuantizeWrapperV2`` whose variables save and load as ``.keras``.

    ``QuantizeWrapperV2.build`` copies the wrapped layer's trainable weights into the wrapper's
    own list only when the wrapped layer is already built, which differs between
    ``quantize_apply`` and loading a saved model, so ``load_model`` fails with "expected N
    variables, but received M". This wrapper keeps only the quantized weights in its own list
    (see :func:`own_trainable_weights`) and passes the wrapped layer's mask on (TFMOT's wrapper
    drops the mask of ``Embedding(mask_zero=True)``); :func:`tfcompress.quantize` gives every
    wrapper this class.
    """

    def __init__(self, layer: Any, quantize_config: Any, **kwargs: Any) -> None:
        super().__init__(layer, quantize_config, **kwargs)
        self.supports_masking = bool(getattr(layer, "supports_masking", False))  # public setter

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        own_trainable_weights(self)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The wrapped layer's mask (e.g. ``Embedding(mask_zero=True)``), which TFMOT drops."""
        return self.layer.compute_mask(inputs, mask)

    def call(self, inputs: Any, training: Any = None, **kwargs: Any) -> Any:
        # Keras hands this wrapper the incoming mask (its call takes **kwargs); a wrapped layer
        # whose call has no `mask` argument (Flatten after a masking Embedding) must not get it
        if "mask" in kwargs and not call_expects_mask(self.layer):
            kwargs.pop("mask")
        return super().call(inputs, training=training, **kwargs)


class QuantizeLayer(quantize_layer.QuantizeLayer):
    """TFMOT's ``QuantizeLayer`` (the input quantizer of a float model input) that builds once.

    TFMOT's ``QuantizeLayer.build`` creates its variables but never calls ``Layer.build``, so
    the layer stays ``built=False``. Loading a ``.keras`` file first builds every layer from its
    ``build_config`` (``Layer.build_from_config``), then the functional model calls it, which
    builds it a second time: the quantizer's min/max/seen variables exist twice and loading
    fails with "Layer 'quantize_layer' expected 7 variables, but received 4". Only a
    ``QuantizeLayer`` that keeps its quantizer shows this: TFMOT's concat transforms set the
    quantizer of an input feeding one ``Concatenate`` of 2-6 inputs to None (its one variable
    is then ``optimizer_step``, an attribute the second build replaces), so it hit models with
    7+ numeric inputs, or a float input feeding anything but one small ``Concatenate``.
    :func:`tfcompress.quantize` gives every ``QuantizeLayer`` this class.

    It keeps TFMOT's class name on purpose: a ``.keras`` file addresses each layer's variables
    by its class name (``layers/quantize_layer_3/vars``) and its config names the class
    ``QuantizeLayer``, so files saved with TFMOT's class (before this one existed) load with
    this one under :func:`tfcompress.quantize_scope`, and new files keep TFMOT's layout.
    """

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        # TFMOT hook (quantize_layer.QuantizeLayer.build, TFMOT 0.8.1): the Layer.build call it
        # omits, which records the input shape and sets `built`, so Keras never builds it twice.
        keras.layers.Layer.build(self, input_shape)


class MultiInputQuantizeWrapper(QATWrapper):
    """A :class:`QATWrapper` for attention layers called as ``layer(query, value, ...)``."""

    def build(self, input_shape: Any) -> None:
        inner = self.layer
        build_attention_from_signature(inner, input_shape, input_shape)
        if not attention_projections(inner)["query"].built:  # re-created from config
            shapes = attention_input_shapes(inner)
            with tf.init_scope():
                inner(*(tf.zeros([1, *tf.TensorShape(s)[1:]]) for s in shapes))
        # TFMOT sizes the output quantizer with compute_output_shape(input_shape), which for
        # attention needs the value shape too: lend it a one-argument version while building.
        two_args = inner.compute_output_shape
        inner.compute_output_shape = lambda shape: two_args(shape, shape)
        try:
            super().build(input_shape)
        finally:
            del inner.compute_output_shape

    def call(
        self,
        query: tf.Tensor,
        value: tf.Tensor,
        key: tf.Tensor | None = None,
        attention_mask: tf.Tensor | None = None,
        return_attention_scores: bool = False,
        training: Any = None,
        use_causal_mask: bool = False,
    ) -> Any:
        if return_attention_scores:
            raise ValueError(
                f"Layer {self.name!r}: quantized attention does not return attention scores; "
                "call it with return_attention_scores=False or skip it in quantize()."
            )
        kwargs = {"attention_mask": attention_mask, "use_causal_mask": use_causal_mask}
        if key is not None:
            kwargs["key"] = key
        return super().call(query, training=training, value=value, **kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape, input_shape)


def own_trainable_weights(wrapper: Any) -> None:
    """Keep only the quantized weights in a wrapper's own trainable list.

    The wrapped layer's other weights stay trained through ``trainable_weights`` (which adds
    the layer's own) and are saved with the layer.
    """
    quantized = []
    for weight, _, _ in quantized_weights(wrapper):
        if all(weight is not w for w in quantized):
            quantized.append(weight)
    set_own_trainable_weights(wrapper, quantized)


class _IntegerSafeInputQuantize(_transforms.InputLayerQuantize):
    """TFMOT's input quantizer, except for integer inputs (ids), which stay untouched, and
    with an :class:`ActivationQuantizer` (TFMOT's never shrinks below [-6, 6])."""

    def replacement(self, match_layer: Any) -> Any:
        dtype = match_layer.layer.get("config", {}).get("dtype")
        if dtype and not tf.as_dtype(dtype).is_floating:
            return match_layer
        quant_layer = quantize_layer.QuantizeLayer(ActivationQuantizer())
        config = quantize_utils.serialize_layer(quant_layer, use_legacy_format=True)
        config["name"] = quant_layer.name
        return model_transformer.LayerNode(config, input_layers=[match_layer])

    def custom_objects(self) -> dict[str, Any]:
        return {**super().custom_objects(), "ActivationQuantizer": ActivationQuantizer}


class _Layout(_layout.Default8BitQuantizeLayoutTransform):
    def __init__(self, activations: bool) -> None:
        self.activations = activations

    def apply(self, model: keras.Model, layer_quantize_map: dict[str, Any]) -> Any:
        if not self.activations:
            return model, layer_quantize_map
        transforms = [
            _IntegerSafeInputQuantize(),
            _transforms.ConcatTransform6Inputs(),
            _transforms.ConcatTransform5Inputs(),
            _transforms.ConcatTransform4Inputs(),
            _transforms.ConcatTransform3Inputs(),
            _transforms.ConcatTransform(),
            _transforms.DenseBatchNormQuantize(),
            _transforms.DenseBatchNormReLUQuantize(),
            _transforms.DenseBatchNormActivationQuantize(),
            _transforms.LayerReLUQuantize(),
            _transforms.LayerReluActivationQuantize(),
        ]
        return model_transformer.ModelTransformer(
            model, transforms, set(layer_quantize_map), layer_quantize_map
        ).transform()


class IntegerSafeScheme(_scheme.Default8BitQuantizeScheme):
    """TFMOT's default 8-bit scheme with an integer-safe input layout (see module doc)."""

    def __init__(self, activations: bool = True) -> None:
        super().__init__()
        self.activations = activations

    def get_layout_transformer(self) -> Any:
        return _Layout(self.activations)


def custom_objects() -> dict[str, Any]:
    """The classes a saved QAT model needs besides TFMOT's (for ``quantize_scope``)."""
    from tfcompress.quantization.composite import CompositeQuantizeWrapper  # imports this module

    return {
        "CompositeQuantizeWrapper": CompositeQuantizeWrapper,
        "LayerQuantizeConfig": LayerQuantizeConfig,
        "RowQuantizer": RowQuantizer,
        "ActivationQuantizer": ActivationQuantizer,
        "MultiInputQuantizeWrapper": MultiInputQuantizeWrapper,
        "QATWrapper": QATWrapper,
        "QuantizeLayer": QuantizeLayer,  # over TFMOT's: see QuantizeLayer
    }
