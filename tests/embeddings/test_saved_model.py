"""SavedModel and .keras round trips of the embedding layers of issue 18 and of the fused front
end: ``export_saved_model`` (XLA-compiled serving function) loaded with ``tf.saved_model.load``
(no tfcompress classes needed) and the ``.keras`` file loaded with ``keras.models.load_model``
give the Keras model's outputs (max |diff| <= 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress  # noqa: F401  (sets the environment before TensorFlow loads)
from tfcompress._keras import keras, tf
from tfcompress.embeddings.compositional import HashedEmbedding, QREmbedding
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding
from tfcompress.export.fuse import fuse_embeddings
from tfcompress.export.fuse_layers import FusedGatherIds
from tfcompress.export.saved_model import export_saved_model
from tfcompress.models.layers import MaskedMean
from tfcompress.quantization.embedding_int4 import QuantizedEmbedding4

ROWS, DIM, LENGTH = 50, 4, 5


def _model() -> keras.Model:
    """One input per layer kind; each lookup flattened or mean-pooled, then one Dense."""
    keras.utils.set_random_seed(0)
    names = ("qr", "hashed", "mixed", "int4", "plain", "seq")
    inputs = {n: keras.Input((LENGTH if n == "seq" else 1,), dtype="int32", name=n) for n in names}
    source = keras.layers.Embedding(ROWS, DIM, name="source")
    source.build((None, 1))
    counts = np.arange(ROWS, 0, -1)
    layers = {
        "qr": QREmbedding(ROWS, DIM, 8, combine="mul", name="qr_table"),
        "hashed": HashedEmbedding(10**6, DIM, 16, seed=3, name="hashed_table"),
        "mixed": MixedDimEmbedding.from_embedding(
            source, counts, [10, 40], [4, 2], name="mixed_table"
        ),
        "int4": QuantizedEmbedding4.from_embedding(source, name="int4_table"),
        "plain": keras.layers.Embedding(ROWS, DIM, name="plain_table"),
        "seq": keras.layers.Embedding(ROWS, DIM, name="seq_table"),
    }
    parts = [keras.layers.Flatten(name=f"flat_{n}")(layers[n](inputs[n])) for n in names[:-1]]
    parts.append(MaskedMean(name="pool_seq")([layers["seq"](inputs["seq"]), inputs["seq"]]))
    x = keras.layers.Concatenate(name="features")(parts)
    out = keras.layers.Dense(1, activation="sigmoid", name="ctr")(x)
    return keras.Model(list(inputs.values()), out, name="tables")


def _batch(n: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    batch = {n: rng.integers(0, ROWS, (64, 1)) for n in ("qr", "mixed", "int4", "plain")}
    batch["hashed"] = rng.integers(0, 10**6, (64, 1))
    batch["seq"] = rng.integers(0, ROWS, (64, LENGTH)) * (rng.random((64, LENGTH)) > 0.3)
    batch["seq"][:3] = 0
    return {k: v[:n].astype("int32") for k, v in batch.items()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("embeddings_saved_model")
    model = _model()
    fused, report = fuse_embeddings(model)
    assert sorted(d.layer for d in report.applied) == ["plain_table", "seq_table"]
    files = {}
    for name, m in (("model", model), ("fused", fused)):
        export_saved_model(m, root / name)
        m.save(root / f"{name}.keras")
        files[name] = (m, root / name, root / f"{name}.keras")
    return files


@pytest.mark.parametrize("which", ["model", "fused"])
def test_saved_model_and_keras_file_keep_parity(exported, which):
    model, saved, keras_file = exported[which]
    batch = _batch()
    want = model(batch).numpy().reshape(-1)
    assert np.ptp(want) > 1e-3  # the ids matter: a real comparison
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    got = serve(**{k: tf.constant(v) for k, v in batch.items()})
    assert np.abs(next(iter(got.values())).numpy().reshape(-1) - want).max() <= 1e-6
    loaded = keras.models.load_model(keras_file)
    assert np.abs(loaded(batch).numpy().reshape(-1) - want).max() <= 1e-6
    kinds = {type(layer).__name__ for layer in loaded.layers}
    if which == "model":
        assert {"QREmbedding", "HashedEmbedding", "MixedDimEmbedding"} <= kinds
        assert "QuantizedEmbedding4" in kinds
    else:
        assert {"FusedGatherIds", "FusedPooling"} <= kinds
        ids = next(x for x in loaded.layers if isinstance(x, FusedGatherIds))
        assert ids.limits == [ROWS - 1] * (1 + LENGTH)  # the id clipping survives the file


def test_fused_saved_model_clips_out_of_range_ids(exported):
    model, saved, keras_file = exported["fused"]
    batch = _batch(8)
    batch["plain"][:4] = [[ROWS], [ROWS + 7], [-2], [10**6]]
    clipped = {**batch, "plain": np.clip(batch["plain"], 0, ROWS - 1)}
    want = exported["model"][0](clipped).numpy().reshape(-1)
    serve = tf.saved_model.load(str(saved)).signatures["serving_default"]
    got = serve(**{k: tf.constant(v) for k, v in batch.items()})
    assert np.abs(next(iter(got.values())).numpy().reshape(-1) - want).max() <= 1e-6
    loaded = keras.models.load_model(keras_file)
    assert np.abs(loaded(batch).numpy().reshape(-1) - want).max() <= 1e-6
