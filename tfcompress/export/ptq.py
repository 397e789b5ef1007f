"""TFLite quantization modes (:func:`resolve_quantization`) and selective quantization: op types
kept in float (:func:`keep_ops_in_float`, ``export_tflite(float_ops=...)``; in a dynamic-range
file, :func:`dequantize_weights`: int8-stored weights computed in float).

Example:
    >>> resolve_quantization("int16x8").default_float_ops
    ('SQUARED_DIFFERENCE', 'SUB')
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "QUANTIZATION_MODES",
    "WEIGHT_OPS",
    "QuantizationConfig",
    "check_float_ops",
    "dequantize_weights",
    "keep_ops_in_float",
    "resolve_quantization",
]

#: Op types whose int8 weights a ``"dynamic"`` file can compute in float
#: (``export_tflite("dynamic", float_ops=[...])``, :func:`dequantize_weights`).
WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL")


@dataclass(frozen=True)
class QuantizationConfig:
    """How one TFLite quantization mode configures the converter.

    Attributes:
        name: the mode's canonical name (``"float32"``, ``"dynamic"``, ``"int8"``, ``"float16"``,
            ``"int16x8"``).
        optimize: set ``converter.optimizations = [tf.lite.Optimize.DEFAULT]``.
        needs_representative_data: calibration data is required (full-integer modes).
        ops: names of ``tf.lite.OpsSet`` members for ``target_spec.supported_ops``.
        fallback_ops: ops added when ``strict=False`` so unsupported ops fall back to float.
        supported_types: names of dtypes for ``target_spec.supported_types``.
        integer_io_type: dtype of float inputs/outputs when ``integer_io=True``; None when the
            mode has no integer interface.
        is_float: a float export: parity beyond the tolerance is an error.
        default_float_ops: TFLite op types kept in float by default (``float_ops=None``).
    """

    name: str
    optimize: bool
    needs_representative_data: bool
    ops: tuple[str, ...] = ("TFLITE_BUILTINS",)
    fallback_ops: tuple[str, ...] = ()
    supported_types: tuple[str, ...] = ()
    integer_io_type: str | None = None
    is_float: bool = False
    default_float_ops: tuple[str, ...] = ()


QUANTIZATION_MODES: dict[str, QuantizationConfig] = {
    "float32": QuantizationConfig(
        "float32", optimize=False, needs_representative_data=False, is_float=True
    ),
    "dynamic": QuantizationConfig("dynamic", optimize=True, needs_representative_data=False),
    "int8": QuantizationConfig(
        "int8",
        optimize=True,
        needs_representative_data=True,
        ops=("TFLITE_BUILTINS_INT8",),
        fallback_ops=("TFLITE_BUILTINS",),
        integer_io_type="int8",
    ),
    "float16": QuantizationConfig(
        "float16", optimize=True, needs_representative_data=False, supported_types=("float16",)
    ),
    "int16x8": QuantizationConfig(
        "int16x8",
        optimize=True,
        needs_representative_data=True,
        ops=("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",),
        fallback_ops=("TFLITE_BUILTINS",),
        integer_io_type="int16",
        # LayerNormalization's variance and centring: LiteRT has no int16 SQUARED_DIFFERENCE
        # kernel (LiteRT#4383), and its int16 SUB aborts the process on x - mean (TF 2.21)
        default_float_ops=("SQUARED_DIFFERENCE", "SUB"),
    ),
}
_MODE_ALIASES = {None: "float32", "none": "float32", "float": "float32", "float32": "float32"}


def resolve_quantization(quantization: str | None) -> QuantizationConfig:
    """Return the :class:`QuantizationConfig` of a mode name.

    Args:
        quantization: None (float32), ``"dynamic"``, ``"int8"``, ``"float16"`` or ``"int16x8"``
            (``"none"``/``"float32"`` are accepted for None).

    Raises:
        ValueError: unknown mode; the message lists the valid ones.

    Example:
        >>> resolve_quantization("int8").needs_representative_data
        True
    """
    if quantization is not None and not isinstance(quantization, str):
        raise TypeError(
            f"`quantization` must be None or a string, received {type(quantization).__name__}: "
            f"{quantization!r}. Valid modes: None, {sorted(QUANTIZATION_MODES)}."
        )
    key = quantization.lower() if isinstance(quantization, str) else None
    key = _MODE_ALIASES.get(key, key)
    if key not in QUANTIZATION_MODES:
        raise ValueError(
            f"`quantization` must be one of None, {sorted(QUANTIZATION_MODES)}; received "
            f"{quantization!r}."
        )
    return QUANTIZATION_MODES[key]


def _schema():  # TF's flatbuffer schema bindings (imported lazily: they load TensorFlow)
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def check_float_ops(float_ops: Iterable[str] | None, config: QuantizationConfig) -> tuple[str, ...]:
    """Validate ``float_ops`` (TFLite builtin op names) for ``config``; None gives the default.

    Raises:
        TypeError: not None or an iterable of strings.
        ValueError: an unknown op name, ops given for a float mode, or ops other than
            :data:`WEIGHT_OPS` for ``"dynamic"``.

    Example:
        >>> check_float_ops(["div"], resolve_quantization("int8"))
        ('DIV',)
    """
    if float_ops is None:
        return config.default_float_ops
    if isinstance(float_ops, str) or not isinstance(float_ops, Iterable):
        raise TypeError(
            f"`float_ops` must be None or a list of TFLite op names (e.g. ['DIV']), received "
            f"{float_ops!r}."
        )
    names = tuple(dict.fromkeys(str(n).upper() for n in float_ops))
    if names and config.name == "dynamic":
        other = [n for n in names if n not in WEIGHT_OPS]
        if other:
            raise ValueError(
                f"`float_ops` of a 'dynamic' file names the weight ops computed in float, from "
                f"{list(WEIGHT_OPS)}; received {other}. Pass e.g. ['FULLY_CONNECTED'] (or "
                "'auto'), or export with 'int8' to keep other op types in float."
            )
    elif names and not config.needs_representative_data:
        raise ValueError(
            f"`float_ops` applies to 'int8' and 'int16x8' (any op type) and 'dynamic' (weight "
            f"ops) only; received quantization={config.name!r} with float_ops={list(names)}."
        )
    known = vars(_schema().BuiltinOperator)
    unknown = [n for n in names if n.startswith("_") or n not in known]
    if unknown:
        raise ValueError(
            f"`float_ops` has unknown TFLite op name(s) {unknown}; use builtin op names such as "
            "'DIV', 'SQUARED_DIFFERENCE', 'BATCH_MATMUL' (see the ops of the converted model "
            "with load_variant(path).interpreter._get_ops_details())."
        )
    return names


def keep_ops_in_float(flatbuffer: bytes, op_names: Iterable[str]) -> tuple[bytes, list[str]]:
    """Run every quantized op of the given types in float inside a full-integer TFLite model.

    Each matching op whose inputs or outputs are int8/int16 gets a DEQUANTIZE before each such
    input and a QUANTIZE after each such output (keeping the calibrated output scale), and its
    own tensors become float32. Weight-carrying ops with an int32 bias cannot be rewritten.

    Args:
        flatbuffer: a converted ``.tflite`` model.
        op_names: TFLite builtin op names, e.g. ``("SQUARED_DIFFERENCE",)``.

    Returns:
        ``(new flatbuffer, names of the ops rewritten, in graph order)``.

    Raises:
        ValueError: a matching op has a quantized int32 input (e.g. a bias).

    Example:
        >>> fb, done = keep_ops_in_float(open("m.tflite", "rb").read(), ["DIV"])  # doctest: +SKIP
    """
    names = set(op_names)
    if not names:
        return flatbuffer, []
    flatbuffer_utils, schema, model, wanted = _read(flatbuffer, names)
    quantized = (schema.TensorType.INT8, schema.TensorType.INT16)
    dequantize = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE)
    quantize = _opcode(model, schema, schema.BuiltinOperator.QUANTIZE)
    done: list[str] = []
    for graph in model.subgraphs:
        ops = []
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
            touched = [i for i in [*op.inputs, *op.outputs] if i >= 0]
            if max(code.builtinCode, code.deprecatedBuiltinCode) not in wanted or not any(
                graph.tensors[i].type in quantized for i in touched
            ):
                ops.append(op)
                continue
            for i in (i for i in op.inputs if i >= 0):
                scale = getattr(graph.tensors[i].quantization, "scale", None)
                if (
                    graph.tensors[i].type == schema.TensorType.INT32
                    and scale is not None
                    and len(scale)
                ):
                    tensor = bytes(graph.tensors[i].name or b"").decode(errors="replace")
                    raise ValueError(
                        f"`float_ops`: op {name} has a quantized int32 input {tensor!r} (a "
                        "bias) and cannot run in float after "
                        "quantization; drop it from float_ops or export with quantization="
                        "'dynamic'."
                    )
            inputs = list(op.inputs)
            for k, i in enumerate(inputs):
                if i >= 0 and graph.tensors[i].type in quantized:
                    inputs[k] = _float_twin(graph, schema, i)
                    ops.append(_operator(schema, dequantize, i, inputs[k]))
            after, outputs = [], list(op.outputs)
            for k, i in enumerate(outputs):
                if graph.tensors[i].type in quantized:
                    outputs[k] = _float_twin(graph, schema, i)
                    after.append(_operator(schema, quantize, outputs[k], i))
            op.inputs, op.outputs = inputs, outputs
            ops += [op, *after]
            done.append(name)
        graph.operators = ops
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), done


def dequantize_weights(flatbuffer: bytes, op_names: Iterable[str]) -> tuple[bytes, list[str]]:
    """Compute the given weight ops of a dynamic-range TFLite model in float, weights kept int8.

    A dynamic-range op (float input, int8 constant weights) quantizes its input on every call
    and runs an int8 kernel (XNNPACK's ``QD8`` GEMMs). Rewritten, its int8 weights feed a
    ``DEQUANTIZE`` and the op reads the float result: the file stores the same int8 bytes, and
    since the ``DEQUANTIZE`` reads a constant, LiteRT computes it once (XNNPACK unpacks it when it
    builds its graph, so the op runs as a float GEMM). Only the weight rounding is left: no
    activation is quantized. Faster where int8 GEMMs do not pay for the input's quantization
    (small layers, CPUs without int8 dot-product instructions); slower where they do, so
    ``float_ops="auto"`` measures it.

    Args:
        flatbuffer: a converted ``quantization="dynamic"`` ``.tflite`` model.
        op_names: op types from :data:`WEIGHT_OPS`.

    Returns:
        ``(new flatbuffer, names of the ops rewritten, in graph order)``.

    Example:
        >>> fb, done = dequantize_weights(dynamic_bytes, ["FULLY_CONNECTED"])  # doctest: +SKIP
    """
    names = set(op_names)
    if not names:
        return flatbuffer, []
    flatbuffer_utils, schema, model, wanted = _read(flatbuffer, names)
    dequantize = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE)
    done: list[str] = []
    for graph in model.subgraphs:
        ops = []
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            inputs = list(op.inputs)
            weights = [
                k
                for k, i in enumerate(inputs[1:], start=1)
                if i >= 0
                and graph.tensors[i].type == schema.TensorType.INT8
                and _is_constant(model.buffers[graph.tensors[i].buffer])
            ]
            if (
                max(code.builtinCode, code.deprecatedBuiltinCode) not in wanted
                or inputs[0] < 0
                or graph.tensors[inputs[0]].type != schema.TensorType.FLOAT32
                or not weights
            ):
                ops.append(op)
                continue
            for k in weights:
                twin = _float_twin(graph, schema, inputs[k])
                ops.append(_operator(schema, dequantize, inputs[k], twin))
                inputs[k] = twin
            op.inputs = inputs
            ops.append(op)
            done.append(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex))
        graph.operators = ops
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), done


def _read(flatbuffer: bytes, names: set[str]):
    """TF's flatbuffer tools, the schema, the model's object tree and the builtin codes wanted."""
    from tensorflow.lite.tools import flatbuffer_utils

    schema = _schema()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    return flatbuffer_utils, schema, model, {getattr(schema.BuiltinOperator, n) for n in names}


def _is_constant(buffer) -> bool:
    data = getattr(buffer, "data", None)
    return data is not None and len(data) > 0


def _opcode(model, schema, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_twin(graph, schema, index: int) -> int:
    tensor = copy.deepcopy(graph.tensors[index])
    tensor.type = schema.TensorType.FLOAT32
    tensor.quantization = None
    tensor.buffer = 0
    tensor.name = (tensor.name or b"") + b"/float"
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _operator(schema, opcode: int, source: int, target: int):
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = [source]
    op.outputs = [target]
    return op
