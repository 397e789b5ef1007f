"""compress: the accuracy-aware search, on a tiny seeded binary task (one search shared by
most tests; each fine-tune is one epoch of 4,000 examples)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tfcompress
from tfcompress._keras import keras
from tfcompress._metrics import auc
from tfcompress.callbacks import read_hparams
from tfcompress.search import Candidate, CompressionResult, SearchSettings, parse_budget

pytestmark = pytest.mark.slow

N_TRAIN, N_VAL = 4000, 2000


def _task(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL
    x = rng.normal(size=(n, 16)).astype("float32")
    logit = x @ rng.normal(size=16) * 0.8 + 0.5 * np.sin(x[:, 0] * x[:, 1])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float32")
    return x, y


def _model(x: np.ndarray, y: np.ndarray) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), name="x")
    h = keras.layers.Dense(64, activation="relu", name="hidden1")(inputs)
    h = keras.layers.Dense(64, activation="relu", name="hidden2")(h)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(h))
    model.compile("adam", "binary_crossentropy")
    model.fit(x[:N_TRAIN], y[:N_TRAIN], epochs=3, batch_size=128, verbose=0)
    return model


def _compress(model, x, y, out: Path, **kwargs) -> CompressionResult:
    settings = dict(max_loss=0.01, epochs=1, steps=2, repeats=3, progress=False, output_dir=out)
    settings.update(kwargs)
    return tfcompress.compress(
        model,
        (x[:N_TRAIN], y[:N_TRAIN]),
        validation_data=(x[N_TRAIN:], y[N_TRAIN:]),
        **settings,
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    x, y = _task()
    model = _model(x, y)
    root = tmp_path_factory.mktemp("compress")
    result = _compress(model, x, y, root / "out", log_dir=root / "tb", objective="size")
    return model, x, y, root, result


def test_finds_a_smaller_model_within_the_tolerance(searched):
    model, x, y, _, result = searched
    chosen = result.chosen
    assert chosen is not None and chosen.accepted
    assert chosen.difference.worst_loss() <= 0.01  # the rule: the CI's worst end
    assert chosen.candidate.shrink > 0 and chosen.candidate.quantization == "int8"
    assert result.ratios()["size_x"] > 2.0
    # the file is what it claims: LiteRT runs it, and its AUC on the validation examples is the
    # variant AUC the CI was computed from; the baseline's is the Keras model's
    variant = tfcompress.load_variant(result.path)
    scores = variant.predict({"x": x[N_TRAIN:]})
    measured = auc(y[N_TRAIN:], next(iter(scores.values())))
    assert measured == pytest.approx(chosen.difference.variant, abs=1e-9)
    # evaluate() re-scores the chosen file on other data; on the validation data it must agree
    again = result.evaluate((x[N_TRAIN:], y[N_TRAIN:]))
    assert again.delta == pytest.approx(chosen.difference.delta, abs=1e-9)
    keras_auc = auc(y[N_TRAIN:], model.predict(x[N_TRAIN:], verbose=0))
    assert result.baseline.difference.variant == pytest.approx(keras_auc, abs=2e-4)


def test_bisection_rejects_too_much_shrinking_before_export(searched):
    _, _, _, _, result = searched
    by_name = {r.name: r for r in result.candidates}
    # every PTQ mode of the original is judged (which file is fastest is measured), then 0.5;
    # int16x8 only when PTQ int8 loses (it is int8's size, with slower kernels)
    assert [r.name for r in result.candidates][:4] == [
        "ptq-int8",
        "ptq-dynamic",
        "ptq-float16",
        "shrink0.50 (keras)",
    ]
    # shrinking half of every hidden layer loses more than the tolerance: never exported
    assert not by_name["shrink0.50 (keras)"].accepted
    assert by_name["shrink0.50 (keras)"].path is None and "shrink0.50+int8" not in by_name
    assert by_name["shrink0.25 (keras)"].accepted  # so the bisection went down to 0.25
    assert by_name["shrink0.25+int8"].accepted
    # the kept ratio is exported as float too: the fastest file may be a float one
    assert {"shrink0.25", "shrink0.25+dynamic", "shrink0.25+float16"} <= set(by_name)
    assert by_name["shrink0.25"].bytes > by_name["shrink0.25+int8"].bytes
    # a model without tables: the embedding axis is skipped, and says why
    assert "no top-level Embedding table" in result.skipped["embeddings"]
    assert not any(r.candidate.min_count or r.candidate.rows for r in result.candidates)
    assert "not tried: embeddings" in result.to_markdown()
    assert result.trained == 2


def test_fine_tuning_recovers_quality(searched):
    """Each shrunk candidate is really fine-tuned (distilled from the original): its AUC beats
    the same shrink without fine-tuning."""
    model, x, y, _, result = searched
    tuned = {r.name: r for r in result.candidates}["shrink0.25 (keras)"].difference.variant
    raw = tfcompress.shrink(model, 0.25)
    assert tuned > auc(y[N_TRAIN:], raw.predict(x[N_TRAIN:], verbose=0)) + 0.003
    assert model.trainable and all(layer.trainable for layer in model.layers)  # left as it was


def test_report_json_and_markdown(searched):
    _, _, _, _, result = searched
    text = result.to_markdown()
    assert "**chosen**" in text and result.chosen.name in text
    assert "2000 validation examples" in text and "delong" in text
    data = json.loads(result.to_json())
    assert data["chosen"] == result.chosen.name
    assert {c["name"] for c in data["candidates"]} == {r.name for r in result.candidates}
    front = [r.name for r in result.front]
    assert result.chosen.name in front or "float" in front
    assert (Path(result.path).parents[1] / "result.md").read_text().startswith("compress:")


def test_every_measured_candidate_is_on_tensorboards_hparams_dashboard(searched):
    _, _, _, root, result = searched
    sessions = read_hparams(root / "tb")  # TensorBoard's own data provider
    exported = {r.name for r in result.candidates if r.path} | {"float"}
    assert set(sessions) == exported
    assert sessions[result.chosen.name]["kept"] is True
    assert sessions["ptq-int8"]["quantization"] == "int8"
    assert {session["fuse"] for session in sessions.values()} == {"auto"}  # a size search
    assert {session["depth"] for session in sessions.values()} == {0}  # depth: latency only


def test_a_repeated_call_resumes_from_the_cache(searched):
    model, x, y, root, first = searched
    again = _compress(model, x, y, root / "out", objective="size")
    assert again.trained == 0 and all(r.cached for r in again.candidates)
    assert again.chosen.name == first.chosen.name and again.path == first.path
    # another tolerance re-judges the cached outputs: nothing is rebuilt, the verdicts change
    strict = _compress(model, x, y, root / "out", objective="size", max_loss=0.0005)
    assert strict.trained == 0
    assert not {r.name: r for r in strict.candidates}["shrink0.25 (keras)"].accepted
    # one more bisection step builds only the new ratio (0.375) and its exports
    more = _compress(model, x, y, root / "out", objective="size", steps=3)
    assert more.trained == 1
    new = [r.name for r in more.candidates if not r.cached]
    assert new and all(name.startswith("shrink0.38") for name in new)


def test_budget_stops_before_a_fine_tune(tmp_path):
    x, y = _task(1)
    model = _model(x, y)
    result = _compress(model, x, y, tmp_path, budget=0.5)
    assert "budget" in result.stopped
    assert all(not r.candidate.trains for r in result.candidates)


def test_bad_arguments_say_what_to_pass(searched, tmp_path):
    model, x, y, _, _ = searched
    data = (x[:100], y[:100])
    cases = [
        (dict(metric="ndcg"), ValueError, r"`metric` must be one of"),
        (dict(objective="speed"), ValueError, r"`objective` must be one of"),
        (dict(runtime="onnx"), ValueError, r"`runtime` must be one of"),
        (dict(rule="mean"), ValueError, r"`rule` must be one of"),
        (dict(max_loss=0), ValueError, r"`max_loss` must be a number in \(0, 1\]"),
        (dict(max_loss=float("nan")), ValueError, r"received nan"),
        (dict(epochs=0), ValueError, r"`epochs` must be an int >= 1"),
        (dict(budget="soon"), ValueError, r"'90s', '20m', '1.5h'"),
        (dict(validation_split=1.0), ValueError, r"leaves no training or no validation"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            tfcompress.compress(model, data, output_dir=tmp_path, progress=False, **kwargs)
    with pytest.raises(TypeError, match=r"`data` must be an \(x, y\) tuple"):
        tfcompress.compress(model, x, output_dir=tmp_path)
    dataset = __import__("tensorflow").data.Dataset.from_tensor_slices(data).batch(32)
    with pytest.raises(ValueError, match=r"`validation_data` is required"):
        tfcompress.compress(model, dataset, output_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written before the arguments are checked


def test_budget_and_candidate_parsing():
    assert parse_budget(None) is None
    assert parse_budget(90) == 90.0 and parse_budget("1.5h") == 5400.0
    assert parse_budget("20 min") == 1200.0
    for bad in ("-5m", "0", True, "m20"):
        with pytest.raises((TypeError, ValueError), match=r"`budget`"):
            parse_budget(bad)
    assert Candidate(shrink=0.5, quantization="int8", qat=True).name == "shrink0.50+qat-int8"
    with pytest.raises(ValueError, match=r"`qat=True` exports full int8"):
        Candidate(qat=True)
    with pytest.raises(ValueError, match=r"`shrink` must be a ratio in \[0, 1\)"):
        Candidate(shrink=1.0)
    named = Candidate(shrink=0.5, skip=("b", "a"))
    assert named.skip == ("a", "b") and named.name.startswith("shrink0.50~")
    assert Candidate.from_config(named.get_config()) == named
    # the cache key holds what changes a build, not how it is judged
    assert SearchSettings().fingerprint() != SearchSettings(epochs=3).fingerprint()
    assert SearchSettings().fingerprint() == SearchSettings(max_loss=0.002, steps=5).fingerprint()


def test_warns_when_the_validation_set_cannot_resolve_the_tolerance(searched, caplog):
    model, x, y, root, _ = searched
    with caplog.at_level("WARNING", logger="tfcompress"):
        _compress(model, x, y, root / "out", objective="size", max_loss=0.0001)  # cached: fast
    warned = [r.getMessage() for r in caplog.records if "wider than max_loss" in r.getMessage()]
    assert len(warned) == 1 and "validation examples would resolve it" in warned[0]


def test_a_candidate_must_beat_the_float_model_on_the_objective(tmp_path):
    """A tiny model's int8 file is larger than its float one (quantization parameters outweigh
    the bytes saved): it keeps quality but is not chosen for size."""
    x, y = _task(2)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(inputs))
    model.compile("adam", "binary_crossentropy")
    model.fit(x[:N_TRAIN], y[:N_TRAIN], epochs=1, verbose=0)
    result = _compress(model, x, y, tmp_path, objective="size", steps=1)
    kept = [r for r in result.candidates if r.accepted and r.path]
    assert kept and all(r.bytes >= result.baseline.bytes for r in kept)
    assert result.chosen is None and result.path == result.baseline.path
    assert "better than the float model on size" in result.to_markdown()
    assert (
        result.none_reason()
        == "no candidate that keeps quality is better than the float model on size"
    )


def test_calibration_examples_are_read_once_into_arrays():
    """A reshuffling tf.data pipeline would calibrate each int8 candidate on other examples."""
    import tensorflow as tf

    from tfcompress.search.build import representative_features

    x, y = _task(3)
    inputs = keras.Input((16,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    data = tf.data.Dataset.from_tensor_slices(({"x": x}, y)).shuffle(1000).batch(100)
    features = representative_features(model, data, limit=256)
    assert set(features) == {"x"} and features["x"].shape == (256, 16)
    assert isinstance(features["x"], np.ndarray)
    with pytest.raises(ValueError, match="no examples"):
        representative_features(model, data.take(0))


def test_runs_under_a_mirrored_strategy(mirrored, tmp_path):
    """Candidates are built and fine-tuned in the strategy's scope (two replicas over virtual
    CPUs), the teacher being the user's model built outside it."""
    x, y = _task(4)
    model = _model(x, y)
    result = _compress(model, x, y, tmp_path, objective="size", steps=1, strategy=mirrored)
    shrunk = [r for r in result.candidates if r.candidate.shrink]
    assert shrunk and result.trained == 1
    assert shrunk[0].difference.variant > 0.85  # the fine-tune ran and kept the model useful
    assert result.chosen is not None and result.ratios()["size_x"] > 2.0


def _embedding_model(seed: int = 0):
    """ids (an Embedding of 16 dims) + 8 dense features -> Dense(32) -> click."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL
    ids = rng.integers(0, 40, size=(n, 1)).astype("int32")
    x = rng.normal(size=(n, 8)).astype("float32")
    logit = rng.normal(size=40)[ids[:, 0]] + x @ rng.normal(size=8) * 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float32")
    keras.utils.set_random_seed(0)
    id_in, x_in = keras.Input((1,), dtype="int32", name="ids"), keras.Input((8,), name="x")
    table = keras.layers.Flatten()(keras.layers.Embedding(40, 16, name="table")(id_in))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(
        keras.layers.Concatenate()([table, x_in])
    )
    model = keras.Model([id_in, x_in], keras.layers.Dense(1, activation="sigmoid", name="out")(h))
    model.compile("adam", "binary_crossentropy")
    features = {"ids": ids, "x": x}
    model.fit(features, y, epochs=2, batch_size=128, verbose=0)
    return model, features, y


def test_the_embedding_tables_are_a_second_axis(tmp_path):
    """After the global ratio, the tables' dimensions are bisected beyond it (shrink with a
    per-layer ratio): shrink 0.5 keeps, then the table at 0.75 with the rest at 0.5."""
    from tfcompress.search.build import shrink_ratio

    model, features, y = _embedding_model()
    train = ({k: v[:N_TRAIN] for k, v in features.items()}, y[:N_TRAIN])
    val = ({k: v[N_TRAIN:] for k, v in features.items()}, y[N_TRAIN:])
    assert shrink_ratio(model, Candidate(shrink=0.5, embeddings=0.75)) == {
        "default": 0.5,
        "table": 0.75,
    }
    result = tfcompress.compress(
        model,
        train,
        validation_data=val,
        max_loss=0.05,
        objective="size",
        epochs=1,
        steps=1,
        repeats=2,
        progress=False,
        output_dir=tmp_path,
    )
    by_name = {r.name: r for r in result.candidates}
    assert by_name["shrink0.50 (keras)"].accepted
    assert "shrink0.50+emb0.75 (keras)" in by_name  # one step on the second axis
    assert by_name["shrink0.50+emb0.75 (keras)"].accepted
    # the table at 4 of 16 dims instead of 8: a smaller file
    assert by_name["shrink0.50+emb0.75"].bytes < by_name["shrink0.50"].bytes
    assert result.trained == 2


def test_a_candidates_table_ratio_is_validated_and_named():
    assert Candidate(shrink=0.5, embeddings=0.75, quantization="int8").name == (
        "shrink0.50+emb0.75+int8"
    )
    assert Candidate(shrink=0.5, embeddings=0.5) == Candidate(shrink=0.5)  # the same model
    config = Candidate(shrink=0.25, embeddings=0.5).get_config()
    assert Candidate.from_config(config).embeddings == 0.5
    with pytest.raises(ValueError, match="`embeddings` must be None or a ratio in"):
        Candidate(shrink=0.5, embeddings=1.0)
    from tfcompress.search.build import shrink_ratio

    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="no top-level Embedding layer"):
        shrink_ratio(plain, Candidate(shrink=0.5, embeddings=0.75))
