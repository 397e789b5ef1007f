import numpy as np
import pytest

from tfcompress._keras import tf
from tfcompress.data import Feature, Schema


def _schema() -> Schema:
    return Schema(
        (
            Feature("item_id", "categorical", vocab_size=101, group="item"),
            Feature("hist_item_ids", "sequence", vocab_size=101, length=8, vocab_name="item_id"),
            Feature("price", "numeric", length=2),
        ),
        label="click",
    )


def test_feature_shapes_dtypes_and_specs():
    s = _schema()
    assert s["item_id"].shape == (1,)
    assert s["item_id"].dtype == tf.int32
    assert s["hist_item_ids"].shape == (8,)
    assert s["price"].dtype == tf.float32
    spec = s.element_spec(batch_size=4)
    assert spec["hist_item_ids"] == tf.TensorSpec((4, 8), tf.int32, name="hist_item_ids")
    assert s.label_spec() == tf.TensorSpec((None, 1), tf.float32, name="click")
    assert s["item_id"].vocab_name == "item_id"
    assert s.vocab_sizes() == {"item_id": 101}
    assert [f.name for f in s.of_kind("sequence")] == ["hist_item_ids"]
    assert len(s) == 3 and s.names == ["item_id", "hist_item_ids", "price"]


def test_multiclass_label_spec():
    s = Schema((Feature("a", "categorical", vocab_size=3),), "y", task="multiclass", num_classes=5)
    assert s.label_spec(2) == tf.TensorSpec((2,), tf.int32, name="y")


def test_schema_json_round_trip():
    s = _schema()
    again = Schema.from_json(s.to_json())
    assert again == s
    assert again["hist_item_ids"].vocab_name == "item_id"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "a", "kind": "text"}, "kind must be one of"),
        ({"name": "a", "kind": "categorical"}, "needs vocab_size >= 2"),
        ({"name": "a", "kind": "numeric", "vocab_size": 4}, "vocab_size must be None"),
        ({"name": "a", "kind": "sequence", "vocab_size": 4, "length": 0}, "length must be >= 1"),
        ({"name": "a", "kind": "categorical", "vocab_size": 4, "length": 3}, "kind='sequence'"),
        ({"name": "a b", "kind": "numeric"}, "identifier-like"),
    ],
)
def test_bad_feature_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Feature(**kwargs)


def test_bad_schema_raises():
    a = Feature("a", "categorical", vocab_size=3)
    with pytest.raises(ValueError, match="at least one feature"):
        Schema((), "y")
    with pytest.raises(ValueError, match="duplicate feature names"):
        Schema((a, a), "y")
    with pytest.raises(ValueError, match="also a feature name"):
        Schema((a,), "a")
    with pytest.raises(ValueError, match="task must be one of"):
        Schema((a,), "y", task="regression-ish")
    with pytest.raises(ValueError, match="needs num_classes"):
        Schema((a,), "y", task="multiclass")
    with pytest.raises(TypeError, match="Feature objects"):
        Schema(("a",), "y")
    with pytest.raises(ValueError, match="disagree on vocab_size"):
        Schema((a, Feature("b", "sequence", vocab_size=4, length=2, vocab_name="a")), "y")
    with pytest.raises(KeyError, match="No feature 'zzz'"):
        _schema()["zzz"]
    with pytest.raises(ValueError, match="kind must be one of"):
        _schema().of_kind("dense")


def test_summary_of_simulated_tasks_counts_positives_padding_and_classes():
    from tfcompress import data

    task = data.load_task("ctr", n_samples=1_000, seed=0)
    summary = task.summary()
    arrays = task.info["arrays"]
    splits = ("train", "validation", "test")
    assert [r["column"] for r in summary.rows] == task.schema.names
    positives = {s: int((arrays[s][1] > 0.5).sum()) for s in splits}
    rows = {s: len(arrays[s][1]) for s in splits}
    assert summary.label["positives"] == sum(positives.values())
    assert summary.label["rows"] == sum(rows.values()) == task.info["rows"]["total"]
    assert summary.label["rate"] == pytest.approx(sum(positives.values()) / sum(rows.values()))
    assert summary.label["splits"]["test"] == {
        "rows": rows["test"],
        "positives": positives["test"],
        "rate": pytest.approx(positives["test"] / rows["test"]),
    }
    by_name = {r["column"]: r for r in summary.rows}
    hist = np.concatenate([arrays[s][0]["hist_item_ids"] for s in splits])
    assert by_name["hist_item_ids"]["missing"] == pytest.approx((hist == 0).all(axis=1).mean())
    assert by_name["hist_item_ids"]["values"] == task.schema["hist_item_ids"].vocab_size - 1
    text = str(summary)
    assert text.splitlines()[1].split() == [
        "column",
        "kind",
        "encoding",
        "vocabulary",
        "/",
        "buckets",
        "missing",
        "features",
        "why",
    ]
    assert f"{sum(positives.values()):,} positives in {sum(rows.values()):,} rows" in text
    assert summary.to_markdown().count("\n| ") == len(task.schema.names) + 1
    retrieval = data.load_task("retrieval", n_samples=600, seed=0).summary()
    assert retrieval.label["positives"] is None and retrieval.label["classes"] > 2
    assert f"{retrieval.label['classes']:,} classes" in str(retrieval)
