"""Tests of tfcompress.export.metrics: exact AUC and `evaluate_exact` (the one quality
definition)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tfcompress._keras import keras, tf
from tfcompress.export import metrics


def _model_and_data(n: int = 3000, seed: int = 0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((3,), name="x")
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp), name="lin")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x[:, :1] + 0.8 * rng.normal(size=(n, 1)) > 0.6).astype("float32")
    return model, x, y


def _mann_whitney(y: np.ndarray, s: np.ndarray) -> float:
    """AUC by counting pairs (ties count half): the definition, O(n_pos * n_neg)."""
    y = y.reshape(-1) > 0.5
    s = s.reshape(-1)
    pos, neg = s[y][:, None], s[~y][None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def test_auc_is_exact_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.normal(size=400), 1)  # many ties
    assert metrics.auc(y, s) == pytest.approx(_mann_whitney(y, s), abs=1e-12)
    assert metrics.auc(np.ones(5), s[:5]) is None


def test_evaluate_exact_whole_shuffled_split_in_one_pass():
    model, x, y = _model_and_data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(3000, seed=2).batch(256)
    got = metrics.evaluate_exact(model, ds)
    p = model.predict(x, verbose=0)
    assert set(got) == {"auc", "logloss", "accuracy", "n_examples", "n_positives"}
    assert got["n_examples"] == 3000 and got["n_positives"] == int(y.sum())
    # read once: each prediction stays paired with its label although the dataset reshuffles
    assert got["auc"] == pytest.approx(_mann_whitney(y, p), abs=1e-9)
    assert got["accuracy"] == pytest.approx(float(np.mean((p > 0.5) == (y > 0.5))))
    pc = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    logloss = -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    assert got["logloss"] == pytest.approx(float(logloss), rel=1e-5)


def test_evaluate_exact_forms_and_limits(caplog):
    model, x, y = _model_and_data(600)
    whole = metrics.evaluate_exact(model, (x, y))
    unbatched = metrics.evaluate_exact(
        model, tf.data.Dataset.from_tensor_slices((x, y)), batch_size=64
    )
    assert unbatched == pytest.approx(whole)
    first = metrics.evaluate_exact(
        model,
        tf.data.Dataset.from_tensor_slices(({"x": x}, y)).repeat().batch(100),
        max_examples=250,
    )
    assert first["n_examples"] == 250
    assert first["auc"] == pytest.approx(_mann_whitney(y[:250], model.predict(x[:250], verbose=0)))
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        weighted = metrics.evaluate_exact(model, (x, y, np.linspace(0, 1, 600)), metrics=["auc"])
    assert weighted == {
        "auc": pytest.approx(whole["auc"]),
        "n_examples": 600,
        "n_positives": whole["n_positives"],
    }
    assert "unweighted" in caplog.text


def test_evaluate_exact_multiclass_and_outputs():
    keras.utils.set_random_seed(5)
    inp = keras.Input((4,), name="x")
    probs = keras.layers.Dense(7, activation="softmax", name="probs")(inp)
    score = keras.layers.Dense(1, activation="sigmoid", name="score")(inp)
    model = keras.Model(inp, [probs, score])
    rng = np.random.default_rng(3)
    x = rng.normal(size=(90, 4)).astype("float32")
    y = rng.integers(0, 7, 90)
    with pytest.raises(ValueError, match=r"has 2 outputs \['probs', 'score'\]; pass `output=`"):
        metrics.evaluate_exact(model, (x, y))
    got = metrics.evaluate_exact(model, (x, y), output="probs")
    p = model.predict(x, verbose=0)[0]
    assert got == {
        "accuracy": pytest.approx(float(np.mean(p.argmax(1) == y))),
        "top5_accuracy": pytest.approx(
            float(np.mean((np.argsort(-p, 1)[:, :5] == y[:, None]).any(1)))
        ),
        "n_examples": 90,
        "n_positives": None,
    }
    with pytest.raises(ValueError, match="`output` 'nope' is not an output"):
        metrics.evaluate_exact(model, (x, y), output="nope")


def test_evaluate_exact_bad_input():
    model, x, y = _model_and_data(50)
    with pytest.raises(ValueError, match="`data` has no labels"):
        metrics.evaluate_exact(model, tf.data.Dataset.from_tensor_slices(x).batch(10))
    with pytest.raises(
        ValueError,
        match=r"input 'x' expects shape \(None, 3\), received shape "
        r"\(50, 4\)",
    ):
        metrics.evaluate_exact(model, (np.zeros((50, 4), "float32"), y))
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        metrics.evaluate_exact(model, (x, y), metrics=["f1"])
    with pytest.raises(ValueError, match="`metrics` must be a list"):
        metrics.evaluate_exact(model, (x, y), metrics="auc")
    with pytest.raises(ValueError, match="`task` must be one of"):
        metrics.evaluate_exact(model, (x, y), task="ranking")
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1"):
        metrics.evaluate_exact(model, (x, y), batch_size=0)
    with pytest.raises(TypeError, match="must be a tf_keras.Model"):
        metrics.evaluate_exact("model.keras", (x, y))


def test_few_positives_note():
    assert metrics.few_positives_note(10_000, 2_000) is None
    assert metrics.few_positives_note(500, 40) == (
        "only 40 positives among 500 examples: quality differences are noise (an AUC's "
        "standard error is ~0.05 here)"
    )
    assert metrics.few_positives_note(500, 450).startswith("only 50 negatives among 500")
    assert metrics.few_positives_note(500, None) is None
    assert metrics.count_positives(np.array([1, 0, 1, 1]), "binary") == 3
    assert metrics.count_positives(np.array([1, 0, 3]), "multiclass") is None


@pytest.mark.parametrize("n", [2, 37, 2_000])
def test_auc_equals_the_pairwise_definition_with_ties(n):
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.random(n), 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert metrics.auc(y, s) == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)
