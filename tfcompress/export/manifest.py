"""The ``manifest.json`` next to exported artifacts: sha256 of every file, options, versions.

Written atomically by every export; :func:`verify_manifest` recomputes the hashes.

Example:
    >>> verify_manifest("savedmodels")  # doctest: +SKIP
    {'ctr.tflite': []}
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "file_sha256",
    "MANIFEST_FORMAT_VERSION",
    "MANIFEST_NAME",
    "atomic_write_text",
    "check_artifact",
    "clean_stale_temps",
    "default_dir_mode",
    "default_file_mode",
    "verify_manifest",
]

MANIFEST_NAME = "manifest.json"
_log = logging.getLogger("tfcompress")
MANIFEST_FORMAT_VERSION = 1

try:  # POSIX: writers hold an flock on their temporary file or directory while they work
    import fcntl
except ImportError:  # pragma: no cover - Windows: the age rule alone
    fcntl = None  # type: ignore[assignment]

#: seconds a temporary file must be left untouched before :func:`clean_stale_temps` removes it
STALE_TEMP_AGE = 60.0
#: the hidden temporary names our writers use (``XXXXXXXX``: ``tempfile``'s 8 random characters)
_MKSTEMP = r"[a-z0-9_]{8}"
_TEMP_FILE_PATTERNS = (
    re.compile(rf"^\..+\.{_MKSTEMP}\.tmp\.tflite$"),  # export_tflite
    re.compile(rf"^\..+\.{_MKSTEMP}\.tmp$"),  # atomic_write_text
    re.compile(r"^\..+\.tmp\.keras$"),  # tfcompress.run's save_model
)
_TEMP_DIR_PATTERN = re.compile(rf"^\..+\.{_MKSTEMP}\.(tmp|old)$")  # export_saved_model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: sha256 of a file's bytes (the manifest's digest; the recipe cache hashes with it too).
file_sha256 = _sha256


def file_table(artifact: Path, root: Path) -> dict[str, dict[str, Any]]:
    """``relative path -> {bytes, sha256}`` for a file or every file under a directory."""
    files = (
        [artifact] if artifact.is_file() else sorted(p for p in artifact.rglob("*") if p.is_file())
    )
    return {
        p.relative_to(root).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in files
    }


def _combined(files: dict[str, dict[str, Any]]) -> tuple[int, str]:
    if len(files) == 1:
        (entry,) = files.values()
        return entry["bytes"], entry["sha256"]
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\t{files[rel]['sha256']}\n".encode())
    return sum(f["bytes"] for f in files.values()), h.hexdigest()


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries an artifact depends on (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "ai-edge-litert",
        "tfcompress",
    ):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"format_version": MANIFEST_FORMAT_VERSION, "artifacts": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"manifest {str(path)!r} is corrupt ({e}); fix or delete it, then export again."
        ) from e
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
        raise ValueError(
            f"manifest {str(path)!r} is corrupt: expected a JSON object with an 'artifacts' "
            "object; fix or delete it, then export again."
        )
    return data


def _umask() -> int:
    """This process's umask, read from ``/proc/self/status`` where the kernel reports it (no
    process-wide change); elsewhere by setting and restoring it."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file in this process: ``0o666`` less the umask.

    Example:
        >>> oct(default_file_mode())  # doctest: +SKIP
        '0o644'
    """
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """The mode ``os.mkdir()`` gives a new directory in this process: ``0o777`` less the umask.

    ``tempfile.mkdtemp`` creates ``0o700`` whatever the umask; an export renamed from one gets
    this mode instead, like any other directory the user creates.

    Example:
        >>> oct(default_dir_mode())  # doctest: +SKIP
        '0o755'
    """
    return 0o777 & ~_umask()


@contextlib.contextmanager
def held(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a temporary file or directory while writing it, so that
    :func:`clean_stale_temps` in another process leaves it alone however long the work takes.

    Example:
        >>> with held(tmp_dir):  # doctest: +SKIP
        ...     tf.saved_model.save(module, tmp_dir)
    """
    fd = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a cleaner's probe this instant: the age rule still protects it
                os.close(fd)
                fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _is_held(path: Path) -> bool:
    """True when a live writer holds ``path`` (see :func:`held`)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases our probe lock
    return False


def newest_mtime(path: Path) -> float:
    """The latest mtime of ``path`` and (for a directory) of everything under it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for p in path.rglob("*"):
            with contextlib.suppress(OSError):
                newest = max(newest, p.lstat().st_mtime)
    return newest


def _is_temp(p: Path) -> bool:
    if p.is_symlink():
        return False
    if p.is_dir():
        return bool(_TEMP_DIR_PATTERN.match(p.name))
    return p.is_file() and any(pattern.match(p.name) for pattern in _TEMP_FILE_PATTERNS)


def check_min_age(min_age: float) -> float:
    """``min_age`` as a float; a ``ValueError`` naming it unless it is a number >= 0."""
    if isinstance(min_age, bool) or not isinstance(min_age, (int, float)) or not min_age >= 0:
        raise ValueError(
            f"`min_age` must be a number of seconds >= 0, received {min_age!r}; e.g. "
            f"{STALE_TEMP_AGE} (the default)."
        )
    return float(min_age)


def stale_temps(directory: Path, min_age: float = STALE_TEMP_AGE) -> list[Path]:
    """The temporary files and directories our writers left in ``directory`` (not recursive)
    that are older than ``min_age`` seconds and that no live writer holds; nothing else."""
    if not directory.is_dir():
        return []
    now = time.time()
    out = []
    for p in sorted(directory.iterdir()):
        try:
            if _is_temp(p) and now - newest_mtime(p) >= min_age and not _is_held(p):
                out.append(p)
        except OSError:  # gone meanwhile (its writer finished)
            continue
    return out


def _restore_moved_aside(old: Path) -> str | None:
    """An export killed between its two renames left the previous SavedModel in
    ``.<name>.XXXXXXXX.old/x`` and nothing at ``<name>``: move it back. Returns ``<name>``."""
    match = _TEMP_DIR_PATTERN.match(old.name)
    if match is None or match.group(1) != "old" or not (old / "x").is_dir():
        return None
    name = old.name[1 : -len(".XXXXXXXX.old")]
    target = old.parent / name
    if target.exists() or target.is_symlink():
        return None
    try:
        os.replace(old / "x", target)
    except OSError as e:
        _log.debug("could not restore %s from %s: %s", target, old, e)
        return None
    return name


def remove_temps(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Remove stale temporaries (a SavedModel moved aside by a killed export is first moved
    back into place). Returns the paths removed and one phrase per path for the log line;
    what cannot be removed is logged at DEBUG."""
    removed, said = [], []
    for p in paths:
        try:
            if p.is_dir() and not p.is_symlink():
                restored = _restore_moved_aside(p)
                shutil.rmtree(p)
                said.append(
                    p.name
                    if restored is None
                    else f"{p.name} (after moving the previous export back to {restored})"
                )
            else:
                p.unlink()
                said.append(p.name)
            removed.append(p)
        except OSError as e:
            _log.debug("could not remove %s: %s", p, e)
    return removed, said


def clean_stale_temps(
    directory: str | os.PathLike, *, min_age: float = STALE_TEMP_AGE
) -> list[Path]:
    """Remove the hidden temporary files and directories an interrupted export left behind.

    Only the names tfcompress's own writers use are touched, in ``directory`` itself (not
    below): ``.<stem>.XXXXXXXX.tmp.tflite`` (:func:`tfcompress.export_tflite`),
    ``.<name>.XXXXXXXX.tmp`` / ``.old`` directories (:func:`tfcompress.export_saved_model`),
    ``.<name>.XXXXXXXX.tmp`` files (:func:`atomic_write_text`) and ``.<stem>.tmp.keras``
    (:func:`tfcompress.run`). One is removed only when nothing under it changed for
    ``min_age`` seconds and no live writer holds its lock (:func:`held`); a user's own hidden
    files stay. A SavedModel that a killed export had moved aside (``.old``) while ``<name>``
    is missing is moved back first. What was done is logged as one WARNING line.

    Args:
        directory: the folder to clean (a missing folder is nothing to clean).
        min_age: seconds a temporary must be left untouched before it counts as stale.

    Returns:
        The paths removed.

    Raises:
        TypeError: ``directory`` is not a path.
        ValueError: ``min_age`` is not a number >= 0.

    Example:
        >>> clean_stale_temps("savedmodels")  # doctest: +SKIP
        [PosixPath('savedmodels/.ctr.k2j4_x9a.tmp.tflite')]
    """
    if not isinstance(directory, (str, os.PathLike)) or not str(directory):
        raise TypeError(f"`directory` must be a folder path (str or Path), received {directory!r}.")
    min_age = check_min_age(min_age)
    directory = Path(directory)
    removed, said = remove_temps(stale_temps(directory, min_age))
    if removed:
        _log.warning(
            "removed %d temporary file(s) left by an interrupted export in %s: %s",
            len(removed),
            directory,
            ", ".join(said),
        )
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same directory + ``os.replace``).

    The file gets the mode a plain ``open()`` would give it (``0o666`` less the umask: 0644
    under umask 022), not the 0600 of the temp file.

    Example:
        >>> atomic_write_text("report.md", "# Run")  # doctest: +SKIP
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, default_file_mode())  # mkstemp creates 0600 whatever the umask
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def update_manifest(directory: Path, key: str, entry: dict[str, Any]) -> Path:
    path = directory / MANIFEST_NAME
    data = read_manifest(path)
    data["format_version"] = MANIFEST_FORMAT_VERSION
    data["artifacts"][key] = entry
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default))
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _entry_problems(directory: Path, key: str, entry: Any) -> list[str]:
    """What is wrong with the files of one manifest entry (malformed entries included)."""
    if not isinstance(entry, dict):
        return [f"malformed entry: expected an object, found {type(entry).__name__}"]
    recorded = entry.get("files")
    if not isinstance(recorded, dict) or not recorded:
        return [f"malformed entry: 'files' must be a non-empty object, found {recorded!r:.80}"]
    issues: list[str] = []
    for rel, info in recorded.items():
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            issues.append(
                f"malformed entry for file {rel}: expected {{bytes, sha256}}, found {info!r:.80}"
            )
            continue
        f = directory / rel
        if not f.is_file():
            issues.append(f"missing file {rel}")
        elif f.stat().st_size != info.get("bytes"):
            issues.append(f"{rel}: {f.stat().st_size} bytes, manifest says {info.get('bytes')}")
        elif _sha256(f) != info["sha256"]:
            issues.append(f"{rel}: sha256 differs from the manifest")
    artifact = directory / key
    if artifact.is_dir():
        for f in sorted(artifact.rglob("*")):
            rel = f.relative_to(directory).as_posix()
            if f.is_file() and rel not in recorded:
                issues.append(f"extra file {rel} not in the manifest")
    return issues


def _unlisted_artifacts(directory: Path, listed: set[str]) -> list[str]:
    """``.tflite`` files and SavedModel directories in ``directory`` the manifest does not list
    (hidden names, the exports' temporary files, are left out)."""
    out = []
    for p in sorted(directory.iterdir()):
        if p.name.startswith(".") or p.name in listed:
            continue
        if (p.is_file() and p.suffix.lower() == ".tflite") or (
            p.is_dir() and (p / "saved_model.pb").is_file()
        ):
            out.append(p.name)
    return out


def verify_manifest(directory: str | os.PathLike, *, strict: bool = True) -> dict[str, list[str]]:
    """Recompute the sha256 of every file in ``directory/manifest.json`` and compare.

    Also reports, as findings, malformed manifest entries and ``.tflite`` files or SavedModel
    directories in ``directory`` that the manifest does not list.

    Args:
        directory: the directory holding ``manifest.json`` and the artifacts.
        strict: raise on any finding (default); otherwise only return them.

    Returns:
        ``artifact name -> list of problems`` (empty lists when everything matches); an
        unlisted artifact appears under its name with ``"not listed in the manifest"``.

    Raises:
        ValueError: no manifest, a corrupt manifest, or (``strict``) any finding.

    Example:
        >>> verify_manifest("savedmodels")  # doctest: +SKIP
        {'ctr.tflite': []}
    """
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(
            f"`directory` {str(directory)!r} has no {MANIFEST_NAME}; pass the directory an export "
            "wrote to."
        )
    data = read_manifest(path)
    problems: dict[str, list[str]] = {
        str(key): _entry_problems(directory, str(key), entry)
        for key, entry in data["artifacts"].items()
    }
    for name in _unlisted_artifacts(directory, set(problems)):
        problems[name] = [f"{name} is not listed in the manifest (export it again, or remove it)"]
    bad = {k: v for k, v in problems.items() if v}
    if bad and strict:
        raise ValueError(f"manifest {str(path)!r} does not match the files on disk: {bad}.")
    return problems


def check_artifact(path: str | os.PathLike, *, verify: bool = True) -> bool:
    """Check a ``.tflite`` file or SavedModel directory against the ``manifest.json`` beside it.

    Nothing to check (no manifest, or the manifest does not list ``path``) returns False.

    Args:
        path: the artifact about to be loaded.
        verify: False skips the check with a WARNING.

    Returns:
        True when the manifest lists ``path`` and every file's sha256 matches.

    Raises:
        ValueError: the manifest is corrupt, its entry for ``path`` is malformed, or a file is
            missing, extra or has other bytes than the manifest records; the message names the
            file, both hashes and the fix.

    Example:
        >>> check_artifact("savedmodels/ctr.tflite")  # doctest: +SKIP
        True
    """
    artifact = Path(path)
    directory = artifact.parent
    manifest = directory / MANIFEST_NAME
    if not manifest.is_file():
        return False
    if not verify:
        _log.warning("%s: not checked against %s (verify=False).", artifact, manifest)
        return False
    fix = "re-export it (or restore the file), or pass verify=False to load it unchecked"
    try:
        data = read_manifest(manifest)
    except ValueError as e:
        raise ValueError(
            f"cannot check {str(artifact)!r}: {e} Or pass verify=False to load it unchecked."
        ) from e
    entry = data["artifacts"].get(artifact.name)
    if entry is None:
        return False
    issues = _entry_problems(directory, artifact.name, entry)
    if not issues:
        return True
    files = entry.get("files") if isinstance(entry, dict) else None
    details = []
    for issue in issues:
        rel = issue.split(":", 1)[0]
        info = files.get(rel) if isinstance(files, dict) else None
        if isinstance(info, dict) and (directory / rel).is_file():
            f = directory / rel
            details.append(
                f"{rel}: sha256 {_sha256(f)} ({f.stat().st_size} bytes) on disk, "
                f"{info.get('sha256')} ({info.get('bytes')} bytes) in the manifest"
            )
        else:
            details.append(issue)
    raise ValueError(
        f"{str(artifact)!r} does not match {str(manifest)!r}: {'; '.join(details)}. The file "
        f"changed after the export (corrupted, or replaced); {fix}."
    )


def manifest_entry(
    model_name: str,
    fmt: str,
    options: dict[str, Any],
    parity: dict[str, Any],
    files: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    total, digest = _combined(files)
    return {
        "source_model": model_name,
        "format": fmt,
        "options": options,
        "parity": parity,
        "bytes": total,
        "sha256": digest,
        "files": files,
        "versions": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
