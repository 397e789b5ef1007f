"""Loading users' ``.keras`` files: import the packages that define their layers first, and
name the layer classes nobody imported (with the module their config records) when it fails.

A ``.keras`` archive records, for each layer, its ``class_name``, the ``module`` it came from
and the ``registered_name`` it was saved under. tf_keras resolves a layer only if its class is
registered in this process, so a model with a TensorFlow Recommenders ``Cross`` layer loads only
after ``import tensorflow_recommenders``; without it tf_keras says "'str' object is not
callable". The CLI's ``--import MODULE`` and a recipe's ``[model] imports = [...]`` name those
packages; :func:`load_model_file` imports them, loads with ``safe_mode=True``, and on failure
names each unknown class.

Example:
    >>> model = load_model_file("dcn.keras", imports=["tensorflow_recommenders"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tfcompress._keras import check_keras_file, keras

__all__ = ["import_modules", "load_model_file", "unknown_layer_classes"]

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
#: tfcompress' modules that register serializable classes a saved model may hold (reference
#: layers, pruning wrappers and schedules, distillation losses and the Distiller, host
#: embeddings; the quantization classes come in with ``load_quantized``'s scope)
_OUR_MODULES = (
    "tfcompress.models",
    "tfcompress.pruning.schedule",
    "tfcompress.distillation.losses",
    "tfcompress.distillation.distiller",
    "tfcompress.distribute.acceleration",
)
#: modules whose classes tf_keras resolves itself (its built-in layers, initializers, ...)
_BUILTIN_PREFIXES = ("keras", "tf_keras", "builtins")


def import_modules(names: Sequence[str], option: str = "--import") -> list[str]:
    """Import each module of ``names`` (the packages that register a model's layer classes).

    Args:
        names: dotted module names, e.g. ``["tensorflow_recommenders"]``.
        option: how errors name the option the names came from.

    Returns:
        The names imported, in order.

    Raises:
        ValueError: a name is not a dotted module name, or no such module is installed.

    Example:
        >>> import_modules(["json"])
        ['json']
    """
    done = []
    for name in names:
        if not isinstance(name, str) or not _MODULE_NAME.match(name):
            raise ValueError(
                f"{option} {name!r} is not a module name; expected a dotted Python module name "
                "such as tensorflow_recommenders."
            )
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            raise ValueError(
                f"{option} {name!r}: no module named {err.name!r} is installed; install the "
                "package that defines the model's layers (pip install ...) or fix the name."
            ) from err
        done.append(name)
    return done


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every serialized object (a dict with ``class_name`` and ``module``) in a config tree."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and "module" in node:
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _known(module: str, class_name: str, registered: str | None) -> bool:
    if module.split(".")[0] in _BUILTIN_PREFIXES:
        return True
    if registered and keras.saving.get_registered_object(registered) is not None:
        return True
    loaded = sys.modules.get(module)
    return loaded is not None and hasattr(loaded, class_name)


def unknown_layer_classes(path: str | os.PathLike) -> list[tuple[str, str, str | None]]:
    """The classes in the ``.keras`` file ``path`` that this process cannot resolve.

    A class is unknown when its recorded module is not tf_keras', it is not registered under
    its recorded name, and its module is not imported (or lacks the class).

    Args:
        path: a ``.keras`` archive.

    Returns:
        ``(class_name, module, registered_name)`` of each unknown class, once each, in the
        order of the config; empty when the archive has no ``config.json``.

    Example:
        >>> unknown_layer_classes("dcn.keras")  # doctest: +SKIP
        [('Cross', 'tensorflow_recommenders.layers.feature_interaction.dcn', 'Custom>Cross')]
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found: dict[tuple[str, str], str | None] = {}
    for obj in _objects(config):
        module, name = obj.get("module"), obj["class_name"]
        registered = obj.get("registered_name")
        if not isinstance(module, str) or (module, name) in found:
            continue
        if not _known(module, name, registered if isinstance(registered, str) else None):
            found[(module, name)] = registered
    return [(name, module, registered) for (module, name), registered in found.items()]


def _unknown_message(
    path: Path, unknown: list[tuple[str, str, str | None]], argument: str, how: str
) -> str:
    classes = "; ".join(
        f"{name} (module {module}" + (f", registered as {reg!r})" if reg else ")")
        for name, module, reg in unknown
    )
    packages = sorted({module.split(".")[0] for _, module, _ in unknown})
    fixes = " ".join(how.format(module=p) for p in packages)
    return (
        f"{argument} {str(path)!r} uses layer classes this process does not know: {classes}. "
        f"Import the package that defines them: {fixes}"
    )


def load_model_file(
    path: str | os.PathLike,
    imports: Sequence[str] = (),
    *,
    compile: bool = True,  # noqa: A002 - keras' own name
    argument: str = "MODEL",
    option: str = "--import",
    how: str = "add --import {module}",
) -> keras.Model:
    """Load the tf_keras model in the ``.keras`` file ``path`` with ``safe_mode=True``.

    The modules of ``imports`` are imported first; every tfcompress class a saved model may
    hold (reference layers, pruning wrappers, host embeddings, ...) and TFMOT's QAT classes
    are in scope. When loading fails and the archive names layer classes nobody
    registered, the error names each (its class, recorded module and registered name) and the
    option that imports its package.

    Args:
        path: the ``.keras`` file.
        imports: modules to import before loading (``["tensorflow_recommenders"]``).
        compile: whether to restore the training configuration.
        argument: how errors name ``path``.
        option: how errors name the option ``imports`` came from.
        how: the fix for one package, with ``{module}`` (the CLI: ``"add --import {module}"``).

    Returns:
        The loaded model.

    Raises:
        ValueError: a module of ``imports`` is missing, the file is not a tf_keras ``.keras``
            archive, or it uses layer classes that are not registered.
        TypeError: the file was saved by Keras 3.

    Example:
        >>> m = load_model_file("dcn.keras", ["tensorflow_recommenders"])  # doctest: +SKIP
    """
    from tfcompress.quantization.qat import load_quantized

    for module in _OUR_MODULES:  # after a bare `import tfcompress` they are not registered yet
        importlib.import_module(module)
    import_modules(imports, option)
    path = check_keras_file(path, argument=argument)
    try:
        return load_quantized(path, compile=compile)  # safe_mode, TFMOT's QAT classes in scope
    except Exception as err:
        unknown = unknown_layer_classes(path)
        if unknown:
            raise ValueError(_unknown_message(path, unknown, argument, how)) from err
        rebuilding = _from_config_class(err)
        if rebuilding is None or isinstance(err, (ValueError, TypeError)):
            raise
        raise ValueError(
            f"{argument} {str(path)!r}: tf_keras could not rebuild {rebuilding} from the config "
            f"the file holds ({type(err).__name__}: {first_message(err)}). Its from_config does "
            "not rebuild what its get_config saved (Model Garden's BertClassifier keeps its "
            "encoder as a config). Build the model in code and load its weights "
            "(model.save_weights('m.weights.h5') / model.load_weights(...)), or save a "
            "functional model built from its parts."
        ) from err


def first_message(err: BaseException) -> str:
    """The first line of ``err``'s message (bounded)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _from_config_class(err: BaseException) -> str | None:
    """``"class BertClassifier (module ...)"`` whose ``from_config`` raised ``err``, if any."""
    tb, found = err.__traceback__, None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "from_config":
            cls = frame.f_locals.get("cls")
            if isinstance(cls, type) and not cls.__module__.startswith(_BUILTIN_PREFIXES):
                found = f"class {cls.__name__} (module {cls.__module__})"
        tb = tb.tb_next
    return found
