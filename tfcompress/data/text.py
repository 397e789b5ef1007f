"""A simulated product-text task for BERT-like models: :func:`product_text`.

Product titles are token ids laid out as Model Garden BERT expects (``input_word_ids``,
``input_mask``, ``input_type_ids``); the label is the product category. The category is planted
so that reading the order of the tokens pays: some keywords are ambiguous and resolved by the
modifier right before them, and a keyword right after the "for" token ("case for phone") does
not name the product. What the task models and its measured accuracies: docs/data.md.

Example:
    >>> task = product_text(n_samples=1_000, seed=0)
    >>> task.schema.names
    ['input_word_ids', 'input_mask', 'input_type_ids']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfcompress._validation import check_float
from tfcompress.data._common import (
    SPLITS,
    build_task,
    check_int,
    check_memory,
    check_split,
    gather_splits,
)
from tfcompress.data.schema import Feature, Schema, TaskData

__all__ = ["product_text", "text_lexicon"]

_log = logging.getLogger("tfcompress")

PAD, CLS, SEP, FOR = 0, 1, 2, 3  # reserved token ids
#: modifiers, unambiguous keywords per class; ambiguous keywords are two per class
_MODIFIERS, _KEYWORDS, _AMBIGUOUS = 2, 8, 2
_MIN_FILLERS = 50
#: the title kinds and their shares: no keyword, a plain keyword, an ambiguous keyword after its
#: modifier (plus a modifier of the other reading elsewhere), a product keyword plus
#: "for <keyword of another class>"
_KINDS = ("none", "plain", "ambiguous", "accessory")
_KIND_SHARES = (0.1, 0.3, 0.3, 0.3)
_MIN_CONTENT = 4  # content tokens of the shortest title (between [CLS] and [SEP])
_SPRINKLE = 0.05  # share of filler positions that hold a random modifier (a distractor)
#: Peak bytes of drawing one sample per title position (int64 temporaries and the int32
#: features), measured with tracemalloc at seq_len 16 to 64 (see the tests).
_BYTES_PER_POSITION, _BYTES_PER_SAMPLE = 48, 64
_SHUFFLE_BUFFER = 10_000
_NOISE_FIX = "Pass e.g. label_noise=0.05."


def _min_vocab(num_classes: int) -> int:
    return 4 + (_MODIFIERS + _KEYWORDS + _AMBIGUOUS) * num_classes + _MIN_FILLERS


def text_lexicon(vocab_size: int = 2000, num_classes: int = 8) -> dict[str, np.ndarray]:
    """The token ids of each role (a function of the sizes only, so every seed shares it).

    Args:
        vocab_size: ids ``0 .. vocab_size - 1``.
        num_classes: the categories.

    Returns:
        ``modifiers`` (num_classes, 2), ``keywords`` (num_classes, 8), ``ambiguous``
        (2 * num_classes,) with ``ambiguous_classes`` (2 * num_classes, 2): the two categories
        each ambiguous keyword can name (a modifier of the first or second one resolves it),
        and ``fillers`` (the rest of the ids, most frequent first).

    Example:
        >>> text_lexicon(200, 2)["keywords"].shape
        (2, 8)
    """
    c = num_classes
    start = 4
    modifiers = np.arange(start, start + _MODIFIERS * c).reshape(c, _MODIFIERS)
    start += _MODIFIERS * c
    keywords = np.arange(start, start + _KEYWORDS * c).reshape(c, _KEYWORDS)
    start += _KEYWORDS * c
    ambiguous = np.arange(start, start + _AMBIGUOUS * c)
    first = np.arange(_AMBIGUOUS * c) % c
    offset = 1 + (np.arange(_AMBIGUOUS * c) // c) % max(c - 1, 1)  # each class in 4 pairs
    pairs = np.stack([first, (first + offset) % c], axis=1)
    start += _AMBIGUOUS * c
    return {
        "modifiers": modifiers,
        "keywords": keywords,
        "ambiguous": ambiguous,
        "ambiguous_classes": pairs,
        "fillers": np.arange(start, vocab_size),
    }


def _check(
    n_samples: Any,
    seq_len: Any,
    vocab_size: Any,
    num_classes: Any,
    seed: Any,
    batch_size: Any,
    split: Any,
    label_noise: Any,
) -> tuple[int, int, int, int, int, float, tuple[float, float, float], list[int]]:
    n = check_int(n_samples, "n_samples", 1, "20_000")
    length = check_int(seq_len, "seq_len", _MIN_CONTENT + 2, "32")
    classes = check_int(num_classes, "num_classes", 2, "8")
    vocab = check_int(vocab_size, "vocab_size", 2, "2000")
    if vocab < _min_vocab(classes):
        raise ValueError(
            f"vocab_size={vocab} is too small for num_classes={classes}: the task needs "
            f"4 reserved ids, {_MODIFIERS + _KEYWORDS + _AMBIGUOUS} keyword and modifier ids per "
            f"class and {_MIN_FILLERS} filler ids; pass vocab_size >= {_min_vocab(classes)} "
            "(or fewer num_classes)."
        )
    seed = check_int(seed, "seed", 0, "0")
    check_int(batch_size, "batch_size", 1, "256")
    noise = check_float(
        label_noise, "label_noise", minimum=0.0, maximum=1.0, max_open=True, fix=_NOISE_FIX
    )
    fractions = check_split(split)
    check_memory(
        f"n_samples={n}" + ("" if length == 32 else f" with seq_len={length}"),
        n,
        _BYTES_PER_SAMPLE + _BYTES_PER_POSITION * length,
        0,
        "the simulated product_text task",
        "samples (or a shorter seq_len)",
    )
    sizes = [int(round(n * fractions[1])), int(round(n * fractions[2]))]
    sizes.insert(0, n - sum(sizes))
    for name, size, frac in zip(SPLITS, sizes, fractions, strict=True):
        if frac > 0 and size < 1:
            raise ValueError(
                f"n_samples={n} leaves the {name} split empty with split={split!r}; "
                "pass a larger n_samples."
            )
    return n, length, vocab, classes, seed, noise, fractions, sizes


def _place_pair(
    rng: np.random.Generator, rows: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A position ``p`` (for a bigram at ``p, p + 1``) and a position ``q`` outside it."""
    p = (rng.random(len(rows)) * (lengths[rows] - 1)).astype(np.int64)
    q = (rng.random(len(rows)) * (lengths[rows] - 2)).astype(np.int64)
    return p, np.where(q >= p, q + 2, q)


def product_text(
    *,
    n_samples: int = 20_000,
    seq_len: int = 32,
    vocab_size: int = 2000,
    num_classes: int = 8,
    seed: int = 0,
    batch_size: int = 256,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    label_noise: float = 0.05,
) -> TaskData:
    """Product titles -> category, as BERT inputs; order matters, a bag of words falls short.

    Each title is ``[CLS] tokens [SEP]`` followed by padding, 6 to ``seq_len`` ids long. Its
    tokens are Zipf-distributed filler words, a few distractor modifiers, and one of four
    patterns (shares 0.1 / 0.3 / 0.3 / 0.3):

    * none: no keyword (only the class prior helps);
    * plain: one keyword of the category;
    * ambiguous: a keyword that names one of two categories, resolved by the category's
      modifier right before it; a modifier of the other reading stands elsewhere in the title;
    * accessory: a keyword of the category and ``for <keyword of another category>`` ("case
      for phone" is a case); the keyword right after ``for`` does not name the product.

    A bag of words cannot tell the two readings of the last two patterns apart; a model that
    sees neighbouring tokens can. Then ``label_noise`` of the labels are redrawn uniformly. The
    lexicon (:func:`text_lexicon`) depends only on ``vocab_size`` and ``num_classes``, so
    samples of different seeds share it.

    Args:
        n_samples: titles in all splits together.
        seq_len: padded length (>= 6), [CLS] and [SEP] included.
        vocab_size: token ids ``0 .. vocab_size - 1`` (0 pad, 1 [CLS], 2 [SEP], 3 "for").
        num_classes: categories (>= 2).
        seed: seed of the samples.
        batch_size: batch size of the datasets.
        split: train / validation / test fractions, summing to 1.
        label_noise: share of labels redrawn uniformly at random, in [0, 1).

    Returns:
        A :class:`TaskData` with int32 features ``input_word_ids``, ``input_mask`` (1 on real
        tokens) and ``input_type_ids`` (zeros: one segment), each (batch, seq_len), and label
        ``"category"`` (int32 class, shape (batch,)); ``schema.task == "multiclass"``. ``info``
        holds ``chance_accuracy`` (1 / num_classes), ``bayes_accuracy`` (the expected accuracy
        of the best possible classifier), ``bag_of_words_accuracy`` (that of the best classifier
        that ignores token order), ``oracle_accuracy`` (the rule's accuracy on the test split),
        ``kinds`` (the pattern of each title per split, an index into ``("none", "plain",
        "ambiguous", "accessory")``), ``lexicon``, ``arrays`` and ``rows``.

    Raises:
        TypeError, ValueError: an argument has the wrong type or range (the message names it).

    Example:
        >>> task = product_text(n_samples=1_000, seq_len=16, seed=0)
        >>> task.schema["input_word_ids"].shape, task.schema.num_classes
        ((16,), 8)
    """
    n, length, vocab, classes, seed, noise, fractions, sizes = _check(
        n_samples, seq_len, vocab_size, num_classes, seed, batch_size, split, label_noise
    )
    lex = text_lexicon(vocab, classes)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17, vocab, classes]))
    width = length - 2  # content tokens at most
    lengths = rng.integers(_MIN_CONTENT, width + 1, size=n)
    fillers = lex["fillers"]
    zipf = 1.0 / np.arange(1, len(fillers) + 1) ** 1.1
    content = rng.choice(fillers, size=(n, width), p=zipf / zipf.sum())
    sprinkle = rng.random((n, width)) < _SPRINKLE
    content[sprinkle] = rng.choice(lex["modifiers"].reshape(-1), size=int(sprinkle.sum()))
    truth = rng.integers(0, classes, size=n)
    kind = rng.choice(len(_KINDS), size=n, p=_KIND_SHARES)
    keyword = lex["keywords"][truth, rng.integers(0, _KEYWORDS, size=n)]

    rows = np.flatnonzero(kind == 1)  # plain
    content[rows, (rng.random(len(rows)) * lengths[rows]).astype(np.int64)] = keyword[rows]

    rows = np.flatnonzero(kind == 2)  # ambiguous: modifier + keyword, other modifier elsewhere
    pairs = lex["ambiguous_classes"]
    which = rng.integers(0, _AMBIGUOUS * 2, size=len(rows))  # each class is in 4 pairs
    candidates = np.stack([np.flatnonzero((pairs == c).any(axis=1)) for c in range(classes)])
    amb = candidates[truth[rows], which % candidates.shape[1]]
    other = np.where(pairs[amb, 0] == truth[rows], pairs[amb, 1], pairs[amb, 0])
    pick = rng.integers(0, _MODIFIERS, size=(len(rows), 2))
    p, q = _place_pair(rng, rows, lengths)
    content[rows, p] = lex["modifiers"][truth[rows], pick[:, 0]]
    content[rows, p + 1] = lex["ambiguous"][amb]
    content[rows, q] = lex["modifiers"][other, pick[:, 1]]

    rows = np.flatnonzero(kind == 3)  # accessory: keyword + "for <keyword of another class>"
    shift = rng.integers(1, classes, size=len(rows))
    p, q = _place_pair(rng, rows, lengths)
    content[rows, p] = FOR
    content[rows, p + 1] = lex["keywords"][
        (truth[rows] + shift) % classes, rng.integers(0, _KEYWORDS, size=len(rows))
    ]
    content[rows, q] = keyword[rows]

    labels = np.where(rng.random(n) < noise, rng.integers(0, classes, size=n), truth)
    labels = labels.astype(np.int32)
    ids = np.zeros((n, length), np.int32)
    positions = np.arange(length)[None, :]
    real = positions < (lengths + 2)[:, None]
    ids[:, 1 : width + 1] = np.where(positions[:, :width] < lengths[:, None], content, PAD)
    ids[:, 0] = CLS
    ids[np.arange(n), lengths + 1] = SEP
    features = {
        "input_word_ids": ids,
        "input_mask": real.astype(np.int32),
        "input_type_ids": np.zeros((n, length), np.int32),
    }
    schema = Schema(
        (
            Feature("input_word_ids", "sequence", vocab, length, group="text"),
            Feature("input_mask", "sequence", 2, length, group="text"),
            Feature("input_type_ids", "sequence", 2, length, group="text"),
        ),
        label="category",
        task="multiclass",
        num_classes=classes,
        metadata={"source": "simulated", "task": "product_text", "seed": seed},
    )
    bounds = np.cumsum([0, *sizes])
    parts = {name: slice(bounds[i], bounds[i + 1]) for i, name in enumerate(SPLITS)}
    arrays = gather_splits(features, labels, parts)
    kept = 1.0 - noise + noise / classes  # accuracy on a title whose category is known
    half = (1.0 - noise) / 2 + noise / classes  # two readings left
    shares = dict(zip(_KINDS, _KIND_SHARES, strict=True))
    test = parts["test"]
    known = kind[test] != 0
    oracle = np.where(known, truth[test], 0) == labels[test]  # none: predict class 0
    info: dict[str, Any] = {
        "chance_accuracy": 1.0 / classes,
        "bayes_accuracy": shares["none"] / classes + (1.0 - shares["none"]) * kept,
        "bag_of_words_accuracy": shares["none"] / classes
        + shares["plain"] * kept
        + (shares["ambiguous"] + shares["accessory"]) * half,
        "oracle_accuracy": float(oracle.mean()) if oracle.size else float("nan"),
        "kinds": {name: kind[rows] for name, rows in parts.items()},
        "kind_names": _KINDS,
        "lexicon": lex,
        "label_noise": noise,
        "seed": seed,
    }
    _log.info(
        "Simulated product_text: %d titles, %d classes, Bayes accuracy %.3f, bag of words %.3f.",
        n,
        classes,
        info["bayes_accuracy"],
        info["bag_of_words_accuracy"],
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
