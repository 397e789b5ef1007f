"""What `compress` searches: a :class:`Candidate` (shrink ratio, quantization, QAT, table
storage, the fused front end) and the settings of one search (:class:`SearchSettings`), each
validated where it is built.

Example:
    >>> from tfcompress.search.space import Candidate
    >>> Candidate(shrink=0.5, quantization="int8").name
    'shrink0.50+int8'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any

__all__ = [
    "METRICS",
    "OBJECTIVES",
    "RULES",
    "ROWS",
    "RUNTIMES",
    "TABLES",
    "Candidate",
    "SearchSettings",
    "parse_budget",
]

#: What `compress` minimises among the candidates that keep quality.
OBJECTIVES = ("latency", "latency_b1", "size", "flops")
#: Where the chosen model runs.
RUNTIMES = ("tflite", "saved_model")
#: How "keeps quality" is decided (see PairedDifference.keeps_quality).
RULES = ("ci", "point")
#: Quality metrics `compress` can hold (binary: auc/logloss/accuracy; multiclass: accuracy).
METRICS = ("auc", "logloss", "accuracy")
#: The settings a candidate's build depends on (its cache key); the rest only judge it.
_BUILD_FIELDS = ("runtime", "epochs", "learning_rate", "student_loss_weight", "seed")
#: TFLite modes a candidate may export with (None: float32).
_QUANTIZATIONS = (None, "dynamic", "int8", "float16", "int16x8")
#: how a candidate's embedding tables are stored in its TFLite file (None: the mode's default;
#: ``export_tflite(embeddings=...)``)
ROWS = (None, "int8_row", "int4", "int4_compact")
#: the tables' layout (None: the model's own ``Embedding`` tables): ``"mixed"``, mixed-dimension
#: tables by id frequency (``mixed_dimension_embeddings``); ``"qr"``, quotient-remainder tables
#: (``compositional_embeddings(mode="qr")``); both built from the float base model's tables of
#: at least 64 rows and fine-tuned distilling from the teacher (search/build.py, ``table_layout``)
TABLES = (None, "mixed", "qr")
#: how candidates are exported, part of the cache key: bump it when an export of the same model
#: changes (2: full int8 exports are latency-aware hybrids, ``float_ops="auto"``; 3: fused
#: float16 front ends compute their rows in int32; 4: rare-id pruned tables map ids in ~1 byte
#: an id, BlockedIdRemap; 5: every converted file is simplified (export/simplify.py: no
#: BROADCAST_TO its consumers broadcast, no int8 ADD of a negligible constant), auto-float int8
#: files run their float ops as merged regions (export/float_regions.py), mixed-dimension tables
#: keep a blocked id map; 6: dynamic-range files compute their int8 weights in float where
#: measured faster, ``float_ops="auto"``, ptq.dequantize_weights)
EXPORT_REVISION = 6


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of the search space.

    Attributes:
        shrink: structured shrink ratio of the hidden units/heads/dims (0: the model as is);
            the shrunk model is fine-tuned distilling from the teacher.
        quantization: the TFLite mode (None: float32; ``"dynamic"``, ``"int8"``,
            ``"float16"``). Ignored for ``runtime="saved_model"``.
        qat: fine-tune with quantization-aware training before an ``"int8"`` export.
        keep_float: layers left float in QAT (the ones ``sensitivity`` ranks worst).
        skip: layers not shrunk (the ones ``sensitivity`` ranks worst for pruning).
        embeddings: the shrink ratio of the ``Embedding`` tables' dimensions when it differs
            from ``shrink`` (None: the same); the search's second axis.
        min_count: rare-id (vocabulary) pruning: ids seen fewer times in the training data
            share an OOV row (``prune_vocabulary``; 0: no pruning).
        rows: how the tables are stored in the TFLite file (``export_tflite(embeddings=...)``):
            None (the mode's default), ``"int8_row"``, ``"int4"`` or ``"int4_compact"``.
        fuse: the fused embedding front end (``export_tflite(fuse_embeddings=...)``): None (the
            export's auto rule: float32/float16 with float tables), True (fused in any mode;
            named ``"+fused"``) or False (never; ``"+unfused"``). Not with ``qat`` or
            ``min_count`` (their tables are wrapped or read an id map, which fusion cannot
            read).
        tables: the tables' layout (``TABLES``): None (the model's own), ``"mixed"``
            (mixed-dimension tables by id frequency; named ``"+mixed"``) or ``"qr"``
            (quotient-remainder tables; ``"+qr"``), fine-tuned distilling from the teacher. Not
            with ``qat``, ``min_count`` or ``fuse=True`` (QAT wraps plain tables only, rare-id
            pruning and the fused front end read plain ``Embedding`` tables).
        depth: how many residual blocks ``drop_blocks`` drops (the last ones) before the
            shrink (0: none; named ``"drop1+..."``), the float model then fine-tuned distilling
            from the teacher (docs/compress.md, "The depth axis").

    Example:
        >>> Candidate(quantization="int8").name
        'ptq-int8'
    """

    shrink: float = 0.0
    quantization: str | None = None
    qat: bool = False
    keep_float: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    embeddings: float | None = None
    min_count: int = 0
    rows: str | None = None
    fuse: bool | None = None
    tables: str | None = None
    depth: int = 0

    def __post_init__(self) -> None:
        if (
            isinstance(self.shrink, bool)
            or not isinstance(self.shrink, (int, float))
            or not 0.0 <= float(self.shrink) < 1.0
        ):
            raise ValueError(
                f"`shrink` must be a ratio in [0, 1), received {self.shrink!r}; e.g. 0.5 "
                "removes half of each hidden layer's units."
            )
        object.__setattr__(self, "shrink", round(float(self.shrink), 4))
        if self.embeddings is not None:
            if (
                isinstance(self.embeddings, bool)
                or not isinstance(self.embeddings, (int, float))
                or not 0.0 <= float(self.embeddings) < 1.0
            ):
                raise ValueError(
                    f"`embeddings` must be None or a ratio in [0, 1), received "
                    f"{self.embeddings!r}; e.g. 0.75 removes three quarters of each embedding "
                    "table's dimensions."
                )
            embeddings = round(float(self.embeddings), 4)
            # the same ratio as the rest is the plain shrink candidate
            same = embeddings == self.shrink
            object.__setattr__(self, "embeddings", None if same else embeddings)
        if self.quantization not in _QUANTIZATIONS:
            raise ValueError(
                f"`quantization` must be one of {_QUANTIZATIONS}, received {self.quantization!r}."
            )
        if not isinstance(self.qat, bool):
            raise TypeError(f"`qat` must be a bool, received {self.qat!r}.")
        if self.qat and self.quantization != "int8":
            raise ValueError(
                f"`qat=True` exports full int8; received quantization={self.quantization!r}. "
                'Pass quantization="int8".'
            )
        if (
            isinstance(self.min_count, bool)
            or not isinstance(self.min_count, int)
            or self.min_count < 0
        ):
            raise ValueError(
                f"`min_count` must be an int >= 0, received {self.min_count!r}; e.g. 2 gives the "
                "ids seen once in the training data a shared OOV row (0: no pruning)."
            )
        if self.min_count and self.qat:
            raise ValueError(
                f"`min_count={self.min_count}` with `qat=True`: rare-id pruning applies to float "
                "models; pass qat=False."
            )
        if self.rows not in ROWS:
            raise ValueError(
                f"`rows` must be one of {ROWS}, received {self.rows!r}; e.g. rows='int4' stores "
                "each table row as 4-bit codes with a per-row scale and offset."
            )
        if self.fuse is not None and not isinstance(self.fuse, bool):
            raise TypeError(
                f"`fuse` must be None (the export's auto rule), True or False, received "
                f"{self.fuse!r}; e.g. fuse=True exports the fused embedding front end."
            )
        if self.fuse and (self.qat or self.min_count):
            what = "qat=True" if self.qat else f"min_count={self.min_count}"
            raise ValueError(
                f"`fuse=True` with `{what}`: the fused front end reads plain Embedding tables on "
                "the model's id inputs, which QAT wraps and rare-id pruning feeds through an id "
                "map; pass fuse=None."
            )
        self._check_tables()
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0:
            raise ValueError(
                f"`depth` must be an int >= 0, received {self.depth!r}; e.g. depth=1 drops the "
                "last residual block (drop_blocks) before the shrink (0: none)."
            )
        for field in ("keep_float", "skip"):
            names = getattr(self, field)
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise TypeError(f"`{field}` must be a sequence of layer names, received {names!r}.")
            object.__setattr__(self, field, tuple(sorted(names)))

    def _check_tables(self) -> None:
        if self.tables not in TABLES:
            raise ValueError(
                f"`tables` must be one of {TABLES}, received {self.tables!r}; e.g. tables='qr' "
                "replaces each table of >= 64 rows by a quotient and a remainder table."
            )
        if self.tables is None:
            return
        clash = [
            what
            for what, on in (
                ("qat=True", self.qat),
                (f"min_count={self.min_count}", self.min_count),
                ("fuse=True", self.fuse),
            )
            if on
        ]
        if clash:
            raise ValueError(
                f"`tables={self.tables!r}` with `{clash[0]}`: QAT, rare-id pruning and the fused "
                "front end read plain Embedding tables, which this layout replaces; pass "
                f"tables=None or drop {clash[0]}."
            )

    @property
    def name(self) -> str:
        """A short unique display name, e.g. ``"shrink0.50+qat-int8"``."""
        parts = [f"drop{self.depth}"] if self.depth else []
        if self.shrink:
            parts.append(f"shrink{self.shrink:.2f}")
        if self.embeddings is not None:
            parts.append(f"emb{self.embeddings:.2f}")
        if self.min_count:
            parts.append(f"vocab{self.min_count}")
        if self.tables:
            parts.append(self.tables)
        if self.rows:
            parts.append(
                {"int4_compact": "int4c"}.get(self.rows, self.rows.replace("_row", "")) + "rows"
            )
        if self.quantization:
            mode = f"qat-{self.quantization}" if self.qat else self.quantization
            parts.append(mode if parts else f"{'' if self.qat else 'ptq-'}{mode}")
        name = "+".join(parts) or "float"
        if self.fuse is not None:
            name += "+fused" if self.fuse else "+unfused"
        if self.skip or self.keep_float:
            # the layer lists are part of the identity: hash them into the name
            digest = hashlib.sha256(repr((self.skip, self.keep_float)).encode()).hexdigest()
            name += f"~{digest[:6]}"
        return name

    @property
    def shrinks(self) -> tuple[Any, ...] | None:
        """The float model it starts from: ``(shrink, embeddings)`` (``(shrink, embeddings,
        depth)`` with blocks dropped), None for the original."""
        if self.depth:
            return (self.shrink, self.embeddings, self.depth)
        return (self.shrink, self.embeddings) if self.shrink or self.embeddings else None

    @property
    def trains(self) -> bool:
        """Whether building it fine-tunes (shrinking, QAT or a table layout), the expensive part
        of a search."""
        return self.shrinks is not None or self.qat or self.tables is not None

    def get_config(self) -> dict[str, Any]:
        """The fields as plain JSON types (``tables`` only when set: a candidate without a
        layout has the config, and the cache entry, it had before the field existed)."""
        config = {
            "shrink": self.shrink,
            "quantization": self.quantization,
            "qat": self.qat,
            "keep_float": list(self.keep_float),
            "skip": list(self.skip),
            "embeddings": self.embeddings,
            "min_count": self.min_count,
            "rows": self.rows,
            "fuse": self.fuse,
        }
        if self.tables is not None:
            config["tables"] = self.tables
        if self.depth:  # likewise: a candidate without dropped blocks keeps its old key
            config["depth"] = self.depth
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Candidate:
        """Build from :meth:`get_config`'s dict."""
        return cls(
            shrink=config.get("shrink", 0.0),
            quantization=config.get("quantization"),
            qat=config.get("qat", False),
            keep_float=tuple(config.get("keep_float", ())),
            skip=tuple(config.get("skip", ())),
            embeddings=config.get("embeddings"),
            # caches written before the embedding axis hold neither key
            min_count=config.get("min_count", 0),
            rows=config.get("rows"),
            # caches written before fused candidates hold no "fuse": the export's auto rule
            fuse=config.get("fuse"),
            # caches written before table layouts hold no "tables": the model's own
            tables=config.get("tables"),
            # caches written before the depth axis hold no "depth": no block dropped
            depth=config.get("depth", 0),
        )


_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_budget(budget: Any) -> float | None:
    """Seconds from ``None`` (no limit), a number of seconds, or ``"90s"``/``"20m"``/``"1.5h"``.

    Example:
        >>> parse_budget("20m")
        1200.0
    """
    if budget is None:
        return None
    if isinstance(budget, bool):
        raise TypeError(f"`budget` must be seconds or a string like '20m', received {budget!r}.")
    if isinstance(budget, (int, float)):
        seconds = float(budget)
    elif isinstance(budget, str) and (match := _BUDGET.match(budget)):
        seconds = float(match.group(1)) * _UNIT[(match.group(2) or "s").lower()]
    else:
        raise ValueError(
            f"`budget` must be seconds or a duration like '90s', '20m', '1.5h', received "
            f"{budget!r}."
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"`budget` must be a positive duration, received {budget!r}.")
    return seconds


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """The settings of one `compress` call that decide its candidates' results (and so their
    cache keys).

    Attributes:
        metric: the quality metric held (``"auc"``, ``"logloss"``, ``"accuracy"``).
        max_loss: the tolerated quality loss (in the metric's units, > 0... < 1).
        rule: ``"ci"`` (the CI's worst end within ``max_loss``) or ``"point"``.
        objective: what is minimised among the candidates that keep quality.
        runtime: ``"tflite"`` or ``"saved_model"``.
        epochs: fine-tune epochs of every trained candidate.
        learning_rate: fine-tune learning rate (Adam).
        max_shrink: the largest shrink ratio tried.
        steps: bisection steps on the shrink ratio.
        student_loss_weight: weight of the label loss in each distilled fine-tune.
        seed: seeds the fine-tunes and the bootstrap.
    """

    metric: str = "auc"
    max_loss: float = 0.001
    rule: str = "ci"
    objective: str = "latency"
    runtime: str = "tflite"
    epochs: int = 2
    learning_rate: float = 1e-3
    max_shrink: float = 0.875
    steps: int = 3
    student_loss_weight: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for field, choices in (
            ("metric", METRICS),
            ("rule", RULES),
            ("objective", OBJECTIVES),
            ("runtime", RUNTIMES),
        ):
            value = getattr(self, field)
            if value not in choices:
                raise ValueError(f"`{field}` must be one of {choices}, received {value!r}.")
        _real(self, "max_loss", 0.0, 1.0, "e.g. max_loss=0.001 (0.1 AUC point)")
        _real(self, "learning_rate", 0.0, 1.0, "e.g. learning_rate=1e-3")
        _real(self, "max_shrink", 0.0, 0.99, "e.g. max_shrink=0.875")
        _real(self, "student_loss_weight", -1e-12, 1.0 + 1e-12, "e.g. 0.5")
        for field, low in (("epochs", 1), ("steps", 1), ("seed", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{field}` must be an int >= {low}, received {value!r}.")

    def fingerprint(self) -> str:
        """sha256 of the settings that change what a candidate's build produces (part of the
        cache key). The others (metric, tolerance, rule, objective, the bisection's extent)
        only change how the cached outputs are judged, so changing them reuses the cache."""
        build = {k: getattr(self, k) for k in _BUILD_FIELDS}
        build["exports"] = EXPORT_REVISION
        return hashlib.sha256(json.dumps(build, sort_keys=True).encode()).hexdigest()


def _real(settings: SearchSettings, field: str, low: float, high: float, fix: str) -> None:
    value = getattr(settings, field)
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or not low < float(value) <= high:
        raise ValueError(
            f"`{field}` must be a number in ({low:g}, {high:g}], received {value!r}; {fix}."
        )
    object.__setattr__(settings, field, float(value))
