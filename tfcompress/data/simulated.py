"""Three tasks drawn from the simulated :class:`~tfcompress.data.world.World`: :func:`ctr`,
:func:`retrieval`, :func:`profile` (and :func:`load_task` by name). What they model: docs/data.md.

Example:
    >>> task = ctr(n_samples=2_000, seed=0)
    >>> task.schema.label, round(task.info["oracle_auc"], 1) > 0.5
    ('click', True)
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tfcompress.data._common import SPLITS, build_task, gather_splits, group_split
from tfcompress.data._world_tasks import (
    _contiguous,
    _features,
    _prepare,
    _rng,
    _sequence_features,
    task_memory_bytes,  # noqa: F401  (callers import it from here: recipe/_data.py, tests)
)
from tfcompress.data.schema import Schema, TaskData
from tfcompress.data.text import product_text
from tfcompress.data.world import World, sample_rows, zscore

__all__ = ["World", "ctr", "retrieval", "profile", "load_task", "TASK_NAMES", "roc_auc"]

_log = logging.getLogger("tfcompress")

TASK_NAMES = ("ctr", "retrieval", "profile")
_SHUFFLE_BUFFER = 10_000  # training-shuffle buffer of the simulated tasks


# --------------------------------------------------------------------------- metrics
def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties get half credit).

    Args:
        labels: 0/1 values, any shape (flattened).
        scores: real scores of the same size.

    Returns:
        The AUC in ``[0, 1]``.

    Raises:
        ValueError: sizes differ, or ``labels`` hold only one class.

    Example:
        >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    y = np.asarray(labels).reshape(-1).astype(bool)
    x = np.asarray(scores, np.float64).reshape(-1)
    if y.shape != x.shape:
        raise ValueError(
            f"roc_auc: labels and scores must have the same size, received {y.size} and {x.size}."
        )
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"roc_auc: labels need both classes, received {n_pos} positives and {n_neg} "
            "negatives; pass more samples."
        )
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average 1-based rank of ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ctr(
    *,
    n_samples: int = 20_000,
    seq_len: int = 20,
    batch_size: int = 256,
    seed: int = 0,
    world: World | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    base_ctr: float = 0.2,
    **world_kwargs: Any,
) -> TaskData:
    """Click-through-rate data: (user, candidate item, context, recent behaviour) -> click.

    Each impression belongs to a session with a hidden intent category; the last 1-3 history
    items come from it, and a candidate that matches it is much more likely to be clicked. The
    click model also has interactions a model on single ids cannot express (user taste x
    category, age x price, hour x platform x category, user x item latent affinity). Candidates
    mix popularity-sampled items with items from the user's taste and the session intent.

    Args:
        n_samples: impressions in all splits together.
        seq_len: length of ``hist_item_ids`` / ``hist_categories`` (left-padded with 0).
        batch_size: batch size of the datasets.
        seed: seed of the samples (and of the world when ``world`` is None).
        world: a :class:`World` to draw from; built with ``World.create(seed, **world_kwargs)``
            when None.
        split: train / validation / test fractions, summing to 1.
        base_ctr: the mean click probability the intercept is calibrated to, in (0, 1).
        **world_kwargs: forwarded to :meth:`World.create` (e.g. ``n_items=5_000``).

    Returns:
        A :class:`TaskData` with label ``"click"`` (float32, shape (batch, 1)). ``info`` holds
        ``arrays`` (numpy features and labels per split), ``oracle_auc`` (AUC of the true click
        probability on the test split), ``click_prob`` (true probabilities per split),
        ``base_ctr`` (observed click rate per split) and ``world``.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range.

    Example:
        >>> task = ctr(n_samples=1_000, seq_len=5, seed=0)
        >>> task.schema["hist_item_ids"].shape, task.schema["hist_item_ids"].vocab_name
        ((5,), 'item_id')
    """
    world, sizes, fractions = _prepare(
        "ctr", n_samples, seq_len, batch_size, seed, world, split, world_kwargs
    )
    if (
        isinstance(base_ctr, bool)
        or not isinstance(base_ctr, numbers.Real)
        or not 0.0 < float(base_ctr) < 1.0
    ):
        raise ValueError(f"base_ctr must be a float in (0, 1), e.g. 0.2, received {base_ctr!r}.")
    rng = _rng(world, "ctr", seed)
    s = world._sessions(n_samples, seq_len, rng, by_activity=True)
    users = s["users"]
    source = rng.random(n_samples)
    taste_cat = sample_rows(np.cumsum(world.user_pref[users], axis=1), rng) + 1
    items = np.where(
        source < 0.45,
        world._popular_items(n_samples, rng),
        np.where(source < 0.7, world._items_in(taste_cat, rng), world._items_in(s["intent"], rng)),
    ).astype(np.int32)
    logit = world._click_logit(s, items)
    lo, hi = -20.0, 20.0
    for _ in range(60):  # calibrate the intercept to the requested base CTR
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(logit + mid)))) < base_ctr:
            lo = mid
        else:
            hi = mid
    prob = 1.0 / (1.0 + np.exp(-(logit + lo)))
    clicks = (rng.random(n_samples) < prob).astype(np.float32)[:, None]
    features = {
        "user_id": users[:, None],
        "user_age": world.user_age[users][:, None],
        "user_gender": world.user_gender[users][:, None],
        "item_id": items[:, None],
        "item_category": world.item_category[items][:, None],
        "item_brand": world.item_brand[items][:, None],
        "item_price": world.item_price[items][:, None],
        "hour": s["hour"][:, None],
        "platform": s["platform"][:, None],
        **_sequence_features(world, s["seq"]),
        "item_popularity": zscore(np.log(world.item_popularity[1:]))[items - 1][:, None],
        "user_activity": zscore(np.log(world.user_activity[1:]))[users - 1][:, None],
    }
    features = {
        k: v.astype(np.float32 if k in ("item_popularity", "user_activity") else np.int32)
        for k, v in features.items()
    }
    schema = Schema(
        _features(
            [
                ("user_id", "categorical", None, "user"),
                ("user_age", "categorical", None, "user"),
                ("user_gender", "categorical", None, "user"),
                ("item_id", "categorical", None, "item"),
                ("item_category", "categorical", None, "item"),
                ("item_brand", "categorical", None, "item"),
                ("item_price", "categorical", None, "item"),
                ("hour", "categorical", None, "context"),
                ("platform", "categorical", None, "context"),
                ("hist_item_ids", "sequence", "item_id", "user"),
                ("hist_categories", "sequence", "item_category", "user"),
                ("item_popularity", "numeric", None, "item"),
                ("user_activity", "numeric", None, "user"),
            ],
            world,
            seq_len,
        ),
        label="click",
        task="binary",
        metadata={"source": "simulated", "task": "ctr", "seed": seed, "world_seed": world.seed},
    )
    parts = _contiguous(sizes)
    arrays = gather_splits(features, clicks, parts)
    probs = {name: prob[rows] for name, rows in parts.items()}
    test_y = arrays["test"][1]
    oracle = roc_auc(test_y, probs["test"]) if 0 < test_y.sum() < len(test_y) else float("nan")
    info: dict[str, Any] = {
        "click_prob": probs,
        "oracle_auc": oracle,
        "base_ctr": {
            n: float(a[1].mean()) if len(a[1]) else float("nan") for n, a in arrays.items()
        },
        "world": world,
        "seed": seed,
    }
    _log.info(
        "Simulated ctr: %d samples, base CTR %.3f, oracle AUC %.4f.",
        n_samples,
        float(clicks.mean()),
        oracle,
    )
    return build_task(
        arrays,
        schema,
        batch_size=batch_size,
        seed=seed,
        info=info,
        fractions=fractions,
        shuffle_buffer=_SHUFFLE_BUFFER,
    )


def retrieval(
    *,
    n_samples: int = 20_000,
    seq_len: int = 20,
    batch_size: int = 256,
    seed: int = 0,
    world: World | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    **world_kwargs: Any,
) -> TaskData:
    """Next-item retrieval: (user features, behaviour sequence) -> the next item clicked.

    The next item is drawn from ``popularity x exp(user/item latent affinity) x category
    weight``, where the category weight mixes the session intent (visible through the last
    history items) with the user's taste. The features also carry the positive item's own
    features (group ``"item"``) so two-tower models can train with in-batch negatives.

    Args:
        n_samples, seq_len, batch_size, seed, world, split, **world_kwargs: as in :func:`ctr`.

    Returns:
        A :class:`TaskData` with label ``"next_item"`` (int32 item id, shape (batch,)),
        ``schema.task == "retrieval"`` and ``num_classes == n_items + 1``. ``info["catalog"]``
        holds ``item_id``, ``item_category``, ``item_brand``, ``item_price`` of every item id
        (row i = item i, row 0 = padding), each int32 (n_items + 1, 1); ``info["arrays"]`` the
        numpy splits; ``info["oracle_recall_at_10"]`` the recall@10 of the true distribution on
        the test split; ``info["popularity_recall_at_10"]`` that of recommending the 10 most
        popular items.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range.

    Example:
        >>> task = retrieval(n_samples=1_000, seed=0, n_items=200)
        >>> task.info["catalog"]["item_id"].shape, task.schema.num_classes
        ((201, 1), 201)
    """
    world, sizes, fractions = _prepare(
        "retrieval", n_samples, seq_len, batch_size, seed, world, split, world_kwargs
    )
    rng = _rng(world, "retrieval", seed)
    s = world._sessions(n_samples, seq_len, rng, by_activity=True)
    users = s["users"]
    log_pop = np.log(world.item_popularity[1:])
    item_cat = world.item_category[1:] - 1
    next_item = np.empty(n_samples, np.int32)
    in_top10 = np.zeros(n_samples, bool)
    for lo in range(0, n_samples, 2048):  # Gumbel-max over the catalogue, chunked for memory
        u = users[lo : lo + 2048]
        cat_w = 0.5 * world.user_pref[u] + 0.5 * (
            np.arange(1, world.n_categories + 1)[None, :] == s["intent"][lo : lo + 2048, None]
        )
        logits = (
            log_pop[None, :]
            + 1.0 * world.user_latent[u] @ world.item_latent[1:].T / np.sqrt(world.latent_dim)
            + np.log(cat_w[:, item_cat] + 1e-9)
        )
        choice = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
        next_item[lo : lo + 2048] = choice + 1
        kth = np.partition(logits, -10, axis=1)[:, -10] if logits.shape[1] >= 10 else -np.inf
        in_top10[lo : lo + 2048] = logits[np.arange(len(u)), choice] >= kth
    features = {
        "user_id": users[:, None],
        "user_age": world.user_age[users][:, None],
        "user_gender": world.user_gender[users][:, None],
        **_sequence_features(world, s["seq"]),
        **{k: v[next_item] for k, v in world.catalog().items()},
    }
    features = {k: v.astype(np.int32) for k, v in features.items()}
    schema = Schema(
        _features(
            [
                ("user_id", "categorical", None, "user"),
                ("user_age", "categorical", None, "user"),
                ("user_gender", "categorical", None, "user"),
                ("hist_item_ids", "sequence", "item_id", "user"),
                ("hist_categories", "sequence", "item_category", "user"),
                ("item_id", "categorical", None, "item"),
                ("item_category", "categorical", None, "item"),
                ("item_brand", "categorical", None, "item"),
                ("item_price", "categorical", None, "item"),
            ],
            world,
            seq_len,
        ),
        label="next_item",
        task="retrieval",
        num_classes=world.n_items + 1,
        metadata={
            "source": "simulated",
            "task": "retrieval",
            "seed": seed,
            "world_seed": world.seed,
        },
    )
    parts = _contiguous(sizes)
    arrays = gather_splits(features, next_item, parts)
    top10 = np.argsort(-world.item_popularity[1:], kind="stable")[:10] + 1
    test_y = arrays["test"][1]
    info: dict[str, Any] = {
        "catalog": world.catalog(),
        "oracle_recall_at_10": float(in_top10[parts["test"]].mean()) if sizes[2] else float("nan"),
        "popularity_recall_at_10": float(np.isin(test_y, top10).mean())
        if sizes[2]
        else float("nan"),
        "world": world,
        "seed": seed,
    }
    return build_task(
        arrays,
        schema,
        batch_size=batch_size,
        seed=seed,
        info=info,
        fractions=fractions,
        shuffle_buffer=_SHUFFLE_BUFFER,
    )


def profile(
    *,
    n_samples: int = 20_000,
    seq_len: int = 20,
    batch_size: int = 256,
    seed: int = 0,
    world: World | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    **world_kwargs: Any,
) -> TaskData:
    """User profiling: behaviour sequence -> the user's dominant interest category.

    The label is the argmax of the user's hidden category preference. The sequence is a window
    of the user's past clicks (of varying length) where about 40 % of clicks are
    popularity-driven noise, plus 1-3 clicks of the current session's intent, so the category
    counts point at the interest without giving it away.

    Users are drawn uniformly with replacement, so a user has several samples (different windows
    of the same history). The split is BY USER: all samples of a user go to one of train,
    validation and test (seeded), so a model cannot score by recognising a user's history items
    and the test accuracy measures generalisation to unseen users. Each split holds about its
    fraction of the samples, not exactly.

    Args:
        n_samples, seq_len, batch_size, seed, world, split, **world_kwargs: as in :func:`ctr`.

    Returns:
        A :class:`TaskData` with label ``"interest"`` (int32 class ``0..n_categories-1`` =
        category id - 1, shape (batch,)), ``schema.task == "multiclass"``,
        ``num_classes == n_categories``. Features: ``hist_item_ids``, ``hist_categories``,
        ``hist_hours`` (hour id of each click, 0 = padding), ``user_age``, ``user_gender``.
        ``info`` holds ``arrays``, ``rows``, ``users`` (``{split: user id of each example}``,
        the splits' user sets are disjoint), ``majority_accuracy`` (test accuracy of always
        predicting the most frequent training class) and ``world``.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range, or the samples come from
            too few users to give every split with a fraction > 0 at least one user.

    Example:
        >>> task = profile(n_samples=1_000, seed=0)
        >>> task.schema.num_classes
        20
    """
    world, sizes, fractions = _prepare(
        "profile", n_samples, seq_len, batch_size, seed, world, split, world_kwargs
    )
    rng = _rng(world, "profile", seed)
    s = world._sessions(n_samples, seq_len, rng, by_activity=False)
    users = s["users"]
    labels = np.argmax(world.user_pref[users], axis=1).astype(np.int32)
    features = {
        **_sequence_features(world, s["seq"]),
        "hist_hours": s["seq_hours"],
        "user_age": world.user_age[users][:, None],
        "user_gender": world.user_gender[users][:, None],
    }
    features = {k: v.astype(np.int32) for k, v in features.items()}
    schema = Schema(
        _features(
            [
                ("hist_item_ids", "sequence", "item_id", "user"),
                ("hist_categories", "sequence", "item_category", "user"),
                ("hist_hours", "sequence", "hour", "user"),
                ("user_age", "categorical", None, "user"),
                ("user_gender", "categorical", None, "user"),
            ],
            world,
            seq_len,
        ),
        label="interest",
        task="multiclass",
        num_classes=world.n_categories,
        metadata={
            "source": "simulated",
            "task": "profile",
            "seed": seed,
            "world_seed": world.seed,
            "split": "by user",
        },
    )
    parts = group_split(users, sizes, rng)
    for name, fraction in zip(SPLITS, fractions, strict=True):
        if fraction > 0 and not parts[name].size:
            raise ValueError(
                f"profile splits by user, and the {n_samples} samples come from only "
                f"{len(np.unique(users))} users: too few for a non-empty {name} split with "
                f"split={split!r}; pass a larger n_samples or a world with more users."
            )
    arrays = gather_splits(features, labels, parts)
    majority = np.bincount(arrays["train"][1], minlength=world.n_categories).argmax()
    info: dict[str, Any] = {
        "users": {name: users[rows] for name, rows in parts.items()},
        "majority_accuracy": float((arrays["test"][1] == majority).mean())
        if parts["test"].size
        else float("nan"),
        "world": world,
        "seed": seed,
    }
    return build_task(
        arrays,
        schema,
        batch_size=batch_size,
        seed=seed,
        info=info,
        fractions=fractions,
        shuffle_buffer=_SHUFFLE_BUFFER,
    )


_TASKS: dict[str, Callable[..., TaskData]] = {
    "ctr": ctr,
    "retrieval": retrieval,
    "profile": profile,
    "product_text": product_text,  # no World: text.py (not in TASK_NAMES, the World tasks)
}


def load_task(name: str, **kwargs: Any) -> TaskData:
    """A simulated task by name: ``"ctr"``, ``"retrieval"``, ``"profile"``, ``"product_text"``.

    Args:
        name: the task name.
        **kwargs: forwarded to the task function (``n_samples``, ``seq_len``, ``seed``, ...).

    Returns:
        The task's :class:`TaskData`.

    Raises:
        ValueError: ``name`` is not a known task.

    Example:
        >>> load_task("profile", n_samples=500, seed=0).schema.label
        'interest'
    """
    if not isinstance(name, str) or name not in _TASKS:
        raise ValueError(f"Unknown simulated task name {name!r}; valid names are {list(_TASKS)}.")
    return _TASKS[name](**kwargs)
