"""compress's table-layout axis: mixed-dimension and quotient-remainder tables
(``Candidate(tables=...)``) of the best kept float model, in the storage the rows axis kept,
fine-tuned distilling from the teacher, built only where their estimated file is smaller than
the best kept export. The tiny model: one Zipf id table of 1000 rows x 32 values (+ 8 dense
features), as in test_embedding_axis."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
from search_helpers import small_compress, strategy_for

import tfcompress
from tfcompress._keras import keras
from tfcompress._metrics import auc
from tfcompress.callbacks import read_hparams
from tfcompress.embeddings.compositional import QREmbedding
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding
from tfcompress.search.build import mixed_budget, table_layout
from tfcompress.search.space import Candidate
from tfcompress.search.strategy import SearchStrategy

N_TRAIN, N_VAL, VOCAB, DIM = 4000, 4000, 1000, 32


# ----------------------------------------------------------------------------- the field


def test_candidates_tables_field_is_validated_and_named():
    qr = Candidate(shrink=0.5, tables="qr", rows="int4_compact", quantization="int8")
    assert qr.name == "shrink0.50+qr+int4crows+int8"
    assert Candidate(tables="mixed", quantization="dynamic").name == "mixed+dynamic"
    assert Candidate(tables="qr").name == "qr"
    assert qr.get_config()["tables"] == "qr" and Candidate.from_config(qr.get_config()) == qr
    assert qr.trains and Candidate(tables="mixed").trains and not Candidate().trains
    for kwargs, match in (
        (dict(tables="hash"), r"`tables` must be one of \(None, 'mixed', 'qr'\), received 'hash'"),
        (dict(tables=1), r"`tables` must be one of .* received 1"),
        (dict(tables="qr", min_count=2), r"`tables='qr'` with `min_count=2`.*pass tables=None"),
        (dict(tables="mixed", quantization="int8", qat=True), r"with `qat=True`"),
        (dict(tables="qr", fuse=True), r"with `fuse=True`"),
    ):
        with pytest.raises(ValueError, match=match):
            Candidate(**kwargs)
    # fuse=False (never fused) reads nothing: allowed
    assert Candidate(tables="qr", fuse=False).name == "qr+unfused"


def test_a_candidate_without_a_layout_keeps_its_cache_key():
    """Name (the cache folder) and config (result.json) of a candidate without ``tables``, pinned
    from the code before the field existed: old caches load as the same candidates."""
    c = Candidate(
        shrink=0.5, embeddings=0.75, quantization="int8", rows="int4_compact", skip=("cross_0",)
    )
    assert c.name == "shrink0.50+emb0.75+int4crows+int8~e8218c"
    config = json.dumps(c.get_config(), sort_keys=True).encode()
    assert "tables" not in c.get_config()
    assert hashlib.sha256(config).hexdigest() == (
        "815462fcc1f96d84a6b8f8c5dcd66c749748590047f4485b76b69f05897bd18b"
    )
    assert Candidate.from_config(json.loads(config)) == c


# ----------------------------------------------------------------------------- the build


def _table_model(seed: int = 0):
    """ids (Zipf over 999 ids, an Embedding of 32 dims) + a 20-id category (8 dims: under 64
    rows, left alone) + 8 dense features -> Dense(32) -> click."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL
    p = 1.0 / np.arange(1, VOCAB) ** 1.1
    ids = (1 + rng.choice(VOCAB - 1, size=(n, 1), p=p / p.sum())).astype("int32")
    x = rng.normal(size=(n, 8)).astype("float32")
    cat = rng.integers(1, 20, size=(n, 1)).astype("int32")
    logit = 1.5 * rng.normal(size=VOCAB)[ids[:, 0]] + x @ rng.normal(size=8) * 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("float32")
    keras.utils.set_random_seed(0)
    id_in, x_in = keras.Input((1,), dtype="int32", name="ids"), keras.Input((8,), name="x")
    cat_in = keras.Input((1,), dtype="int32", name="cat")
    table = keras.layers.Flatten()(keras.layers.Embedding(VOCAB, DIM, name="table")(id_in))
    small = keras.layers.Flatten()(keras.layers.Embedding(20, 8, name="small")(cat_in))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(
        keras.layers.Concatenate()([table, small, x_in])
    )
    model = keras.Model(
        [id_in, cat_in, x_in], keras.layers.Dense(1, activation="sigmoid", name="out")(h)
    )
    model.compile("adam", "binary_crossentropy")
    features = {"ids": ids, "cat": cat, "x": x}
    train = ({k: v[:N_TRAIN] for k, v in features.items()}, y[:N_TRAIN])
    val = ({k: v[N_TRAIN:] for k, v in features.items()}, y[N_TRAIN:])
    model.fit(*train, epochs=3, batch_size=128, verbose=0)
    return model, train, val


def test_table_layout_replaces_the_large_tables_only():
    """QR and mixed layouts of the 1000-row table; the 20-row one is left alone; the mixed
    budget is the int4_compact fraction of float (17 + 1024 / 1000 bytes of 128)."""
    model, train, _ = _table_model()
    counts = {
        "table": np.bincount(train[0]["ids"].ravel(), minlength=VOCAB),
        "small": np.bincount(train[0]["cat"].ravel(), minlength=20),
    }
    mixed = Candidate(tables="mixed", rows="int4_compact", quantization="int8")
    assert mixed_budget(mixed, VOCAB, DIM) == pytest.approx((17 + 1024 / VOCAB) / 128)
    qr_model = table_layout(model, Candidate(tables="qr"), counts)
    mixed_model = table_layout(model, mixed, counts)
    assert isinstance(qr_model.get_layer("table"), QREmbedding)
    assert isinstance(mixed_model.get_layer("table"), MixedDimEmbedding)
    for built in (qr_model, mixed_model):
        assert type(built.get_layer("small")) is keras.layers.Embedding
    layer = mixed_model.get_layer("table")
    assert layer.block_dims[0] == DIM and layer.block_dims[-1] < DIM // 4  # rare ids narrow
    # the layouts start from the trained table: scores stay close before any fine-tune
    x = {k: v[:512] for k, v in train[0].items()}
    reference = model.predict(x, verbose=0)
    for built in (qr_model, mixed_model):
        assert np.abs(built.predict(x, verbose=0) - reference).mean() < 0.1
    with pytest.raises(ValueError, match=r"no top-level Embedding table of >= 64 rows"):
        table_layout(model, Candidate(tables="qr"), {"small": counts["small"]})
    # a table no layout changes (width 1: no narrower width): refused, not fine-tuned as is
    ids = keras.Input((1,), dtype="int32", name="ids")
    narrow = keras.Model(ids, keras.layers.Embedding(VOCAB, 1, name="table")(ids))
    with pytest.raises(ValueError, match=r"no table of model .* changes in layout 'mixed'"):
        table_layout(narrow, mixed, {"table": counts["table"]})


# ----------------------------------------------------------------------------- the search


def _search(model, train, val, out, **kwargs):
    return small_compress(model, train, val, out, **kwargs)


@pytest.fixture(scope="module")
def layout_searches(tmp_path_factory):
    """Two size searches on one cache: without rare-id pruning (the layouts are the smallest
    candidates, so they are built), then with it (the pruned file is smaller than the mixed
    layout's estimate: skipped)."""
    model, train, val = _table_model()
    out = tmp_path_factory.mktemp("tables_axis")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SearchStrategy, "_vocabulary_axis", lambda self, base, rows: None)
        plain = _search(model, train, val, out, log_dir=out / "tb")
    pruned = _search(model, train, val, out)
    return model, val, out, plain, pruned


@pytest.mark.slow
def test_the_layouts_are_built_fine_tuned_and_judged(layout_searches):
    _, val, out, result, _ = layout_searches
    by_name = {r.name: r for r in result.candidates}
    mode = min(
        (by_name[f"ptq-{m}"] for m in ("int8", "dynamic")), key=lambda r: r.bytes
    ).candidate.quantization
    rows = by_name[f"int4crows+{mode}"]
    qr, mixed = by_name[f"qr+int4crows+{mode}"], by_name[f"mixed+int4crows+{mode}"]
    assert [r.name for r in result.candidates][-2:] == [qr.name, mixed.name]
    assert result.trained == 2  # one distilled fine-tune per layout
    for layout, cls in ((qr, "QREmbedding"), (mixed, "MixedDimEmbedding")):
        assert layout.stage == "export" and layout.difference is not None
        assert layout.bytes < rows.bytes  # smaller than the int4_compact file it starts from
        manifest = json.loads((out / layout.path).parent.joinpath("manifest.json").read_text())
        options = manifest["artifacts"]["model.tflite"]["options"]
        # the QR tables (32 rows each) are left to the converter's own int8, the mixed blocks
        # of >= 64 rows are int4 rows; the 20-row table is no layout's
        stored = {**options["embedding_tables"], **options.get("embedding_tables_left", {})}
        assert set(stored) == {"table"} and stored["table"].startswith(cls)
        # judged on the LiteRT file: its AUC is the one the paired CI was computed from
        variant = tfcompress.load_variant(layout.path)
        scores = next(iter(variant.predict(val[0]).values()))
        assert auc(val[1], scores) == pytest.approx(layout.difference.variant, abs=1e-9)
    assert qr.bytes < 0.5 * rows.bytes and mixed.bytes < 0.97 * rows.bytes
    # QR's 32 x 32 quotient and remainder tables cannot tell the rare ids' logits apart: lost
    assert not qr.accepted and qr.difference.high < -0.005
    assert mixed.accepted and result.chosen.name == mixed.name
    assert not result.skipped
    sessions = read_hparams(out / "tb")  # TensorBoard's own data provider
    assert sessions[mixed.name]["tables"] == "mixed" and sessions["ptq-int8"]["tables"] == "plain"


@pytest.mark.slow
def test_a_layout_that_cannot_beat_the_best_kept_export_is_skipped(layout_searches):
    _, _, _, plain, result = layout_searches
    names = [r.name for r in result.candidates]
    mode = plain.chosen.candidate.quantization
    assert f"vocab2+int4crows+{mode}" in names and f"mixed+int4crows+{mode}" not in names
    best = {r.name: r for r in result.candidates}[f"vocab2+int4crows+{mode}"]
    assert best.accepted and result.chosen.name == best.name
    assert re.fullmatch(
        rf"mixed\+int4crows\+{mode}: estimated [\d,]+ bytes, not smaller than the best kept "
        rf"vocab2\+int4crows\+{mode} \({best.bytes:,} bytes\)",
        result.skipped["mixed"],
    )
    assert result.trained == 0  # the QR candidate (smaller, tried) came from the cache
    assert {r.name for r in result.candidates if r.candidate.tables} == {f"qr+int4crows+{mode}"}


@pytest.mark.parametrize(
    "settings, part, reason",
    [
        (
            dict(objective="latency"),
            "tables",
            r"objective 'latency': .* tried for objective 'size'",
        ),
        (dict(objective="size", runtime="saved_model"), "tables", r"runtime 'saved_model'"),
        # nothing exported yet: no kept export a layout could be smaller than
        (dict(objective="size"), "qr", r"^qr: no kept export to be smaller than"),
    ],
)
def test_the_axis_says_why_it_is_not_tried(tmp_path, settings, part, reason):
    model, train, val = _table_model()
    search, messages = strategy_for(model, train, val, tmp_path, **settings)
    search.tables_axis(Candidate(), (None,))
    assert re.search(reason, search.skipped[part]) and not search.results
    assert any(f"{part} axis skipped" in m for m in messages)
