"""What a TFLite converter failure means: the op and layer it names, and what to do.

The converter reports a refused op as an MLIR dump ("'tf.Igamma' op is neither a custom op nor
a flex op", the op's location ``model/weird/Igamma`` in a ``fused[...]`` annotation, then the
whole module). :func:`describe_conversion_failure` turns it into one sentence naming the op,
the layer (name and class) it came from and the fix.

Example:
    >>> text = "'tf.Igamma' op is neither a custom op nor a flex op"
    >>> describe_conversion_failure(text, None, "float32").startswith("op Igamma")
    True
"""

from __future__ import annotations

import re
from typing import Any

from tfcompress._keras import keras

__all__ = ["describe_conversion_failure", "first_line"]

#: an op the converter could not lower to a TFLite builtin
_REFUSED_OP = re.compile(
    r"'tf\.(\w+)' op (?:is neither a custom op nor a flex op|is not supported"
    r"|failed to legalize)"
)
_ILLEGAL_OP = re.compile(r"failed to legalize operation 'tf\.(\w+)'")
_CUSTOM_OPS = re.compile(r"^Custom ops: (.+)$", re.M)
#: an op without a kernel for the quantized type (strict full-integer modes)
_UNQUANTIZABLE = re.compile(r"Quantization not yet supported for op: '?(\w+)'?")
#: the location of an op: fused["Igamma:", "model/weird/Igamma@__inference_serve_96"]
_LOCATION = re.compile(r'fused\["(\w+):", "([^"@]+)@')


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (without MLIR ``loc(...)`` noise), bounded.

    Example:
        >>> first_line("\\n  boom\\nmore")
        'boom'
    """
    for line in text.splitlines():
        line = re.sub(r"<unknown>:0: (error|note): (loc\(.*?\)\): )?", "", line).strip()
        if line:
            return line[:300]
    return text.strip()[:300] or "no message"


def _layer_of(op: str, text: str, model: Any) -> str | None:
    """``"layer 'weird' (Weird)"`` for the layer whose graph holds ``op``, if the text says."""
    layers = {}
    if model is not None:
        for sub in [model, *model.submodules]:
            if isinstance(sub, keras.layers.Layer):
                layers.setdefault(sub.name, sub)
    for name, path in _LOCATION.findall(text):
        if name != op:
            continue
        parts = path.split("/")[:-1]  # the scopes, innermost last; the op itself dropped
        for scope in reversed(parts[1:] or parts):
            if scope in layers:
                return f"layer '{scope}' ({type(layers[scope]).__name__})"
        if len(parts) > 1:
            return f"layer '{parts[-1]}'"
    return None


def describe_conversion_failure(text: str, model: Any, mode: str) -> str:
    """One sentence: what the converter refused (op, layer) and what to do.

    Args:
        text: the converter's error message (and output).
        model: the model being exported (its layers name the op's layer), or None.
        mode: the quantization mode (``"float32"``, ``"int8"``, ...).

    Returns:
        The description, e.g. "op Igamma (layer 'weird' (Weird)) has no TFLite builtin
        kernel: ...".

    Example:
        >>> describe_conversion_failure("Quantization not yet supported for op: 'COS'",
        ...                             None, "int8").startswith("op COS")
        True
    """
    refused = list(dict.fromkeys(_REFUSED_OP.findall(text) + _ILLEGAL_OP.findall(text)))
    for match in _CUSTOM_OPS.findall(text):
        refused += [op.strip() for op in match.split(",") if op.strip() not in refused]
    if refused:
        where = [
            f"op {op}" + (f" ({w})" if (w := _layer_of(op, text, model)) else "") for op in refused
        ]
        return (
            f"{', '.join(where)} has no TFLite builtin kernel (the export allows builtin ops "
            "only, no Select TF ops or custom ops). Compute it with ops TFLite supports "
            "(https://www.tensorflow.org/lite/guide/ops_compatibility), keep it out of the "
            "exported model (e.g. in preprocessing), or export a SavedModel instead."
        )
    unquantizable = _UNQUANTIZABLE.findall(text)
    if unquantizable:
        ops = ", ".join(dict.fromkeys(unquantizable))
        return (
            f"op {ops} has no {mode} kernel. Use strict=False (it stays in float), keep it in "
            f"float with float_ops=[...], or use quantization='dynamic'."
        )
    return (
        f"{first_line(text)}. Check the model's ops are TFLite builtins "
        "(https://www.tensorflow.org/lite/guide/ops_compatibility), try another quantization "
        "mode, or export a SavedModel instead."
    )
