"""Tests of per-layer shrink ratios: ``shrink(model, {layer name or pattern: ratio, ...})``."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress import data, models
from tfcompress._keras import keras
from tfcompress.pruning.shrinking import shrink


@pytest.fixture(scope="module")
def dcn():
    task = data.load_task("ctr", n_samples=2000, seed=0)
    return models.build("dcn", task.schema, size="student")


def _embeddings(model):
    return [la for la in model.layers if isinstance(la, keras.layers.Embedding)]


def _add_model() -> keras.Model:
    x = keras.Input((6,), name="x")
    a = keras.layers.Dense(8, name="a")(x)
    b = keras.layers.Dense(8, name="b")(x)
    c = keras.layers.Dense(8, name="c")(x)
    h = keras.layers.Add(name="add")([a, b])
    h = keras.layers.Concatenate(name="cat")([h, c])
    return keras.Model(x, keras.layers.Dense(1, name="out")(h), name="tied")


def test_dcn_embeddings_and_dense_at_their_own_ratios(dcn):
    small = shrink(dcn, {"emb_*": 0.75, "mlp_.*": 0.25})  # a glob and a regex
    embeddings = _embeddings(small)
    assert len(embeddings) == 9
    assert {la.name: la.output_dim for la in embeddings} == {la.name: 2 for la in embeddings}
    assert small.get_layer("mlp_0").units == 48  # 64 * (1 - 0.25)
    assert small.get_layer("mlp_1").units == 24  # 32 * (1 - 0.25)
    assert small.get_layer("logits").units == 1
    # The Cross input: 11 embedding outputs (2 pooled sequences share tables) of 8 -> 2, plus
    # 2 numeric features: 90 -> 24 channels.
    assert small.get_layer("mlp_0").kernel.shape == (24, 48)
    report = small.compression_report
    assert report["cross_0"].detail == "channels 90 -> 24"
    assert report["emb_user_id"].detail == "output_dim 8 -> 2"
    assert report["mlp_0"].detail.startswith("units 64 -> 48")
    assert report.settings["ratio"] == {"emb_*": 0.75, "mlp_.*": 0.25, "default": 0.0}
    ratios = report.settings["ratios"]
    assert ratios["emb_item_id"] == 0.75 and ratios["mlp_1"] == 0.25
    assert report.settings["tied_groups"] == []
    out = small(small.input)  # the rebuilt graph runs
    assert out.shape[-1] == 1


def test_exact_name_beats_pattern_and_unmatched_layers_are_kept(dcn):
    small = shrink(dcn, {"emb_*": 0.75, "emb_user_id": 0.5}, strict=True)
    assert small.get_layer("emb_user_id").output_dim == 4
    assert small.get_layer("emb_item_id").output_dim == 2
    assert small.get_layer("mlp_0").units == 64  # no key and no default: ratio 0
    report = small.compression_report
    assert report.settings["ratios"]["mlp_0"] == 0.0
    assert not report["mlp_0"].applied
    assert report["mlp_0"].reason == "nothing to remove: ratio 0 keeps width 64"


def test_default_key_and_float_form_give_the_same_model(dcn):
    plain = shrink(dcn, 0.5)
    for spec in ({"default": 0.5}, {"*": 0.5}):
        mapped = shrink(dcn, spec)
        assert [la.get_config() for la in mapped.layers] == [la.get_config() for la in plain.layers]
        for got, want in zip(mapped.get_weights(), plain.get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
        assert mapped.compression_report.decisions == plain.compression_report.decisions
    assert plain.compression_report.settings["ratio"] == 0.5
    assert set(plain.compression_report.settings["ratios"].values()) == {0.5}


def test_tied_group_takes_the_smallest_ratio_and_reports_it():
    model = _add_model()
    small = shrink(model, {"a": 0.75, "b": 0.5, "c": 0.75})
    assert small.get_layer("a").units == 4  # 0.5, not 0.75: a and b are tied by Add
    assert small.get_layer("b").units == 4
    assert small.get_layer("c").units == 2  # not tied: its own 0.75
    report = small.compression_report
    note = "tied group {a, b}: ratios 0.75/0.5 -> 0.5"
    assert report.settings["tied_groups"] == [note]
    assert report.settings["ratios"] == {"a": 0.5, "b": 0.5, "c": 0.75, "out": 0.0}
    assert report["a"].reason == f"shrunk together with b; {note}"
    assert note in report["b"].reason
    assert "tied group" not in report["c"].reason
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    assert small(x).shape == (4, 1)


def test_tied_group_with_equal_ratios_has_no_note():
    small = shrink(_add_model(), {"[ab]": 0.5, "default": 0.25})
    assert small.get_layer("a").units == 4 and small.get_layer("c").units == 6
    assert small.compression_report.settings["tied_groups"] == []


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        (
            {"nope": 0.5},
            ValueError,
            r"`ratio` key 'nope' matches no layer of model 'tied'.*"
            r"Layers: a, b, add, c, cat, out\.",
        ),
        ({"outt": 0.5}, ValueError, r"key 'outt' matches no layer.*Close matches: out\."),
        (
            {"a": 1.0},
            ValueError,
            r"`ratio\['a'\]` must be a finite float in \[0, 1\), "
            r"received 1\.0",
        ),
        ({"b": -0.1}, ValueError, r"`ratio\['b'\]` must be a finite float in \[0, 1\)"),
        ({"default": 1.5}, ValueError, r"`ratio\['default'\]` must be a finite float"),
        ({"a": "0.5"}, TypeError, r"`ratio\['a'\]` must be a float in \[0, 1\)"),
        ({"a": True}, TypeError, r"`ratio\['a'\]` must be a float"),
        ({3: 0.5}, TypeError, r"`ratio` keys must be layer names or patterns.*received 3"),
        ({}, ValueError, r"`ratio` is an empty mapping"),
        ({"default": 0.5, "*": 0.2}, ValueError, r"both 'default' and '\*'"),
        (
            {"[ab]": 0.5, "a*": 0.2},
            ValueError,
            r"layer 'a' matches the `ratio` keys '\[ab\]' "
            r"\(0\.5\) and 'a\*' \(0\.2\)",
        ),
    ],
)
def test_bad_keys_and_values(spec, error, match):
    with pytest.raises(error, match=match):
        shrink(_add_model(), spec)


def test_bad_type_names_the_mapping_form():
    with pytest.raises(TypeError, match=r"a float in \(0, 1\).*or a mapping \{layer name"):
        shrink(_add_model(), [0.5])
