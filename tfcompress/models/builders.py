"""Builders of the reference e-commerce models from a :class:`~tfcompress.data.Schema`: functional
models with one input per feature and a last layer named ``"output"``.

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

from tfcompress._keras import check_model, keras
from tfcompress._validation import check_bool
from tfcompress.data.schema import Feature, Schema
from tfcompress.models._blocks import (
    CLASSIFICATION,
    SIZES,
    Tables,
    add,
    check_schema,
    concat,
    embed,
    embedded_features,
    feature_inputs,
    mlp,
    n_outputs,
    numeric_inputs,
    output_head,
    require_features,
    resolve_size,
    used_features,
)
from tfcompress.models.layers import (
    Cross,
    MaskedMean,
    PaddingMask,
    PositionEmbedding,
    TokenAt,
)
from tfcompress.models.retrieval import two_tower

_log = logging.getLogger("tfcompress")

__all__ = [
    "MODEL_NAMES",
    "SIZES",
    "build",
    "compile_for_task",
    "dcn",
    "loss_and_metrics",
    "logistic_regression",
    "sequence_transformer",
    "two_tower",
    "wide_deep",
]

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
    check_schema(schema, "logistic_regression", CLASSIFICATION)
    check_bool(use_sequence, "use_sequence", where="logistic_regression")
    features = used_features(schema, use_sequence)
    require_features(features, "logistic_regression", use_sequence)
    n_out = n_outputs(schema)
    inputs = feature_inputs(features)
    tables = Tables(schema, n_out, initializer="zeros")  # a linear model starts at 0
    terms = [embed(inputs, f, tables) for f in features if f.kind != "numeric"]
    numeric = numeric_inputs(inputs, [f for f in features if f.kind == "numeric"])
    if numeric:
        terms.append(
            keras.layers.Dense(n_out, kernel_initializer="zeros", name="lr_numeric")(numeric[0])
        )
    logits = add(terms, name="logits")
    return keras.Model(inputs, output_head(logits, schema), name="logistic_regression")


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
    check_schema(schema, "wide_deep", CLASSIFICATION)
    hp = resolve_size(size, "student", "wide_deep")
    check_bool(use_sequence, "use_sequence", where="wide_deep")
    features = used_features(schema, use_sequence)
    require_features(features, "wide_deep", use_sequence)
    n_out = n_outputs(schema)
    inputs = feature_inputs(features)

    wide_tables = Tables(schema, n_out, prefix="wide_", initializer="zeros")
    wide_terms = [embed(inputs, f, wide_tables, "wide_") for f in features if f.kind != "numeric"]
    numeric = numeric_inputs(inputs, [f for f in features if f.kind == "numeric"])
    if numeric:
        wide_terms.append(
            keras.layers.Dense(n_out, kernel_initializer="zeros", name="wide_numeric")(numeric[0])
        )
    wide = add(wide_terms, name="wide_logits")

    tables = Tables(schema, hp["embedding_dim"], l2=hp["embedding_l2"])
    deep_parts = [embed(inputs, f, tables) for f in features if f.kind != "numeric"] + numeric
    deep = mlp(concat(deep_parts, "deep_input"), hp["mlp_units"], hp["dropout"])
    deep = keras.layers.Dense(n_out, name="deep_logits")(deep)
    logits = keras.layers.Add(name="logits")([wide, deep])
    return keras.Model(inputs, output_head(logits, schema), name="wide_deep")


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
    check_schema(schema, "dcn", CLASSIFICATION)
    hp = resolve_size(size, "student", "dcn")
    check_bool(use_sequence, "use_sequence", where="dcn")
    if structure not in ("parallel", "stacked"):
        raise ValueError(
            f"dcn: `structure` must be 'parallel' or 'stacked', received {structure!r}."
        )
    features = used_features(schema, use_sequence)
    require_features(features, "dcn", use_sequence)
    inputs = feature_inputs(features)
    tables = Tables(schema, hp["embedding_dim"], l2=hp["embedding_l2"])
    x0 = concat(embedded_features(inputs, features, tables), "dcn_input")
    cross = x0
    for i in range(hp["cross_layers"]):
        cross = Cross(projection_dim=hp["cross_rank"], name=f"cross_{i}")([x0, cross])
    if structure == "parallel":
        deep = mlp(x0, hp["mlp_units"], hp["dropout"])
        top = concat([cross, deep], "dcn_concat") if hp["mlp_units"] else cross
    else:
        top = mlp(cross, hp["mlp_units"], hp["dropout"])
    logits = keras.layers.Dense(n_outputs(schema), name="logits")(top)
    return keras.Model(inputs, output_head(logits, schema), name="dcn")


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
    check_schema(schema, "sequence_transformer", CLASSIFICATION)
    hp = resolve_size(size, "teacher", "sequence_transformer")
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
    inputs = feature_inputs(schema.features)
    tables = Tables(schema, dim, l2=hp["embedding_l2"])

    tokens = add([tables(f)(inputs[f.name]) for f in [stream, *side]], name="token_embedding")
    candidate = _paired_categorical(schema, stream.vocab_name) if schema.task == "binary" else None
    if candidate is not None:
        cand_parts = [tables(candidate)(inputs[candidate.name])]
        for f in side:
            paired = _paired_categorical(schema, f.vocab_name)
            if paired is not None:
                cand_parts.append(tables(paired)(inputs[paired.name]))
        cand_token = add(cand_parts, name="candidate_token")
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
    parts = [pooled, *embedded_features(inputs, others, tables)]
    top = mlp(concat(parts, "mlp_input"), hp["mlp_units"], hp["dropout"])
    logits = keras.layers.Dense(n_outputs(schema), name="logits")(top)
    return keras.Model(inputs, output_head(logits, schema), name="sequence_transformer")


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
#: The names :func:`build` accepts.
MODEL_NAMES: tuple[str, ...] = tuple(sorted(_BUILDERS))
_TASKS = {
    logistic_regression: CLASSIFICATION,
    wide_deep: CLASSIFICATION,
    dcn: CLASSIFICATION,
    sequence_transformer: CLASSIFICATION,
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
    check_schema(schema, name, _TASKS[builder])
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
    loss, metrics = loss_and_metrics(schema)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)
    return model


def loss_and_metrics(schema: Schema) -> tuple[Any, list[Any]]:
    """The loss and fresh metric objects :func:`compile_for_task` uses for ``schema.task``.

    For compiling a wrapper model (e.g. a :class:`~tfcompress.Distiller`) the way the reference
    models are compiled.

    Example:
        >>> from tfcompress.data import Feature, Schema
        >>> s = Schema((Feature("item_id", "categorical", vocab_size=5),), label="click")
        >>> [m.name for m in loss_and_metrics(s)[1]]
        ['auc', 'logloss', 'accuracy']
    """
    if not isinstance(schema, Schema):
        raise TypeError(
            f"loss_and_metrics: `schema` must be a tfcompress.data.Schema, received "
            f"{type(schema).__name__}: {schema!r:.80}."
        )
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
    return loss, metrics
