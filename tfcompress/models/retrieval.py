"""The two-tower retrieval model: a query tower, a candidate tower and the stored catalogue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tfcompress._keras import keras
from tfcompress.data.schema import Feature, Schema
from tfcompress.models._blocks import (
    Tables,
    check_schema,
    concat,
    embedded_features,
    feature_inputs,
    mlp,
    resolve_size,
)
from tfcompress.models.layers import Catalog, CatalogLogits, L2Normalize

__all__ = ["two_tower"]


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
    inputs = feature_inputs(features)
    tables = Tables(schema, hp["embedding_dim"], l2=hp["embedding_l2"])
    x = concat(embedded_features(inputs, features, tables), "tower_input")
    x = mlp(x, hp["mlp_units"], hp["dropout"])
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
    check_schema(schema, "two_tower", ("retrieval",))
    hp = resolve_size(size, "student", "two_tower")
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

    inputs = feature_inputs(query_features)
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
