"""The simulated world at scale: chunked generation draws exactly what the one-pass code drew
(pinned by hashes taken before the change), a Zipf-like user activity, bounded memory."""

from __future__ import annotations

import hashlib
import tracemalloc
from dataclasses import fields

import numpy as np
import pytest

from tfcompress.data import world as world_module
from tfcompress.data.simulated import ctr, profile, retrieval
from tfcompress.data.world import World

# sha256[:16] of every World array (floats at float32 precision, see _world_digest) and of the
# ctr / retrieval / profile splits, computed with the code before chunked generation (commit
# 205f64a; the world digests re-taken at float32 precision on 2026-12-07, the task digests
# unchanged): small worlds must not change.
PINNED = [
    (
        0,
        {},
        ("cf0dc336092698d7", "64ae1e8ab5fc3bb0", "2e45fe4ff0609d88", "06ee2b9878d44b4d"),
    ),
    (
        3,
        {"n_users": 300, "n_items": 400, "n_categories": 10, "n_brands": 30},
        ("977e952f860c6d81", "7038c12d38b5ea1d", "5cac0f6c37471698", "b2975f36cf0d962f"),
    ),
    (
        7,
        {"n_users": 20_000, "n_items": 5_000, "history_len": 30},
        ("77407e225a8c3f1b", "568218780eb673a1", "a698c8e940ae9b6d", "ea853a3f9b8220b7"),
    ),
]


def _world_digest(w: World) -> str:
    """Integer arrays exactly, float arrays at float32 precision: numpy's vectorised exp/log
    differ in the last bits between CPUs (an AVX2-only AMD EPYC's float64 world arrays missed
    the digests pinned on an AVX-512 Xeon, while every task drawn from them was bit-identical)."""
    h = hashlib.sha256()
    for f in fields(w):
        v = getattr(w, f.name)
        if isinstance(v, np.ndarray):
            h.update(f.name.encode())
            h.update(str(v.dtype).encode())
            h.update(np.ascontiguousarray(v.astype(np.float32) if v.dtype.kind == "f" else v))
    return h.hexdigest()[:16]


def _task_digest(task) -> str:
    h = hashlib.sha256()
    for split in ("train", "validation", "test"):
        x, y = task.info["arrays"][split]
        for k in sorted(x):
            h.update(k.encode())
            h.update(np.ascontiguousarray(x[k]).tobytes())
        h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:16]


def _digests(seed: int, kwargs: dict) -> tuple[str, str, str, str]:
    w = World.create(seed, **kwargs)
    return (
        _world_digest(w),
        _task_digest(ctr(n_samples=3000, seq_len=12, world=w, seed=1)),
        _task_digest(retrieval(n_samples=1000, world=w, seed=2)),
        _task_digest(profile(n_samples=2000, world=w, seed=3)),
    )


@pytest.mark.parametrize(("seed", "kwargs", "expected"), PINNED)
def test_small_worlds_and_tasks_equal_the_pinned_data(seed, kwargs, expected):
    assert _digests(seed, kwargs) == expected


def test_chunk_sizes_do_not_change_the_draws(monkeypatch):
    seed, kwargs, expected = PINNED[1]
    monkeypatch.setattr(world_module, "_PREF_CHUNK_USERS", 7)
    monkeypatch.setattr(world_module, "_HISTORY_CHUNK_CLICKS", 1_000)  # 20 users a chunk
    assert _digests(seed, kwargs) == expected
    monkeypatch.setattr(world_module, "_HISTORY_CHUNK_CLICKS", 1)  # one user a chunk
    assert _world_digest(World.create(seed, **kwargs)) == expected[0]


def test_user_zipf_exponent_gives_zipf_activity_and_keeps_every_other_draw():
    base = World.create(5, n_users=5_000, n_items=800)
    zipf = World.create(5, n_users=5_000, n_items=800, user_zipf_exponent=0.8)
    act = zipf.user_activity
    ranked = np.sort(act)[::-1]
    np.testing.assert_allclose(ranked, np.arange(1.0, 5_002) ** -0.8)
    # same users most active as with the log-normal activity
    np.testing.assert_array_equal(np.argsort(-act), np.argsort(-base.user_activity))
    for name in ("user_pref", "user_latent", "item_popularity", "item_category", "item_latent"):
        np.testing.assert_array_equal(getattr(zipf, name), getattr(base, name))
    # heavy tail: the top 1 % of users hold far more activity than with the log-normal
    top = 50
    share = {
        k: np.sort(w.user_activity[1:])[::-1][:top].sum() / w.user_activity[1:].sum()
        for k, w in (("base", base), ("zipf", zipf))
    }
    assert share["zipf"] > 0.15 > 0.05 > share["base"]
    # history lengths follow activity: most users keep the minimum of 3 clicks
    n_hist = (zipf.user_history[1:] > 0).sum(axis=1)
    assert np.median(n_hist) == 3 and n_hist.max() == zipf.history_len
    task = ctr(n_samples=4_000, world=zipf, seed=0)
    users = np.concatenate([a[0]["user_id"][:, 0] for a in task.info["arrays"].values()])
    counts = np.bincount(users, minlength=5_001)
    assert counts[np.argmax(act[1:]) + 1] > 20 * max(1.0, np.median(counts[counts > 0]))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True, "1"])
def test_user_zipf_exponent_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="user_zipf_exponent must be None .* received"):
        World.create(0, n_users=10, n_items=40, user_zipf_exponent=bad)


def test_world_peak_memory_is_bounded_by_its_arrays():
    """A 100k-user world: the peak of numpy allocations while World.create runs stays within
    the world's own arrays + 150 MB of chunk temporaries (the one-pass history drew (users x
    history_len x categories) float64 temporaries: about 24 x the world, 1.6 GB here)."""
    tracemalloc.start()
    try:
        w = World.create(0, n_users=100_000, n_items=50_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    own = sum(
        getattr(w, f.name).nbytes for f in fields(w) if isinstance(getattr(w, f.name), np.ndarray)
    )
    assert own > 50e6  # the world itself: ~70 MB
    assert peak - own < 150e6, f"peak {peak / 1e6:.0f} MB for a world of {own / 1e6:.0f} MB"


def test_a_world_larger_than_memory_is_refused_before_drawing(monkeypatch):
    from tfcompress.data import _common

    monkeypatch.setattr(_common, "physical_memory", lambda: 2**30)
    with pytest.raises(
        ValueError, match=r"n_users=5_000_000 needs about .* use at most [\d,]+ users"
    ):
        World.create(0, n_users=5_000_000, n_items=1_000)
    assert World.create(0, n_users=100, n_items=100).n_users == 100
