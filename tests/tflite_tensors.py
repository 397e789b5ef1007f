"""Test helper: what a .tflite file stores (imported by name: pytest puts tests/ on sys.path)."""

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def constant_matrices(path):
    """dtype name of every constant tensor with >= 2 dims and >= 64 values (weights, tables),
    and the interpreter."""
    interpreter = Interpreter(str(path))
    out = {}
    for d in interpreter.get_tensor_details():
        if len(d["shape"]) < 2 or int(np.prod(d["shape"])) < 64 or "dequantize" in d["name"]:
            continue
        try:
            interpreter.get_tensor(d["index"])
        except ValueError:
            continue  # an activation, not a constant
        out[d["name"]] = np.dtype(d["dtype"]).name
    return out, interpreter
