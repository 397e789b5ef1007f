"""The one place where pruning recognises layer classes of third-party libraries (Model Garden,
TensorFlow Recommenders) by their qualified class name, so that neither library is imported.

Example:
    >>> from tfcompress._keras import keras
    >>> thirdparty_kind(keras.layers.Dense(2)) is None
    True
"""

from __future__ import annotations

from typing import Any

__all__ = ["thirdparty_kind"]

#: qualified class name -> the kind of handling shrink gives it
_KINDS = {
    "official.nlp.modeling.layers.transformer_encoder_block.TransformerEncoderBlock": (
        "transformer_block"
    ),
    "tensorflow_recommenders.layers.feature_interaction.dcn.Cross": "tfrs_cross",
}


def thirdparty_kind(layer: Any) -> str | None:
    """``"transformer_block"``, ``"tfrs_cross"`` or None, from the class (or a base class) name.

    Example:
        >>> thirdparty_kind(object()) is None
        True
    """
    for cls in type(layer).__mro__:
        kind = _KINDS.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind is not None:
            return kind
    return None
