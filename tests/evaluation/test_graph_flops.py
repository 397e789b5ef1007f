"""GEMM operations of a SavedModel's serving graph at the benchmark batch (exact on Dense
models: 2·B·in·out per Dense), XLA-compiled or not, and the share of the peak they give."""

from __future__ import annotations

import pytest

import tfcompress  # noqa: F401  (sets the environment before TensorFlow loads)
from tfcompress._keras import keras, tf
from tfcompress.evaluation import peak as pk
from tfcompress.evaluation.graph_flops import function_gemm_flops, saved_model_flops
from tfcompress.export.runtime import load_variant
from tfcompress.export.saved_model import export_saved_model

PER_EXAMPLE = 2 * ((12 + 4) * 20 + 20 * 3)  # [x (12), an id's width-4 row] -> Dense 20 -> 3


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    keras.utils.set_random_seed(0)
    inp = keras.Input((12,), name="x")
    ids = keras.Input((1,), dtype="int32", name="ids")  # a lookup: freezing fails on it in XLA
    row = keras.layers.Flatten()(keras.layers.Embedding(10, 4, name="table")(ids))
    h = keras.layers.Concatenate()([inp, row])
    h = keras.layers.Dense(20, activation="relu", name="d1")(h)
    model = keras.Model([inp, ids], keras.layers.Dense(3, name="d2")(h))
    root = tmp_path_factory.mktemp("graph_flops")
    paths = {}
    for jit in (False, True):
        paths[jit] = str(root / f"sm_jit{int(jit)}")
        export_saved_model(model, paths[jit], jit_compile=jit)
    return model, paths


@pytest.mark.parametrize("jit", [False, True])
def test_saved_model_gemm_flops_are_exact(saved, jit):
    _, paths = saved
    for batch in (1, 7, 256):
        assert saved_model_flops(paths[jit], batch) == batch * PER_EXAMPLE
    total, by_op = saved_model_flops(paths[jit], 5, by_op=True)
    assert total == 5 * PER_EXAMPLE and by_op == {"MatMul": 5 * PER_EXAMPLE}


def test_saved_model_variants_get_gflops_and_share_of_peak(saved):
    model, paths = saved
    variant = load_variant(paths[True])
    assert variant.format == "saved_model"
    assert pk.variant_flops(variant, 7) == (7 * PER_EXAMPLE, "float32")
    assert pk.variant_flops(load_variant(model), 7) == (7 * PER_EXAMPLE, "float32")
    row = pk.row_achieved(variant, {4: {"median": 0.5}}, {"float32": {"gflops": 0.01}})
    rate = 4 * PER_EXAMPLE / 0.5e-3 / 1e9
    assert row[4]["flops"] == 4 * PER_EXAMPLE and row[4]["dtype"] == "float32"
    assert row[4]["gflops"] == pytest.approx(rate) and row[4]["share"] == pytest.approx(rate / 0.01)


def test_concrete_functions_and_unknown_shapes():
    weights = tf.ones((4, 3))
    fn = tf.function(lambda x: tf.matmul(x, weights))
    assert function_gemm_flops(fn.get_concrete_function(tf.TensorSpec([None, 4])), 8) == 192
    batched = tf.function(lambda a, b: tf.matmul(a, b)).get_concrete_function(
        tf.TensorSpec([None, 5, 4]), tf.TensorSpec([None, 4, 6])
    )
    assert function_gemm_flops(batched, 3, by_op=True) == (
        2 * 3 * 5 * 4 * 6,
        {"BatchMatMulV2": 2 * 3 * 5 * 4 * 6},
    )
    ragged = fn.get_concrete_function(tf.TensorSpec([None, None]))  # inner axis unknown
    assert function_gemm_flops(ragged, 8) is None


def test_bad_input_is_named(saved, tmp_path):
    _, paths = saved
    with pytest.raises(ValueError, match="`path` must be a SavedModel directory"):
        saved_model_flops(tmp_path, 1)
    with pytest.raises(ValueError, match="no signature 'nope'.*serving_default"):
        saved_model_flops(paths[False], 1, signature="nope")
    with pytest.raises(ValueError, match="batch_size"):
        saved_model_flops(paths[False], 0)
    with pytest.raises(TypeError, match="`fn` must be a concrete function"):
        function_gemm_flops(lambda x: x, 1)
