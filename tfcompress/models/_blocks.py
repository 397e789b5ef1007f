"""Shared pieces of the reference-model builders: sizes, argument checks, building blocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfcompress._keras import keras
from tfcompress.data.schema import Feature, Schema
from tfcompress.models.layers import MaskedMean

#: Hyper-parameters of each named model size. A ``size`` argument takes one of these names or a
#: dict overriding some entries (of the builder's default size, or of ``dict["base"]``).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "embedding_dim": 4,
        "embedding_l2": 0.0,
        "mlp_units": (8,),
        "dropout": 0.0,
        "cross_layers": 1,
        "cross_rank": None,
        "num_blocks": 1,
        "num_heads": 1,
        "ff_dim": 8,
        "ff_activation": "gelu",
        "tower_dim": 4,
    },
    "student": {
        "embedding_dim": 8,
        "embedding_l2": 1e-4,
        "mlp_units": (64, 32),
        "dropout": 0.0,
        "cross_layers": 2,
        "cross_rank": None,
        "num_blocks": 1,
        "num_heads": 2,
        "ff_dim": 32,
        "ff_activation": "gelu",
        "tower_dim": 16,
    },
    "teacher": {
        "embedding_dim": 32,
        "embedding_l2": 1e-4,
        "mlp_units": (256, 128, 64),
        "dropout": 0.1,
        "cross_layers": 3,
        "cross_rank": None,
        "num_blocks": 2,
        "num_heads": 4,
        "ff_dim": 128,
        "ff_activation": "gelu",
        "tower_dim": 64,
    },
}

CLASSIFICATION = ("binary", "multiclass")


# --------------------------------------------------------------------------- validation


def check_schema(schema: object, model: str, tasks: tuple[str, ...]) -> Schema:
    if not isinstance(schema, Schema):
        raise TypeError(
            f"{model}: `schema` must be a tfcompress.data.Schema, received "
            f"{type(schema).__name__}: {schema!r:.80}. Use the `.schema` of a "
            "tfcompress.data task or build one with Schema(features=(Feature(...), ...), ...)."
        )
    if schema.task not in tasks:
        hint = "use two_tower" if schema.task == "retrieval" else "use one of dcn/wide_deep/lr"
        raise ValueError(
            f"{model} needs a schema with task in {tasks}, received task {schema.task!r}; "
            f"{hint} for {schema.task!r} tasks."
        )
    return schema


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


class _BadEntryError(Exception):
    """A size entry of the wrong kind; its argument says what is expected."""


def _int_min_1(value: Any) -> int:
    if not _positive_int(value):
        raise _BadEntryError("an int >= 1")
    return int(value)


def _int_min_0(value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise _BadEntryError("an int >= 0")
    return int(value)


def _rank(value: Any) -> int | None:
    if value is not None and not _positive_int(value):
        raise _BadEntryError("None (full rank) or an int >= 1")
    return None if value is None else int(value)


def _units(value: Any) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(_positive_int(u) for u in value):
        raise _BadEntryError("a list of ints >= 1 (possibly empty)")
    return tuple(int(u) for u in value)


def _l2(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _BadEntryError("a float >= 0 (L2 penalty on the embedding tables; 0 disables it)")
    return float(value)


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise _BadEntryError("a float in [0, 1)")
    return float(value)


def _activation(value: Any) -> Any:
    try:
        keras.activations.get(value)
    except (ValueError, TypeError) as err:
        raise _BadEntryError("a Keras activation name such as 'gelu' or 'relu'") from err
    return value


#: size key -> its check (returns the normalised value, raises _BadEntryError).
_SIZE_CHECKS: dict[str, Any] = {
    **dict.fromkeys(
        ("embedding_dim", "num_blocks", "num_heads", "ff_dim", "tower_dim"), _int_min_1
    ),
    "cross_layers": _int_min_0,
    "cross_rank": _rank,
    "mlp_units": _units,
    "embedding_l2": _l2,
    "dropout": _rate,
    "ff_activation": _activation,
}


def _validate_size_entry(key: str, value: Any, model: str) -> Any:
    check = _SIZE_CHECKS.get(key)
    if check is None:
        raise ValueError(
            f"{model}: unknown size key {key!r}; valid keys are {sorted(SIZES['student'])}."
        )
    try:
        return check(value)
    except _BadEntryError as bad:
        raise ValueError(
            f"{model}: size entry {key!r} must be {bad.args[0]}, received {value!r}."
        ) from bad.__cause__


def resolve_size(size: object, default: str, model: str) -> dict[str, Any]:
    """The hyper-parameter dict of ``size`` (a name in SIZES or a dict of overrides)."""
    if size is None:
        size = default
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(
                f"{model}: unknown size {size!r}; valid sizes are {sorted(SIZES)} or a dict "
                f"overriding some of {sorted(SIZES[default])}."
            )
        overrides: dict[str, Any] = {"base": size}
    elif isinstance(size, Mapping):
        overrides = dict(size)
    else:
        raise TypeError(
            f"{model}: `size` must be a size name {sorted(SIZES)} or a dict of overrides, "
            f"received {type(size).__name__}: {size!r:.80}."
        )
    base = overrides.pop("base", default)
    if not isinstance(base, str) or base not in SIZES:
        raise ValueError(f"{model}: unknown size 'base' {base!r}; valid sizes are {sorted(SIZES)}.")
    resolved = dict(SIZES[base])
    unknown = sorted(set(overrides) - set(resolved))
    if unknown:
        raise ValueError(
            f"{model}: unknown size keys {unknown}; valid keys are {sorted(resolved)} "
            "(plus 'base', a size name)."
        )
    resolved.update(overrides)
    return {key: _validate_size_entry(key, value, model) for key, value in resolved.items()}


# --------------------------------------------------------------------------- building blocks


def feature_inputs(features: tuple[Feature, ...] | list[Feature]) -> dict[str, Any]:
    return {f.name: keras.Input(shape=f.shape, dtype=f.dtype, name=f.name) for f in features}


class Tables:
    """One ``keras.layers.Embedding`` per ``vocab_name``, created on first use."""

    def __init__(
        self,
        schema: Schema,
        dim: int,
        prefix: str = "",
        initializer: str = "uniform",
        l2: float = 0.0,
    ) -> None:
        self.vocab = schema.vocab_sizes()
        self.dim = dim
        self.prefix = prefix
        self.initializer = initializer
        self.regularizer = keras.regularizers.L2(l2) if l2 else None
        self.layers: dict[str, keras.layers.Embedding] = {}

    def __call__(self, feature: Feature) -> keras.layers.Embedding:
        name = feature.vocab_name
        if name not in self.layers:
            self.layers[name] = keras.layers.Embedding(
                self.vocab.get(name, feature.vocab_size),
                self.dim,
                embeddings_initializer=self.initializer,
                embeddings_regularizer=self.regularizer,
                name=f"{self.prefix}emb_{name}",
            )
        return self.layers[name]


def embed(inputs: Mapping[str, Any], feature: Feature, tables: Tables, prefix: str = "") -> Any:
    """``(batch, dim)`` vector of a categorical feature or masked mean of a sequence."""
    x = tables(feature)(inputs[feature.name])
    if feature.kind == "categorical":
        return keras.layers.Flatten(name=f"{prefix}flat_{feature.name}")(x)
    return MaskedMean(name=f"{prefix}pool_{feature.name}")([x, inputs[feature.name]])


def concat(tensors: list[Any], name: str, axis: int = -1) -> Any:
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Concatenate(axis=axis, name=name)(tensors)


def add(tensors: list[Any], name: str) -> Any:
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Add(name=name)(tensors)


def numeric_inputs(
    inputs: Mapping[str, Any], features: list[Feature], prefix: str = ""
) -> list[Any]:
    if not features:
        return []
    return [concat([inputs[f.name] for f in features], name=f"{prefix}numeric")]


def embedded_features(
    inputs: Mapping[str, Any], features: list[Feature], tables: Tables, prefix: str = ""
) -> list[Any]:
    """Embeddings of the id features plus the concatenated numeric features."""
    parts = [embed(inputs, f, tables, prefix) for f in features if f.kind != "numeric"]
    return parts + numeric_inputs(inputs, [f for f in features if f.kind == "numeric"], prefix)


def mlp(x: Any, units: tuple[int, ...], dropout: float, prefix: str = "") -> Any:
    for i, width in enumerate(units):
        x = keras.layers.Dense(width, activation="relu", name=f"{prefix}mlp_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}mlp_{i}_dropout")(x)
    return x


def n_outputs(schema: Schema) -> int:
    return 1 if schema.task == "binary" else int(schema.num_classes)


def output_head(logits: Any, schema: Schema) -> Any:
    activation = "sigmoid" if schema.task == "binary" else "softmax"
    return keras.layers.Activation(activation, name="output", dtype="float32")(logits)


def used_features(schema: Schema, use_sequence: bool) -> list[Feature]:
    return [f for f in schema.features if use_sequence or f.kind != "sequence"]


def require_features(features: list[Feature], model: str, use_sequence: bool) -> None:
    if not features:
        raise ValueError(
            f"{model}: no usable feature left (use_sequence={use_sequence} drops the "
            "sequence features and the schema has no other); pass use_sequence=True or add "
            "categorical/numeric features."
        )
