"""Model inputs: per-input specs, and validated examples read from what ``model.fit`` accepts.

The accepted forms and the input-order rule: docs/export.md (running artifacts back).

Example:
    >>> specs = (InputSpec("x", (2,), "float32"),)
    >>> feats, labels = collect_examples((np.ones((3, 2)), np.zeros(3)), "single", specs, None)
    >>> feats["x"].shape, labels.shape
    ((3, 2), (3,))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcompress._compat import inbound_nodes, keras_layer_of
from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import must_be

__all__ = [
    "FINE_TUNE_OPTIMIZERS",
    "RANDOM_BATCH_SIZE",
    "Batch",
    "InputSpec",
    "as_numpy",
    "collect_examples",
    "fine_tune",
    "iter_batches",
    "random_batch",
]

#: the optimizers a penalised fine-tune (learned row / dimension pruning) takes by name
FINE_TUNE_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "adagrad": keras.optimizers.Adagrad,
}

RANDOM_BATCH_SIZE = 16


@dataclass(frozen=True)
class InputSpec:
    """One model input, per example (without the batch dimension).

    Attributes:
        name: the key of the input in the features dict / the signature input name.
        shape: per-example shape; None for unknown dims.
        dtype: numpy dtype name (``"int32"``, ``"float32"``, ...).
        vocab_size: ``input_dim`` of the embedding that consumes this input, when known.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    vocab_size: int | None = None

    @property
    def is_integer(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.integer)

    @property
    def batched_shape(self) -> tuple[int | None, ...]:
        """The shape with the batch dimension: ``(None, *shape)``."""
        return (None, *self.shape)

    def tensor_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec((None, *self.shape), tf.as_dtype(self.dtype), name=self.name)


@dataclass(frozen=True)
class Batch:
    """One validated batch: features keyed by input name, labels and sample weights (or None)."""

    features: dict[str, np.ndarray]
    labels: np.ndarray | None
    sample_weight: np.ndarray | None

    def __len__(self) -> int:
        return len(next(iter(self.features.values())))


def as_numpy(value: Any) -> np.ndarray:
    """A numpy array from a tensor, variable, array or array-like."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value.numpy()
    return np.asarray(value)


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, tf.Tensor, tf.Variable, np.generic))


def _split_element(element: Any) -> tuple[Any, Any, Any]:
    """Split one data element into (x, y or None, sample_weight or None), as Keras does.

    A tuple is ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; anything else is ``x``.
    """
    if isinstance(element, tuple):
        if not element or len(element) > 3:
            raise ValueError(
                f"a data element is a tuple of {len(element)} items; like model.fit, tfcompress "
                "reads tuples as (x,), (x, y) or (x, y, sample_weight). Put the inputs of a "
                "multi-input model in a list or dict: ([x1, x2], y) or ({'a': x1, 'b': x2}, y)."
            )
        padded = (*element, None, None)
        return padded[0], padded[1], padded[2]
    return element, None, None


def _shapes(values: Iterable[Any]) -> list[tuple[int, ...]]:
    return [tuple(as_numpy(v).shape) for v in values]


def _expected(specs: tuple[InputSpec, ...]) -> str:
    return ", ".join(f"{s.name!r} {s.batched_shape}" for s in specs)


def _raw_inputs(
    features: Any, structure: str, specs: tuple[InputSpec, ...], argument: str, positional: bool
) -> list[Any]:
    """The value of each input, in ``specs`` order, from a dict, a list/tuple or one array."""
    names = [s.name for s in specs]
    n = len(specs)
    if isinstance(features, Mapping):
        missing = [s for s in names if s not in features]
        if missing and n == 1 and len(features) == 1:
            raise ValueError(
                f"`{argument}`: the model takes one input {names[0]!r} {specs[0].batched_shape}, "
                f"received a dict with keys {sorted(map(str, features))}. Pass the array itself "
                f"or a dict {{{names[0]!r}: array}}."
            )
        if missing:
            raise ValueError(
                f"`{argument}` has no value for model input(s) {missing}; received keys "
                f"{sorted(map(str, features))}. Pass every input: {names}."
            )
        return [features[s] for s in names]
    if isinstance(features, (list, tuple)) and not (n == 1 and len(features) == 1):
        if n == 1:
            raise ValueError(
                f"`{argument}`: the model takes one input {names[0]!r} {specs[0].batched_shape}, "
                f"received a {type(features).__name__} of {len(features)} arrays with shapes "
                f"{_shapes(features)}. Pass the array itself; labels go second in a tuple: "
                "(x, y)."
            )
        if structure == "dict" and not positional:
            raise ValueError(
                f"`{argument}` must hold dicts of features keyed by the model's input names "
                f"{names}: received a {type(features).__name__} of {len(features)} arrays, and "
                "this model does not record the order of its inputs. Pass a dict keyed by the "
                "input names."
            )
        if len(features) != n:
            raise ValueError(
                f"`{argument}`: the model takes {n} inputs ({_expected(specs)}), received a "
                f"{type(features).__name__} of {len(features)} arrays with shapes "
                f"{_shapes(features)}. Pass {n} arrays in that order, or a dict keyed by the "
                "input names."
            )
        return list(features)
    if isinstance(features, (list, tuple)):
        features = features[0]  # [x] for a one-input model
    if n == 1:
        return [features]
    shape = tuple(as_numpy(features).shape) if _is_array(features) else type(features).__name__
    if structure == "dict" and not positional:
        raise ValueError(
            f"`{argument}` must hold dicts of features keyed by the model's input names {names}; "
            f"received one {type(features).__name__} ({shape}) for {n} inputs. Pass a dict keyed "
            "by the input names."
        )
    raise ValueError(
        f"`{argument}`: the model takes {n} inputs ({_expected(specs)}), received one "
        f"{type(features).__name__} ({shape}). Pass x as a list of {n} arrays in that order "
        "or as a dict keyed by the input names; as `data` itself, wrap it in a tuple: "
        "([x1, x2], y)."
    )


def conform(
    features: Any,
    structure: str,
    specs: tuple[InputSpec, ...],
    argument: str = "data",
    *,
    positional: bool = False,
) -> tuple[dict[str, np.ndarray], bool]:
    """Validate one element's features against ``specs``.

    Returns:
        A batched dict of arrays keyed by input name, and whether the element was one
        (unbatched) example.

    Raises:
        ValueError: a missing input, a wrong number of inputs, a shape or dtype that does not
            match; the message names the input, the expected and received shapes and the fix.

    Example:
        >>> conform(np.ones((4, 2)), "single", (InputSpec("x", (2,), "float32"),))[0]["x"].shape
        (4, 2)
    """
    raw = _raw_inputs(features, structure, specs, argument, positional)
    out: dict[str, np.ndarray] = {}
    unbatched = False
    for spec, value in zip(specs, raw, strict=True):
        arr = as_numpy(value)
        rank = len(spec.shape)
        if arr.ndim == rank:
            arr = arr[None, ...]
            unbatched = True
        elif arr.ndim != rank + 1:
            raise ValueError(
                f"`{argument}`: input {spec.name!r} expects per-example shape {spec.shape} "
                f"(batched: {spec.batched_shape}), received shape {arr.shape}. Reshape it, or "
                "check that the inputs are in the model's order."
            )
        for got, want in zip(arr.shape[1:], spec.shape, strict=True):
            if want is not None and got != want:
                raise ValueError(
                    f"`{argument}`: input {spec.name!r} expects shape {spec.batched_shape}, "
                    f"received shape {arr.shape}. Pass {spec.name!r} with that width, or check "
                    "that the inputs are in the model's order."
                )
        want_dt = np.dtype(spec.dtype)
        if spec.is_integer:
            if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
                raise ValueError(
                    f"`{argument}`: input {spec.name!r} holds integer ids ({spec.dtype}), "
                    f"received dtype {arr.dtype}. Pass integer ids."
                )
        elif np.issubdtype(want_dt, np.floating) and not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise ValueError(
                f"`{argument}`: input {spec.name!r} expects {spec.dtype}, received dtype "
                f"{arr.dtype}. Cast it to {spec.dtype}."
            )
        out[spec.name] = arr.astype(want_dt, copy=False)
    return out, unbatched


def _iter_elements(data: Any, argument: str) -> Iterator[Any]:
    if isinstance(data, tf.data.Dataset):
        yield from data.as_numpy_iterator()
    elif isinstance(data, (Mapping, tuple)) or _is_array(data):
        yield data  # one batch: features (dict or array), or (x, y[, w])
    elif isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(
            f"`{argument}` must be a tf.data.Dataset, an (x, y) tuple, a dict of arrays, an "
            "array, or an iterable of feature dicts / arrays / (x, y) pairs; received "
            f"{type(data).__name__}."
        )
    else:
        yield from data


def iter_batches(
    data: Any,
    structure: str,
    specs: tuple[InputSpec, ...],
    argument: str = "data",
    *,
    positional: bool = False,
) -> Iterator[Batch]:
    """Yield the elements of ``data`` as validated :class:`Batch` es, in order, in one pass.

    Args:
        data: what ``model.fit`` takes (see the module docstring).
        structure: ``"dict"``, ``"single"`` or ``"list"`` (see
            :func:`tfcompress.export.runtime.model_input_specs`).
        specs: the model's inputs.
        argument: the argument's name, used in error messages.
        positional: for ``structure="dict"``, also accept a list/tuple of arrays in ``specs``
            order (only when ``specs`` are in the model's input order).

    Raises:
        ValueError: an element does not match the model's inputs.
        TypeError: ``data`` is of a type that holds no examples.

    Example:
        >>> specs = (InputSpec("x", (2,), "float32"),)
        >>> [len(b) for b in iter_batches([np.ones((3, 2)), np.ones((2, 2))], "single", specs)]
        [3, 2]
    """
    for element in _iter_elements(data, argument):
        x, y, w = _split_element(element)
        features, unbatched = conform(x, structure, specs, argument, positional=positional)
        labels = None if y is None else as_numpy(y)
        weight = None if w is None else as_numpy(w)
        if unbatched:
            labels = None if labels is None else labels[None, ...]
            weight = None if weight is None else weight[None, ...]
        yield Batch(features, labels, weight)


def collect_examples(
    data: Any,
    structure: str,
    specs: tuple[InputSpec, ...],
    max_examples: int | None,
    argument: str = "data",
    *,
    positional: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Take up to ``max_examples`` examples from ``data`` as one batch, validated against specs.

    ``data`` is anything :func:`iter_batches` reads. Sample weights are dropped.

    Returns:
        ``(features, labels)``: a dict of arrays of shape ``(n, ...)`` and the labels (or None).

    Raises:
        ValueError: an element does not match the model inputs, or ``data`` is empty.

    Example:
        >>> specs = (InputSpec("x", (2,), "float32"),)
        >>> collect_examples(np.ones((5, 2)), "single", specs, 3)[0]["x"].shape
        (3, 2)
    """
    feats: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    labels: list[np.ndarray] = []
    n = 0
    has_label = None
    for batch in iter_batches(data, structure, specs, argument, positional=positional):
        if has_label is None:
            has_label = batch.labels is not None
        take = len(batch) if max_examples is None else min(len(batch), max_examples - n)
        for k, v in batch.features.items():
            feats[k].append(v[:take])
        if has_label and batch.labels is not None:
            labels.append(batch.labels[:take])
        n += take
        if max_examples is not None and n >= max_examples:
            break
    if n == 0:
        raise ValueError(f"`{argument}` holds no examples; pass at least one.")
    out = {k: np.concatenate(v, axis=0) for k, v in feats.items()}
    lab = np.concatenate(labels, axis=0) if has_label and labels else None
    return out, lab


def random_batch(
    specs: tuple[InputSpec, ...], batch_size: int = RANDOM_BATCH_SIZE, seed: int = 0
) -> dict[str, np.ndarray]:
    """A deterministic batch from the input specs: ids in ``[1, vocab)`` (1 when unknown).

    Example:
        >>> random_batch((InputSpec("x", (2,), "float32"),), batch_size=3)["x"].shape
        (3, 2)
    """
    rng = np.random.default_rng(seed)
    out = {}
    for s in specs:
        shape = (batch_size, *(1 if d is None else d for d in s.shape))
        if s.is_integer:
            hi = s.vocab_size if s.vocab_size and s.vocab_size > 1 else 2
            out[s.name] = rng.integers(1, hi, size=shape).astype(s.dtype)
        else:
            out[s.name] = rng.normal(size=shape).astype(s.dtype)
    return out


def _embedding_vocab(model: keras.Model) -> dict[str, int]:
    """Map InputLayer names to the ``input_dim`` of an embedding-like layer that consumes them."""
    vocab: dict[str, int] = {}
    with contextlib.suppress(Exception):  # best effort, on tf_keras internals
        for layer in model.layers:
            dim = getattr(layer, "input_dim", None)
            if not isinstance(dim, int):
                dim = getattr(getattr(layer, "layer", None), "input_dim", None)  # TFMOT wrapper
            if not isinstance(dim, int):
                continue
            for node in inbound_nodes(layer):
                for src in tf.nest.flatten(node.inbound_layers):
                    if isinstance(src, keras.layers.InputLayer):
                        vocab[src.name] = min(dim, vocab.get(src.name, dim))
    return vocab


def model_input_specs(model: keras.Model) -> tuple[str, tuple[InputSpec, ...]]:
    """Return how ``model`` takes its inputs and one :class:`InputSpec` per input.

    Args:
        model: a tf_keras model that has been built (functional, Sequential, or called once).

    Returns:
        ``(structure, specs)``: structure is ``"dict"`` (called with a dict keyed by input name),
        ``"single"`` (one tensor) or ``"list"`` (a list of tensors, in ``specs`` order).

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: the model has no known inputs yet.

    Example:
        >>> inp = keras.Input((3,), name="x")
        >>> model_input_specs(keras.Model(inp, keras.layers.Dense(1)(inp)))[1][0].shape
        (3,)
    """
    check_model(model, "model")
    vocab = _embedding_vocab(model)
    if model.inputs:
        nested = model.input
    else:
        spec = model.save_spec(dynamic_batch=True) if hasattr(model, "save_spec") else None
        if not spec or not spec[0]:
            raise ValueError(
                f"`model` {model.name!r} has no known inputs: build it with keras.Input "
                "(functional API) or call it once on a batch of data before exporting it."
            )
        nested = spec[0][0]

    def one(name: str, t: Any) -> InputSpec:
        layer = keras_layer_of(t)
        layer_name = getattr(layer, "name", name)
        shape = tuple(None if d is None else int(d) for d in t.shape[1:])
        return InputSpec(name, shape, tf.as_dtype(t.dtype).name, vocab.get(layer_name))

    if isinstance(nested, Mapping):
        return "dict", tuple(one(str(k), v) for k, v in nested.items())
    if isinstance(nested, (list, tuple)):
        if len(nested) == 1:
            t = nested[0]
            return "single", (one(_tensor_name(t, model, 0), t),)
        return "list", tuple(one(_tensor_name(t, model, i), t) for i, t in enumerate(nested))
    return "single", (one(_tensor_name(nested, model, 0), nested),)


def _tensor_name(t: Any, model: keras.Model, i: int) -> str:
    names = getattr(model, "input_names", None) or []
    if i < len(names):
        return str(names[i])
    name = getattr(t, "name", None) or f"input_{i}"
    return str(name).split(":")[0]


def fine_tune(
    model: keras.Model,
    data: Any,
    *,
    optimizer: str,
    learning_rate: float,
    loss: Any,
    epochs: int,
    batch_size: int,
    verbose: Any,
    callbacks: list,
) -> keras.callbacks.History:
    """Compile ``model`` with ``FINE_TUNE_OPTIMIZERS[optimizer](learning_rate)`` and ``loss``,
    then fit it on ``data``: a ``tf.data.Dataset`` of ``(x, y)`` batches or an ``(x, y)``
    tuple (batched by ``batch_size``).

    Raises:
        TypeError: ``data`` is neither.

    Example:
        >>> history = fine_tune(model, (x, y), optimizer="adam", learning_rate=1e-3,
        ...     loss="mse", epochs=1, batch_size=32, verbose=0, callbacks=[])  # doctest: +SKIP
    """
    model.compile(optimizer=FINE_TUNE_OPTIMIZERS[optimizer](learning_rate), loss=loss)
    fit_args: dict[str, Any] = {"epochs": epochs, "verbose": verbose, "callbacks": callbacks}
    if isinstance(data, tf.data.Dataset):
        return model.fit(data, **fit_args)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return model.fit(data[0], data[1], batch_size=batch_size, **fit_args)
    raise TypeError(must_be("data", "a tf.data.Dataset of (x, y) batches or an (x, y) tuple", data))
