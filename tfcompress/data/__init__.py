"""Data for tfcompress: a simulated e-commerce world and loaders for the user's own files.

Every function returns a :class:`TaskData`: batched ``tf.data.Dataset`` s of
``(features dict, label)`` for train / validation / test, plus the :class:`Schema` that the
reference models in :mod:`tfcompress.models` are built from.

Example:
    >>> from tfcompress import data
    >>> task = data.load_task("ctr", n_samples=2_000, seed=0)
    >>> sorted(task.schema.names)[:2]
    ['hist_categories', 'hist_item_ids']
"""

from tfcompress.data.loaders import load_csv, load_libfm, load_movielens
from tfcompress.data.schema import Feature, Schema, TaskData
from tfcompress.data.simulated import World, ctr, load_task, profile, retrieval

__all__ = [
    "Feature",
    "Schema",
    "TaskData",
    "World",
    "ctr",
    "load_csv",
    "load_libfm",
    "load_movielens",
    "load_task",
    "profile",
    "retrieval",
]
