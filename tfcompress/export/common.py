"""What every export shares: :class:`ExportResult`, the common argument checks, atomic directories.

Example:
    >>> DEFAULT_PARITY_TOLERANCE
    0.0001
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcompress._validation import check_bool, check_int

__all__ = [
    "DEFAULT_PARITY_EXAMPLES",
    "DEFAULT_PARITY_TOLERANCE",
    "ExportResult",
    "check_common_args",
    "created_dirs",
]

DEFAULT_PARITY_TOLERANCE = 1e-4
DEFAULT_PARITY_EXAMPLES = 512


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        path: the ``.tflite`` file or SavedModel directory (a ``Path``).
        format: ``"tflite"`` or ``"saved_model"``.
        quantization: the TFLite mode (``"float32"``, ``"dynamic"``, ...); ``"float32"`` for a
            SavedModel.
        bytes: size on disk (sum of files for a SavedModel).
        sha256: sha256 of the file (for a SavedModel: of its sorted ``path\\tsha256`` lines).
        parity: the parity figures (:func:`tfcompress.export.parity.measure_parity`):
            ``max_abs_diff``, ``mean_abs_diff``, ``examples``, ``source``; with labels
            ``metric``, ``keras_quality``, ``export_quality`` and ``quality_delta``
            (``{metric: export minus Keras}``); and ``drift_flag``: None when the export is
            within :data:`DRIFT_TOLERANCES` (float exports: within ``parity_tolerance``), else
            a short string such as ``"ΔAUC -0.160 > tolerance 0.005"``.
        manifest_path: the ``manifest.json`` that records the artifact.
        options: the export options recorded in the manifest.
    """

    path: Path
    format: str
    quantization: str
    bytes: int
    sha256: str
    parity: dict[str, Any]
    manifest_path: Path
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the result (paths as strings)."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["manifest_path"] = str(self.manifest_path)
        return d


def check_common_args(parity_tolerance: float, parity_max_examples: int, overwrite: bool) -> None:
    if (
        isinstance(parity_tolerance, bool)
        or not isinstance(parity_tolerance, (int, float))
        or not parity_tolerance >= 0
    ):
        raise ValueError(
            f"`parity_tolerance` must be a number >= 0, received {parity_tolerance!r}."
        )
    check_int(parity_max_examples, "parity_max_examples", minimum=1)
    check_bool(overwrite, "overwrite")


@contextlib.contextmanager
def created_dirs(directory: Path) -> Iterator[None]:
    """Create ``directory`` (and parents); remove the ones created here if the body fails."""
    created = []
    d = directory
    while not d.exists():
        created.append(d)
        d = d.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in created:  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
