"""compress's embedding axis: the tables' storage (int4 / int8 rows) and rare-id pruning
(``min_count``), tried on the best kept float model of a tiny DCN-like model whose id table is
Zipf-distributed (most ids rare); int16x8 in the PTQ ladder, and a mode that fails to convert.
One search (no shrink: ``max_shrink=0.3``, so no fine-tune) is shared by the tests."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from search_helpers import small_compress

import tfcompress
from tfcompress._keras import keras
from tfcompress._metrics import auc
from tfcompress.search.space import Candidate
from tfcompress.search.strategy import SearchStrategy

pytestmark = pytest.mark.slow

N_TRAIN, N_VAL, VOCAB, DIM = 4000, 4000, 1000, 32


def _table_model(seed: int = 0):
    """ids (Zipf over 999 ids, an Embedding of 32 dims) + 8 dense features -> Dense(32) -> click."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL
    p = 1.0 / np.arange(1, VOCAB) ** 1.1
    ids = (1 + rng.choice(VOCAB - 1, size=(n, 1), p=p / p.sum())).astype("int32")
    x = rng.normal(size=(n, 8)).astype("float32")
    logit = 1.5 * rng.normal(size=VOCAB)[ids[:, 0]] + x @ rng.normal(size=8) * 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float32")
    keras.utils.set_random_seed(0)
    id_in, x_in = keras.Input((1,), dtype="int32", name="ids"), keras.Input((8,), name="x")
    table = keras.layers.Flatten()(keras.layers.Embedding(VOCAB, DIM, name="table")(id_in))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(
        keras.layers.Concatenate()([table, x_in])
    )
    model = keras.Model([id_in, x_in], keras.layers.Dense(1, activation="sigmoid", name="out")(h))
    model.compile("adam", "binary_crossentropy")
    features = {"ids": ids, "x": x}
    train = ({k: v[:N_TRAIN] for k, v in features.items()}, y[:N_TRAIN])
    val = ({k: v[N_TRAIN:] for k, v in features.items()}, y[N_TRAIN:])
    model.fit(*train, epochs=3, batch_size=128, verbose=0)
    return model, train, val


def _search(model, train, val, out, **kwargs):
    # the table layouts (fine-tuned; QR's 32 + 32 rows would win here) have their own search:
    # tests/search/test_tables_axis.py
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SearchStrategy, "tables_axis", lambda self, base, rows: None)
        return small_compress(model, train, val, out, **kwargs)


@pytest.fixture(scope="module")
def table_search(tmp_path_factory):
    model, train, val = _table_model()
    out = tmp_path_factory.mktemp("embedding_axis")
    return model, train, val, out, _search(model, train, val, out)


def test_the_axis_tries_table_storage_then_rare_id_pruning(table_search):
    _, train, _, _, result = table_search
    by_name = {r.name: r for r in result.candidates}
    # the axis runs in the mode of the smallest kept PTQ export (int8 or dynamic: full int8's
    # float ops are chosen by timing, so which of the two is smaller can vary)
    ptq = [by_name[f"ptq-{m}"] for m in ("int8", "dynamic", "float16")]
    mode = min(ptq, key=lambda r: r.bytes).candidate.quantization
    # the PTQ ladder (int8 keeps: no int16x8), then compact int4 rows (which keep, so int4
    # rows, larger and slower, are not built; int8 rows of 32 values already have a row scale
    # in that mode: they would save nothing, so are not built either), then min_count 2 and
    # 2 * 4 = 8 (steps=1: one threshold after the first)
    assert [r.name for r in result.candidates] == [
        "ptq-int8",
        "ptq-dynamic",
        "ptq-float16",
        f"int4crows+{mode}",
        f"vocab2+int4crows+{mode}",
        f"vocab8+int4crows+{mode}",
    ]
    assert all(r.accepted and r.stage == "export" for r in result.candidates)
    # compact int4 rows are smaller than the mode's int8 tables; pruning the ids seen once smaller
    # still, and more at 8
    base = by_name[f"ptq-{mode}"].bytes
    assert by_name[f"int4crows+{mode}"].bytes < 0.8 * base
    assert by_name[f"vocab2+int4crows+{mode}"].bytes < 0.8 * by_name[f"int4crows+{mode}"].bytes
    assert by_name[f"vocab8+int4crows+{mode}"].bytes < by_name[f"vocab2+int4crows+{mode}"].bytes
    # the chosen one (objective size) is the smallest accepted export
    accepted = [r for r in result.candidates if r.accepted and r.path]
    assert result.chosen.bytes == min(r.bytes for r in accepted)
    assert result.chosen.candidate.min_count == 8
    assert result.ratios()["size_x"] > 8.0
    assert result.trained == 0  # neither storage nor pruning is fine-tuned
    assert set(result.skipped) == {"rows"} or not result.skipped
    assert Candidate.from_config(result.chosen.candidate.get_config()) == result.chosen.candidate


def test_a_pruned_file_takes_the_original_ids_and_shares_the_oov_row(table_search):
    """The vocab8 file runs in LiteRT on the original ids, its AUC is the one the CI was
    computed from, and two ids seen fewer than 8 times in training score alike (one OOV row)."""
    _, train, val, _, result = table_search
    chosen = result.chosen
    variant = tfcompress.load_variant(chosen.path)
    scores = next(iter(variant.predict(val[0]).values()))
    assert auc(val[1], scores) == pytest.approx(chosen.difference.variant, abs=1e-9)
    counts = np.bincount(train[0]["ids"].ravel(), minlength=VOCAB)
    rare = np.flatnonzero((counts < 8) & (np.arange(VOCAB) > 0))[:2]
    common = np.argsort(-counts)[:2]
    x = np.zeros((2, 8), "float32")
    out = lambda ids: next(  # noqa: E731
        iter(variant.predict({"ids": ids.reshape(2, 1).astype("int32"), "x": x}).values())
    )
    rare_scores, common_scores = out(rare), out(common)
    assert rare_scores[0] == pytest.approx(rare_scores[1], abs=1e-6)
    assert abs(float(np.ravel(common_scores)[0] - np.ravel(common_scores)[1])) > 1e-3


def test_a_cache_written_before_the_axis_resumes(table_search, tmp_path):
    """Result files whose candidate configs lack ``min_count``/``rows`` (written before the
    axis existed) load as the same candidates: the repeated search rebuilds nothing."""
    model, train, val, out, first = table_search
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    stripped = 0
    for path in copy.rglob("result.json"):
        data = json.loads(path.read_text())
        config = data.get("candidate", {})
        if "candidate" in data and not config.get("min_count") and config.get("rows") is None:
            config.pop("min_count", None)
            config.pop("rows", None)
            path.write_text(json.dumps(data))
            stripped += 1
    assert stripped == 4  # float and the three PTQ modes
    again = _search(model, train, val, copy)
    assert all(r.cached for r in again.candidates)
    assert [r.name for r in again.candidates] == [r.name for r in first.candidates]
    assert again.chosen.name == first.chosen.name
    old = {"shrink": 0.5, "quantization": "int8", "qat": False, "keep_float": [], "skip": []}
    assert Candidate.from_config(old) == Candidate(shrink=0.5, quantization="int8")


def test_candidates_embedding_fields_are_validated_and_named():
    c = Candidate(shrink=0.5, min_count=2, rows="int4", quantization="int8")
    assert c.name == "shrink0.50+vocab2+int4rows+int8"
    assert Candidate(rows="int4_compact", quantization="dynamic").name == "int4crows+dynamic"
    assert Candidate(rows="int8_row").name == "int8rows"
    assert Candidate(quantization="int16x8").name == "ptq-int16x8"
    assert Candidate.from_config(c.get_config()) == c
    assert c.get_config()["min_count"] == 2 and c.get_config()["rows"] == "int4"
    assert Candidate(min_count=2).name != Candidate(min_count=3).name  # distinct cache folders
    for kwargs, match in (
        (dict(min_count=-1), r"`min_count` must be an int >= 0, received -1"),
        (dict(min_count=2.0), r"`min_count` must be an int >= 0"),
        (dict(min_count=True), r"`min_count` must be an int >= 0"),
        (
            dict(rows="int3"),
            r"`rows` must be one of \(None, 'int8_row', 'int4', 'int4_compact'\), received 'int3'",
        ),
        (dict(min_count=2, quantization="int8", qat=True), r"pass qat=False"),
        (dict(quantization="int2"), r"`quantization` must be one of"),
    ):
        with pytest.raises(ValueError, match=match):
            Candidate(**kwargs)


def test_a_mode_that_fails_to_convert_is_a_failed_candidate(table_search, tmp_path, monkeypatch):
    """A model whose full int8 conversion fails: the candidate is recorded as failed (with the
    converter's message), int16x8 (PTQ int8's fallback) and QAT int8 are tried next, the search
    goes on, and a repeated call reads the failure back from the cache."""
    from tfcompress.export.converter import ConversionError
    from tfcompress.search import runner

    model, train, val, out, _ = table_search
    real = runner.export_candidate

    def export(model, candidate, path, **kwargs):
        if candidate.quantization == "int8" and not candidate.qat:
            raise ConversionError("'tfl.fully_connected' op has no int8 kernel\nmore detail")
        return real(model, candidate, path, **kwargs)

    monkeypatch.setattr(runner, "export_candidate", export)
    # the shared search's cache, less its int8 candidates: only what follows them is built
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    for folder in [p for p in tmp_path.rglob("*") if p.is_dir() and p.name.endswith("int8")]:
        shutil.rmtree(folder)
    result = _search(model, train, val, tmp_path)
    names = [r.name for r in result.candidates]
    assert names[:2] == ["ptq-int8", "ptq-int16x8"] and names[2].startswith("qat-int8")
    failed, sixteen = result.candidates[:2]
    assert failed.stage == "failed" and not failed.accepted and failed.path is None
    assert failed.difference is None
    assert (
        failed.note == "export failed: ConversionError: 'tfl.fully_connected' op has no int8 kernel"
    )
    assert "| ptq-int8 |  |  |  |  | failed |" in result.to_markdown()
    # int16x8 converts this model: int8 weights, about a third of the float file
    assert sixteen.stage == "export" and sixteen.accepted
    assert sixteen.bytes < 0.4 * result.baseline.bytes
    assert result.chosen is not None and result.chosen.candidate.min_count == 8  # went on
    again = _search(model, train, val, tmp_path)
    cached = {r.name: r for r in again.candidates}["ptq-int8"]
    assert cached.cached and cached.stage == "failed" and cached.note == failed.note
    assert json.loads(again.to_json())["candidates"][0]["difference"] is None
    assert again.trained == 0
