"""The machine's GEMM peak per dtype and each variant's FLOP count (exact) and share of it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets the environment before TensorFlow loads)
from tfcompress._keras import keras
from tfcompress.evaluation import peak as pk
from tfcompress.evaluation.flops import count_flops
from tfcompress.export.runtime import load_variant
from tfcompress.export.tflite import export_tflite

SHAPE = (32, 64, 64)


def test_machine_peak_is_finite_positive_and_cached():
    first = pk.machine_peak(1, shape=SHAPE, repeats=2)
    assert set(first) == {"float32", "int8"}
    for d, v in first.items():
        assert math.isfinite(v["gflops"]) and v["gflops"] > 0, d
        assert v["flops"] == 2 * 32 * 64 * 64 == pk.gemm_flops(*SHAPE)
        assert v["shape"] == list(SHAPE) and v["num_threads"] == 1
        assert v["gflops"] == pytest.approx(v["flops"] / (v["ms"] / 1e3) / 1e9)
    assert pk.machine_peak(1, ("int8",), shape=SHAPE, repeats=2) == {"int8": first["int8"]}


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inp = keras.Input((12,), name="x")
    h = keras.layers.Dense(20, activation="relu", name="d1")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, name="d2")(h))
    path = tmp_path_factory.mktemp("peak") / "m.tflite"
    export_tflite(model, path)
    return model, str(path)


def test_flop_counts_are_exact(dense_model):
    model, path = dense_model
    for batch in (1, 7):
        assert pk.tflite_flops(path, batch) == (2 * batch * (12 * 20 + 20 * 3), "float32")
        flops, dtype = pk.variant_flops(load_variant(model), batch)
        assert (flops, dtype) == (2 * batch * (12 * 20 + 20 * 3), "float32")
    _, by_op = count_flops(model, by_op=True)
    assert by_op["MatMul"] == 2 * (12 * 20 + 20 * 3)


def test_achieved_share():
    assert pk.achieved(2_000_000, 1.0, {"gflops": 4.0}) == {"gflops": 2.0, "share": 0.5}
    assert pk.achieved(None, 1.0, {"gflops": 4.0}) == {"gflops": None, "share": None}
    row = pk.row_achieved(
        type("V", (), {"format": "saved_model"})(), {1: {"median": 1.0}}, {"float32": {}}
    )
    assert row == {1: {"flops": None, "dtype": "float32", "gflops": None, "share": None}}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_threads": 0}, "num_threads"),
        ({"dtypes": ("int4",)}, "dtypes"),
        ({"dtypes": "int8"}, "dtypes"),
        ({"shape": (0, 4, 4)}, "shape"),
        ({"repeats": 0}, "repeats"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pk.machine_peak(**kwargs)


def test_tflite_flops_rejects_bad_batch(dense_model):
    with pytest.raises(ValueError, match="batch_size"):
        pk.tflite_flops(dense_model[1], 0)
    assert np.isfinite(pk.tflite_flops(dense_model[1], 3)[0])


def test_machine_cpu_reads_the_model_and_the_int8_features(tmp_path):
    from tfcompress.evaluation.peak import INT8_ISA, machine_cpu

    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_vnni amx_tile amx_int8\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n"
    )
    cpu = machine_cpu(x86)
    assert cpu["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu["int8_isa"] == ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_int8"]
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd0c\n")
    assert machine_cpu(arm)["int8_isa"] == ["asimddp", "i8mm"]
    # unreadable: the model from platform, the features unknown (not "none")
    missing = machine_cpu(tmp_path / "absent")
    assert missing["int8_isa"] is None and missing["model"] and missing["cores"] >= 1
    assert set(machine_cpu()["int8_isa"] or []) <= set(INT8_ISA)
    with pytest.raises(TypeError, match="cpuinfo"):
        machine_cpu(3)
