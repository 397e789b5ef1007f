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
  :func:`load_movielens`; ``files``: :func:`load_file` (picks the loader from the file name,
  passes the options; :data:`LOADER_OPTIONS` lists them per format);
* ``inference``: the rules that decide a file column's kind and the leak check;
* ``summary``: :class:`DataSummary`, what ``task.summary()`` returns for every task;
* ``epochs``: ``epoch_batches``, the training split in an order that is a function of a seed and
  the training step (what ``tfcompress run`` trains on, so that a resumed run equals an
  uninterrupted one);
* ``_common``: the helpers they share (argument checks, file reading, splits, sequence padding,
  building the datasets); ``_csv_scan`` / ``_csv_build``: the streamed CSV pass.

Conventions shared by the file loaders:

* ids are ``int32``; id 0 is padding / out-of-vocabulary / missing; numeric values are
  ``float32``, standardised with the mean and std of the TRAIN split (recorded in
  ``schema.metadata["numeric_stats"]`` so that serving code can reuse them).
* sequences are front-padded with 0 and truncated to their last values (most recent last).
* the split is deterministic for a ``seed`` (``split_mode``: ``"random"``, ``"time"``,
  ``"by_user"``; MovieLens also ``"leave_last_out"``, its default); the training dataset is
  shuffled with that seed; validation and test keep file order (time order for ``"time"``;
  MovieLens: user, then time order). ``info["split_rows"]`` maps examples to data rows.
* every file load checks for leaks (a column that alone predicts the label on train with
  AUC >= 0.99: a WARNING, or ``ValueError`` with ``strict=True``) and ``task.summary()``
  tells what each column became.
* bad files raise ``ValueError`` naming the file, the line and the problem.
* hostile values never load as silently wrong data (``tests/test_hostile_data.py``): a value
  too large to standardise (``1e300``) and an ``inf`` / ``nan`` cell in a column of numbers
  raise naming the line, column and value; integer ids beyond float or int64 precision stay
  distinct (CSV: categorical text, logged; MovieLens: ids 1..n in numeric order); an inferred
  libFM index space above 2**24 raises naming the line of the largest index (pass
  ``n_features=``); a corrupt, truncated or non-gzip ``.gz`` file raises naming the file.
* files ending in ``.gz`` are read through gzip; text must be UTF-8 (a BOM is accepted).

Example:
    >>> from tfcompress import data
    >>> task = data.load_task("ctr", n_samples=2_000, seed=0)
    >>> sorted(task.schema.names)[:2]
    ['hist_categories', 'hist_item_ids']
"""

from tfcompress.data.csv_loader import load_csv
from tfcompress.data.files import FORMATS, LOADER_OPTIONS, file_format, load_file
from tfcompress.data.libfm import load_libfm
from tfcompress.data.movielens import load_movielens
from tfcompress.data.schema import Feature, Schema, TaskData
from tfcompress.data.simulated import TASK_NAMES, ctr, load_task, profile, retrieval, roc_auc
from tfcompress.data.summary import DataSummary
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
    "ctr",
    "file_format",
    "load_csv",
    "load_file",
    "load_libfm",
    "load_movielens",
    "load_task",
    "profile",
    "retrieval",
    "roc_auc",
]
