"""The one place tfcompress imports Keras.

TFMOT 0.8 only works with Keras 2, shipped as the ``tf_keras`` package. TensorFlow 2.16+ resolves
``tf.keras`` lazily, on first attribute access, to Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is
set by then. This module sets it before TensorFlow is imported, so for a user who imports
tfcompress (or TFMOT) first, ``tf.keras`` and ``tf_keras`` are the same objects.

Every other module of the package does ``from tfcompress.keras_compat import keras, tf``.

Example:
    >>> from tfcompress.keras_compat import keras, tf
    >>> tf.keras.Model is keras.Model
    True
"""

from __future__ import annotations

import logging
import os

_log = logging.getLogger("tfcompress")

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    if os.environ.get("TF_USE_LEGACY_KERAS") not in (None, ""):
        _log.warning(
            "TF_USE_LEGACY_KERAS=%r overridden with '1': tfcompress and TFMOT need Keras 2 "
            "(tf_keras).",
            os.environ["TF_USE_LEGACY_KERAS"],
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf", "check_model", "is_keras3_object", "tf_keras_is_tf_keras"]


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
