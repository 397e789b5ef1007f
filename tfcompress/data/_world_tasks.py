"""What the three World tasks share: argument checks and the memory estimate
(:func:`task_memory_bytes`), contiguous splits, schema features, per-task random streams.

Example:
    >>> task_memory_bytes("ctr", 1_000_000) // 2**20
    1373
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from tfcompress.data._common import SPLITS, check_int, check_memory, check_split
from tfcompress.data.schema import Feature
from tfcompress.data.world import World

__all__ = ["task_memory_bytes"]

_TASK_STREAM = {"ctr": 1, "retrieval": 2, "profile": 3}
#: Peak bytes of drawing one sample, measured (tracemalloc and RSS, seq_len 5 to 50): the
#: session arrays (int64 / float64 per sequence position) dominate; per-sample rows of the
#: category preferences add 8 bytes a category. ``tests/test_hostile_sizes.py`` holds the
#: estimate within [measured peak, 2 x measured peak].
_BYTES_PER_SAMPLE, _BYTES_PER_POSITION, _BYTES_PER_CATEGORY = 160, 56, 8
#: retrieval scores the catalogue 2,048 samples at a time (a few float64 arrays of that width)
_RETRIEVAL_CHUNK_BYTES = 32 * 2048
_WORLD_DEFAULTS = {"n_categories": 20, "n_items": 1_000}


# --------------------------------------------------------------------------- sizes
def task_memory_bytes(
    name: str, n_samples: int, *, seq_len: int = 20, world: World | None = None, **world_kwargs: Any
) -> int:
    """About the peak bytes drawing ``n_samples`` of the task ``name`` takes (nothing is drawn).

    Per sample ``160 + 56 * seq_len + 8 * n_categories``, plus ``32 * 2048 * n_items`` for the
    catalogue chunk of ``retrieval``; ``world`` (or ``world_kwargs``) gives the sizes.

    Example:
        >>> task_memory_bytes("ctr", 1_000_000) // 2**20
        1373
    """
    sizes = {
        k: getattr(world, k) if isinstance(world, World) else world_kwargs.get(k, v)
        for k, v in _WORLD_DEFAULTS.items()
    }
    sizes = {
        k: int(v)
        if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
        else _WORLD_DEFAULTS[k]
        for k, v in sizes.items()
    }  # a bad value: World.create says
    per_sample = (
        _BYTES_PER_SAMPLE
        + _BYTES_PER_POSITION * seq_len
        + _BYTES_PER_CATEGORY * sizes["n_categories"]
    )
    fixed = _RETRIEVAL_CHUNK_BYTES * sizes["n_items"] if name == "retrieval" else 0
    return fixed + per_sample * n_samples


# --------------------------------------------------------------------------- tasks
def _prepare(
    task: str,
    n_samples: Any,
    seq_len: Any,
    batch_size: Any,
    seed: Any,
    world: Any,
    split: Any,
    world_kwargs: dict[str, Any],
) -> tuple[World, tuple[int, int, int], tuple[float, float, float]]:
    """Check the arguments every task takes; return the world, rows per split, fractions."""
    n_samples = check_int(n_samples, "n_samples", 1, "20_000")
    seq_len = check_int(seq_len, "seq_len", 1, "20")
    check_int(batch_size, "batch_size", 1, "256")
    seed = check_int(seed, "seed", 0, "0")
    fractions = check_split(split)
    fixed = task_memory_bytes(task, 0, seq_len=seq_len, world=world, **world_kwargs)
    check_memory(
        f"n_samples={n_samples}" + ("" if seq_len == 20 else f" with seq_len={seq_len}"),
        n_samples,
        task_memory_bytes(task, 1, seq_len=seq_len, world=world, **world_kwargs) - fixed,
        fixed,
        f"the simulated {task} task",
        "samples (or a shorter seq_len)",
    )
    n_val = int(round(n_samples * fractions[1]))
    n_test = int(round(n_samples * fractions[2]))
    n_train = n_samples - n_val - n_test
    for name, size, frac in zip(SPLITS, (n_train, n_val, n_test), fractions, strict=True):
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
    return world, (n_train, n_val, n_test), fractions


def _contiguous(sizes: tuple[int, int, int]) -> dict[str, slice]:
    """Consecutive blocks of ``sizes`` rows (the samples are i.i.d., so this is a random split)."""
    bounds = np.cumsum([0, *sizes])
    return {name: slice(bounds[i], bounds[i + 1]) for i, name in enumerate(SPLITS)}


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
