"""The schema every dataset returns and every reference model is built from."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tfcompress._keras import tf
from tfcompress.data.summary import DataSummary, summarise

KINDS = ("categorical", "numeric", "sequence")
TASKS = ("binary", "multiclass", "retrieval")


@dataclass(frozen=True)
class Feature:
    """One model input.

    Attributes:
        name: input name; the key in the features dict and the Keras ``Input`` name.
        kind: ``"categorical"`` (one id per example), ``"numeric"`` (float values) or
            ``"sequence"`` (a padded list of ids, 0 = padding).
        vocab_size: number of ids, for categorical and sequence features. Ids lie in
            ``[0, vocab_size)``; id 0 is reserved for padding / out-of-vocabulary.
        length: values per example: 1 for scalars, the padded length for sequences, the width of
            a numeric vector.
        vocab_name: features with the same ``vocab_name`` index the same vocabulary and share one
            embedding table (e.g. ``item_id`` and ``hist_item_ids``). Defaults to ``name``.
        group: optional role, e.g. ``"user"``, ``"item"``, ``"context"``; two-tower models put
            ``"item"`` features in the candidate tower and the rest in the query tower.

    Example:
        >>> Feature("item_id", "categorical", vocab_size=1000).shape
        (1,)
    """

    name: str
    kind: str
    vocab_size: int | None = None
    length: int = 1
    vocab_name: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                f"Feature name must be an identifier-like string, received {self.name!r}."
            )
        if self.kind not in KINDS:
            raise ValueError(
                f"Feature {self.name!r}: kind must be one of {KINDS}, received {self.kind!r}."
            )
        if self.kind in ("categorical", "sequence"):
            if not isinstance(self.vocab_size, int) or self.vocab_size < 2:
                raise ValueError(
                    f"Feature {self.name!r} ({self.kind}) needs vocab_size >= 2 (id 0 is "
                    f"padding/OOV), received {self.vocab_size!r}."
                )
        elif self.vocab_size is not None:
            raise ValueError(
                f"Feature {self.name!r} is numeric; vocab_size must be None, "
                f"received {self.vocab_size!r}."
            )
        if not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"Feature {self.name!r}: length must be >= 1, got {self.length!r}.")
        if self.kind == "categorical" and self.length != 1:
            raise ValueError(
                f"Feature {self.name!r} is categorical and holds one id; use kind='sequence' "
                f"for length {self.length}."
            )
        if self.vocab_name is None:
            object.__setattr__(self, "vocab_name", self.name)

    @property
    def dtype(self) -> tf.DType:
        """``tf.int32`` for ids, ``tf.float32`` for numeric values."""
        return tf.float32 if self.kind == "numeric" else tf.int32

    @property
    def shape(self) -> tuple[int]:
        """Per-example shape (without the batch dimension): ``(length,)``."""
        return (self.length,)

    def spec(self, batch_size: int | None = None) -> tf.TensorSpec:
        """The ``tf.TensorSpec`` of a batch of this feature."""
        return tf.TensorSpec((batch_size, *self.shape), self.dtype, name=self.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Schema:
    """The features, label and task of a dataset.

    Attributes:
        features: the model inputs, in order.
        label: name of the label.
        task: ``"binary"`` (click / no click), ``"multiclass"`` (``num_classes`` classes) or
            ``"retrieval"`` (the label is the id of the next item, ``num_classes`` items).
        num_classes: classes for multiclass, catalogue size for retrieval; None for binary.

    Example:
        >>> s = Schema((Feature("price", "numeric"),), label="click", task="binary")
        >>> s["price"].kind
        'numeric'
    """

    features: tuple[Feature, ...]
    label: str
    task: str = "binary"
    num_classes: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        feats = tuple(self.features)
        object.__setattr__(self, "features", feats)
        if not feats:
            raise ValueError("Schema needs at least one feature, received none.")
        for f in feats:
            if not isinstance(f, Feature):
                raise TypeError(f"Schema features must be Feature objects, received {f!r}.")
        names = [f.name for f in feats]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Schema has duplicate feature names: {dupes}.")
        if self.label in names:
            raise ValueError(f"Label {self.label!r} is also a feature name; rename one of them.")
        if self.task not in TASKS:
            raise ValueError(f"Schema task must be one of {TASKS}, received {self.task!r}.")
        if self.task in ("multiclass", "retrieval") and (
            not isinstance(self.num_classes, int) or self.num_classes < 2
        ):
            raise ValueError(
                f"Schema task {self.task!r} needs num_classes >= 2, received {self.num_classes!r}."
            )
        vocab: dict[str, int] = {}
        for f in feats:
            if f.vocab_size is None:
                continue
            if vocab.setdefault(f.vocab_name, f.vocab_size) != f.vocab_size:
                raise ValueError(
                    f"Features sharing vocab_name {f.vocab_name!r} disagree on vocab_size "
                    f"({vocab[f.vocab_name]} vs {f.vocab_size} for {f.name!r})."
                )

    def __getitem__(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"No feature {name!r} in schema; features are {self.names}.")

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def of_kind(self, kind: str) -> tuple[Feature, ...]:
        """The features of one kind (``"categorical"``, ``"numeric"`` or ``"sequence"``)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, received {kind!r}.")
        return tuple(f for f in self.features if f.kind == kind)

    def vocab_sizes(self) -> dict[str, int]:
        """``vocab_name -> vocab_size`` for every id vocabulary (one embedding table each)."""
        return {f.vocab_name: f.vocab_size for f in self.features if f.vocab_size is not None}

    def element_spec(self, batch_size: int | None = None) -> dict[str, tf.TensorSpec]:
        """The ``tf.TensorSpec`` of each feature, keyed by name (a batch of features)."""
        return {f.name: f.spec(batch_size) for f in self.features}

    def label_spec(self, batch_size: int | None = None) -> tf.TensorSpec:
        if self.task == "binary":
            return tf.TensorSpec((batch_size, 1), tf.float32, name=self.label)
        return tf.TensorSpec((batch_size,), tf.int32, name=self.label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [f.to_dict() for f in self.features],
            "label": self.label,
            "task": self.task,
            "num_classes": self.num_classes,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Schema:
        return cls(
            features=tuple(Feature(**f) for f in config["features"]),
            label=config["label"],
            task=config.get("task", "binary"),
            num_classes=config.get("num_classes"),
            metadata=dict(config.get("metadata", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Schema:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class TaskData:
    """What every data function returns: batched datasets of ``(features dict, label)``.

    Attributes:
        train: shuffled (seeded), batched training data.
        validation: batched validation data, fixed order.
        test: batched test data, fixed order.
        schema: the features and task.
        info: extra facts, e.g. the item ``catalog`` of a retrieval task or the source file.

    ``summary()`` describes the columns and the label (print it after every load).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    schema: Schema
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> DataSummary:
        """A table of the columns (kind, encoding, vocabulary or buckets, missing share, why)
        and the label rate with its positives: a :class:`tfcompress.data.summary.DataSummary`.

        Example:
            >>> from tfcompress import data
            >>> print(data.load_task("ctr", n_samples=1_000).summary())  # doctest: +SKIP
        """
        return summarise(self)
