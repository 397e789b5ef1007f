"""Data for tfcompress: a simulated e-commerce world and loaders for the user's own files.

Every function returns a :class:`TaskData`: batched ``tf.data.Dataset`` s of
``(features dict, label)`` for train / validation / test, plus the :class:`Schema` that the
reference models in :mod:`tfcompress.models` are built from, and ``info`` with the numpy arrays
behind each split (``info["arrays"]["train"] == (features, labels)``) and the row counts
(``info["rows"]``).

Modules (all names users need are re-exported here):

* ``schema``: :class:`Feature`, :class:`Schema`, :class:`TaskData`;
* ``world``: :class:`World`, the hidden state of the simulated shop;
* ``simulated``: the tasks :func:`ctr`, :func:`retrieval`, :func:`profile`, :func:`load_task`
  and the metric :func:`roc_auc`;
* ``csv_loader``, ``libfm``, ``movielens``: :func:`load_csv`, :func:`load_libfm`,
  :func:`load_movielens`;
* ``_common``: the helpers they share (argument checks, file reading, splits, sequence padding,
  building the datasets).

Conventions shared by the file loaders:

* ids are ``int32``; id 0 is padding / out-of-vocabulary / missing; numeric values are
  ``float32``, standardised with the mean and std of the TRAIN split (recorded in
  ``schema.metadata["numeric_stats"]`` so that serving code can reuse them).
* sequences are front-padded with 0 and truncated to their last values (most recent last).
* the split is deterministic for a ``seed``; the training dataset is shuffled with that seed;
  validation and test keep file order (MovieLens: user, then time order).
* bad files raise ``ValueError`` naming the file, the line and the problem.
* files ending in ``.gz`` are read through gzip; text must be UTF-8 (a BOM is accepted).

Example:
    >>> from tfcompress import data
    >>> task = data.load_task("ctr", n_samples=2_000, seed=0)
    >>> sorted(task.schema.names)[:2]
    ['hist_categories', 'hist_item_ids']
"""

from tfcompress.data.csv_loader import load_csv
from tfcompress.data.libfm import load_libfm
from tfcompress.data.movielens import load_movielens
from tfcompress.data.schema import Feature, Schema, TaskData
from tfcompress.data.simulated import TASK_NAMES, ctr, load_task, profile, retrieval, roc_auc
from tfcompress.data.world import World

__all__ = [
    "TASK_NAMES",
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
    "roc_auc",
]
