"""Merge the float regions of a hybrid int8 TFLite file: no QUANTIZE/DEQUANTIZE round trip
between two float ops, no DEQUANTIZE of a constant at run time.

``keep_ops_in_float`` (``export_tflite(float_ops=...)``, ``float_ops="auto"``) wraps every op it
keeps in float in its own ``DEQUANTIZE`` ... ``QUANTIZE``; where two such ops follow each other
(``MEAN`` -> ``SQUARED_DIFFERENCE`` in a LayerNormalization, ``SOFTMAX`` -> ``BATCH_MATMUL``) the
value is rounded to int8 and back in between, and a constant operand (LayerNormalization's
gamma and beta, epsilon) is dequantized on every call. :func:`merge_float_regions` passes the
float value straight on (one rounding less: the file moves *closer* to the float model, not bit
for bit the same as the unmerged hybrid) and stores the dequantized constants in float. XNNPACK
runs each ``QUANTIZE``/``DEQUANTIZE`` as a ``Convert (NC)`` operator over the whole activation:
53 of them took 4.9 ms of a BERT-small hybrid's 28 ms at batch 256 (docs/export.md).

Example:
    >>> fb, counts = merge_float_regions(open("hybrid.tflite", "rb").read())  # doctest: +SKIP
    >>> counts  # doctest: +SKIP
    {'round_trips': 12, 'constants': 9}
"""

from __future__ import annotations

import numpy as np

from tfcompress._validation import must_be

__all__ = ["merge_float_regions"]


def merge_float_regions(flatbuffer: bytes) -> tuple[bytes, dict[str, int]]:
    """Remove QUANTIZE -> DEQUANTIZE round trips between float ops and run-time DEQUANTIZEs of
    constants in a (hybrid) full-integer TFLite file (see the module).

    Args:
        flatbuffer: a converted ``.tflite`` model's bytes.

    Returns:
        ``(new flatbuffer, {"round_trips": n, "constants": n})``; the input unchanged when
        nothing applies.

    Raises:
        TypeError: ``flatbuffer`` is not bytes.

    Example:
        >>> fb, counts = merge_float_regions(hybrid_bytes)  # doctest: +SKIP
    """
    if not isinstance(flatbuffer, (bytes, bytearray)):
        raise TypeError(must_be("flatbuffer", "the bytes of a .tflite model", flatbuffer))
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    counts = {"round_trips": 0, "constants": 0}
    for graph in model.subgraphs:
        names = [flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for op in graph.operators]
        outputs = {int(i) for i in graph.outputs}
        removed: set[int] = set()
        replace: dict[int, int] = {}  # float tensor -> the float tensor it equals
        for k, op in enumerate(graph.operators):
            if names[k] != "DEQUANTIZE":
                continue
            source, target = int(op.inputs[0]), int(op.outputs[0])
            if target in outputs:
                continue
            if _fold_constant(model, graph, source, target):
                removed.add(k)
                counts["constants"] += 1
                continue
            producer = next(
                (j for j, p in enumerate(graph.operators) if source in [int(o) for o in p.outputs]),
                None,
            )
            if producer is None or names[producer] != "QUANTIZE":
                continue
            float_in = int(graph.operators[producer].inputs[0])
            if graph.tensors[float_in].type != 0:
                continue
            replace[target] = float_in
            removed.add(k)
            counts["round_trips"] += 1
        for k, op in enumerate(graph.operators):
            if k not in removed:
                op.inputs = [_resolve(replace, int(i)) for i in op.inputs]
        # QUANTIZEs whose int8 output nobody reads any more
        read = {
            int(i) for k, op in enumerate(graph.operators) if k not in removed for i in op.inputs
        }
        for k, op in enumerate(graph.operators):
            if names[k] == "QUANTIZE" and k not in removed:
                out = int(op.outputs[0])
                if out not in outputs and out not in read:
                    removed.add(k)
        graph.operators = [op for k, op in enumerate(graph.operators) if k not in removed]
    if not any(counts.values()):
        return bytes(flatbuffer), counts
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), counts


def _resolve(replace: dict[int, int], tensor: int) -> int:
    while tensor in replace:
        tensor = replace[tensor]
    return tensor


def _fold_constant(model, graph, source: int, target: int) -> bool:
    """Store a quantized constant's dequantized values as the float tensor ``target``."""
    t = graph.tensors[source]
    data = model.buffers[t.buffer].data if t.buffer else None
    if data is None or not len(data):
        return False
    real = _dequantized(t, np.asarray(data, dtype=np.uint8).tobytes())
    if real is None:
        return False
    buffer = type(model.buffers[0])()
    buffer.data = np.frombuffer(real.astype("<f4").tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    graph.tensors[target].buffer = len(model.buffers) - 1
    return True


def _dequantized(tensor, raw: bytes) -> np.ndarray | None:
    dtype = {9: np.int8, 7: np.int16, 3: np.uint8}.get(tensor.type)
    q = tensor.quantization
    if dtype is None or q is None or q.scale is None or not len(q.scale):
        return None
    shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
    values = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float64)
    scale = np.asarray(q.scale, dtype=np.float64)
    zero = np.asarray(q.zeroPoint, dtype=np.float64)
    if scale.size > 1:  # per channel along quantizedDimension
        axis = int(q.quantizedDimension or 0)
        view = [1] * len(shape)
        view[axis] = scale.size
        scale, zero = scale.reshape(view), zero.reshape(view)
    return ((values - zero) * scale).astype(np.float32)
