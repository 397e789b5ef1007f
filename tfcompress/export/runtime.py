"""Run Keras models, SavedModels and ``.tflite`` files behind one interface (:func:`load_variant`):
a dict of arrays keyed by input name in, a dict of outputs out.

Example:
    >>> from tfcompress._keras import keras
    >>> inp = keras.Input((3,), name="x")
    >>> model = keras.Model(inp, keras.layers.Dense(1)(inp))
    >>> load_variant(model)({"x": np.ones((2, 3), "float32")})["dense"].shape  # doctest: +SKIP
    (2, 1)
"""

from __future__ import annotations

import functools
import json
import logging
import os
import weakref
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._inputs import (
    RANDOM_BATCH_SIZE,
    Batch,
    InputSpec,
    as_numpy,
    collect_examples,
    iter_batches,
    model_input_specs,
    random_batch,
)
from tfcompress._keras import check_keras_file, check_model, keras, tf
from tfcompress._validation import check_int
from tfcompress.export.manifest import MANIFEST_NAME, check_artifact

_log = logging.getLogger("tfcompress")

__all__ = [
    "RANDOM_BATCH_SIZE",
    "InputSpec",
    "Variant",
    "collect_examples",
    "load_variant",
    "model_input_specs",
    "random_batch",
]

_as_np = as_numpy  # kept for tfcompress.export, which imports it from here


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
    model: keras.Model, *, jit_compile: bool = False, cached: bool = True
) -> tf.types.experimental.GenericFunction:
    """A ``tf.function`` taking a dict keyed by input name and returning a dict of outputs.

    Cached per model and ``jit_compile`` (the function reads the model's variables by reference,
    so later weight updates are seen), which avoids re-tracing on every export.
    ``cached=False`` traces a fresh one (an export that traces under patched layer code).
    """
    if not cached:
        return _make_serving_function(model, jit_compile)
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
        input_specs: one :class:`InputSpec` per input (in the model's input order when
            :attr:`input_order` is known).
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
        *,
        ordered: bool = False,
    ) -> None:
        self.name = name
        self.format = fmt
        self.path = path
        self.structure = structure
        self.input_specs = input_specs
        self.model = model
        self._ordered = ordered or structure != "dict" or len(input_specs) == 1

    @property
    def input_order(self) -> tuple[str, ...] | None:
        """The input names in the model's positional order; None when the model does not say.

        Positional data (an array, a list of arrays) is accepted only when it is known.
        """
        return tuple(s.name for s in self.input_specs) if self._ordered else None

    def adopt_input_order(self, names: tuple[str, ...] | list[str]) -> bool:
        """Take the positional order of the inputs from elsewhere (e.g. the source Keras model).

        Returns whether it was adopted: False when ``names`` are not exactly this variant's input
        names, or the variant already knows its order (that order wins).

        Example:
            >>> variant.adopt_input_order(("user_id", "item_id"))  # doctest: +SKIP
            True
        """
        if self._ordered:
            return False
        by_name = {s.name: s for s in self.input_specs}
        if sorted(names) != sorted(by_name):
            return False
        self.input_specs = tuple(by_name[n] for n in names)
        self._ordered = True
        return True

    def batches(self, data: Any, argument: str = "data") -> Iterator[Batch]:
        """Read ``data`` as ``model.fit`` would, one validated batch at a time (one pass).

        See :func:`tfcompress._inputs.iter_batches` for the forms accepted.

        Example:
            >>> sum(len(b) for b in variant.batches(task.test))  # doctest: +SKIP
            20000
        """
        return iter_batches(
            data,
            self.structure,
            self.input_specs,
            argument,
            positional=self.input_order is not None,
        )

    def collect(
        self, data: Any, max_examples: int | None = None, argument: str = "data"
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Up to ``max_examples`` examples of ``data`` (None: all) as one batch, and the labels.

        Example:
            >>> features, labels = variant.collect(task.test)  # doctest: +SKIP
        """
        return collect_examples(
            data,
            self.structure,
            self.input_specs,
            max_examples,
            argument,
            positional=self.input_order is not None,
        )

    def __call__(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - overridden

    def invoker(self, features: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """A call that runs the model on ``features`` again, for timing what serving pays.

        A ``.tflite`` variant sets its inputs once and returns the interpreter's ``invoke``
        (a native server writes its inputs into the interpreter's buffers and invokes: the
        Python around it, ~3 µs a call, is not the model's); other variants return a call of
        the variant itself (TensorFlow's per-call cost is part of serving them).

        Example:
            >>> run = variant.invoker(batch)  # doctest: +SKIP
            >>> run()  # doctest: +SKIP
        """
        return functools.partial(self, features)

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


def _recorded_input_order(path: str, specs: tuple[InputSpec, ...]) -> tuple[InputSpec, ...] | None:
    """``specs`` in the Keras input order the manifest beside ``path`` records; None: unknown."""
    artifact = Path(path)
    manifest = artifact.parent / MANIFEST_NAME
    if len(specs) < 2 or not manifest.is_file():
        return None
    try:
        entry = json.loads(manifest.read_text(encoding="utf-8"))["artifacts"][artifact.name]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = entry.get("inputs") if isinstance(entry, dict) else None
    by_name = {s.name: s for s in specs}
    if names is None:
        return None
    if not isinstance(names, list) or sorted(map(str, names)) != sorted(by_name):
        _log.warning(
            "%s: the input order %r recorded in %s does not match the inputs %s; ignoring it.",
            path,
            names,
            manifest,
            sorted(by_name),
        )
        return None
    return tuple(by_name[str(n)] for n in names)


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
        recorded = _recorded_input_order(path, specs)
        super().__init__(
            name, "saved_model", path, "dict", recorded or specs, ordered=recorded is not None
        )
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

        size = os.path.getsize(path)
        try:
            self._interpreter = Interpreter(model_path=path, num_threads=num_threads)
            sigs = self._interpreter.get_signature_list()
        except (ValueError, RuntimeError) as e:
            raise ValueError(
                f"`path_or_model` {path!r} ({size} bytes) is not a valid TFLite model ({e}); the "
                "file is empty, truncated or corrupt: export it again."
            ) from e
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
        recorded = _recorded_input_order(path, tuple(specs))
        super().__init__(
            name, "tflite", path, "dict", recorded or tuple(specs), ordered=recorded is not None
        )
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

    def invoker(self, features):
        self(features)  # resizes, quantizes and sets the inputs, which stay set
        return self._interpreter.invoke

    @property
    def interpreter(self):
        """The ``ai_edge_litert`` interpreter (e.g. for ``get_tensor_details()``)."""
        return self._interpreter


def load_variant(
    path_or_model: keras.Model | str | os.PathLike,
    *,
    name: str | None = None,
    num_threads: int = 1,
    verify: bool = True,
) -> Variant:
    """Load a Keras model, SavedModel directory or ``.tflite`` file as a runnable :class:`Variant`.

    Args:
        path_or_model: a tf_keras model, a SavedModel directory, a ``.tflite`` file, or a
            ``.keras`` / ``.h5`` file (loaded with ``safe_mode=True``).
        name: display name; defaults to the model name or the file name.
        num_threads: TFLite interpreter threads.
        verify: check a ``.tflite`` file or SavedModel directory against the sha256 recorded in
            the ``manifest.json`` beside it, when the manifest lists it (False: skip, with a
            WARNING).

    Raises:
        TypeError: neither a path nor a tf_keras model; a ``.keras`` file saved by Keras 3.
        ValueError: the path does not exist or has an unknown type; an empty or truncated
            ``.keras`` or ``.tflite`` file; an artifact whose bytes differ from its manifest.

    Example:
        >>> v = load_variant("savedmodels/ctr.tflite")  # doctest: +SKIP
        >>> v({"user_id": ids, "price": prices})["output"].shape  # doctest: +SKIP
        (32, 1)
    """
    check_int(num_threads, "num_threads", minimum=1)
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
            check_artifact(path, verify=verify)
            return _SavedModelVariant(str(path), label)
        suffix = path.suffix.lower()
        if suffix == ".tflite":
            check_artifact(path, verify=verify)
            return _TFLiteVariant(str(path), label, num_threads=num_threads)
        if suffix in (".keras", ".h5"):
            check_keras_file(path, argument="path_or_model")
            if not _needs_tfmot(path):  # a plain model: TFMOT (seconds to import) stays out
                model = keras.models.load_model(str(path), compile=False, safe_mode=True)
                return _KerasVariant(model, label)
            # pruning wrappers and QAT classes in scope too (both import TFMOT: only here)
            import tfcompress.pruning.schedule  # noqa: F401
            from tfcompress.quantization.saving import load_quantized

            model = load_quantized(path, compile=False)  # safe_mode=True
            return _KerasVariant(model, label)
        raise ValueError(
            f"`path_or_model` {str(path)!r} has an unknown file type {suffix!r}; expected a "
            "SavedModel directory, '.tflite', '.keras' or '.h5'."
        )
    model = check_model(path_or_model, "path_or_model")
    return _KerasVariant(model, name or model.name)


#: what a ``.keras`` config names when loading it needs TFMOT's classes (pruning and QAT
#: wrappers, quantizers) or ours built on them
_TFMOT_MARKERS = (
    "tensorflow_model_optimization",
    "tfcompress.quantization.configs",
    "tfcompress.quantization.composite",
    "tfcompress.pruning",
)


def _needs_tfmot(path: Path) -> bool:
    """Whether the ``.keras`` archive at ``path`` names a TFMOT class (True when it cannot be
    read as one: an ``.h5`` file, a damaged archive; the loader then says what is wrong)."""
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("config.json").decode("utf-8", errors="replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return True
    return any(marker in text for marker in _TFMOT_MARKERS)
