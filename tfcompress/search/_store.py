"""The search's cache on disk: content hashes of models and data (its keys) and atomic writes of
what a candidate leaves there (outputs, shrunk models).

Example:
    >>> import hashlib
    >>> digest = hashlib.sha256()
    >>> hash_arrays(digest, {"x": [1, 2]})
    >>> len(digest.hexdigest())
    64
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._keras import keras

__all__ = ["fingerprint", "hash_arrays", "save_array", "save_model"]


def hash_arrays(digest: Any, value: Any) -> None:
    """Feed ``value`` (arrays, nested in dicts / lists / tuples) into ``digest``: dtype, shape
    and bytes of each array, dict keys in sorted order."""
    if isinstance(value, dict):
        for key in sorted(value):
            digest.update(key.encode())
            hash_arrays(digest, value[key])
    elif isinstance(value, (list, tuple)):
        for v in value:
            hash_arrays(digest, v)
    else:
        array = np.ascontiguousarray(np.asarray(value))
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(array.tobytes())


def fingerprint(model: keras.Model) -> str:
    """sha256 of ``model``'s architecture (its JSON) and weights."""
    digest = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        hash_arrays(digest, w)
    return digest.hexdigest()


def save_array(path: Path, values: np.ndarray) -> None:
    """``np.save`` to a temp file, then rename: an interrupted call leaves no half file."""
    temp = path.with_name(path.name + ".tmp.npy")
    np.save(temp, values)
    os.replace(temp, path)


def save_model(model: keras.Model, path: Path) -> None:
    """``model.save`` to a temp file, then rename."""
    temp = path.with_name("tmp-" + path.name)
    model.save(temp)
    os.replace(temp, path)
