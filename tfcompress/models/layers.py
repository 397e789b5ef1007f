"""Small custom layers of the reference models, registered (package ``"tfcompress"``) so the
models save as ``.keras``, load with ``safe_mode=True`` and convert to TFLite.

Example:
    >>> from tfcompress._keras import tf
    >>> from tfcompress.models.layers import MaskedMean
    >>> x = tf.ones((1, 3, 2))
    >>> MaskedMean()([x, tf.constant([[0, 4, 9]])]).numpy().tolist()
    [[1.0, 1.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress._keras import keras, tf

__all__ = [
    "Catalog",
    "CatalogLogits",
    "Cross",
    "L2Normalize",
    "MaskedMean",
    "PaddingMask",
    "PositionEmbedding",
    "TokenAt",
]

_register = keras.saving.register_keras_serializable(package="tfcompress")


def _valid_ids(ids: tf.Tensor) -> tf.Tensor:
    """int32 1 where ``ids`` (integer ids or a bool mask) marks a real position, 0 for padding.

    Integer ids count as valid when > 0 (0 is padding; negative ids are no embedding row). The
    mask is ``minimum(maximum(ids, 0), 1)`` rather than ``cast(ids != 0)``: TFLite's int16x8
    quantizer tries to quantize the integer inputs of a comparison and fails ("Max and min for
    dynamic tensors should be recorded during calibration"), while MINIMUM/MAXIMUM on int32 stay
    integer ops in every quantization mode.
    """
    if ids.dtype == tf.bool:
        return tf.cast(ids, tf.int32)
    ids = tf.cast(ids, tf.int32) if ids.dtype != tf.int32 else ids
    return tf.minimum(tf.maximum(ids, 0), 1)


def _valid_mask(mask: tf.Tensor) -> tf.Tensor:
    """1.0 where ``mask`` (ids, a bool or a float 0/1 mask) marks a real position, else 0.0."""
    if mask.dtype == tf.bool or mask.dtype.is_integer:
        return tf.cast(_valid_ids(mask), tf.float32)
    return tf.cast(tf.not_equal(mask, tf.zeros_like(mask)), tf.float32)


class _NothingToPrune:
    """Tells TFMOT's ``prune_low_magnitude`` (which accepts any layer defining
    ``get_prunable_weights``) that the layer has no weight to prune, so whole-model pruning of
    the reference models works."""

    def get_prunable_weights(self) -> list[tf.Variable]:
        return []


def _reciprocal_table(length: int) -> tf.Tensor:
    """``[1, 1, 1/2, ..., 1/length]``: entry ``k`` is ``1 / max(k, 1)``."""
    return tf.constant([1.0] + [1.0 / k for k in range(1, length + 1)], tf.float32)


@_register
class MaskedMean(_NothingToPrune, keras.layers.Layer):
    """Mean over the time axis of ``values``, counting only the non-padding positions.

    Called on ``[values, mask]`` where ``values`` is ``(batch, length, dim)`` and ``mask`` is
    ``(batch, length)``: either the ids themselves (0 = padding) or a 0/1 mask. A fully padded
    row gives a zero vector (never NaN), so outputs do not depend on what the padding positions
    hold.

    Example:
        >>> x = tf.constant([[[1.0], [3.0], [100.0]]])
        >>> MaskedMean()([x, tf.constant([[1, 1, 0]])]).numpy().tolist()
        [[2.0]]
    """

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                f"Layer {self.name!r} (MaskedMean) must be called on [values, mask], "
                f"received {inputs!r:.120}."
            )
        values, mask = inputs
        values = tf.cast(values, tf.float32)
        length = mask.shape[1]
        if (mask.dtype == tf.bool or mask.dtype.is_integer) and length is not None:
            # int8-friendly: count the ids in int32 and look 1/count up in a constant table
            # instead of dividing. A quantized DIV here was the culprit of the reference DCN's
            # int8 drift (QuantizationDebugger: RMSE of 34-56 output scales at the pooling DIV,
            # test AUC 0.50 vs 0.585 float); with the lookup it is 0.6 and the AUC 0.586.
            valid = _valid_ids(mask)
            count = tf.reduce_sum(valid, axis=1)
            inverse = tf.gather(_reciprocal_table(int(length)), count)
            weights = tf.cast(valid, tf.float32) * tf.expand_dims(inverse, -1)
        else:
            weights = _valid_mask(mask)
            weights = weights / tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)
        # (batch, 1, length) @ (batch, length, dim): one BATCH_MATMUL, whose int8 / int16x8
        # kernels keep the mean's own scale (a MUL + SUM would quantize at the sum's range).
        return tf.squeeze(tf.matmul(tf.expand_dims(weights, 1), values), axis=1)

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        values_shape = tf.TensorShape(input_shape[0])
        return tf.TensorShape([values_shape[0], values_shape[-1]])


@_register
class PaddingMask(_NothingToPrune, keras.layers.Layer):
    """Float 0/1 mask ``ids > 0`` of a ``(batch, length)`` id tensor (0 = padding).

    Args:
        append: number of always-valid positions (ones) appended at the end, e.g. 1 for the
            candidate token of a behaviour-sequence transformer.

    Example:
        >>> PaddingMask(append=1)(tf.constant([[0, 3]])).numpy().tolist()
        [[0.0, 1.0, 1.0]]
    """

    def __init__(self, append: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(append, (int, np.integer)) or isinstance(append, bool) or append < 0:
            raise ValueError(
                f"PaddingMask `append` must be an int >= 0, received {append!r}; pass e.g. 1 "
                "to add one always-valid candidate position."
            )
        self.append = int(append)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        mask = _valid_mask(ids)
        if self.append:
            ones = tf.ones_like(mask[:, :1])
            mask = tf.concat([mask] + [ones] * self.append, axis=1)
        return mask

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        shape = tf.TensorShape(input_shape)
        length = None if shape[1] is None else shape[1] + self.append
        return tf.TensorShape([shape[0], length])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "append": self.append}


@_register
class PositionEmbedding(_NothingToPrune, keras.layers.Layer):
    """Adds a learned position embedding to a ``(batch, length, dim)`` token tensor.

    Args:
        initializer: initializer of the ``(length, dim)`` position table.

    Example:
        >>> layer = PositionEmbedding()
        >>> layer(tf.zeros((2, 5, 4))).shape
        TensorShape([2, 5, 4])
    """

    def __init__(self, initializer: Any = "glorot_uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape: Any) -> None:
        shape = tf.TensorShape(input_shape)
        if shape.rank != 3 or shape[1] is None or shape[2] is None:
            raise ValueError(
                f"Layer {self.name!r} (PositionEmbedding) needs a (batch, length, dim) input with "
                f"known length and dim, received shape {shape}."
            )
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(int(shape[1]), int(shape[2])),
            initializer=self.initializer,
            trainable=True,
        )
        super().build(input_shape)

    def call(self, tokens: tf.Tensor) -> tf.Tensor:
        return tokens + tf.expand_dims(tf.cast(self.embeddings, tokens.dtype), 0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "initializer": keras.initializers.serialize(self.initializer),
        }


@_register
class TokenAt(_NothingToPrune, keras.layers.Layer):
    """Picks one position of a ``(batch, length, dim)`` tensor: ``x[:, index, :]``.

    Args:
        index: the position; ``-1`` (default) is the last token, e.g. the candidate item of a
            Behavior Sequence Transformer.

    Example:
        >>> TokenAt(-1)(tf.reshape(tf.range(6.0), (1, 3, 2))).numpy().tolist()
        [[4.0, 5.0]]
    """

    def __init__(self, index: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"TokenAt `index` must be an int, received {index!r}.")
        self.index = int(index)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs[:, self.index, :]

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        shape = tf.TensorShape(input_shape)
        return tf.TensorShape([shape[0], shape[-1]])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "index": self.index}


@_register
class Cross(keras.layers.Layer):
    """DCN-v2 cross layer: ``x0 * (W x + b) + x``.

    Called on ``[x0, x]`` (both ``(batch, dim)``); the first cross layer of a stack gets
    ``[x0, x0]``. With ``projection_dim=None`` ``W`` is a full ``dim x dim`` matrix; with an int
    ``r`` it is the low-rank product ``U V`` (``dim x r`` then ``r x dim``), the DCN-v2 "mixture
    of low-rank" cost saving with a single expert. The kernels are exposed to TFMOT pruning
    (``get_prunable_weights``, which ``prune_low_magnitude`` accepts by duck typing).

    Args:
        projection_dim: rank of ``W`` or None for full rank.
        kernel_initializer: initializer of the kernels.
        bias_initializer: initializer of ``b``.

    Example:
        >>> x0 = tf.ones((2, 3))
        >>> Cross(projection_dim=2)([x0, x0]).shape
        TensorShape([2, 3])
    """

    def __init__(
        self,
        projection_dim: int | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if projection_dim is not None and (
            not isinstance(projection_dim, (int, np.integer))
            or isinstance(projection_dim, bool)
            or projection_dim < 1
        ):
            raise ValueError(
                f"Cross `projection_dim` must be None (full rank) or an int >= 1, received "
                f"{projection_dim!r}."
            )
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape: Any) -> None:
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(
                f"Layer {self.name!r} (Cross) must be called on [x0, x], received input shape "
                f"{input_shape!r}."
            )
        shape0, shape = (tf.TensorShape(s) for s in input_shape)
        if shape0.rank != 2 or shape.rank != 2 or shape0[-1] != shape[-1] or shape[-1] is None:
            raise ValueError(
                f"Layer {self.name!r} (Cross) needs x0 and x of the same shape (batch, dim), "
                f"received {shape0} and {shape}."
            )
        dim = int(shape[-1])
        if self.projection_dim is None:
            self.kernel = self.add_weight(
                name="kernel", shape=(dim, dim), initializer=self.kernel_initializer
            )
            self.kernel_v = None
        else:
            self.kernel = self.add_weight(
                name="kernel", shape=(dim, self.projection_dim), initializer=self.kernel_initializer
            )
            # a fresh initializer instance: reusing an unseeded one repeats its values
            second = self.kernel_initializer.__class__.from_config(
                self.kernel_initializer.get_config()
            )
            self.kernel_v = self.add_weight(
                name="kernel_v", shape=(self.projection_dim, dim), initializer=second
            )
        self.bias = self.add_weight(name="bias", shape=(dim,), initializer=self.bias_initializer)
        super().build(input_shape)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        x0, x = inputs
        projected = tf.matmul(x, self.kernel)
        if self.kernel_v is not None:
            projected = tf.matmul(projected, self.kernel_v)
        return x0 * (projected + self.bias) + x

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape(input_shape[1])

    def get_prunable_weights(self) -> list[tf.Variable]:
        """The kernels (not the bias), for ``tfmot.sparsity.keras.prune_low_magnitude``."""
        return [w for w in (self.kernel, self.kernel_v) if w is not None]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "projection_dim": self.projection_dim,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@_register
class L2Normalize(_NothingToPrune, keras.layers.Layer):
    """Scales each row to unit L2 norm (``tf.math.l2_normalize`` on the last axis).

    Like ``keras.layers.UnitNormalization``, but TFMOT's whole-model pruning accepts it.

    Args:
        epsilon: lower bound of the squared norm (a zero row stays zero).

    Example:
        >>> L2Normalize()(tf.constant([[3.0, 4.0]])).numpy().tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.math.l2_normalize(inputs, axis=-1, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


@_register
class Catalog(_NothingToPrune, keras.layers.Layer):
    """Holds the item features of a whole catalogue as non-trainable weights.

    Row ``i`` of every feature is item ``i`` (row 0 is the padding item). Calling the layer on
    any tensor (only used to place it in a functional graph; its value is ignored) returns the
    list of feature tensors, each ``(num_items, length)``, in the order of ``features``. Values
    are saved with the model's weights, so a ``.keras`` file is self-contained.

    Args:
        features: ``[(name, dtype, length), ...]`` with dtype ``"int32"`` or ``"float32"``.
        num_items: rows of every feature (catalogue size including item 0).
        values: optional ``{name: array}`` to initialise the weights with (shape
            ``(num_items, length)`` or ``(num_items,)``).

    Example:
        >>> cat = Catalog([("item_id", "int32", 1)], 3, values={"item_id": [0, 1, 2]})
        >>> cat(tf.zeros((1, 1)))[0].numpy().ravel().tolist()
        [0, 1, 2]
    """

    def __init__(
        self,
        features: list[Any],
        num_items: int,
        values: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        parsed = []
        for entry in features:
            if not isinstance(entry, (list, tuple)) or len(entry) != 3:
                raise ValueError(
                    f"Catalog features must be (name, dtype, length) triples, received {entry!r}."
                )
            name, dtype, length = entry
            if dtype not in ("int32", "float32"):
                raise ValueError(
                    f"Catalog feature {name!r}: dtype must be 'int32' or 'float32', received "
                    f"{dtype!r}."
                )
            parsed.append((str(name), str(dtype), int(length)))
        if not parsed:
            raise ValueError("Catalog needs at least one feature, received none.")
        if not isinstance(num_items, (int, np.integer)) or num_items < 1:
            raise ValueError(f"Catalog `num_items` must be an int >= 1, received {num_items!r}.")
        self.features = parsed
        self.num_items = int(num_items)
        self.tables: dict[str, tf.Variable] = {}
        for name, dtype, length in parsed:
            self.tables[name] = self.add_weight(
                name=name,
                shape=(self.num_items, length),
                dtype=dtype,
                initializer="zeros",
                trainable=False,
            )
        if values is not None:
            self.set_values(values)

    def set_values(self, values: dict[str, Any]) -> None:
        """Assign the catalogue arrays (``{name: array}``, every feature present)."""
        for name, dtype, length in self.features:
            if name not in values:
                raise ValueError(
                    f"Catalog {self.name!r}: values lack feature {name!r}; give an array of "
                    f"shape ({self.num_items}, {length}) for each of "
                    f"{[f[0] for f in self.features]}."
                )
            array = np.asarray(values[name]).astype(dtype).reshape(self.num_items, length)
            self.tables[name].assign(array)

    def call(self, inputs: Any) -> list[tf.Tensor]:
        del inputs  # only anchors the layer in the functional graph
        return [tf.convert_to_tensor(self.tables[name]) for name, _, _ in self.features]

    def compute_output_shape(self, input_shape: Any) -> list[tf.TensorShape]:
        return [tf.TensorShape([self.num_items, length]) for _, _, length in self.features]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "features": [list(f) for f in self.features],
            "num_items": self.num_items,
        }


@_register
class CatalogLogits(_NothingToPrune, keras.layers.Layer):
    """Similarity logits of queries against every catalogue item, padding item masked.

    Called on ``[queries (batch, dim), items (num_items, dim)]``; returns
    ``queries @ items^T / temperature`` of shape ``(batch, num_items)`` with column 0 (the
    padding item) replaced by ``mask_value``. With L2-normalised inputs every real logit lies in
    ``[-1/temperature, 1/temperature]``, so the default ``mask_value = -2/temperature`` ranks
    item 0 last while keeping the output range small (friendly to int8 quantization, unlike a
    huge negative constant).

    Args:
        temperature: softmax temperature (> 0).
        mask_value: logit of item 0; defaults to ``-2 / temperature``.

    Example:
        >>> q = tf.constant([[1.0, 0.0]])
        >>> items = tf.constant([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> CatalogLogits(temperature=0.5)([q, items]).numpy().tolist()
        [[-4.0, 2.0, 0.0]]
    """

    def __init__(
        self, temperature: float = 0.05, mask_value: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"CatalogLogits `temperature` must be a float, got {temperature!r}.")
        if not temperature > 0:
            raise ValueError(
                f"CatalogLogits `temperature` must be > 0, received {temperature!r}; typical "
                "values are 0.05-1.0."
            )
        self.temperature = float(temperature)
        self.mask_value = -2.0 / self.temperature if mask_value is None else float(mask_value)

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        queries, items = inputs
        logits = tf.matmul(queries, items, transpose_b=True) / self.temperature
        num_items = tf.shape(items)[0]
        valid = tf.concat([tf.zeros([1], logits.dtype), tf.ones([num_items - 1], logits.dtype)], 0)
        valid = tf.expand_dims(valid, 0)
        return logits * valid + (1.0 - valid) * self.mask_value

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        return tf.TensorShape([input_shape[0][0], input_shape[1][0]])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "mask_value": self.mask_value,
        }
