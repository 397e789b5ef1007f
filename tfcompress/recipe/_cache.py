"""Bookkeeping of :func:`tfcompress.run`: progress lines, hashes, ``stage.json`` records (reused
only when ``done``, with a matching key and unchanged files), model files.

Example:
    >>> sha256_text("a", "b") == sha256_text("a", "b")
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress._compat import keras_print_msg
from tfcompress._keras import keras
from tfcompress.export.manifest import (
    STALE_TEMP_AGE,
    atomic_write_text,
    check_min_age,
    file_sha256,
    newest_mtime,
    remove_temps,
    stale_temps,
)

_log = logging.getLogger("tfcompress")

STAGE_FILE = "stage.json"
#: the stage directories of a run: ``NN_<stage name>``
_STAGE_DIR = re.compile(r"^\d{2}_.+$")
#: the run's exports folder (tfcompress.recipe._export.EXPORTS)
_EXPORTS = "exports"


def say(verbose: int, message: str) -> None:
    """Progress lines, through Keras' own output channel (the one its progress bar uses)."""
    if verbose:
        keras_print_msg(message)
    _log.info(message)


def sha256_file(path: Path) -> str:
    return file_sha256(Path(path))


def sha256_text(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load_model(path: Path) -> keras.Model:
    from tfcompress.recipe.model_files import load_model_file

    if path.suffix != ".keras" or not path.is_file():
        raise FileNotFoundError(
            f"model file {str(path)!r} does not exist or is not a .keras file (save models "
            "with model.save('name.keras'))."
        )
    # safe_mode loading, with TFMOT's QAT classes in scope; the stages compile what they fit.
    # The run imported [model] imports first; a class nobody registered names what to add.
    return load_model_file(
        path,
        compile=False,
        argument="model file",
        how='add imports = ["{module}"] under [model] in the recipe',
    )


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


def clean_run_dir(
    run_dir: str | os.PathLike, stage_dirs: Sequence[str], *, min_age: float = STALE_TEMP_AGE
) -> list[str]:
    """Remove what interrupted runs left in ``run_dir``, with one WARNING line saying what.

    Removed: stage directories (``NN_<name>/``) whose ``stage.json`` says ``"running"`` but
    which the current recipe does not use (a stage renamed or removed after it crashed), and the
    temporary files our writers leave (``.model.tmp.keras``, ``.stage.json.XXXXXXXX.tmp``, an
    export's ``.tmp.tflite`` ...; see :func:`tfcompress.export.manifest.clean_stale_temps`) in
    ``run_dir``, in every stage directory and in ``run_dir/exports``. A ``"running"`` stage the
    current recipe uses is kept (:func:`begin_stage` resumes or replaces it), and so are finished
    stages and everything else. Nothing under ``min_age`` seconds old is touched.

    Args:
        run_dir: the run's folder (``out_dir/<recipe name>``); a missing one is nothing to clean.
        stage_dirs: the stage directory names the current recipe uses, e.g.
            ``["00_model", "01_prune"]``.
        min_age: seconds a leftover must be untouched before it counts as stale.

    Returns:
        The removed paths, relative to ``run_dir`` (POSIX form).

    Raises:
        TypeError: ``run_dir`` is not a path or ``stage_dirs`` not a sequence of names.
        ValueError: ``min_age`` is not a number >= 0.

    Example:
        >>> clean_run_dir("runs/ctr", ["00_model", "01_prune"])  # doctest: +SKIP
        ['02_quantize', '01_prune/.model.tmp.keras']
    """
    if not isinstance(run_dir, (str, os.PathLike)) or not str(run_dir):
        raise TypeError(f"`run_dir` must be a folder path (str or Path), received {run_dir!r}.")
    if isinstance(stage_dirs, (str, bytes)) or not all(isinstance(n, str) for n in stage_dirs):
        raise TypeError(
            f"`stage_dirs` must be a list of stage directory names such as ['00_model'], "
            f"received {stage_dirs!r}."
        )
    min_age = check_min_age(min_age)
    root = Path(run_dir)
    if not root.is_dir():
        return []
    keep = set(stage_dirs)
    now = time.time()
    removed: list[str] = []
    said: list[str] = []
    folders = [root, root / _EXPORTS]
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.is_symlink() or not _STAGE_DIR.match(d.name):
            continue
        record = read_json(d / STAGE_FILE)
        if (
            d.name not in keep
            and isinstance(record, dict)
            and record.get("status") == "running"
            and now - newest_mtime(d) >= min_age
        ):
            try:
                shutil.rmtree(d)
            except OSError as e:
                _log.debug("could not remove %s: %s", d, e)
                continue
            removed.append(d.name)
            said.append(f"{d.name}/ (an interrupted stage the recipe no longer has)")
        else:
            folders.append(d)
    for folder in folders:
        paths, phrases = remove_temps(stale_temps(folder, min_age))
        removed += [p.relative_to(root).as_posix() for p in paths]
        rel = "" if folder == root else f"{folder.name}/"
        said += [f"{rel}{phrase}" for phrase in phrases]
    if removed:
        _log.warning(
            "removed %d leftover(s) of an interrupted run in %s: %s",
            len(removed),
            root,
            ", ".join(said),
        )
    return removed
