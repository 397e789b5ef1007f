"""The hidden state of the simulated e-commerce shop: :class:`World` (users, a catalogue, context
and click histories; seeded numpy, ids 1-based with 0 as padding).

Example:
    >>> w = World.create(seed=0, n_users=100, n_items=200)
    >>> w.user_history.shape
    (101, 50)
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from tfcompress.data._common import check_int, check_memory, pad_trailing

__all__ = ["World"]

_log = logging.getLogger("tfcompress")

N_HOURS = 24
_DEMO_SHARE = 0.4  # share of a user's taste set by demographics
_HOUR_BLOCK = np.repeat(np.arange(4), 6)  # night, morning, afternoon, evening
#: Rows drawn at once where a draw is per user x category or per stored click: bounds the
#: temporaries of a world with millions of users to tens of MB (the draws do not depend on it).
_PREF_CHUNK_USERS = 1 << 16
_HISTORY_CHUNK_CLICKS = 1 << 18
_CHUNK_TEMP_BYTES = 150 * 2**20  # the chunks' temporaries (tests/data/test_world_scale.py)


def zscore(x: np.ndarray) -> np.ndarray:
    """``x`` standardised to mean 0 and std 1."""
    return (x - x.mean()) / (x.std() + 1e-12)


def sample_rows(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
        user_zipf_exponent: float | None = None,
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
            user_zipf_exponent: None (default) gives a log-normal user activity; a float > 0
                gives a Zipf-like one, ``rank ** -user_zipf_exponent`` (the users keep their
                activity order, so every other draw is the same), as in real logs where a few
                users make a large share of the impressions and most have a handful.

        Memory: the world's arrays take about ``8 * (n_categories + latent_dim + n_platforms
        + history_len + 6)`` bytes a user and ``8 * (latent_dim + 8)`` an item (about 1.1 GB
        for 1.5M users and 600k items); the draws are made in chunks, so the peak stays close
        to that (the draws are the same as in one go).

        Returns:
            A frozen :class:`World`.

        Raises:
            TypeError, ValueError: an argument has the wrong type or range, or the world's
                arrays would not fit in this machine's memory (the error says how many users
                would).

        Example:
            >>> World.create(seed=0, n_users=10, n_items=40).user_history.shape
            (11, 50)
        """
        seed = check_int(seed, "seed", 0, "0")
        n_users = check_int(n_users, "n_users", 1, "2_000")
        n_categories = check_int(n_categories, "n_categories", 2, "20")
        n_items = check_int(n_items, "n_items", n_categories, "1_000")
        n_brands = check_int(n_brands, "n_brands", n_categories, "100")
        n_price = check_int(n_price_buckets, "n_price_buckets", 2, "5")
        n_age = check_int(n_age_buckets, "n_age_buckets", 1, "6")
        n_genders = check_int(n_genders, "n_genders", 1, "2")
        n_platforms = check_int(n_platforms, "n_platforms", 1, "3")
        latent_dim = check_int(latent_dim, "latent_dim", 1, "8")
        history_len = check_int(history_len, "history_len", 1, "50")
        if isinstance(zipf_exponent, bool) or not isinstance(zipf_exponent, numbers.Real):
            raise TypeError(f"zipf_exponent must be a positive float, received {zipf_exponent!r}.")
        if not np.isfinite(zipf_exponent) or zipf_exponent <= 0:
            raise ValueError(
                f"zipf_exponent must be a finite number > 0 (e.g. 1.1), received {zipf_exponent!r}."
            )
        if user_zipf_exponent is not None and (
            isinstance(user_zipf_exponent, bool)
            or not isinstance(user_zipf_exponent, numbers.Real)
            or not np.isfinite(user_zipf_exponent)
            or user_zipf_exponent <= 0
        ):
            raise ValueError(
                "user_zipf_exponent must be None (log-normal user activity) or a finite number "
                f"> 0 (e.g. 0.8), received {user_zipf_exponent!r}."
            )
        check_memory(
            f"n_users={n_users:_}",
            n_users + 1,
            8 * (n_categories + latent_dim + n_platforms + 1) + 4 * (3 + 2 * history_len),
            (n_items + 1) * (8 * (latent_dim + 2) + 12) + _CHUNK_TEMP_BYTES,
            f"a simulated World with {n_items:_} items",
            "users",
        )
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
        n_cat = n_categories

        # Users: demographics, a demographic taste prior, a peaked personal preference.
        age = rng.integers(1, n_age + 1, n_users + 1)
        gender = rng.integers(1, n_genders + 1, n_users + 1)
        # Taste = a demographic prior (learnable from age x gender) mixed with a peaked
        # personal Dirichlet (visible only through the user's history).
        demo_prior = rng.dirichlet(np.full(n_cat, 0.5), size=(n_age, n_genders))
        pref = np.empty((n_users + 1, n_cat))
        for lo in range(0, n_users + 1, _PREF_CHUNK_USERS):  # row by row: same draws
            hi = min(lo + _PREF_CHUNK_USERS, n_users + 1)
            gam = rng.standard_gamma(np.full((hi - lo, n_cat), 0.1)) + 1e-12
            pref[lo:hi] = _DEMO_SHARE * demo_prior[age[lo:hi] - 1, gender[lo:hi] - 1] + (
                1 - _DEMO_SHARE
            ) * (gam / gam.sum(axis=1, keepdims=True))
        del gam
        activity = rng.lognormal(0.0, 0.6, n_users + 1)
        if user_zipf_exponent is not None:  # same order of users, a Zipf-shaped level
            rank = np.empty(n_users + 1)
            rank[np.argsort(-activity, kind="stable")] = np.arange(1.0, n_users + 2)
            activity = rank ** -float(user_zipf_exponent)
        demo_latent = rng.normal(0.0, 1.0, (n_age, n_genders, latent_dim))
        user_latent = demo_latent[age - 1, gender - 1] + 0.5 * rng.normal(
            0.0, 1.0, (n_users + 1, latent_dim)
        )
        peak_hour = rng.choice(N_HOURS, n_users + 1, p=_hour_profile())
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
        _draw_history(world, activity, rng)
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
            "hour": N_HOURS + 1,
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
    def _popular_items(
        self, n: int, rng: np.random.Generator, cum: np.ndarray | None = None
    ) -> np.ndarray:
        cum = np.cumsum(self.item_popularity) if cum is None else cum
        idx = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
        return np.clip(idx, 1, self.n_items).astype(np.int32)

    def _items_in(
        self, cats: np.ndarray, rng: np.random.Generator, index: tuple | None = None
    ) -> np.ndarray:
        """One item per entry of ``cats`` (1-based category ids), by popularity within it."""
        order, keys, start = self._category_index() if index is None else index
        cats = np.asarray(cats, np.int64)
        pos = np.searchsorted(keys, cats - 1 + rng.random(cats.shape), side="right")
        pos = np.clip(pos, start[cats - 1], start[cats] - 1)
        return order[pos].astype(np.int32)

    def _category_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items sorted by category, their within-category cumulative popularity + category
        id - 1 (the search keys), and where each category's block starts."""
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
        return order, sorted_cat - 1 + cum, start

    def _hours(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        shift = np.round(rng.normal(0.0, 2.5, len(users))).astype(np.int64)
        return ((self.user_peak_hour[users] + shift) % N_HOURS + 1).astype(np.int32)

    def _sessions(self, n: int, seq_len: int, rng: np.random.Generator, by_activity: bool):
        """Users, contexts, a per-sample intent category and the visible behaviour sequence."""
        p_user = self.user_activity[1:] if by_activity else np.ones(self.n_users)
        users = rng.choice(self.n_users, n, p=p_user / p_user.sum()) + 1
        hour = self._hours(users, rng)
        platform = sample_rows(np.cumsum(self.user_platform_pref[users], axis=1), rng) + 1
        cat_mass = np.bincount(
            self.item_category, weights=self.item_popularity, minlength=self.n_categories + 1
        )[1:]
        own = sample_rows(np.cumsum(self.user_pref[users], axis=1), rng) + 1
        other = rng.choice(self.n_categories, n, p=cat_mass / cat_mass.sum()) + 1
        intent = np.where(rng.random(n) < 0.5, own, other).astype(np.int32)
        # The last k (1..3) clicks of the sequence belong to the current session's intent.
        k = np.minimum(rng.integers(1, 4, n), seq_len)
        h_len = self.history_len
        n_hist = (self.user_history[users] > 0).sum(axis=1)
        end = h_len - np.floor(rng.random(n) * (n_hist // 2 + 1)).astype(np.int64)
        # Before them: the user's stored clicks up to ``end``, front-padded with 0.
        window = (users * h_len + end, end - (h_len - n_hist), seq_len, k)
        hist_items = pad_trailing(self.user_history.reshape(-1), *window)
        hist_hours = pad_trailing(self.user_history_hours.reshape(-1), *window)
        flat_intent = np.repeat(intent, seq_len)
        session_items = np.where(
            rng.random(n * seq_len) < 0.85,
            self._items_in(flat_intent, rng),
            self._popular_items(n * seq_len, rng),
        ).reshape(n, seq_len)
        in_session = np.arange(seq_len)[None, :] >= seq_len - k[:, None]
        seq = np.where(in_session, session_items, hist_items)
        seq_hours = np.where(in_session, hour[:, None], hist_hours)
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
        pop_z = zscore(np.log(self.item_popularity[1:]))
        act_z = zscore(np.log(self.user_activity[1:]))
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


def _draw_history(world: World, activity: np.ndarray, rng: np.random.Generator) -> None:
    """Fill ``world.user_history`` (and its hours) with each user's past clicks, in chunks.

    60 % of clicks follow the user's taste, 40 % are popularity-driven noise; a user keeps the
    last ``n_hist`` (3 to ``history_len``, by activity) clicks, front-padded. The draws equal
    those of one vectorised pass over all ``(n_users + 1) * history_len`` clicks: that pass drew
    four uniform streams of that length one after the other (taste category, item within it,
    taste-or-popular, popular item; one 64-bit step each) and then the hour shifts, so each
    stream gets its own generator started where its values began (PCG64 ``advance``) and the
    chunks walk along them.
    """
    n_users, h_len = world.n_users, world.history_len
    n_total = (n_users + 1) * h_len
    streams = []
    for k in range(5):
        bits = np.random.PCG64()
        bits.state = rng.bit_generator.state
        streams.append(np.random.Generator(bits.advance(k * n_total)))
    pick_cat, pick_item, pick_taste, pick_popular, pick_hour = streams
    index, pop_cum = world._category_index(), np.cumsum(world.item_popularity)
    chunk_users = max(1, _HISTORY_CHUNK_CLICKS // h_len)
    n_hist_all = np.clip(np.round(activity / activity.max() * 4 * h_len), 3, h_len)
    n_hist_all[0] = 0  # the padding user has no clicks
    for lo in range(0, n_users + 1, chunk_users):
        users = np.arange(lo, min(lo + chunk_users, n_users + 1))
        flat_u = np.repeat(users, h_len)
        cats = sample_rows(np.cumsum(world.user_pref[flat_u], axis=1), pick_cat) + 1
        taste = world._items_in(cats, pick_item, index)
        items = np.where(
            pick_taste.random(len(flat_u)) < 0.6,
            taste,
            world._popular_items(len(flat_u), pick_popular, pop_cum),
        )
        hours = world._hours(flat_u, pick_hour)
        ends = (users - lo + 1) * h_len
        n_hist = n_hist_all[users]
        world.user_history[users] = pad_trailing(items, ends, n_hist, h_len)
        world.user_history_hours[users] = pad_trailing(hours, ends, n_hist, h_len)


def _interaction_only(table: np.ndarray) -> np.ndarray:
    """Remove the main effects of ``table`` so only the interaction of its axes is left."""
    out = table - table.mean()
    for axis in range(table.ndim):
        others = tuple(a for a in range(table.ndim) if a != axis)
        out = out - out.mean(axis=others, keepdims=True)
    return out


def _hour_profile() -> np.ndarray:
    """Shoppers' peak hours: quiet at night, busy at lunch and in the evening."""
    h = np.arange(N_HOURS)
    w = 0.2 + np.exp(-((h - 12.5) ** 2) / 8) + 1.5 * np.exp(-((h - 20.5) ** 2) / 6)
    return w / w.sum()
