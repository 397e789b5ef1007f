"""Builders of the reference e-commerce models, from a :class:`~tfcompress.data.Schema`.

Every builder returns a tf_keras *functional* model with one ``keras.Input`` per feature it uses,
named by the feature name, so it takes the features dict of the datasets straight. Embedding
tables are shared by ``vocab_name`` (``hist_item_ids`` and ``item_id`` use ``emb_item_id``).
The last layer is named ``"output"``: a sigmoid probability ``(None, 1)`` for binary tasks, a
softmax over ``schema.num_classes`` for multiclass, logits over the catalogue for retrieval.

Example:
    >>> from tfcompress.data import Feature, Schema
    >>> schema = Schema((Feature("item_id", "categorical", vocab_size=10),), label="click")
    >>> model = dcn(schema, size="tiny")
    >>> model.output_shape
    (None, 1)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfcompress.data.schema import Feature, Schema
from tfcompress.keras_compat import check_model, keras
from tfcompress.models.layers import (
    Catalog,
    CatalogLogits,
    Cross,
    L2Normalize,
    MaskedMean,
    PaddingMask,
    PositionEmbedding,
    TokenAt,
)

__all__ = [
    "SIZES",
    "build",
    "compile_for_task",
    "dcn",
    "logistic_regression",
    "sequence_transformer",
    "two_tower",
    "wide_deep",
]

_log = logging.getLogger("tfcompress")

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

_CLASSIFICATION = ("binary", "multiclass")


# --------------------------------------------------------------------------- validation


def _check_schema(schema: object, model: str, tasks: tuple[str, ...]) -> Schema:
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


def _check_bool(value: object, argument: str, model: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{model}: `{argument}` must be True or False, received {value!r}.")
    return value


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _validate_size_entry(key: str, value: Any, model: str) -> Any:
    def fail(expected: str) -> ValueError:
        return ValueError(f"{model}: size entry {key!r} must be {expected}, received {value!r}.")

    if key in ("embedding_dim", "num_blocks", "num_heads", "ff_dim", "tower_dim"):
        if not _positive_int(value):
            raise fail("an int >= 1")
        return int(value)
    if key == "cross_layers":
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise fail("an int >= 0")
        return int(value)
    if key == "cross_rank":
        if value is not None and not _positive_int(value):
            raise fail("None (full rank) or an int >= 1")
        return None if value is None else int(value)
    if key == "mlp_units":
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, (list, tuple)) or not all(_positive_int(u) for u in value):
            raise fail("a list of ints >= 1 (possibly empty)")
        return tuple(int(u) for u in value)
    if key == "embedding_l2":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise fail("a float >= 0 (L2 penalty on the embedding tables; 0 disables it)")
        return float(value)
    if key == "dropout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise fail("a float in [0, 1)")
        return float(value)
    if key == "ff_activation":
        try:
            keras.activations.get(value)
        except (ValueError, TypeError) as err:
            raise fail("a Keras activation name such as 'gelu' or 'relu'") from err
        return value
    raise ValueError(
        f"{model}: unknown size key {key!r}; valid keys are {sorted(SIZES['student'])}."
    )


def _resolve_size(size: object, default: str, model: str) -> dict[str, Any]:
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


def _inputs(features: tuple[Feature, ...] | list[Feature]) -> dict[str, Any]:
    return {f.name: keras.Input(shape=f.shape, dtype=f.dtype, name=f.name) for f in features}


class _Tables:
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


def _embed(inputs: Mapping[str, Any], feature: Feature, tables: _Tables, prefix: str = "") -> Any:
    """``(batch, dim)`` vector of a categorical feature or masked mean of a sequence."""
    x = tables(feature)(inputs[feature.name])
    if feature.kind == "categorical":
        return keras.layers.Reshape((tables.dim,), name=f"{prefix}flat_{feature.name}")(x)
    return MaskedMean(name=f"{prefix}pool_{feature.name}")([x, inputs[feature.name]])


def _concat(tensors: list[Any], name: str, axis: int = -1) -> Any:
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Concatenate(axis=axis, name=name)(tensors)


def _add(tensors: list[Any], name: str) -> Any:
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Add(name=name)(tensors)


def _numeric(inputs: Mapping[str, Any], features: list[Feature], prefix: str = "") -> list[Any]:
    if not features:
        return []
    return [_concat([inputs[f.name] for f in features], name=f"{prefix}numeric")]


def _embedded_features(
    inputs: Mapping[str, Any], features: list[Feature], tables: _Tables, prefix: str = ""
) -> list[Any]:
    """Embeddings of the id features plus the concatenated numeric features."""
    parts = [_embed(inputs, f, tables, prefix) for f in features if f.kind != "numeric"]
    return parts + _numeric(inputs, [f for f in features if f.kind == "numeric"], prefix)


def _mlp(x: Any, units: tuple[int, ...], dropout: float, prefix: str = "") -> Any:
    for i, width in enumerate(units):
        x = keras.layers.Dense(width, activation="relu", name=f"{prefix}mlp_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}mlp_{i}_dropout")(x)
    return x


def _n_out(schema: Schema) -> int:
    return 1 if schema.task == "binary" else int(schema.num_classes)


def _output(logits: Any, schema: Schema) -> Any:
    activation = "sigmoid" if schema.task == "binary" else "softmax"
    return keras.layers.Activation(activation, name="output", dtype="float32")(logits)


def _used_features(schema: Schema, use_sequence: bool) -> list[Feature]:
    return [f for f in schema.features if use_sequence or f.kind != "sequence"]


def _require_features(features: list[Feature], model: str, use_sequence: bool) -> None:
    if not features:
        raise ValueError(
            f"{model}: no usable feature left (use_sequence={use_sequence} drops the "
            "sequence features and the schema has no other); pass use_sequence=True or add "
            "categorical/numeric features."
        )


# --------------------------------------------------------------------------- builders


def logistic_regression(schema: Schema, *, use_sequence: bool = True) -> keras.Model:
    """Logistic regression: a sum of per-id weights and a linear term of the numeric features.

    Every vocabulary gets an ``Embedding`` of width 1 (``num_classes`` for multiclass: a
    multinomial regression), named ``emb_<vocab_name>``; a sequence contributes the mean weight
    of its non-padding ids; numeric features go through ``Dense(1, name="lr_numeric")``.

    Args:
        schema: a binary or multiclass schema.
        use_sequence: use the sequence features; False drops them (and their inputs).

    Returns:
        A functional model ``{feature: tensor} -> output``.

    Raises:
        TypeError: ``schema`` is not a Schema or ``use_sequence`` not a bool.
        ValueError: the task is retrieval, or no feature is left.

    Example:
        >>> from tfcompress.data import Feature, Schema
        >>> s = Schema((Feature("item_id", "categorical", vocab_size=5),), label="click")
        >>> logistic_regression(s).count_params()
        5
    """
    _check_schema(schema, "logistic_regression", _CLASSIFICATION)
    _check_bool(use_sequence, "use_sequence", "logistic_regression")
    features = _used_features(schema, use_sequence)
    _require_features(features, "logistic_regression", use_sequence)
    n_out = _n_out(schema)
    inputs = _inputs(features)
    tables = _Tables(schema, n_out, initializer="zeros")  # a linear model starts at 0
    terms = [_embed(inputs, f, tables) for f in features if f.kind != "numeric"]
    numeric = _numeric(inputs, [f for f in features if f.kind == "numeric"])
    if numeric:
        terms.append(
            keras.layers.Dense(n_out, kernel_initializer="zeros", name="lr_numeric")(numeric[0])
        )
    logits = _add(terms, name="logits")
    return keras.Model(inputs, _output(logits, schema), name="logistic_regression")


def wide_deep(
    schema: Schema, *, size: str | Mapping[str, Any] = "student", use_sequence: bool = True
) -> keras.Model:
    """Wide & Deep (Cheng et al. 2016): a linear "wide" part plus an MLP over embeddings.

    The wide part is a logistic regression (per-id weights ``wide_emb_<vocab>``, numeric
    ``wide_numeric``); the deep part embeds every id feature (``emb_<vocab>``, sequences
    mean-pooled over non-padding) and runs ``mlp_0..`` then ``deep_logits``. The two logits are
    added before the output activation.

    Args:
        schema: a binary or multiclass schema.
        size: a name in :data:`SIZES` or a dict of overrides (uses ``embedding_dim``,
            ``mlp_units``, ``dropout``).
        use_sequence: use the sequence features; False drops them (and their inputs).

    Returns:
        A functional model ``{feature: tensor} -> output``.

    Raises:
        TypeError: ``schema`` is not a Schema, ``size`` of a wrong type.
        ValueError: retrieval task, unknown size name/key, or no feature left.

    Example:
        >>> from tfcompress.data import Feature, Schema
        >>> s = Schema((Feature("item_id", "categorical", vocab_size=5),), label="click")
        >>> wide_deep(s, size="tiny").get_layer("emb_item_id").output_dim
        4
    """
    _check_schema(schema, "wide_deep", _CLASSIFICATION)
    hp = _resolve_size(size, "student", "wide_deep")
    _check_bool(use_sequence, "use_sequence", "wide_deep")
    features = _used_features(schema, use_sequence)
    _require_features(features, "wide_deep", use_sequence)
    n_out = _n_out(schema)
    inputs = _inputs(features)

    wide_tables = _Tables(schema, n_out, prefix="wide_", initializer="zeros")
    wide_terms = [_embed(inputs, f, wide_tables, "wide_") for f in features if f.kind != "numeric"]
    numeric = _numeric(inputs, [f for f in features if f.kind == "numeric"])
    if numeric:
        wide_terms.append(
            keras.layers.Dense(n_out, kernel_initializer="zeros", name="wide_numeric")(numeric[0])
        )
    wide = _add(wide_terms, name="wide_logits")

    tables = _Tables(schema, hp["embedding_dim"], l2=hp["embedding_l2"])
    deep_parts = [_embed(inputs, f, tables) for f in features if f.kind != "numeric"] + numeric
    deep = _mlp(_concat(deep_parts, "deep_input"), hp["mlp_units"], hp["dropout"])
    deep = keras.layers.Dense(n_out, name="deep_logits")(deep)
    logits = keras.layers.Add(name="logits")([wide, deep])
    return keras.Model(inputs, _output(logits, schema), name="wide_deep")


def dcn(
    schema: Schema,
    *,
    size: str | Mapping[str, Any] = "student",
    use_sequence: bool = True,
    structure: str = "parallel",
) -> keras.Model:
    """DCN-v2 (Wang et al. 2021): stacked :class:`Cross` layers next to a deep MLP.

    ``x0`` concatenates the embeddings of the id features (sequences mean-pooled over their
    non-padding ids) and the numeric features. ``cross_layers`` layers ``cross_i`` compute
    ``x0 * (W x + b) + x`` (``W`` low-rank when ``cross_rank`` is set). With
    ``structure="parallel"`` the MLP ``mlp_i`` also reads ``x0`` and both outputs are
    concatenated; with ``"stacked"`` the MLP reads the cross output.

    Args:
        schema: a binary or multiclass schema.
        size: a name in :data:`SIZES` or a dict of overrides (uses ``embedding_dim``,
            ``mlp_units``, ``dropout``, ``cross_layers``, ``cross_rank``).
        use_sequence: use the sequence features; False drops them (and their inputs).
        structure: ``"parallel"`` or ``"stacked"``.

    Returns:
        A functional model ``{feature: tensor} -> output``.

    Raises:
        TypeError: ``schema`` is not a Schema, ``size`` of a wrong type.
        ValueError: retrieval task, unknown size name/key, unknown structure, no feature left.

    Example:
        >>> from tfcompress.data import Feature, Schema
        >>> s = Schema((Feature("item_id", "categorical", vocab_size=5),), label="click")
        >>> dcn(s, size={"base": "tiny", "cross_layers": 2}).get_layer("cross_1").name
        'cross_1'
    """
    _check_schema(schema, "dcn", _CLASSIFICATION)
    hp = _resolve_size(size, "student", "dcn")
    _check_bool(use_sequence, "use_sequence", "dcn")
    if structure not in ("parallel", "stacked"):
        raise ValueError(
            f"dcn: `structure` must be 'parallel' or 'stacked', received {structure!r}."
        )
    features = _used_features(schema, use_sequence)
    _require_features(features, "dcn", use_sequence)
    inputs = _inputs(features)
    tables = _Tables(schema, hp["embedding_dim"], l2=hp["embedding_l2"])
    x0 = _concat(_embedded_features(inputs, features, tables), "dcn_input")
    cross = x0
    for i in range(hp["cross_layers"]):
        cross = Cross(projection_dim=hp["cross_rank"], name=f"cross_{i}")([x0, cross])
    if structure == "parallel":
        deep = _mlp(x0, hp["mlp_units"], hp["dropout"])
        top = _concat([cross, deep], "dcn_concat") if hp["mlp_units"] else cross
    else:
        top = _mlp(cross, hp["mlp_units"], hp["dropout"])
    logits = keras.layers.Dense(_n_out(schema), name="logits")(top)
    return keras.Model(inputs, _output(logits, schema), name="dcn")


def _paired_categorical(schema: Schema, vocab_name: str) -> Feature | None:
    """The categorical feature of vocabulary ``vocab_name``, preferring group ``"item"``."""
    matches = [f for f in schema.of_kind("categorical") if f.vocab_name == vocab_name]
    matches.sort(key=lambda f: f.group != "item")
    return matches[0] if matches else None


def sequence_transformer(
    schema: Schema, *, size: str | Mapping[str, Any] = "teacher"
) -> keras.Model:
    """Behavior Sequence Transformer (BST, Chen et al. 2019), a BERT-like encoder of histories.

    The token stream is the longest sequence feature (the first of the longest): each token is
    the embedding of its id plus the embeddings of the other sequences of the same length
    (e.g. ``hist_categories`` next to ``hist_item_ids``). For binary (CTR) schemas, the
    candidate item, the categorical feature whose ``vocab_name`` is the stream's (e.g.
    ``item_id``; plus its paired side features such as ``item_category``), is appended as the
    last token. A learned position embedding is added, then ``num_blocks`` post-LN blocks
    (``block_i_mha`` with the padding mask ``ids != 0``, residual, ``block_i_ln_1``, feed-forward
    ``block_i_ff_1/2``, residual, ``block_i_ln_2``). The candidate token's output (or the
    masked mean of the tokens when there is no candidate) is concatenated with the embeddings of
    all categorical features, the numeric features and the mean-pooled remaining sequences,
    then ``mlp_i`` and the output.

    Args:
        schema: a binary or multiclass schema with at least one sequence feature.
        size: a name in :data:`SIZES` or a dict of overrides (uses ``embedding_dim``,
            ``num_blocks``, ``num_heads``, ``ff_dim``, ``ff_activation``, ``mlp_units``,
            ``dropout``).

    Returns:
        A functional model ``{feature: tensor} -> output``.

    Raises:
        TypeError: ``schema`` is not a Schema, ``size`` of a wrong type.
        ValueError: retrieval task, no sequence feature, unknown size name/key.

    Example:
        >>> from tfcompress.data import Feature, Schema
        >>> s = Schema((Feature("item_id", "categorical", vocab_size=9),
        ...             Feature("hist", "sequence", vocab_size=9, length=4, vocab_name="item_id")),
        ...            label="click")
        >>> sequence_transformer(s, size="tiny").get_layer("tokens").output_shape
        (None, 5, 4)
    """
    _check_schema(schema, "sequence_transformer", _CLASSIFICATION)
    hp = _resolve_size(size, "teacher", "sequence_transformer")
    sequences = list(schema.of_kind("sequence"))
    if not sequences:
        raise ValueError(
            "sequence_transformer needs at least one sequence feature (kind='sequence', e.g. "
            f"hist_item_ids) in the schema; its features are {schema.names}. Use dcn or "
            "wide_deep for schemas without a behaviour sequence."
        )
    stream = max(sequences, key=lambda f: f.length)  # the first of the longest
    side = [f for f in sequences if f is not stream and f.length == stream.length]
    rest = [f for f in sequences if f is not stream and f not in side]

    dim = hp["embedding_dim"]
    inputs = _inputs(schema.features)
    tables = _Tables(schema, dim, l2=hp["embedding_l2"])

    tokens = _add([tables(f)(inputs[f.name]) for f in [stream, *side]], name="token_embedding")
    candidate = _paired_categorical(schema, stream.vocab_name) if schema.task == "binary" else None
    if candidate is not None:
        cand_parts = [tables(candidate)(inputs[candidate.name])]
        for f in side:
            paired = _paired_categorical(schema, f.vocab_name)
            if paired is not None:
                cand_parts.append(tables(paired)(inputs[paired.name]))
        cand_token = _add(cand_parts, name="candidate_token")
        tokens = keras.layers.Concatenate(axis=1, name="tokens")([tokens, cand_token])
    else:
        tokens = keras.layers.Activation("linear", name="tokens")(tokens)
    length = stream.length + (1 if candidate is not None else 0)
    mask = PaddingMask(append=int(candidate is not None), name="padding_mask")(inputs[stream.name])
    attention_mask = keras.layers.Reshape((1, length), name="attention_mask")(mask)

    x = PositionEmbedding(name="position_embedding")(tokens)
    if hp["dropout"]:
        x = keras.layers.Dropout(hp["dropout"], name="embedding_dropout")(x)
    key_dim = max(1, dim // hp["num_heads"])
    for i in range(hp["num_blocks"]):
        attn = keras.layers.MultiHeadAttention(
            num_heads=hp["num_heads"],
            key_dim=key_dim,
            dropout=hp["dropout"],
            name=f"block_{i}_mha",
        )(x, x, attention_mask=attention_mask)
        if hp["dropout"]:
            attn = keras.layers.Dropout(hp["dropout"], name=f"block_{i}_dropout_1")(attn)
        x = keras.layers.Add(name=f"block_{i}_add_1")([x, attn])
        x = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block_{i}_ln_1")(x)
        ff = keras.layers.Dense(
            hp["ff_dim"], activation=hp["ff_activation"], name=f"block_{i}_ff_1"
        )(x)
        ff = keras.layers.Dense(dim, name=f"block_{i}_ff_2")(ff)
        if hp["dropout"]:
            ff = keras.layers.Dropout(hp["dropout"], name=f"block_{i}_dropout_2")(ff)
        x = keras.layers.Add(name=f"block_{i}_add_2")([x, ff])
        x = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block_{i}_ln_2")(x)

    if candidate is not None:
        pooled = TokenAt(-1, name="sequence_output")(x)
    else:
        pooled = MaskedMean(name="sequence_output")([x, inputs[stream.name]])

    others = [f for f in schema.features if f.kind != "sequence" or f in rest]
    parts = [pooled, *_embedded_features(inputs, others, tables)]
    top = _mlp(_concat(parts, "mlp_input"), hp["mlp_units"], hp["dropout"])
    logits = keras.layers.Dense(_n_out(schema), name="logits")(top)
    return keras.Model(inputs, _output(logits, schema), name="sequence_transformer")


def _catalog_features(
    schema: Schema, catalog: object, model: str
) -> tuple[list[Feature], dict[str, np.ndarray]]:
    """The candidate-tower features and their ``(num_items, length)`` arrays."""
    if not isinstance(catalog, Mapping) or not catalog:
        raise TypeError(
            f"{model}: `catalog` must be a non-empty dict of item-feature arrays (row i = item "
            f"i), received {type(catalog).__name__}: {catalog!r:.80}. Retrieval tasks give it "
            "as task.info['catalog']."
        )
    rows = int(schema.num_classes)
    schema_items = [f for f in schema.features if f.group == "item"]
    missing = [f.name for f in schema_items if f.name not in catalog]
    if missing:
        raise ValueError(
            f"{model}: `catalog` lacks the item features {missing} of the schema (group "
            f"'item'); it has {sorted(catalog)}. Give one array per item feature, row i = "
            "item i."
        )
    by_name = {f.name: f for f in schema.features}
    vocab = schema.vocab_sizes()
    ordered = [f.name for f in schema_items] + sorted(set(catalog) - set(by_name))
    extra_query = [n for n in catalog if n in by_name and by_name[n].group != "item"]
    if extra_query:
        raise ValueError(
            f"{model}: catalog keys {extra_query} are schema features of group "
            f"{[by_name[n].group for n in extra_query]}, not 'item'; the candidate tower only "
            "reads item features. Set group='item' on them or drop them from the catalog."
        )
    features: list[Feature] = []
    arrays: dict[str, np.ndarray] = {}
    for name in ordered:
        array = np.asarray(catalog[name])
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[0] != rows:
            raise ValueError(
                f"{model}: catalog[{name!r}] must have shape ({rows}, length) (one row per "
                f"item id 0..{rows - 1}, schema.num_classes={rows}), received {array.shape}."
            )
        if name in by_name:
            feature = by_name[name]
        elif np.issubdtype(array.dtype, np.integer):
            size = vocab.get(name, int(array.max()) + 1 if array.size else 2)
            feature = Feature(name, "categorical", vocab_size=max(size, 2), group="item")
        elif np.issubdtype(array.dtype, np.floating):
            feature = Feature(name, "numeric", length=array.shape[1], group="item")
        else:
            raise TypeError(
                f"{model}: catalog[{name!r}] must hold ints (ids) or floats, received dtype "
                f"{array.dtype}."
            )
        if feature.kind == "sequence":
            raise ValueError(
                f"{model}: catalog feature {name!r} is a sequence; the candidate tower takes "
                "categorical and numeric item features only."
            )
        if array.shape[1] != feature.length:
            raise ValueError(
                f"{model}: catalog[{name!r}] has {array.shape[1]} columns but the feature "
                f"length is {feature.length}."
            )
        if feature.kind == "categorical":
            if array.min() < 0 or array.max() >= feature.vocab_size:
                raise ValueError(
                    f"{model}: catalog[{name!r}] holds ids in [{array.min()}, {array.max()}] "
                    f"outside the vocabulary [0, {feature.vocab_size}) of feature {name!r}."
                )
            array = array.astype(np.int32)
        else:
            array = array.astype(np.float32)
        features.append(feature)
        arrays[name] = array
    return features, arrays


def _tower(schema: Schema, features: list[Feature], hp: dict[str, Any], name: str) -> keras.Model:
    inputs = _inputs(features)
    tables = _Tables(schema, hp["embedding_dim"], l2=hp["embedding_l2"])
    x = _concat(_embedded_features(inputs, features, tables), "tower_input")
    x = _mlp(x, hp["mlp_units"], hp["dropout"])
    x = keras.layers.Dense(hp["tower_dim"], name="projection")(x)
    x = L2Normalize(name="l2_normalize")(x)
    return keras.Model(inputs, x, name=name)


def two_tower(
    schema: Schema,
    catalog: Mapping[str, Any],
    *,
    size: str | Mapping[str, Any] = "student",
    temperature: float = 0.05,
) -> keras.Model:
    """Two-tower retrieval model whose output is the logits over the whole catalogue.

    The ``query_tower`` (features of group != ``"item"``) and the ``candidate_tower`` (the item
    features of ``catalog``) are nested sub-models: embeddings, ``mlp_i``, a ``projection`` to
    ``tower_dim`` and L2 normalisation. The catalogue is stored in the model (a non-trainable
    :class:`~tfcompress.models.layers.Catalog` layer), so the output ``"output"`` is
    ``query @ candidate_tower(catalog)^T / temperature``, shape ``(None, num_classes)``, with
    item 0 (padding) masked to the lowest logit. Train with
    ``sparse_categorical_crossentropy(from_logits=True)`` on the item id and evaluate with
    ``SparseTopKCategoricalAccuracy(k)`` (recall@k): see :func:`compile_for_task`.

    Item features of the schema (group ``"item"``) come from the catalogue, not from the model
    inputs (feeding the positive item's features would leak the label); the model's inputs are
    the query features. Vocabularies are shared within a tower; the two towers have separate
    tables (a layer shared between two nested models does not survive ``.keras`` saving), so
    a history of item ids in the query tower has its own ``emb_item_id``.

    Args:
        schema: a retrieval schema; ``num_classes`` = catalogue size including item 0.
        catalog: ``{item feature: array}`` with ``num_classes`` rows (row i = item i), shape
            ``(n, 1)`` or ``(n,)``; int arrays are ids, float arrays numeric. Keys not in the
            schema become categorical (vocabulary from the schema's ``vocab_name`` or the max
            id) or numeric item features.
        size: a name in :data:`SIZES` or a dict of overrides (uses ``embedding_dim``,
            ``mlp_units``, ``dropout``, ``tower_dim``).
        temperature: the softmax temperature (> 0).

    Returns:
        A functional model ``{query feature: tensor} -> logits (None, num_classes)``.

    Raises:
        TypeError: ``schema`` not a Schema, ``catalog`` not a dict of arrays.
        ValueError: task is not retrieval, catalogue rows != num_classes, missing item features,
            no query feature, unknown size name/key, temperature <= 0.

    Example:
        >>> import numpy as np
        >>> from tfcompress.data import Feature, Schema
        >>> s = Schema((Feature("user_id", "categorical", vocab_size=7),
        ...             Feature("item_id", "categorical", vocab_size=5, group="item")),
        ...            label="next_item", task="retrieval", num_classes=5)
        >>> two_tower(s, {"item_id": np.arange(5)}, size="tiny").output_shape
        (None, 5)
    """
    _check_schema(schema, "two_tower", ("retrieval",))
    hp = _resolve_size(size, "student", "two_tower")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"two_tower: `temperature` must be a float, received {temperature!r}.")
    if not temperature > 0:
        raise ValueError(
            f"two_tower: `temperature` must be > 0, received {temperature!r}; try 0.05-1.0."
        )
    item_features, arrays = _catalog_features(schema, catalog, "two_tower")
    query_features = [f for f in schema.features if f.group != "item" and f.name not in arrays]
    if not query_features:
        raise ValueError(
            "two_tower: the schema has no query feature (group != 'item'); add user/context/"
            f"history features. Its features are {schema.names}."
        )
    query_tower = _tower(schema, query_features, hp, "query_tower")
    candidate_tower = _tower(schema, item_features, hp, "candidate_tower")

    inputs = _inputs(query_features)
    query = query_tower(inputs)
    item_tensors = Catalog(
        [(f.name, "int32" if f.kind != "numeric" else "float32", f.length) for f in item_features],
        int(schema.num_classes),
        values=arrays,
        name="catalog",
    )(query)
    items = candidate_tower(dict(zip([f.name for f in item_features], item_tensors, strict=True)))
    logits = CatalogLogits(temperature=float(temperature), name="output")([query, items])
    return keras.Model(inputs, logits, name="two_tower")


# --------------------------------------------------------------------------- registry


_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "lr": logistic_regression,
    "logistic_regression": logistic_regression,
    "wide_deep": wide_deep,
    "dcn": dcn,
    "transformer": sequence_transformer,
    "sequence_transformer": sequence_transformer,
    "two_tower": two_tower,
}
_TASKS = {
    logistic_regression: _CLASSIFICATION,
    wide_deep: _CLASSIFICATION,
    dcn: _CLASSIFICATION,
    sequence_transformer: _CLASSIFICATION,
    two_tower: ("retrieval",),
}


def build(
    name: str, schema: Schema, *, size: str | Mapping[str, Any] | None = None, **kwargs: Any
) -> keras.Model:
    """Build a reference model by name.

    Args:
        name: ``"lr"``/``"logistic_regression"``, ``"wide_deep"``, ``"dcn"``,
            ``"transformer"``/``"sequence_transformer"`` or ``"two_tower"``.
        schema: the dataset schema; its task must suit the model (retrieval for two_tower,
            binary/multiclass for the others).
        size: a size name or overrides; None = the builder's default. Ignored by ``lr``.
        **kwargs: passed to the builder, e.g. ``catalog=`` for two_tower, ``use_sequence=``.

    Returns:
        The built model.

    Raises:
        ValueError: unknown name, task unsuited to the model, missing ``catalog``.
        TypeError: ``schema`` not a Schema.

    Example:
        >>> from tfcompress.data import Feature, Schema
        >>> s = Schema((Feature("item_id", "categorical", vocab_size=5),), label="click")
        >>> build("dcn", s, size="tiny").name
        'dcn'
    """
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"Unknown model name {name!r}; valid names are {sorted(_BUILDERS)}.")
    builder = _BUILDERS[name]
    _check_schema(schema, name, _TASKS[builder])
    if builder is two_tower:
        if "catalog" not in kwargs:
            raise ValueError(
                "build('two_tower', ...) needs `catalog=` (item-feature arrays, row i = item i; "
                "task.info['catalog'] for the retrieval task)."
            )
        catalog = kwargs.pop("catalog")
        if size is not None:
            kwargs["size"] = size
        return two_tower(schema, catalog, **kwargs)
    if builder is logistic_regression:
        if size is not None:
            _log.debug("build('%s'): `size` %r ignored, the model has no size.", name, size)
        return builder(schema, **kwargs)
    if size is not None:
        kwargs["size"] = size
    return builder(schema, **kwargs)


def compile_for_task(
    model: keras.Model,
    schema: Schema,
    *,
    learning_rate: float = 1e-3,
    optimizer: keras.optimizers.Optimizer | str | None = None,
    jit_compile: bool | None = None,
) -> keras.Model:
    """Compile ``model`` with the loss and metrics of ``schema.task``; returns the model.

    - binary: ``binary_crossentropy``; metrics ``auc``, ``logloss``, ``accuracy``.
    - multiclass: sparse categorical cross-entropy; metric ``accuracy``.
    - retrieval: sparse categorical cross-entropy from logits; metrics ``recall@10`` and
      ``recall@50`` (``SparseTopKCategoricalAccuracy``).

    Args:
        model: a tf_keras model whose output suits the task ((None, 1) for binary,
            (None, num_classes) otherwise).
        schema: the dataset schema.
        learning_rate: Adam's learning rate when ``optimizer`` is None.
        optimizer: an optimizer (instance or name) to use instead of Adam.
        jit_compile: passed to ``model.compile`` (None = Keras' default).

    Returns:
        ``model``, compiled.

    Raises:
        TypeError: ``model`` not a tf_keras model, ``schema`` not a Schema.
        ValueError: non-positive learning rate, output shape not matching the task.

    Example:
        >>> from tfcompress.data import Feature, Schema
        >>> s = Schema((Feature("item_id", "categorical", vocab_size=5),), label="click")
        >>> compile_for_task(dcn(s, size="tiny"), s).metrics_names  # before fit
        []
    """
    check_model(model, "model")
    if not isinstance(schema, Schema):
        raise TypeError(
            f"compile_for_task: `schema` must be a tfcompress.data.Schema, received "
            f"{type(schema).__name__}: {schema!r:.80}."
        )
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not learning_rate > 0
    ):
        raise ValueError(
            f"compile_for_task: `learning_rate` must be a float > 0, received {learning_rate!r}."
        )
    if jit_compile is not None and not isinstance(jit_compile, bool):
        raise TypeError(
            f"compile_for_task: `jit_compile` must be a bool or None, received {jit_compile!r}."
        )
    outputs = model.outputs or []
    if len(outputs) != 1:
        raise ValueError(
            f"compile_for_task: model {model.name!r} must have exactly one output, it has "
            f"{len(outputs)}."
        )
    expected = 1 if schema.task == "binary" else schema.num_classes
    width = outputs[0].shape[-1]
    if outputs[0].shape.rank != 2 or width != expected:
        raise ValueError(
            f"compile_for_task: model {model.name!r} outputs shape {tuple(outputs[0].shape)} but "
            f"task {schema.task!r} needs (None, {expected}); build the model from this schema."
        )
    if optimizer is None:
        optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
    if schema.task == "binary":
        loss: Any = "binary_crossentropy"
        metrics: list[Any] = [
            keras.metrics.AUC(name="auc"),
            keras.metrics.BinaryCrossentropy(name="logloss"),
            keras.metrics.BinaryAccuracy(name="accuracy"),
        ]
    elif schema.task == "multiclass":
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [
            keras.metrics.SparseTopKCategoricalAccuracy(k=10, name="recall@10"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=50, name="recall@50"),
        ]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)
    return model
