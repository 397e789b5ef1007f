"""A simulated e-commerce world with real, learnable structure, and three tasks drawn from it.

No public data set can be downloaded where tfcompress is tested, so it ships a small world:
users (demographics, a peaked latent preference over categories, an activity level), a catalogue
(categories, brands nested in categories, price buckets, Zipf-like popularity, latent vectors),
context (hour of day, platform) and each user's click history. Three tasks are drawn from it:

- :func:`ctr`: click / no click of an impression. The hidden click model has feature
  interactions (user preference x category, age x price, hour x platform x category, user x item
  latent affinity) and a session intent visible only through the last history items.
- :func:`retrieval`: the next item a user clicks, with the whole item catalogue for recall@k.
- :func:`profile`: the user's dominant interest category from a noisy behaviour sequence.

Everything is vectorised numpy drawn from ``np.random.default_rng`` and fully determined by the
seeds. Ids are 1-based: id 0 is padding / out-of-vocabulary, so ``vocab_size = count + 1``.

Example:
    >>> task = ctr(n_samples=2_000, seed=0)
    >>> task.schema.label, round(task.info["oracle_auc"], 1) > 0.5
    ('click', True)
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from tfcompress.data.schema import Feature, Schema, TaskData
from tfcompress.keras_compat import tf

__all__ = ["World", "ctr", "retrieval", "profile", "load_task", "TASK_NAMES", "roc_auc"]

_log = logging.getLogger("tfcompress")

TASK_NAMES = ("ctr", "retrieval", "profile")
_TASK_STREAM = {"ctr": 1, "retrieval": 2, "profile": 3}
_N_HOURS = 24
_DEMO_SHARE = 0.4  # share of a user's taste set by demographics
_HOUR_BLOCK = np.repeat(np.arange(4), 6)  # night, morning, afternoon, evening


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, received {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, received {value!r}; pass a larger value.")
    return int(value)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


def _sample_rows(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of a row-wise cumulative distribution ``cum`` (n, k)."""
    u = rng.random(cum.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), cum.shape[1] - 1)


@dataclass(frozen=True, eq=False)
class World:
    """The hidden state of the simulated shop. Build it with :meth:`World.create`.

    Arrays are indexed by id (row 0 is the padding id). Categorical attributes hold 1-based ids:
    ``item_category[i]`` is in ``1..n_categories``, while ``user_pref[u, c - 1]`` is the
    preference of user ``u`` for category id ``c``.

    Attributes:
        seed, n_users, n_items, n_categories, n_brands, n_price_buckets, n_age_buckets,
        n_genders, n_platforms, latent_dim, history_len, zipf_exponent: the configuration.
        user_age, user_gender: demographic bucket ids, shape (n_users + 1,).
        user_pref: (n_users + 1, n_categories) peaked Dirichlet preference over categories.
        user_activity: (n_users + 1,) positive activity level (impressions, history length).
        user_latent, item_latent: (n + 1, latent_dim) latent vectors of the affinity term.
        user_peak_hour, user_platform_pref: when and where the user shops.
        item_category, item_brand, item_price: item attribute ids, shape (n_items + 1,).
        brand_category: (n_brands + 1,) the category each brand belongs to.
        item_popularity: (n_items + 1,) Zipf-like probability of an item (0 for padding).
        item_quality: (n_items + 1,) per-item click-through bias.
        age_price_effect: (n_age_buckets, n_price_buckets) click logit of an age x price pair.
        context_effect: (4, n_platforms, n_categories) click logit of hour block x platform x
            category.
        user_history, user_history_hours: (n_users + 1, history_len) past clicks, most recent
            last, left-padded with 0, and the hour id of each click.

    Example:
        >>> w = World.create(seed=1, n_users=50, n_items=100)
        >>> w.vocab_sizes()["item_id"], int(w.item_category.max()) <= w.n_categories
        (101, True)
    """

    seed: int
    n_users: int
    n_items: int
    n_categories: int
    n_brands: int
    n_price_buckets: int
    n_age_buckets: int
    n_genders: int
    n_platforms: int
    latent_dim: int
    history_len: int
    zipf_exponent: float
    user_age: np.ndarray
    user_gender: np.ndarray
    user_pref: np.ndarray
    user_activity: np.ndarray
    user_latent: np.ndarray
    user_peak_hour: np.ndarray
    user_platform_pref: np.ndarray
    item_category: np.ndarray
    item_brand: np.ndarray
    item_price: np.ndarray
    brand_category: np.ndarray
    item_popularity: np.ndarray
    item_quality: np.ndarray
    item_latent: np.ndarray
    age_price_effect: np.ndarray
    context_effect: np.ndarray
    user_history: np.ndarray
    user_history_hours: np.ndarray

    @classmethod
    def create(
        cls,
        seed: int = 0,
        *,
        n_users: int = 2_000,
        n_items: int = 1_000,
        n_categories: int = 20,
        n_brands: int = 100,
        n_price_buckets: int = 5,
        n_age_buckets: int = 6,
        n_genders: int = 2,
        n_platforms: int = 3,
        latent_dim: int = 8,
        history_len: int = 50,
        zipf_exponent: float = 1.1,
    ) -> World:
        """Draw a world from ``seed``.

        Args:
            seed: the world's random seed (int >= 0).
            n_users, n_items, n_categories, n_brands: population sizes; brands nest in
                categories, so ``n_brands >= n_categories`` and ``n_items >= n_categories``.
            n_price_buckets, n_age_buckets, n_genders, n_platforms: bucket counts.
            latent_dim: width of the user / item latent vectors.
            history_len: how many past clicks each user's stored history holds.
            zipf_exponent: item popularity is ``rank ** -zipf_exponent`` (> 0).

        Returns:
            A frozen :class:`World`.

        Raises:
            TypeError, ValueError: an argument has the wrong type or range.

        Example:
            >>> World.create(seed=0, n_users=10, n_items=40).user_history.shape
            (11, 50)
        """
        seed = _check_int("seed", seed, 0)
        n_users = _check_int("n_users", n_users, 1)
        n_categories = _check_int("n_categories", n_categories, 2)
        n_items = _check_int("n_items", n_items, n_categories)
        n_brands = _check_int("n_brands", n_brands, n_categories)
        n_price = _check_int("n_price_buckets", n_price_buckets, 2)
        n_age = _check_int("n_age_buckets", n_age_buckets, 1)
        n_genders = _check_int("n_genders", n_genders, 1)
        n_platforms = _check_int("n_platforms", n_platforms, 1)
        latent_dim = _check_int("latent_dim", latent_dim, 1)
        history_len = _check_int("history_len", history_len, 1)
        if isinstance(zipf_exponent, bool) or not isinstance(zipf_exponent, numbers.Real):
            raise TypeError(f"zipf_exponent must be a positive float, received {zipf_exponent!r}.")
        if not np.isfinite(zipf_exponent) or zipf_exponent <= 0:
            raise ValueError(
                f"zipf_exponent must be a finite number > 0 (e.g. 1.1), received {zipf_exponent!r}."
            )
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
        n_cat = n_categories

        # Users: demographics, a demographic taste prior, a peaked personal preference.
        age = rng.integers(1, n_age + 1, n_users + 1)
        gender = rng.integers(1, n_genders + 1, n_users + 1)
        # Taste = a demographic prior (learnable from age x gender) mixed with a peaked
        # personal Dirichlet (visible only through the user's history).
        demo_prior = rng.dirichlet(np.full(n_cat, 0.5), size=(n_age, n_genders))
        gam = rng.standard_gamma(np.full((n_users + 1, n_cat), 0.1)) + 1e-12
        pref = _DEMO_SHARE * demo_prior[age - 1, gender - 1] + (1 - _DEMO_SHARE) * (
            gam / gam.sum(axis=1, keepdims=True)
        )
        activity = rng.lognormal(0.0, 0.6, n_users + 1)
        demo_latent = rng.normal(0.0, 1.0, (n_age, n_genders, latent_dim))
        user_latent = demo_latent[age - 1, gender - 1] + 0.5 * rng.normal(
            0.0, 1.0, (n_users + 1, latent_dim)
        )
        peak_hour = rng.choice(_N_HOURS, n_users + 1, p=_hour_profile())
        platform_pref = rng.dirichlet(np.full(n_platforms, 1.0), n_users + 1)

        # Catalogue: categories of uneven size, brands nested in categories, price buckets.
        cat_share = rng.dirichlet(np.full(n_cat, 3.0))
        item_cat = np.concatenate(
            [np.arange(1, n_cat + 1), rng.choice(n_cat, n_items - n_cat, p=cat_share) + 1]
        )
        rng.shuffle(item_cat)
        brand_cat = np.concatenate(
            [np.arange(1, n_cat + 1), rng.choice(n_cat, n_brands - n_cat, p=cat_share) + 1]
        )
        brand_order = np.argsort(brand_cat, kind="stable")  # brands grouped by category
        brand_count = np.bincount(brand_cat, minlength=n_cat + 1)[1:]
        brand_start = np.concatenate([[0], np.cumsum(brand_count)[:-1]])
        pick = (rng.random(n_items) * brand_count[item_cat - 1]).astype(np.int64)
        item_brand = brand_order[brand_start[item_cat - 1] + pick] + 1
        price_level = (
            rng.normal(0, 1, n_cat)[item_cat - 1]
            + rng.normal(0, 0.7, n_brands)[item_brand - 1]
            + rng.normal(0, 0.5, n_items)
        )
        cuts = np.quantile(price_level, np.linspace(0, 1, n_price + 1)[1:-1])
        item_price = np.searchsorted(cuts, price_level) + 1

        # Item latent vectors: category + brand structure plus a little item noise.
        item_latent = (
            rng.normal(0.0, 0.8, (n_cat, latent_dim))[item_cat - 1]
            + rng.normal(0.0, 0.5, (n_brands, latent_dim))[item_brand - 1]
            + rng.normal(0.0, 0.3, (n_items, latent_dim))
        )
        ranks = rng.permutation(n_items) + 1.0
        pop = ranks ** -float(zipf_exponent)
        pop /= pop.sum()

        def pad(x: np.ndarray, dtype: Any = np.int32) -> np.ndarray:
            return np.concatenate([np.zeros((1, *x.shape[1:]), x.dtype), x]).astype(dtype)

        world = cls(
            seed=seed,
            n_users=n_users,
            n_items=n_items,
            n_categories=n_cat,
            n_brands=n_brands,
            n_price_buckets=n_price,
            n_age_buckets=n_age,
            n_genders=n_genders,
            n_platforms=n_platforms,
            latent_dim=latent_dim,
            history_len=history_len,
            zipf_exponent=float(zipf_exponent),
            user_age=age.astype(np.int32),
            user_gender=gender.astype(np.int32),
            user_pref=pref,
            user_activity=activity,
            user_latent=user_latent,
            user_peak_hour=peak_hour.astype(np.int32),
            user_platform_pref=platform_pref,
            item_category=pad(item_cat),
            item_brand=pad(item_brand),
            item_price=pad(item_price),
            brand_category=pad(brand_cat),
            item_popularity=pad(pop, np.float64),
            item_quality=pad(rng.normal(0.0, 0.3, n_items), np.float64),
            item_latent=pad(item_latent, np.float64),
            age_price_effect=_interaction_only(rng.normal(0.0, 0.8, (n_age, n_price))),
            context_effect=_interaction_only(rng.normal(0.0, 0.7, (4, n_platforms, n_cat))),
            user_history=np.zeros((n_users + 1, history_len), np.int32),
            user_history_hours=np.zeros((n_users + 1, history_len), np.int32),
        )
        # Past clicks: 60 % follow the user's taste, 40 % are popularity-driven noise.
        users = np.arange(n_users + 1)
        n_hist = np.clip(np.round(activity / activity.max() * 4 * history_len), 3, history_len)
        flat_u = np.repeat(users, history_len)
        items = world._taste_or_popular(flat_u, 0.6, rng).reshape(n_users + 1, history_len)
        hours = world._hours(flat_u, rng).reshape(n_users + 1, history_len)
        valid = np.arange(history_len)[None, :] >= (history_len - n_hist)[:, None]
        valid[0] = False
        world.user_history[...] = np.where(valid, items, 0)
        world.user_history_hours[...] = np.where(valid, hours, 0)
        for name in [f.name for f in fields(world)]:
            value = getattr(world, name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
        _log.debug("Created simulated world seed=%d (%d users, %d items).", seed, n_users, n_items)
        return world

    # ----------------------------------------------------------------- public helpers
    def vocab_sizes(self) -> dict[str, int]:
        """``vocab_name -> vocab_size`` of every id vocabulary (count + 1 for padding)."""
        return {
            "user_id": self.n_users + 1,
            "user_age": self.n_age_buckets + 1,
            "user_gender": self.n_genders + 1,
            "item_id": self.n_items + 1,
            "item_category": self.n_categories + 1,
            "item_brand": self.n_brands + 1,
            "item_price": self.n_price_buckets + 1,
            "hour": _N_HOURS + 1,
            "platform": self.n_platforms + 1,
        }

    def catalog(self) -> dict[str, np.ndarray]:
        """Item features of every item id ``0..n_items`` (row i = item i), each (n_items+1, 1)."""
        return {
            "item_id": np.arange(self.n_items + 1, dtype=np.int32)[:, None],
            "item_category": self.item_category[:, None].copy(),
            "item_brand": self.item_brand[:, None].copy(),
            "item_price": self.item_price[:, None].copy(),
        }

    # ----------------------------------------------------------------- samplers
    def _popular_items(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cum = np.cumsum(self.item_popularity)
        idx = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
        return np.clip(idx, 1, self.n_items).astype(np.int32)

    def _items_in(self, cats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per entry of ``cats`` (1-based category ids), by popularity within it."""
        order = np.argsort(self.item_category[1:], kind="stable") + 1
        sorted_cat = self.item_category[order]
        pop = self.item_popularity[order]
        totals = np.bincount(sorted_cat, weights=pop, minlength=self.n_categories + 1)
        within = pop / totals[sorted_cat]
        start = np.searchsorted(sorted_cat, np.arange(1, self.n_categories + 2))
        cum = np.cumsum(within) - np.repeat(
            np.concatenate([[0.0], np.cumsum(within)])[start[:-1]], np.diff(start)
        )
        cum[start[1:] - 1] = 1.0  # close every block exactly
        keys = sorted_cat - 1 + cum
        cats = np.asarray(cats, np.int64)
        pos = np.searchsorted(keys, cats - 1 + rng.random(cats.shape), side="right")
        pos = np.clip(pos, start[cats - 1], start[cats] - 1)
        return order[pos].astype(np.int32)

    def _taste_or_popular(
        self, users: np.ndarray, p_taste: float, rng: np.random.Generator
    ) -> np.ndarray:
        cats = _sample_rows(np.cumsum(self.user_pref[users], axis=1), rng) + 1
        taste = self._items_in(cats, rng)
        return np.where(
            rng.random(len(users)) < p_taste, taste, self._popular_items(len(users), rng)
        )

    def _hours(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        shift = np.round(rng.normal(0.0, 2.5, len(users))).astype(np.int64)
        return ((self.user_peak_hour[users] + shift) % _N_HOURS + 1).astype(np.int32)

    def _sessions(self, n: int, seq_len: int, rng: np.random.Generator, by_activity: bool):
        """Users, contexts, a per-sample intent category and the visible behaviour sequence."""
        p_user = self.user_activity[1:] if by_activity else np.ones(self.n_users)
        users = rng.choice(self.n_users, n, p=p_user / p_user.sum()) + 1
        hour = self._hours(users, rng)
        platform = _sample_rows(np.cumsum(self.user_platform_pref[users], axis=1), rng) + 1
        cat_mass = np.bincount(
            self.item_category, weights=self.item_popularity, minlength=self.n_categories + 1
        )[1:]
        own = _sample_rows(np.cumsum(self.user_pref[users], axis=1), rng) + 1
        other = rng.choice(self.n_categories, n, p=cat_mass / cat_mass.sum()) + 1
        intent = np.where(rng.random(n) < 0.5, own, other).astype(np.int32)
        # The last k (1..3) clicks of the sequence belong to the current session's intent.
        k = np.minimum(rng.integers(1, 4, n), seq_len)
        h_len = self.history_len
        n_hist = (self.user_history[users] > 0).sum(axis=1)
        end = h_len - np.floor(rng.random(n) * (n_hist // 2 + 1)).astype(np.int64)
        back = np.arange(seq_len)[::-1][None, :]  # 0 = most recent position
        src = end[:, None] - 1 - (back - k[:, None])
        from_hist = (back >= k[:, None]) & (src >= h_len - n_hist[:, None])
        hist_items = self.user_history[users[:, None], np.clip(src, 0, h_len - 1)]
        hist_hours = self.user_history_hours[users[:, None], np.clip(src, 0, h_len - 1)]
        flat_intent = np.repeat(intent, seq_len)
        session_items = np.where(
            rng.random(n * seq_len) < 0.85,
            self._items_in(flat_intent, rng),
            self._popular_items(n * seq_len, rng),
        ).reshape(n, seq_len)
        in_session = back < k[:, None]
        seq = np.where(in_session, session_items, np.where(from_hist, hist_items, 0))
        seq_hours = np.where(in_session, hour[:, None], np.where(from_hist, hist_hours, 0))
        return {
            "users": users.astype(np.int32),
            "hour": hour,
            "platform": platform.astype(np.int32),
            "intent": intent,
            "seq": seq.astype(np.int32),
            "seq_hours": seq_hours.astype(np.int32),
        }

    def _click_logit(self, s: dict[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        """The hidden click logit (without intercept) of showing ``items`` in sessions ``s``."""
        u = s["users"]
        cat = self.item_category[items]
        pop_z = _zscore(np.log(self.item_popularity[1:]))
        act_z = _zscore(np.log(self.user_activity[1:]))
        taste = np.log(self.user_pref[u, cat - 1] * self.n_categories + 0.05)
        affinity = (self.user_latent[u] * self.item_latent[items]).sum(1) / np.sqrt(self.latent_dim)
        last_brand = self.item_brand[s["seq"][:, -1]]
        return (
            0.6 * taste
            + 0.5 * affinity
            + 1.6 * (cat == s["intent"])
            + 0.6 * (self.item_brand[items] == last_brand)
            + self.age_price_effect[self.user_age[u] - 1, self.item_price[items] - 1]
            + self.context_effect[_HOUR_BLOCK[s["hour"] - 1], s["platform"] - 1, cat - 1]
            + 0.3 * pop_z[items - 1]
            + 0.3 * act_z[u - 1]
            + self.item_quality[items]
        )


def _interaction_only(table: np.ndarray) -> np.ndarray:
    """Remove the main effects of ``table`` so only the interaction of its axes is left."""
    out = table - table.mean()
    for axis in range(table.ndim):
        others = tuple(a for a in range(table.ndim) if a != axis)
        out = out - out.mean(axis=others, keepdims=True)
    return out


def _hour_profile() -> np.ndarray:
    """Shoppers' peak hours: quiet at night, busy at lunch and in the evening."""
    h = np.arange(_N_HOURS)
    w = 0.2 + np.exp(-((h - 12.5) ** 2) / 8) + 1.5 * np.exp(-((h - 20.5) ** 2) / 6)
    return w / w.sum()


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


# --------------------------------------------------------------------------- tasks
def _prepare(
    n_samples: Any,
    seq_len: Any,
    batch_size: Any,
    seed: Any,
    world: Any,
    split: Any,
    world_kwargs: dict[str, Any],
) -> tuple[World, tuple[int, int, int]]:
    n_samples = _check_int("n_samples", n_samples, 1)
    _check_int("seq_len", seq_len, 1)
    _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    if (
        not isinstance(split, Sequence)
        or isinstance(split, str)
        or len(split) != 3
        or not all(isinstance(f, numbers.Real) and not isinstance(f, bool) for f in split)
    ):
        raise ValueError(
            f"split must be three fractions (train, validation, test), e.g. (0.8, 0.1, 0.1), "
            f"received {split!r}."
        )
    fractions = [float(f) for f in split]
    if (
        min(fractions) < 0
        or fractions[0] <= 0
        or not np.isfinite(fractions).all()
        or abs(sum(fractions) - 1.0) > 1e-6
    ):
        raise ValueError(
            f"split fractions must be >= 0 with train > 0 and sum to 1, e.g. (0.8, 0.1, 0.1), "
            f"received {split!r}."
        )
    n_val = int(round(n_samples * fractions[1]))
    n_test = int(round(n_samples * fractions[2]))
    n_train = n_samples - n_val - n_test
    for name, size, frac in zip(
        ("train", "validation", "test"), (n_train, n_val, n_test), fractions, strict=True
    ):
        if frac > 0 and size < 1:
            raise ValueError(
                f"n_samples={n_samples} leaves the {name} split empty with split={split!r}; "
                "pass a larger n_samples."
            )
    if world is None:
        world = World.create(seed, **world_kwargs)
    elif not isinstance(world, World):
        raise TypeError(
            f"world must be a World (from World.create) or None, received {type(world).__name__}."
        )
    elif world_kwargs:
        raise ValueError(
            f"Pass either world or world keyword arguments, not both; received world and "
            f"{sorted(world_kwargs)}."
        )
    return world, (n_train, n_val, n_test)


def _split_and_batch(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    sizes: tuple[int, int, int],
    batch_size: int,
    seed: int,
) -> tuple[dict[str, tf.data.Dataset], dict[str, tuple[dict[str, np.ndarray], np.ndarray]]]:
    bounds = np.cumsum([0, *sizes])
    arrays, datasets = {}, {}
    for i, name in enumerate(("train", "validation", "test")):
        sl = slice(bounds[i], bounds[i + 1])
        part = ({k: v[sl] for k, v in features.items()}, labels[sl])
        arrays[name] = part
        ds = tf.data.Dataset.from_tensor_slices(part)
        if name == "train":
            buffer = max(1, min(sizes[0], 10_000))
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        datasets[name] = ds.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)
    return datasets, arrays


def _features(specs: list[tuple[str, str, str | None, str | None]], world: World, seq_len: int):
    vocab = world.vocab_sizes()
    out = []
    for name, kind, vocab_name, group in specs:
        if kind == "numeric":
            out.append(Feature(name, kind, group=group))
        else:
            key = vocab_name or name
            length = seq_len if kind == "sequence" else 1
            out.append(Feature(name, kind, vocab[key], length, vocab_name=key, group=group))
    return tuple(out)


def _rng(world: World, task: str, seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, world.seed, _TASK_STREAM[task]]))


def _sequence_features(world: World, seq: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "hist_item_ids": seq.astype(np.int32),
        "hist_categories": world.item_category[seq].astype(np.int32),
    }


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
    world, sizes = _prepare(n_samples, seq_len, batch_size, seed, world, split, world_kwargs)
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
    taste_cat = _sample_rows(np.cumsum(world.user_pref[users], axis=1), rng) + 1
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
        "item_popularity": _zscore(np.log(world.item_popularity[1:]))[items - 1][:, None],
        "user_activity": _zscore(np.log(world.user_activity[1:]))[users - 1][:, None],
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
    datasets, arrays = _split_and_batch(features, clicks, sizes, batch_size, seed)
    bounds = np.cumsum([0, *sizes])
    probs = {n: prob[bounds[i] : bounds[i + 1]] for i, n in enumerate(arrays)}
    test_y = arrays["test"][1]
    oracle = roc_auc(test_y, probs["test"]) if 0 < test_y.sum() < len(test_y) else float("nan")
    info = {
        "arrays": arrays,
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
    return TaskData(datasets["train"], datasets["validation"], datasets["test"], schema, info)


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
    world, sizes = _prepare(n_samples, seq_len, batch_size, seed, world, split, world_kwargs)
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
    datasets, arrays = _split_and_batch(features, next_item, sizes, batch_size, seed)
    test_lo = sizes[0] + sizes[1]
    top10 = np.argsort(-world.item_popularity[1:], kind="stable")[:10] + 1
    test_y = arrays["test"][1]
    info = {
        "arrays": arrays,
        "catalog": world.catalog(),
        "oracle_recall_at_10": float(in_top10[test_lo:].mean()) if sizes[2] else float("nan"),
        "popularity_recall_at_10": float(np.isin(test_y, top10).mean())
        if sizes[2]
        else float("nan"),
        "world": world,
        "seed": seed,
    }
    return TaskData(datasets["train"], datasets["validation"], datasets["test"], schema, info)


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

    Args:
        n_samples, seq_len, batch_size, seed, world, split, **world_kwargs: as in :func:`ctr`.

    Returns:
        A :class:`TaskData` with label ``"interest"`` (int32 class ``0..n_categories-1`` =
        category id - 1, shape (batch,)), ``schema.task == "multiclass"``,
        ``num_classes == n_categories``. Features: ``hist_item_ids``, ``hist_categories``,
        ``hist_hours`` (hour id of each click, 0 = padding), ``user_age``, ``user_gender``.
        ``info`` holds ``arrays``, ``majority_accuracy`` (test accuracy of always predicting the
        most frequent training class) and ``world``.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range.

    Example:
        >>> task = profile(n_samples=1_000, seed=0)
        >>> task.schema.num_classes
        20
    """
    world, sizes = _prepare(n_samples, seq_len, batch_size, seed, world, split, world_kwargs)
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
        metadata={"source": "simulated", "task": "profile", "seed": seed, "world_seed": world.seed},
    )
    datasets, arrays = _split_and_batch(features, labels, sizes, batch_size, seed)
    majority = np.bincount(arrays["train"][1], minlength=world.n_categories).argmax()
    info = {
        "arrays": arrays,
        "majority_accuracy": float((arrays["test"][1] == majority).mean())
        if sizes[2]
        else float("nan"),
        "world": world,
        "seed": seed,
    }
    return TaskData(datasets["train"], datasets["validation"], datasets["test"], schema, info)


_TASKS: dict[str, Callable[..., TaskData]] = {
    "ctr": ctr,
    "retrieval": retrieval,
    "profile": profile,
}


def load_task(name: str, **kwargs: Any) -> TaskData:
    """A simulated task by name: ``"ctr"``, ``"retrieval"`` or ``"profile"``.

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
        raise ValueError(
            f"Unknown simulated task name {name!r}; valid names are {list(TASK_NAMES)}."
        )
    return _TASKS[name](**kwargs)
