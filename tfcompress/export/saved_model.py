"""Export a tf_keras model as a SavedModel whose ``serving_default`` is (XLA-)compiled.

Re-exported by :mod:`tfcompress.export`; see :func:`export_saved_model`.

Example:
    >>> r = export_saved_model(model, "savedmodels/ctr_xla")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tfcompress._keras import check_model, keras, tf
from tfcompress._validation import check_bool
from tfcompress.export.common import (
    DEFAULT_PARITY_EXAMPLES,
    DEFAULT_PARITY_TOLERANCE,
    ExportResult,
    check_common_args,
    created_dirs,
)
from tfcompress.export.converter_errors import first_line
from tfcompress.export.manifest import (
    MANIFEST_NAME,
    clean_stale_temps,
    default_dir_mode,
    file_table,
    held,
    manifest_entry,
    read_manifest,
    update_manifest,
)
from tfcompress.export.parity import check_float_parity, measure_parity
from tfcompress.export.runtime import (
    collect_examples,
    load_variant,
    model_input_specs,
    serving_function,
)

_log = logging.getLogger("tfcompress")

__all__ = ["describe_save_failure", "export_saved_model"]


def describe_save_failure(err: BaseException, model_name: str, jit_compile: bool) -> str:
    """What failed when ``tf.saved_model.save`` refused a model, and what to do.

    Example:
        >>> describe_save_failure(AssertionError("boom"), "m", True).startswith("SavedModel")
        True
    """
    what = first_line(str(err) or type(err).__name__).removesuffix(" See the information below:")
    if "untracked" in str(err):
        fix = (
            "Every TF object call() uses (variables, lookup tables, sub-models) must be an "
            "attribute of the model or of one of its layers, not a global or an object Keras "
            "does not track."
        )
    else:
        fix = (
            "Check the model runs in a tf.function (model.predict works) and that every TF "
            "object it uses is tracked by one of its layers"
            + ("; or try jit_compile=False." if jit_compile else ".")
        )
    return (
        f"SavedModel export of model {model_name!r} (jit_compile={jit_compile}) failed while "
        f"saving: {type(err).__name__}: {what} {fix}"
    )


def export_saved_model(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    jit_compile: bool = True,
    parity_data: Any = None,
    parity_labels: Any = None,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
    parity_max_examples: int = DEFAULT_PARITY_EXAMPLES,
    overwrite: bool = True,
) -> ExportResult:
    """Write ``model`` as a SavedModel whose ``serving_default`` is an (XLA-)compiled function.

    The signature takes the model inputs by name (batch dimension None) and returns a dict of
    outputs keyed by the model's output names. Loading needs only TensorFlow::

        m = tf.saved_model.load(path)
        m.signatures["serving_default"](user_id=tf.constant([[3]]), ...)

    Args:
        model: a built tf_keras model.
        path: the SavedModel directory to create (must not be an existing file).
        jit_compile: compile the serving function with XLA (works on CPU and GPU).
        parity_data: data to compare the SavedModel with the Keras model on.
        parity_labels: labels for ``parity_data`` when it has none.
        parity_tolerance: max |diff| allowed; beyond it :class:`ParityError` and nothing written.
        parity_max_examples: examples taken from ``parity_data``.
        overwrite: replace an existing directory at ``path``.

    Returns:
        The :class:`ExportResult`.

    Raises:
        TypeError: ``model`` is not a tf_keras model.
        ValueError: bad path or options; XLA compilation failure; corrupt manifest.
        ParityError: outputs drift beyond ``parity_tolerance`` (nothing is written).

    Example:
        >>> r = export_saved_model(model, "savedmodels/ctr_xla")  # doctest: +SKIP
        >>> r.format  # doctest: +SKIP
        'saved_model'
    """
    check_model(model, "model")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise TypeError(f"`path` must be a directory path (str or Path), received {path!r}.")
    target = Path(path)
    if target.suffix in (".tflite", ".keras", ".h5", ".json"):
        raise ValueError(
            f"`path` {str(path)!r} looks like a file; a SavedModel is a directory, e.g. "
            f"{str(target.with_suffix(''))!r}."
        )
    if target.exists() and not target.is_dir():
        raise ValueError(f"`path` {str(path)!r} is an existing file; pass a directory path.")
    check_bool(jit_compile, "jit_compile")
    check_common_args(parity_tolerance, parity_max_examples, overwrite)
    if target.exists() and not overwrite:
        raise ValueError(f"`path` {str(target)!r} exists; pass overwrite=True to replace it.")
    manifest_path = target.parent / MANIFEST_NAME
    if manifest_path.exists():
        read_manifest(manifest_path)
    clean_stale_temps(target.parent)  # what an interrupted export left there (logged)
    if parity_data is not None:  # validate before the (slow) save
        structure, specs = model_input_specs(model)
        collect_examples(parity_data, structure, specs, 1, "parity_data")

    module = tf.Module()
    module.model_variables = list(model.variables)
    module.serve = serving_function(model, jit_compile=jit_compile)
    options = {
        "jit_compile": jit_compile,
        "signature": "serving_default",
        "parity_tolerance": parity_tolerance,
    }
    with created_dirs(target.parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        with held(tmp):  # a cleaner in another process leaves it alone while we write
            old = None
            try:
                try:
                    tf.saved_model.save(
                        module,
                        str(tmp),
                        signatures={"serving_default": module.serve.get_concrete_function()},
                    )
                except Exception as e:  # TF's own: re-raised naming the model, mode and fix
                    raise ValueError(describe_save_failure(e, model.name, jit_compile)) from e
                try:
                    artifact = load_variant(tmp, name=target.name)
                    parity = measure_parity(
                        model, artifact, parity_data, parity_labels, parity_max_examples
                    )
                except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
                    raise ValueError(
                        f"SavedModel export of {model.name!r}: running the serving function "
                        f"(jit_compile={jit_compile}) failed: {e}. Try jit_compile=False."
                    ) from e
                del artifact
                check_float_parity(parity, parity_tolerance, f"SavedModel export {str(target)!r}")
                parity["drift_flag"] = None
                if target.exists():
                    old = Path(
                        tempfile.mkdtemp(
                            prefix=f".{target.name}.", suffix=".old", dir=target.parent
                        )
                    )
                    os.replace(target, old / "x")
                os.chmod(tmp, default_dir_mode())  # mkdtemp creates 0700 whatever the umask
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                if old is not None and (old / "x").exists() and not target.exists():
                    os.replace(old / "x", target)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                raise
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    files = file_table(target, target.parent)
    entry = manifest_entry(model.name, "saved_model", options, parity, files)
    entry["inputs"] = [spec.name for spec in model_input_specs(model)[1]]  # the Keras order
    mpath = update_manifest(target.parent, target.name, entry)
    _log.info(
        "exported SavedModel %s (jit_compile=%s, %d bytes, max |diff| %.3g)",
        target,
        jit_compile,
        entry["bytes"],
        parity["max_abs_diff"],
    )
    return ExportResult(
        target,
        "saved_model",
        "float32",
        entry["bytes"],
        entry["sha256"],
        parity,
        mpath,
        options,
    )
