"""Run Keras models, SavedModels and ``.tflite`` files behind one interface, and feed them data.

:func:`load_variant` gives Keras models, SavedModel directories and ``.tflite`` files one calling
convention: a dict of numpy arrays keyed by input name in, a dict of float outputs keyed by output
name out. :func:`model_input_specs` describes a model's inputs and :func:`collect_examples` takes
validated examples from a ``tf.data.Dataset``, a dict of arrays or an iterable; the export's
parity check and the benchmark both run on these.

Example:
    >>> from tfcompress.keras_compat import keras
    >>> inp = keras.Input((3,), name="x")
    >>> model = keras.Model(inp, keras.layers.Dense(1)(inp))
    >>> load_variant(model)({"x": np.ones((2, 3), "float32")})["dense"].shape  # doctest: +SKIP
    (2, 1)
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.keras_compat import check_model, keras, tf

__all__ = [
    "InputSpec",
    "Variant",
    "collect_examples",
    "load_variant",
    "model_input_specs",
]

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

    def tensor_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec((None, *self.shape), tf.as_dtype(self.dtype), name=self.name)


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
            for node in layer._inbound_nodes:
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
        layer = getattr(getattr(t, "_keras_history", None), "layer", None)
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


def _as_np(value: Any) -> np.ndarray:
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value.numpy()
    return np.asarray(value)


def _split_element(element: Any, structure: str) -> tuple[Any, Any]:
    """Split one data element into (features, label or None)."""
    if structure == "list":
        if (
            isinstance(element, (tuple, list))
            and element
            and isinstance(element[0], (tuple, list, Mapping))
        ):
            return element[0], (element[1] if len(element) > 1 else None)
        return element, None
    if isinstance(element, tuple):
        if not element:
            raise ValueError("a data element is an empty tuple; expected features or (x, y).")
        return element[0], (element[1] if len(element) > 1 else None)
    return element, None


def _conform(
    features: Any, structure: str, specs: tuple[InputSpec, ...], argument: str
) -> tuple[dict[str, np.ndarray], bool]:
    """Validate one element's features against ``specs``.

    Returns a batched dict of arrays and whether the element was a single (unbatched) example.
    """
    if structure == "dict":
        if not isinstance(features, Mapping):
            raise ValueError(
                f"`{argument}` must hold dicts of features keyed by the model's input names "
                f"{[s.name for s in specs]}; received {type(features).__name__}."
            )
        missing = [s.name for s in specs if s.name not in features]
        if missing:
            raise ValueError(
                f"`{argument}` has no value for model input(s) {missing}; received keys "
                f"{sorted(map(str, features))}. Pass every input: {[s.name for s in specs]}."
            )
        raw = [features[s.name] for s in specs]
    elif structure == "single":
        if isinstance(features, Mapping):
            if specs[0].name in features and len(features) == 1:
                features = features[specs[0].name]
            else:
                raise ValueError(
                    f"`{argument}`: the model takes one input {specs[0].name!r}, received a dict "
                    f"with keys {sorted(map(str, features))}. Pass the array itself."
                )
        raw = [features]
    else:
        if isinstance(features, Mapping):
            raw = [features.get(s.name) for s in specs]
            missing = [s.name for s, v in zip(specs, raw, strict=True) if v is None]
            if missing:
                raise ValueError(
                    f"`{argument}` has no value for model input(s) {missing}; received keys "
                    f"{sorted(map(str, features))}."
                )
        elif isinstance(features, (list, tuple)) and len(features) == len(specs):
            raw = list(features)
        else:
            raise ValueError(
                f"`{argument}`: the model takes {len(specs)} inputs "
                f"{[s.name for s in specs]}; pass a list of that many arrays or a dict."
            )
    out: dict[str, np.ndarray] = {}
    out_unbatched = False
    for spec, value in zip(specs, raw, strict=True):
        arr = _as_np(value)
        rank = len(spec.shape)
        if arr.ndim == rank:
            arr = arr[None, ...]
            out_unbatched = True
        elif arr.ndim != rank + 1:
            raise ValueError(
                f"`{argument}`: input {spec.name!r} expects per-example shape {spec.shape} "
                f"(batched: {(None, *spec.shape)}), received shape {arr.shape}."
            )
        for got, want in zip(arr.shape[1:], spec.shape, strict=True):
            if want is not None and got != want:
                raise ValueError(
                    f"`{argument}`: input {spec.name!r} expects shape {(None, *spec.shape)}, "
                    f"received shape {arr.shape}."
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
                    f"{arr.dtype}."
                )
        out[spec.name] = arr.astype(want_dt, copy=False)
    return out, out_unbatched


def _iter_elements(data: Any, argument: str) -> Iterator[Any]:
    if isinstance(data, tf.data.Dataset):
        yield from data.as_numpy_iterator()
    elif isinstance(data, Mapping) or (isinstance(data, tuple) and len(data) in (2, 3)):
        yield data  # one batch: features dict, or (x, y[, w])
    elif isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(
            f"`{argument}` must be a tf.data.Dataset, a dict of arrays, or an iterable of feature "
            f"dicts / arrays / (features, label) pairs; received {type(data).__name__}."
        )
    else:
        yield from data


def collect_examples(
    data: Any,
    structure: str,
    specs: tuple[InputSpec, ...],
    max_examples: int | None,
    argument: str = "data",
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Take up to ``max_examples`` examples from ``data`` as one batch, validated against specs.

    ``data`` is a ``tf.data.Dataset`` of features or ``(features, label)`` (batched or not), a
    dict of arrays (one batch), or any iterable of such elements.

    Returns:
        ``(features, labels)``: a dict of arrays of shape ``(n, ...)`` and the labels (or None).

    Raises:
        ValueError: an element does not match the model inputs, or ``data`` is empty.

    Example:
        >>> structure, specs = model_input_specs(model)  # doctest: +SKIP
        >>> feats, labels = collect_examples(task.test, structure, specs, 512)  # doctest: +SKIP
    """
    feats: dict[str, list[np.ndarray]] = {s.name: [] for s in specs}
    labels: list[np.ndarray] = []
    n = 0
    has_label = None
    for element in _iter_elements(data, argument):
        x, y = _split_element(element, structure)
        batch, unbatched = _conform(x, structure, specs, argument)
        size = len(next(iter(batch.values())))
        if has_label is None:
            has_label = y is not None
        take = size if max_examples is None else min(size, max_examples - n)
        for k, v in batch.items():
            feats[k].append(v[:take])
        if has_label and y is not None:
            ya = _as_np(y)
            labels.append((ya[None, ...] if unbatched else ya)[:take])
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


def _output_names(model: keras.Model) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    return [str(n) for n in names]


def _name_outputs(outputs: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(outputs, Mapping):
        return {str(k): v for k, v in outputs.items()}
    flat = tf.nest.flatten(outputs)
    if len(names) != len(flat) or len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(flat))]
    return dict(zip(names, flat, strict=True))


def _structure_inputs(features: Mapping[str, Any], structure: str, specs: tuple[InputSpec, ...]):
    if structure == "dict":
        return {s.name: features[s.name] for s in specs}
    if structure == "single":
        return features[specs[0].name]
    return [features[s.name] for s in specs]


def serving_function(
    model: keras.Model, *, jit_compile: bool = False
) -> tf.types.experimental.GenericFunction:
    """A ``tf.function`` taking a dict keyed by input name and returning a dict of outputs.

    Cached per model and ``jit_compile`` (the function reads the model's variables by reference,
    so later weight updates are seen), which avoids re-tracing on every export.
    """
    cache = _SERVING_CACHE.setdefault(model, {})
    if jit_compile not in cache:
        cache[jit_compile] = _make_serving_function(model, jit_compile)
    return cache[jit_compile]


_SERVING_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _make_serving_function(model: keras.Model, jit_compile: bool) -> Any:
    structure, specs = model_input_specs(model)
    names = _output_names(model)
    signature = {s.name: s.tensor_spec() for s in specs}

    @tf.function(input_signature=[signature], jit_compile=jit_compile)
    def serve(features):
        outputs = model(_structure_inputs(features, structure, specs), training=False)
        return _name_outputs(outputs, names)

    return serve


class Variant:
    """A model to run: a Keras model, a SavedModel directory or a ``.tflite`` file.

    Build it with :func:`load_variant`. Call it with a dict of numpy arrays keyed by input name;
    it returns a dict of float32 numpy outputs keyed by output name (integer TFLite outputs are
    dequantized, float inputs of an integer-interface TFLite model are quantized).

    Attributes:
        name: a display name.
        format: ``"keras"``, ``"saved_model"`` or ``"tflite"``.
        path: the file/directory, or None for an in-memory Keras model.
        structure: ``"dict"``, ``"single"`` or ``"list"`` (how the data's features are laid out).
        input_specs: one :class:`InputSpec` per input.
        model: the Keras model (``format == "keras"``), else None.
    """

    def __init__(
        self,
        name: str,
        fmt: str,
        path: str | None,
        structure: str,
        input_specs: tuple[InputSpec, ...],
        model: keras.Model | None = None,
    ) -> None:
        self.name = name
        self.format = fmt
        self.path = path
        self.structure = structure
        self.input_specs = input_specs
        self.model = model

    def __call__(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - overridden

    def predict(
        self, features: Mapping[str, np.ndarray], batch_size: int = 256
    ) -> dict[str, np.ndarray]:
        """Run over ``features`` in chunks of ``batch_size`` and concatenate the outputs."""
        n = len(next(iter(features.values())))
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, n, batch_size):
            chunk = {k: v[start : start + batch_size] for k, v in features.items()}
            for k, v in self(chunk).items():
                parts.setdefault(k, []).append(v)
        return {k: np.concatenate(v, axis=0) for k, v in parts.items()}

    def __repr__(self) -> str:
        return f"Variant(name={self.name!r}, format={self.format!r}, path={self.path!r})"


class _KerasVariant(Variant):
    def __init__(self, model: keras.Model, name: str) -> None:
        structure, specs = model_input_specs(model)
        super().__init__(name, "keras", None, structure, specs, model)
        self._fn = serving_function(model, jit_compile=False)

    def __call__(self, features):
        out = self._fn(
            {s.name: tf.convert_to_tensor(features[s.name], s.dtype) for s in self.input_specs}
        )
        return {k: np.asarray(v.numpy(), dtype=np.float32) for k, v in out.items()}


class _SavedModelVariant(Variant):
    def __init__(self, path: str, name: str, signature: str = "serving_default") -> None:
        loaded = tf.saved_model.load(path)
        if signature not in loaded.signatures:
            raise ValueError(
                f"SavedModel {path!r} has no {signature!r} signature; it has "
                f"{sorted(loaded.signatures)}. Export it with tfcompress.export.export_saved_model."
            )
        fn = loaded.signatures[signature]
        args, kwargs = fn.structured_input_signature
        if args:
            raise ValueError(
                f"SavedModel {path!r}: signature {signature!r} takes positional inputs; "
                "tfcompress needs named (keyword) inputs."
            )
        specs = tuple(
            InputSpec(k, tuple(None if d is None else int(d) for d in v.shape[1:]), v.dtype.name)
            for k, v in kwargs.items()
        )
        super().__init__(name, "saved_model", path, "dict", specs)
        self._loaded = loaded
        self._fn = fn

    def __call__(self, features):
        out = self._fn(
            **{s.name: tf.convert_to_tensor(features[s.name], s.dtype) for s in self.input_specs}
        )
        return {k: np.asarray(v.numpy(), dtype=np.float32) for k, v in out.items()}


class _TFLiteVariant(Variant):
    def __init__(self, path: str, name: str, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=path, num_threads=num_threads)
        sigs = self._interpreter.get_signature_list()
        if not sigs:
            raise ValueError(
                f"TFLite model {path!r} has no signature; export it with "
                "tfcompress.export.export_tflite so inputs keep their names."
            )
        key = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
        runner = self._interpreter.get_signature_runner(key)
        self._in = runner.get_input_details()
        self._out = runner.get_output_details()
        del runner  # it holds a reference that blocks allocate_tensors()
        specs = []
        for k, d in self._in.items():
            dt = np.dtype(d["dtype"])
            quantized = d["quantization"][0] != 0.0
            shape = tuple(None if int(x) < 0 else int(x) for x in d["shape_signature"][1:])
            specs.append(InputSpec(k, shape, "float32" if quantized else dt.name))
        super().__init__(name, "tflite", path, "dict", tuple(specs))
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._interpreter.allocate_tensors()

    def _resize(self, features) -> None:
        changed = False
        for k, d in self._in.items():
            shape = tuple(features[k].shape)
            if self._shapes.get(k) != shape:
                self._interpreter.resize_tensor_input(d["index"], list(shape))
                self._shapes[k] = shape
                changed = True
        if changed:
            self._interpreter.allocate_tensors()

    def __call__(self, features):
        self._resize(features)
        for k, d in self._in.items():
            value = features[k]
            dt = np.dtype(d["dtype"])
            scale, zero = d["quantization"]
            if scale != 0.0 and np.issubdtype(dt, np.integer):
                info = np.iinfo(dt)
                value = np.clip(np.round(value / scale + zero), info.min, info.max)
            self._interpreter.set_tensor(d["index"], np.ascontiguousarray(value, dtype=dt))
        self._interpreter.invoke()
        out = {}
        for k, d in self._out.items():
            value = self._interpreter.get_tensor(d["index"])
            scale, zero = d["quantization"]
            if scale != 0.0 and np.issubdtype(value.dtype, np.integer):
                value = (value.astype(np.float32) - zero) * scale
            out[k] = np.asarray(value, dtype=np.float32)
        return out

    @property
    def interpreter(self):
        """The ``ai_edge_litert`` interpreter (e.g. for ``get_tensor_details()``)."""
        return self._interpreter


def check_int_arg(value: Any, name: str, minimum: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, received {value!r}.")


def load_variant(
    path_or_model: keras.Model | str | os.PathLike,
    *,
    name: str | None = None,
    num_threads: int = 1,
) -> Variant:
    """Load a Keras model, SavedModel directory or ``.tflite`` file as a runnable :class:`Variant`.

    Args:
        path_or_model: a tf_keras model, a SavedModel directory, a ``.tflite`` file, or a
            ``.keras`` / ``.h5`` file (loaded with ``safe_mode=True``).
        name: display name; defaults to the model name or the file name.
        num_threads: TFLite interpreter threads.

    Raises:
        TypeError: neither a path nor a tf_keras model.
        ValueError: the path does not exist or has an unknown type.

    Example:
        >>> v = load_variant("savedmodels/ctr.tflite")  # doctest: +SKIP
        >>> v({"user_id": ids, "price": prices})["output"].shape  # doctest: +SKIP
        (32, 1)
    """
    check_int_arg(num_threads, "num_threads", 1)
    if isinstance(path_or_model, (str, os.PathLike)):
        path = Path(path_or_model)
        if not path.exists():
            raise ValueError(
                f"`path_or_model` {str(path)!r} does not exist; pass a SavedModel directory, a "
                "'.tflite' file, a '.keras' file or a tf_keras model."
            )
        label = name or path.name
        if path.is_dir():
            if not (path / "saved_model.pb").exists():
                raise ValueError(
                    f"`path_or_model` {str(path)!r} is a directory without saved_model.pb; pass a "
                    "SavedModel directory."
                )
            return _SavedModelVariant(str(path), label)
        suffix = path.suffix.lower()
        if suffix == ".tflite":
            return _TFLiteVariant(str(path), label, num_threads=num_threads)
        if suffix in (".keras", ".h5"):
            model = keras.models.load_model(str(path), compile=False, safe_mode=True)
            return _KerasVariant(model, label)
        raise ValueError(
            f"`path_or_model` {str(path)!r} has an unknown file type {suffix!r}; expected a "
            "SavedModel directory, '.tflite', '.keras' or '.h5'."
        )
    model = check_model(path_or_model, "path_or_model")
    return _KerasVariant(model, name or model.name)
