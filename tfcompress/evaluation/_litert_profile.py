"""ctypes bindings to LiteRT's C profiler, the one place tfcompress calls ``libLiteRt.so`` directly.

``ai_edge_litert``'s Python API has no op profiler, but the ``libLiteRt.so`` it ships exports
LiteRT's C API, profiler included. Every declaration below follows these headers of
github.com/google-ai-edge/LiteRT, checked against the ``libLiteRt.so`` of **ai-edge-litert
2.3.0** (tests/evaluation/test_profile.py fails when a symbol or layout changes):

* ``litert/c/litert_environment.h``: ``LiteRtCreateEnvironment(int, const LiteRtEnvOption*,
  LiteRtEnvironment*)``
* ``litert/c/litert_model.h``: ``LiteRtCreateModelFromFile(LiteRtEnvironment, const char*,
  LiteRtModel*)``, ``LiteRtGetModelSignature``, ``LiteRtGetNumSignatureInputs/Outputs``,
  ``LiteRtGetSignatureInputName``, ``LiteRtGetSignatureInput/OutputTensorByIndex``,
  ``LiteRtGetRankedTensorType`` (``LiteRtRankedTensorType``: ``int32 element_type`` at 0, then
  ``LiteRtLayout``: ``rank:7`` bit field in the ``uint32`` at 4, ``int32 dimensions[8]`` at 8)
* ``litert/c/litert_options.h`` / ``litert_opaque_options.h``: ``LiteRtCreateOptions``,
  ``LiteRtSetOptionsHardwareAccelerators`` (1 = CPU), ``LiteRtCreateOpaqueOptions(const char*
  identifier, void* payload, void (*deleter)(void*), LiteRtOpaqueOptions*)``,
  ``LiteRtAddOpaqueOptions``. The payloads are TOML strings: identifier
  ``"runtime_options_string"`` with ``enable_profiling = true``
  (``litert/runtime/litert_runtime_options.cc``) and ``"xnnpack"`` with ``num_threads = N``
  (``litert/runtime/litert_cpu_options.cc``)
* ``litert/c/litert_compiled_model.h``: ``LiteRtCreateCompiledModel``,
  ``LiteRtCompiledModelResizeInputTensor(model, size_t signature, size_t input, const int*
  dims, size_t rank)``, ``LiteRtGetCompiledModelInputBufferRequirements``,
  ``LiteRtRunCompiledModel(model, size_t signature, size_t n_in, LiteRtTensorBuffer*, size_t
  n_out, LiteRtTensorBuffer*)``, ``LiteRtCompiledModelGetProfiler``
* ``litert/c/litert_tensor_buffer.h``: ``LiteRtCreateManagedTensorBufferFromRequirements``,
  ``LiteRtCreateManagedTensorBuffer(env, type 1 = host memory, const LiteRtRankedTensorType*,
  size_t, LiteRtTensorBuffer*)``, ``LiteRtLock/UnlockTensorBuffer``,
  ``LiteRtDestroyTensorBuffer``
* ``litert/c/litert_profiler.h`` / ``litert_profiler_event.h``: ``LiteRtStart/Stop/
  ResetProfiler``, ``LiteRtGetNumProfilerEvents(profiler, int*)``,
  ``LiteRtGetProfilerEvents(profiler, int, ProfiledEventData*)``; ``ProfiledEventData`` is
  104 bytes: ``const char* tag`` at 0, ``uint32 event_type`` at 8, ``uint64
  elapsed_time_us`` at 24, ``int64 event_metadata1`` at 80, ``uint32 event_source`` at 96.

With the XNNPACK delegate (the CPU accelerator's default) the profiler records XNNPACK's own
per-operator profile (``event_type`` 8, ``DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT``, tags such
as ``"Fully Connected (NC, QS8, QC8W) GEMM"``); ops XNNPACK does not take run on LiteRT's
built-in kernels and are recorded by the interpreter (``event_type`` 2,
``OPERATOR_INVOKE_EVENT``, tag = the TFLite op name). This libLiteRt offers no way to turn the
delegate off (no ``kernel_mode`` CPU option; ``hardware_accelerators=none`` does not compile).
"""

from __future__ import annotations

import contextlib
import ctypes as C
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

LIBRARY_VERSION = "2.3.0"  # the ai-edge-litert whose libLiteRt.so these declarations match
EVENT_SIZE = 104  # sizeof(ProfiledEventData)
EVENT_TYPES = {
    1: "DEFAULT",
    2: "OPERATOR_INVOKE_EVENT",
    4: "DELEGATE_OPERATOR_INVOKE_EVENT",
    8: "DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT",
    16: "GENERAL_RUNTIME_INSTRUMENTATION_EVENT",
    32: "TELEMETRY_EVENT",
}
OP_EVENTS = (2, 4, 8)
_ELEMENT_TYPES = {  # LiteRtElementType (same numbers as TfLiteType)
    1: np.float32,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
    10: np.float16,
}
_P = C.c_void_p
_SIZE = C.c_size_t
_DELETER = C.CFUNCTYPE(None, _P)
_NO_DELETE = _DELETER(lambda _p: None)  # payloads stay owned by the Python session
_SIGNATURES: dict[str, list] = {
    "LiteRtCreateEnvironment": [C.c_int, _P, C.POINTER(_P)],
    "LiteRtCreateModelFromFile": [_P, C.c_char_p, C.POINTER(_P)],
    "LiteRtDestroyModel": [_P],
    "LiteRtCreateOptions": [C.POINTER(_P)],
    "LiteRtDestroyOptions": [_P],
    "LiteRtSetOptionsHardwareAccelerators": [_P, C.c_int],
    "LiteRtCreateOpaqueOptions": [C.c_char_p, _P, _DELETER, C.POINTER(_P)],
    "LiteRtAddOpaqueOptions": [_P, _P],
    "LiteRtCreateCompiledModel": [_P, _P, _P, C.POINTER(_P)],
    "LiteRtDestroyCompiledModel": [_P],
    "LiteRtGetModelSignature": [_P, _SIZE, C.POINTER(_P)],
    "LiteRtGetNumSignatureInputs": [_P, C.POINTER(_SIZE)],
    "LiteRtGetNumSignatureOutputs": [_P, C.POINTER(_SIZE)],
    "LiteRtGetSignatureInputName": [_P, _SIZE, C.POINTER(C.c_char_p)],
    "LiteRtGetSignatureInputTensorByIndex": [_P, _SIZE, C.POINTER(_P)],
    "LiteRtGetSignatureOutputTensorByIndex": [_P, _SIZE, C.POINTER(_P)],
    "LiteRtGetRankedTensorType": [_P, _P],
    "LiteRtCompiledModelResizeInputTensor": [_P, _SIZE, _SIZE, C.POINTER(C.c_int), _SIZE],
    "LiteRtGetCompiledModelInputBufferRequirements": [_P, _SIZE, _SIZE, C.POINTER(_P)],
    "LiteRtCreateManagedTensorBufferFromRequirements": [_P, _P, _P, C.POINTER(_P)],
    "LiteRtCreateManagedTensorBuffer": [_P, C.c_int, _P, _SIZE, C.POINTER(_P)],
    "LiteRtDestroyTensorBuffer": [_P],
    "LiteRtLockTensorBuffer": [_P, C.POINTER(_P), C.c_int],
    "LiteRtUnlockTensorBuffer": [_P],
    "LiteRtRunCompiledModel": [_P, _SIZE, _SIZE, _P, _SIZE, _P],
    "LiteRtCompiledModelGetProfiler": [_P, C.POINTER(_P)],
    "LiteRtStartProfiler": [_P],
    "LiteRtStopProfiler": [_P],
    "LiteRtResetProfiler": [_P],
    "LiteRtGetNumProfilerEvents": [_P, C.POINTER(C.c_int)],
    "LiteRtGetProfilerEvents": [_P, C.c_int, _P],
}
_LIB: C.CDLL | None = None
_ENV: _P | None = None


class ProfiledEvent(NamedTuple):
    """One ``ProfiledEventData``: tag, event type (see :data:`EVENT_TYPES`), microseconds,
    source (0 LiteRT, 1 interpreter, 2 delegate) and ``event_metadata1`` (the op's index)."""

    tag: str
    event_type: int
    elapsed_us: int
    source: int
    metadata1: int


def library() -> C.CDLL:
    """``libLiteRt.so`` of the installed ``ai_edge_litert`` with every declaration applied."""
    global _LIB
    if _LIB is None:
        import ai_edge_litert

        path = Path(ai_edge_litert.__file__).parent / "libLiteRt.so"
        if not path.is_file():
            raise RuntimeError(
                f"the LiteRT profiler needs {path} (ai-edge-litert {LIBRARY_VERSION} ships it); "
                "install ai-edge-litert==2.3.0 or profile without TFLite variants."
            )
        lib = C.CDLL(str(path))
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)  # AttributeError: the symbol is gone
            fn.argtypes = argtypes
            fn.restype = C.c_int
        _LIB = lib
    return _LIB


def _check(status: int, call: str, where: str) -> None:
    if status != 0:
        raise RuntimeError(
            f"LiteRT {call} failed with status {status} for {where}; the profiler's C API "
            f"bindings (tfcompress/evaluation/_litert_profile.py) match ai-edge-litert "
            f"{LIBRARY_VERSION}."
        )


def _environment() -> _P:
    global _ENV
    if _ENV is None:
        env = _P()
        _check(library().LiteRtCreateEnvironment(0, None, C.byref(env)), "CreateEnvironment", "-")
        _ENV = env  # one per process, never destroyed (creating one logs the accelerator scan)
    return _ENV


class ProfileSession:
    """A ``.tflite`` file compiled by LiteRT on CPU (XNNPACK) with profiling on.

    Example:
        >>> with ProfileSession("m.tflite", num_threads=1) as s:  # doctest: +SKIP
        ...     events = s.profile({"x": x}, runs=10)
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.path = str(path)
        lib, env = library(), _environment()
        self._lib, self._env = lib, env
        self._model = self._options = self._compiled = None
        self._payloads = []
        where = self.path
        model = _P()
        _check(
            lib.LiteRtCreateModelFromFile(env, self.path.encode(), C.byref(model)),
            "CreateModelFromFile",
            where,
        )
        self._model = model
        options = _P()
        _check(lib.LiteRtCreateOptions(C.byref(options)), "CreateOptions", where)
        self._options = options
        _check(lib.LiteRtSetOptionsHardwareAccelerators(options, 1), "SetAccelerators", where)
        for ident, toml in (
            (b"runtime_options_string", b"enable_profiling = true\n"),
            (b"xnnpack", f"num_threads = {int(num_threads)}\n".encode()),
        ):
            payload = C.create_string_buffer(toml)
            self._payloads.append(payload)
            opaque = _P()
            _check(
                lib.LiteRtCreateOpaqueOptions(
                    ident, C.cast(payload, _P), _NO_DELETE, C.byref(opaque)
                ),
                "CreateOpaqueOptions",
                where,
            )
            _check(lib.LiteRtAddOpaqueOptions(options, opaque), "AddOpaqueOptions", where)
        compiled = _P()
        _check(
            lib.LiteRtCreateCompiledModel(env, model, options, C.byref(compiled)),
            "CreateCompiledModel",
            where,
        )
        self._compiled = compiled
        self._signature = _P()
        _check(lib.LiteRtGetModelSignature(model, 0, C.byref(self._signature)), "Signature", where)
        n_in, n_out = _SIZE(), _SIZE()
        _check(lib.LiteRtGetNumSignatureInputs(self._signature, C.byref(n_in)), "Inputs", where)
        _check(lib.LiteRtGetNumSignatureOutputs(self._signature, C.byref(n_out)), "Outputs", where)
        self.num_outputs = n_out.value
        names = []
        for i in range(n_in.value):
            name = C.c_char_p()
            _check(
                lib.LiteRtGetSignatureInputName(self._signature, i, C.byref(name)), "Name", where
            )
            names.append(name.value.decode())
        self.input_names = names
        profiler = _P()
        _check(lib.LiteRtCompiledModelGetProfiler(compiled, C.byref(profiler)), "Profiler", where)
        if not profiler.value:
            raise RuntimeError(f"LiteRT compiled {where} without a profiler (enable_profiling).")
        self._profiler = profiler

    def _tensor_type(self, kind: str, index: int) -> C.Array:
        tensor = _P()
        fn = getattr(self._lib, f"LiteRtGetSignature{kind}TensorByIndex")
        _check(fn(self._signature, index, C.byref(tensor)), f"{kind}Tensor", self.path)
        raw = (C.c_uint8 * 256)()
        _check(self._lib.LiteRtGetRankedTensorType(tensor, raw), "RankedTensorType", self.path)
        return raw

    @staticmethod
    def _layout(raw: C.Array) -> tuple[int, np.ndarray]:
        rank = raw[4] & 0x7F
        return C.c_int32.from_buffer(raw, 0).value, np.frombuffer(
            bytes(raw[8 : 8 + 4 * rank]), np.int32
        ).copy()

    def _buffers(self, features: Mapping[str, np.ndarray], batch: int) -> tuple[list, list]:
        lib, ins, outs = self._lib, [], []
        try:
            for i, name in enumerate(self.input_names):
                raw = self._tensor_type("Input", i)
                code, dims = self._layout(raw)
                array = np.ascontiguousarray(features[name], dtype=_ELEMENT_TYPES.get(code))
                dims = np.asarray(array.shape, np.int32)
                cdims = (C.c_int * len(dims))(*dims)
                _check(
                    lib.LiteRtCompiledModelResizeInputTensor(
                        self._compiled, 0, i, cdims, len(dims)
                    ),
                    "ResizeInputTensor",
                    f"{self.path} input {name!r} to {array.shape}",
                )
                C.memmove(C.addressof(raw) + 8, cdims, 4 * len(dims))
                req, buf = _P(), _P()
                _check(
                    lib.LiteRtGetCompiledModelInputBufferRequirements(
                        self._compiled, 0, i, C.byref(req)
                    ),
                    "InputBufferRequirements",
                    self.path,
                )
                _check(
                    lib.LiteRtCreateManagedTensorBufferFromRequirements(
                        self._env, raw, req, C.byref(buf)
                    ),
                    "CreateTensorBuffer",
                    self.path,
                )
                ins.append(buf)
                host = _P()
                _check(
                    lib.LiteRtLockTensorBuffer(buf, C.byref(host), 1), "LockTensorBuffer", self.path
                )
                C.memmove(host, array.ctypes.data, array.nbytes)
                lib.LiteRtUnlockTensorBuffer(buf)
            for i in range(self.num_outputs):
                raw = self._tensor_type("Output", i)
                code, dims = self._layout(raw)
                dims[dims < 0] = 1
                if len(dims):
                    dims[0] = batch
                C.memmove(C.addressof(raw) + 8, (C.c_int * len(dims))(*dims), 4 * len(dims))
                size = int(np.prod(dims)) * np.dtype(_ELEMENT_TYPES.get(code, np.float32)).itemsize
                buf = _P()
                _check(
                    lib.LiteRtCreateManagedTensorBuffer(
                        self._env, 1, raw, max(size, 1), C.byref(buf)
                    ),
                    "CreateTensorBuffer",
                    self.path,
                )
                outs.append(buf)
        except BaseException:
            for b in ins + outs:
                lib.LiteRtDestroyTensorBuffer(b)
            raise
        return ins, outs

    def profile(
        self, features: Mapping[str, np.ndarray], runs: int = 10, warmup: int = 2
    ) -> list[ProfiledEvent]:
        """Run ``runs`` times on ``features`` (a batch keyed by input name) after ``warmup``
        runs; return every event the profiler recorded during the timed runs."""
        lib = self._lib
        batch = len(next(iter(features.values())))
        ins, outs = self._buffers(features, batch)
        try:
            in_arr, out_arr = (_P * len(ins))(*ins), (_P * len(outs))(*outs)

            def run() -> None:
                _check(
                    lib.LiteRtRunCompiledModel(
                        self._compiled, 0, len(ins), in_arr, len(outs), out_arr
                    ),
                    "RunCompiledModel",
                    self.path,
                )

            for _ in range(warmup):
                run()
            _check(lib.LiteRtResetProfiler(self._profiler), "ResetProfiler", self.path)
            _check(lib.LiteRtStartProfiler(self._profiler), "StartProfiler", self.path)
            for _ in range(runs):
                run()
            _check(lib.LiteRtStopProfiler(self._profiler), "StopProfiler", self.path)
            return self._events()
        finally:
            for b in ins + outs:
                lib.LiteRtDestroyTensorBuffer(b)

    def _events(self) -> list[ProfiledEvent]:
        n = C.c_int()
        _check(
            self._lib.LiteRtGetNumProfilerEvents(self._profiler, C.byref(n)), "NumEvents", self.path
        )
        if n.value <= 0:
            return []
        raw = (C.c_uint8 * (EVENT_SIZE * n.value))()
        _check(self._lib.LiteRtGetProfilerEvents(self._profiler, n.value, raw), "Events", self.path)
        events = []
        for k in range(n.value):
            o = k * EVENT_SIZE
            tag_ptr = C.c_void_p.from_buffer(raw, o).value
            events.append(
                ProfiledEvent(
                    tag=C.string_at(tag_ptr).decode(errors="replace") if tag_ptr else "",
                    event_type=C.c_uint32.from_buffer(raw, o + 8).value,
                    elapsed_us=C.c_uint64.from_buffer(raw, o + 24).value,
                    source=C.c_uint32.from_buffer(raw, o + 96).value,
                    metadata1=C.c_int64.from_buffer(raw, o + 80).value,
                )
            )
        return events

    def close(self) -> None:
        """Release the compiled model, options and model (the environment is shared)."""
        lib = self._lib
        if self._compiled is not None:
            lib.LiteRtDestroyCompiledModel(self._compiled)
            self._compiled = None
        if self._options is not None:
            lib.LiteRtDestroyOptions(self._options)
            self._options = None
        if self._model is not None:
            lib.LiteRtDestroyModel(self._model)
            self._model = None

    def __enter__(self) -> ProfileSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - garbage collection
        with contextlib.suppress(Exception):
            self.close()
