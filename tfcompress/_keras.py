"""The one place tfcompress imports Keras: tf_keras (Keras 2, which TFMOT 0.8 needs).

It sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow builds ``tf.keras``, so ``tf.keras`` and
``tf_keras`` are the same objects; every other module imports ``keras`` and ``tf`` from here.

Example:
    >>> from tfcompress._keras import keras, tf
    >>> tf.keras.Model is keras.Model
    True
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

_log = logging.getLogger("tfcompress")

_LEGACY = os.environ.get("TF_USE_LEGACY_KERAS")
if _LEGACY in (None, ""):
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
elif _LEGACY not in ("1", "true", "True"):  # the values TF 2.21 reads as legacy Keras
    raise ImportError(
        f"TF_USE_LEGACY_KERAS={_LEGACY} asks TensorFlow for Keras 3, but tfcompress and TFMOT "
        "work on Keras 2 (tf_keras) only: unset it or set TF_USE_LEGACY_KERAS=1 before "
        "importing tfcompress (and build models with `import tf_keras as keras`)."
    )

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = [
    "keras",
    "tf",
    "check_keras_file",
    "check_model",
    "is_keras3_object",
    "tf_keras_is_tf_keras",
]


def tf_keras_is_tf_keras() -> bool:
    """Whether ``tf.keras`` resolves to ``tf_keras`` in this process.

    It is False only when something touched ``tf.keras`` (resolving it to Keras 3) before
    tfcompress was imported; tfcompress still works, but ``tf.keras.layers`` then builds Keras 3
    layers that tfcompress rejects.
    """
    try:
        return tf.keras.Model is keras.Model
    except Exception:  # pragma: no cover - tf.keras unavailable
        return False


if not tf_keras_is_tf_keras():
    _log.warning(
        "tf.keras already resolved to Keras 3 before tfcompress was imported. Build models with "
        "`import tf_keras as keras` (or import tfcompress before touching tf.keras)."
    )


def is_keras3_object(obj: object) -> bool:
    """True when ``obj`` is a Keras 3 model or layer (module ``keras`` / ``keras.src``)."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module == "keras" or module.startswith(("keras.", "keras.src")):
            return True
    return False


def check_model(model: object, argument: str = "model") -> keras.Model:
    """Return ``model`` if it is a tf_keras model, else raise a ``TypeError`` that says why.

    Args:
        model: the object a public function received.
        argument: the argument's name, used in the error message.

    Raises:
        TypeError: ``model`` is a Keras 3 model, or not a Keras model at all.

    Example:
        >>> m = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
        >>> check_model(m) is m
        True
    """
    if isinstance(model, keras.Model):
        return model
    if is_keras3_object(model):
        raise TypeError(
            f"`{argument}` is a Keras 3 model ({type(model).__module__}.{type(model).__name__}); "
            "tfcompress works on Keras 2 models because TFMOT does. Build it with tf_keras: "
            "`import tf_keras as keras` (or import tfcompress before tensorflow so that "
            "`tf.keras` is tf_keras), then rebuild the model and load its weights."
        )
    raise TypeError(
        f"`{argument}` must be a tf_keras.Model, received {type(model).__module__}."
        f"{type(model).__name__}: {model!r:.80}."
    )


_KERAS3_FILE_FIX = (
    "tfcompress works on Keras 2 (tf_keras) models because TFMOT does. Convert it once: load it "
    "with Keras 3 (`import keras; m3 = keras.saving.load_model(path)`), build the same "
    "architecture with `import tf_keras as keras` (or in a process that imports tfcompress "
    "before tensorflow), copy the weights layer by layer (`for a, b in zip(m2.layers, "
    "m3.layers): a.set_weights(b.get_weights())`), and save it with tf_keras: "
    "`m2.save('model.keras')`."
)


def check_keras_file(path: str | os.PathLike, argument: str = "path") -> Path:
    """Check that ``path`` is a readable tf_keras model file before Keras tries to load it.

    Keras' own errors for a bad file say nothing about the file (an h5py ``OSError`` for a
    truncated archive, "Unrecognized keyword arguments: ['batch_shape']" for a Keras 3 file).
    This check reads only the archive's directory and ``metadata.json``.

    Args:
        path: a ``.keras`` archive (checked), or a legacy ``.h5`` file or SavedModel directory
            (checked to exist; Keras reads them).
        argument: the argument's name, used in error messages.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError: ``path`` is not a path, or the file was saved by Keras 3.
        ValueError: the file does not exist, is empty, truncated or not a Keras archive.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> m.save("/tmp/tiny.keras")
        >>> check_keras_file("/tmp/tiny.keras").name
        'tiny.keras'
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise TypeError(
            f"`{argument}` must be a path to a .keras file, received "
            f"{type(path).__name__}: {path!r:.80}."
        )
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ValueError(
                f"`{argument}` {str(path)!r} is a directory without saved_model.pb; pass the "
                "model's .keras file (save it with model.save('name.keras'))."
            )
        return path
    if not path.is_file():
        raise ValueError(
            f"`{argument}` {str(path)!r} does not exist; pass the model's .keras file (save it "
            "with model.save('name.keras'))."
        )
    size = path.stat().st_size
    if size == 0:
        raise ValueError(
            f"`{argument}` {str(path)!r} is empty (0 bytes), probably from an interrupted save; "
            "save the model again with model.save(path)."
        )
    if path.suffix == ".h5":
        return path
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"`{argument}` {str(path)!r} ({size} bytes) is not a Keras archive: it is truncated "
            "or not a .keras file. Save the model again with model.save('name.keras')."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(
            f"`{argument}` {str(path)!r} is a damaged Keras archive ({err}); save the model "
            "again with model.save('name.keras')."
        ) from None
    if "config.json" not in names:
        raise ValueError(
            f"`{argument}` {str(path)!r} is a zip file but not a Keras archive (no config.json; "
            f"it holds {sorted(names)[:5]}). Save the model with model.save('name.keras')."
        )
    version = str(meta.get("keras_version", "")) if isinstance(meta, dict) else ""
    if version.split(".")[0] == "3":
        raise TypeError(
            f"`{argument}` {str(path)!r} was saved by Keras {version} (Keras 3). "
            + _KERAS3_FILE_FIX
        )
    return path
