"""Training batches whose order is a function of a seed and the training step: :func:`epoch_batches`
(so a resumed run sees the batches an uninterrupted one saw; see docs/recipes.md).

Example:
    >>> from tfcompress import data
    >>> task = data.load_task("ctr", n_samples=1_000)  # doctest: +SKIP
    >>> step = [0]
    >>> train = epoch_batches(task, batch_size=128, seed=7,
    ...                       position=lambda: step[0])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np

from tfcompress._keras import tf
from tfcompress._validation import check_int
from tfcompress.data.schema import TaskData

_log = logging.getLogger("tfcompress")


def _check(task: object, batch_size: object, seed: object, position: object) -> None:
    if not isinstance(task, TaskData):
        raise TypeError(
            f"epoch_batches: `task` must be a tfcompress.data.TaskData, received "
            f"{type(task).__name__}; load it with tfcompress.data.load_task or "
            "load_file."
        )
    for name, value, minimum in (("batch_size", batch_size, 1), ("seed", seed, 0)):
        check_int(value, name, minimum=minimum, where="epoch_batches")
    if not callable(position):
        raise TypeError(
            f"epoch_batches: `position` must be a callable returning an int (e.g. "
            f"lambda: int(model.optimizer.iterations)), received {position!r:.80}."
        )


def epoch_batches(
    task: TaskData,
    *,
    batch_size: int,
    seed: int,
    position: Callable[[], int],
) -> tf.data.Dataset:
    """The training split of ``task`` in batches, each epoch in the order ``(seed, position())``.

    The whole training split is permuted (not a bounded shuffle buffer) with numpy's
    ``default_rng([seed, position()])`` when an iteration starts, then read in batches of
    ``batch_size`` from the arrays behind ``task`` (``task.info["arrays"]["train"]``): features
    in schema order, like ``task.train``. The dataset's cardinality is known, so Keras starts a
    new iteration (a new order) every epoch.

    Args:
        task: a :class:`~tfcompress.data.schema.TaskData` from a tfcompress loader.
        batch_size: examples per batch (the last batch may be smaller).
        seed: the order's seed (e.g. the run seed combined with the stage).
        position: called when each iteration starts; its int (e.g. the optimizer's step count)
            is the second half of the order's seed.

    Returns:
        A ``tf.data.Dataset`` of ``(features dict, labels)`` batches. A task without arrays (not
        built by a tfcompress loader) returns ``task.train`` unchanged, with a WARNING that its
        order depends on how often it was iterated before.

    Raises:
        TypeError: ``task`` is not a TaskData, ``position`` is not callable, an int argument is
            not an int.
        ValueError: ``batch_size < 1`` or ``seed < 0``.

    Example:
        >>> from tfcompress import data
        >>> task = data.load_task("ctr", n_samples=500)  # doctest: +SKIP
        >>> ds = epoch_batches(task, batch_size=64, seed=1, position=lambda: 0)  # doctest: +SKIP
    """
    _check(task, batch_size, seed, position)
    arrays = task.info.get("arrays", {}).get("train") if isinstance(task.info, dict) else None
    if arrays is None:
        _log.warning(
            "epoch_batches: this task has no training arrays (not built by a tfcompress "
            "loader); its training order depends on how often it was iterated before."
        )
        return task.train
    features, labels = arrays
    names = [f.name for f in task.schema]
    columns = [np.asarray(features[name]) for name in names] + [np.asarray(labels)]
    rows = len(columns[-1])
    batch_size, seed = int(batch_size), int(seed)

    def order() -> Iterator[np.ndarray]:
        key = int(position())
        permutation = np.random.default_rng([seed, key]).permutation(rows)
        for start in range(0, rows, batch_size):
            yield permutation[start : start + batch_size]

    def gather(index: np.ndarray) -> list[np.ndarray]:
        return [c[index] for c in columns]

    def fetch(index: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        out = tf.numpy_function(gather, [index], [tf.as_dtype(c.dtype) for c in columns])
        for tensor, column in zip(out, columns, strict=True):
            tensor.set_shape((None, *column.shape[1:]))
        return {name: out[i] for i, name in enumerate(names)}, out[-1]

    ds = tf.data.Dataset.from_generator(order, output_signature=tf.TensorSpec([None], tf.int64))
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
    return ds.map(fetch).prefetch(tf.data.AUTOTUNE)
