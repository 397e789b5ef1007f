"""compress tries the fused embedding front end (``Candidate(fuse=True)``) of the exports the
export's auto rule leaves unfused (full int8, dynamic, int4 row tables) for the latency
objectives, on a tiny functional model with three 16-wide tables, two of them masked-mean
pooled; never for size. One
latency search (no shrink: ``max_shrink=0.3``, so no fine-tune) is shared by the tests."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from search_helpers import small_compress, strategy_for

import tfcompress
from tfcompress._keras import keras
from tfcompress._metrics import auc
from tfcompress.models.layers import MaskedMean
from tfcompress.search.space import Candidate
from tfcompress.search.strategy import SearchStrategy

pytestmark = pytest.mark.slow

N_TRAIN, N_VAL, LENGTH, DIM, ITEMS = 3000, 3000, 6, 16, 1000


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL
    user = rng.integers(1, 40, size=(n, 1)).astype("int32")
    items = rng.integers(0, ITEMS, size=(n, LENGTH)).astype("int32")  # 0 = padding
    cats = rng.integers(0, 30, size=(n, LENGTH)).astype("int32")
    weight = rng.normal(size=ITEMS)
    logit = weight[items].mean(axis=1) * 3 + rng.normal(size=40)[user[:, 0]]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float32")
    x = {"user": user, "items": items, "cats": cats}
    train = ({k: v[:N_TRAIN] for k, v in x.items()}, y[:N_TRAIN])
    val = ({k: v[N_TRAIN:] for k, v in x.items()}, y[N_TRAIN:])
    return train, val


def _model(pooled: bool = True, tables: int = 3) -> keras.Model:
    """user id (flattened) + item and category histories (masked-mean pooled) -> Dense -> click.
    ``pooled=False``: the histories flattened; ``tables=1``: the user table alone."""
    keras.utils.set_random_seed(0)
    user = keras.Input((1,), dtype="int32", name="user")
    items = keras.Input((LENGTH,), dtype="int32", name="items")
    cats = keras.Input((LENGTH,), dtype="int32", name="cats")
    parts = [keras.layers.Flatten()(keras.layers.Embedding(40, DIM, name="emb_user")(user))]
    for ids, rows in ((items, ITEMS), (cats, 30))[: tables - 1]:
        looked = keras.layers.Embedding(rows, DIM, name=f"emb_{ids.name}")(ids)
        parts.append(MaskedMean()([looked, ids]) if pooled else keras.layers.Flatten()(looked))
    h = parts[0] if len(parts) == 1 else keras.layers.Concatenate()(parts)
    h = keras.layers.Dense(16, activation="relu", name="hidden")(h)
    model = keras.Model([user, items, cats], keras.layers.Dense(1, "sigmoid", name="out")(h))
    model.compile("adam", "binary_crossentropy")
    return model


def _search(model, train, val, out, **kwargs):
    settings = dict(max_loss=0.02, objective="latency_b1")
    settings.update(kwargs)
    return small_compress(model, train, val, out, **settings)


@pytest.fixture(scope="module")
def fused_search(tmp_path_factory):
    train, val = _data()
    model = _model()
    model.fit(*train, epochs=2, batch_size=128, verbose=0)
    out = tmp_path_factory.mktemp("fused")
    return model, train, val, out, _search(model, train, val, out)


def _options(path: str) -> dict:
    manifest = json.loads((Path(path).parent / "manifest.json").read_text())
    return manifest["artifacts"][Path(path).name]["options"]


def test_a_latency_search_tries_the_fused_front_end_of_int8_and_dynamic(fused_search):
    _, _, val, _, result = fused_search
    by_name = {r.name: r for r in result.candidates}
    # the PTQ ladder, then the fused variant of each export the auto rule left unfused and
    # that kept quality (float16 is fused by the auto rule already: no "+fused" twin); then the
    # table storage of the axis (in the mode of the smallest unfused PTQ file: int8 or dynamic)
    # and its fused twin
    smallest = min((by_name[f"ptq-{m}"] for m in ("int8", "dynamic")), key=lambda r: r.bytes)
    axis = smallest.candidate.quantization
    assert [r.name for r in result.candidates] == [
        "ptq-int8",
        "ptq-dynamic",
        "ptq-float16",
        "ptq-int8+fused",
        "ptq-dynamic+fused",
        f"int4crows+{axis}",
        f"int4crows+{axis}+fused",
    ]
    assert all(r.accepted and r.stage == "export" for r in result.candidates)
    assert "fuse" not in result.skipped
    assert _options(result.baseline.path)["fused_embeddings"]["auto"] is True  # float32: auto
    assert _options(by_name["ptq-float16"].path)["fused_embeddings"] is not None
    for mode in ("int8", "dynamic"):
        plain, fused = by_name[f"ptq-{mode}"], by_name[f"ptq-{mode}+fused"]
        assert _options(plain.path)["fused_embeddings"] is None
        record = _options(fused.path)["fused_embeddings"]
        assert sorted(record["tables"]) == ["emb_cats", "emb_items", "emb_user"]
        assert record["auto"] is False
        assert fused.candidate == Candidate(quantization=mode, fuse=True)
        # a different file (one gather, a sum for the pooling), computing nearly the same
        plain_bytes, fused_bytes = Path(plain.path).read_bytes(), Path(fused.path).read_bytes()
        assert plain_bytes != fused_bytes
        outputs = [
            np.ravel(next(iter(tfcompress.load_variant(r.path).predict(val[0]).values())))
            for r in (plain, fused)
        ]
        assert float(np.max(np.abs(outputs[0] - outputs[1]))) < 0.05
        # the AUC the paired CI was computed from is the file's own, in LiteRT
        assert auc(val[1], outputs[1]) == pytest.approx(fused.difference.variant, abs=1e-9)
        assert abs(fused.difference.delta - plain.difference.delta) < 0.01
    # the fused table of the axis' candidate is stored as its storage says, like the tables
    rows = _options(by_name[f"int4crows+{axis}+fused"].path)
    assert sorted(rows["fused_embeddings"]["tables"]) == ["emb_cats", "emb_items", "emb_user"]
    assert "int4" in rows["embedding_tables"]["fused_embedding"]
    assert "fused_embedding" not in _options(by_name[f"int4crows+{axis}"].path)["embedding_tables"]
    # judged and reported like every candidate
    text = result.to_markdown()
    assert "ptq-int8+fused" in text and "ptq-dynamic+fused" in text
    assert {"ptq-int8+fused", "ptq-dynamic+fused"} <= set(result.report.names)
    data = json.loads(result.to_json())
    fused_configs = [c["candidate"] for c in data["candidates"] if c["name"].endswith("+fused")]
    assert [c["fuse"] for c in fused_configs] == [True, True, True]


def test_a_size_search_from_an_old_cache_does_not_fuse(fused_search, tmp_path):
    """Result files written before fused candidates (no "fuse" key) load as the same
    candidates; a size search from that cache rebuilds nothing and tries no fused file."""
    model, train, val, out, first = fused_search
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    stripped = 0
    for path in copy.rglob("result.json"):
        data = json.loads(path.read_text())
        if "candidate" in data and data["candidate"].pop("fuse", True) is None:
            path.write_text(json.dumps(data))
            stripped += 1
    assert stripped == 5  # float, the three PTQ modes and the int4 rows
    with pytest.MonkeyPatch.context() as patch:
        # a size search also tries table layouts (fine-tuned): tests/search/test_tables_axis.py
        patch.setattr(SearchStrategy, "tables_axis", lambda self, base, rows: None)
        again = _search(model, train, val, copy, objective="size")
    assert all(r.cached for r in again.candidates)
    unfused = [r.name for r in first.candidates if r.candidate.fuse is None]
    assert [r.name for r in again.candidates] == unfused
    assert len(unfused) == 4 and not any(r.candidate.fuse for r in again.candidates)
    assert "fuse" not in again.skipped


def _strategy(model, tmp_path, objective="latency"):
    train, val = _data()
    return strategy_for(model, train, val, tmp_path, objective=objective)


@pytest.mark.parametrize(
    "pooled, tables, reason",
    [
        (True, 1, r"has 0 fusable Embedding tables .*'emb_user' \(Embedding\)"),
        (False, 3, r"no MaskedMean pooling among the fusable tables"),
    ],
)
def test_a_model_fusion_does_not_speed_up_skips_it_with_the_reason(
    tmp_path, pooled, tables, reason
):
    search, messages = _strategy(_model(pooled, tables), tmp_path)
    search.fused(Candidate())  # nothing exported yet: it only decides
    assert search.results == []
    assert search.skipped["fuse"] and re.search(reason, search.skipped["fuse"])
    assert any("fuse axis skipped" in m for m in messages)
    # a size search neither tries it nor records a reason
    sized, _ = _strategy(_model(pooled, tables), tmp_path, objective="size")
    sized.fused(Candidate())
    assert "fuse" not in sized.skipped


def test_candidates_fuse_field_is_validated_and_named():
    assert Candidate(quantization="int8", fuse=True).name == "ptq-int8+fused"
    assert Candidate(shrink=0.5, rows="int8_row", fuse=True).name == "shrink0.50+int8rows+fused"
    assert Candidate(quantization="dynamic", fuse=False).name == "ptq-dynamic+unfused"
    assert Candidate(quantization="int8").name == "ptq-int8"  # None: the auto rule, as before
    c = Candidate(shrink=0.25, quantization="int8", fuse=True)
    assert c.get_config()["fuse"] is True and Candidate.from_config(c.get_config()) == c
    old = {"shrink": 0.25, "quantization": "int8", "qat": False, "keep_float": [], "skip": []}
    assert Candidate.from_config(old).fuse is None
    with pytest.raises(TypeError, match=r"`fuse` must be None \(the export's auto rule\), True"):
        Candidate(quantization="int8", fuse="yes")
    with pytest.raises(TypeError, match=r"received 1"):
        Candidate(fuse=1)
    with pytest.raises(ValueError, match=r"`fuse=True` with `qat=True`.*pass fuse=None"):
        Candidate(quantization="int8", qat=True, fuse=True)
    with pytest.raises(ValueError, match=r"`fuse=True` with `min_count=2`"):
        Candidate(min_count=2, fuse=True)
