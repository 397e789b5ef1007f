"""Data for tfcompress: a simulated e-commerce world and loaders for the user's own files.

Every loader returns a :class:`TaskData` (batched ``tf.data`` splits of ``(features, label)``
and the :class:`Schema` the reference models are built from). Conventions: docs/data.md.

Example:
    >>> from tfcompress import data
    >>> task = data.load_task("ctr", n_samples=2_000, seed=0)
    >>> sorted(task.schema.names)[:2]
    ['hist_categories', 'hist_item_ids']
"""

from tfcompress.data._common import check_memory
from tfcompress.data.csv_loader import load_csv
from tfcompress.data.files import FORMATS, LOADER_OPTIONS, file_format, load_file
from tfcompress.data.libfm import load_libfm
from tfcompress.data.movielens import load_movielens
from tfcompress.data.schema import Feature, Schema, TaskData
from tfcompress.data.simulated import TASK_NAMES, ctr, load_task, profile, retrieval, roc_auc
from tfcompress.data.summary import DataSummary
from tfcompress.data.text import product_text
from tfcompress.data.world import World

__all__ = [
    "FORMATS",
    "LOADER_OPTIONS",
    "TASK_NAMES",
    "DataSummary",
    "Feature",
    "Schema",
    "TaskData",
    "World",
    "check_memory",
    "ctr",
    "file_format",
    "load_csv",
    "load_file",
    "load_libfm",
    "load_movielens",
    "load_task",
    "product_text",
    "profile",
    "retrieval",
    "roc_auc",
]
