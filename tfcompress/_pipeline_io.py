"""Bookkeeping of :func:`tfcompress.run`: progress lines, hashes, stage records, model files.

A stage directory holds ``stage.json``: ``{"status": "running" | "done", "key": ..., "files":
{relative path: sha256}, ...}``. A record is reused only when it is ``done``, its key matches and
every listed file still has its sha256.

Example:
    >>> sha256_text("a", "b") == sha256_text("a", "b")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.keras_compat import keras
from tfcompress.manifest import _sha256, atomic_write_text

_log = logging.getLogger("tfcompress")

STAGE_FILE = "stage.json"


def say(verbose: int, message: str) -> None:
    """Progress lines, through Keras' own output channel (the one its progress bar uses)."""
    if verbose:
        from tf_keras.src.utils import io_utils  # Keras' own output channel (absl-aware)

        io_utils.print_msg(message)
    _log.info(message)


def sha256_file(path: Path) -> str:
    return _sha256(Path(path))


def sha256_text(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load_model(path: Path) -> keras.Model:
    import tfcompress.models  # noqa: F401  (registers the custom layers for safe loading)
    from tfcompress.quantization import load_quantized

    if path.suffix != ".keras" or not path.is_file():
        raise FileNotFoundError(
            f"model file {str(path)!r} does not exist or is not a .keras file (save models "
            "with model.save('name.keras'))."
        )
    # safe_mode loading, with TFMOT's QAT classes in scope; the stages compile what they fit
    return load_quantized(path, compile=False)


def save_model(model: keras.Model, path: Path) -> str:
    """Save atomically; returns the file's sha256."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return sha256_file(path)


def zero_share(model: keras.Model) -> float:
    zeros = total = 0
    for w in model.weights:
        if w.shape.rank is not None and w.shape.rank >= 2 and w.dtype.is_floating:
            value = w.numpy()
            zeros += int(np.sum(value == 0))
            total += value.size
    return round(zeros / total, 6) if total else 0.0


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def cached_record(stage_dir: Path, key: str) -> dict[str, Any] | None:
    """The stage's record when it finished with ``key`` and its files are intact."""
    record = read_json(stage_dir / STAGE_FILE)
    if not record or record.get("status") != "done" or record.get("key") != key:
        return None
    for rel, digest in record.get("files", {}).items():
        f = stage_dir / rel
        if not f.is_file() or sha256_file(f) != digest:
            _log.warning("%s changed since it was written; running the stage again", f)
            return None
    return record


def begin_stage(stage_dir: Path, key: str) -> bool:
    """Mark the stage running with ``key``. What the directory holds from another key (a
    finished stage of an older recipe, the backup of an interrupted one) is stale and removed;
    returns True when it holds an interrupted run of this key (to resume)."""
    record = read_json(stage_dir / STAGE_FILE)
    resuming = bool(record) and record.get("key") == key and record.get("status") == "running"
    if stage_dir.exists() and not resuming:
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stage_dir / STAGE_FILE, json.dumps({"status": "running", "key": key}))
    return resuming


def finish_stage(stage_dir: Path, record: dict[str, Any]) -> None:
    shutil.rmtree(stage_dir / "backup", ignore_errors=True)
    atomic_write_text(stage_dir / STAGE_FILE, json.dumps({**record, "status": "done"}, indent=2))
