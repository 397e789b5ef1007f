"""Tests of the file loaders: tfcompress.data.csv_loader, .libfm and .movielens."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from tfcompress._keras import keras
from tfcompress.data import load_csv, load_libfm, load_movielens
from tfcompress.data.schema import TaskData

# --------------------------------------------------------------------------- helpers

COLORS = ["red"] * 10 + ["blue"] * 6 + ["green"] * 3 + ["black"]  # 20 rows, known frequencies
BRANDS = ["acme", "zeta", "ohm", "ikea", "lux"]


def _rows(n: int = 20) -> list[dict[str, str]]:
    rng = np.random.default_rng(3)
    rows = []
    for k in range(n):
        hist = "|".join(f"i{t}" for t in rng.integers(0, 6, size=k % 5))
        rows.append(
            {
                "click": str(k % 2),
                "price": f"{1.5 + 2 * k:.2f}",
                "qty": str(int(rng.integers(1, 9))),
                "color": COLORS[k % len(COLORS)],
                "brand": BRANDS[k % len(BRANDS)],
                "hist": hist,
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",") -> Path:
    header = list(rows[0])
    lines = [delimiter.join(header)] + [delimiter.join(r[h] for h in header) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _check_specs(task: TaskData) -> None:
    """Every dataset's element spec equals the schema's, for features and label."""
    expected = task.schema.element_spec()
    label_spec = task.schema.label_spec()
    for ds in (task.train, task.validation, task.test):
        features, label = ds.element_spec
        assert set(features) == set(expected)
        for name, spec in expected.items():
            assert features[name].shape.as_list() == list(spec.shape), name
            assert features[name].dtype == spec.dtype, name
        assert label.shape.as_list() == list(label_spec.shape)
        assert label.dtype == label_spec.dtype


def _all(task: TaskData, part: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Concatenate one split's batches back into numpy arrays."""
    feats: dict[str, list[np.ndarray]] = {}
    labels = []
    for x, y in getattr(task, part):
        for k, v in x.items():
            feats.setdefault(k, []).append(v.numpy())
        labels.append(y.numpy())
    return {k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(labels)


# --------------------------------------------------------------------------- CSV: good files


def test_load_csv_explicit_columns_values_vocab_and_specs(tmp_path):
    path = _write_csv(tmp_path / "shop.csv", _rows(20))
    task = load_csv(
        path,
        label="click",
        numeric=["price"],
        categorical=["color"],
        sequence=["hist"],
        hash_buckets={"brand": 7},
        drop=["qty"],
        split=(1.0, 0.0, 0.0),
        sequence_length=3,
        batch_size=8,
    )
    assert isinstance(task, TaskData)
    assert task.schema.names == ["price", "color", "brand", "hist"]
    assert task.schema.task == "binary" and task.schema.label == "click"
    assert task.info["ignored_columns"] == ["qty"]
    assert task.info["rows"] == {"train": 20, "validation": 0, "test": 0, "total": 20}
    # ids by descending train frequency, id 0 reserved
    assert task.info["vocabularies"]["color"] == {"red": 1, "blue": 2, "green": 3, "black": 4}
    assert task.schema["color"].vocab_size == 5
    assert task.schema["brand"].vocab_size == 8
    assert task.schema["hist"].shape == (3,)
    _check_specs(task)
    x, y = _all(task, "train")
    assert x["price"].shape == (20, 1) and x["hist"].shape == (20, 3) and y.shape == (20, 1)
    assert sorted(np.unique(y).tolist()) == [0.0, 1.0] and y.sum() == 10
    assert np.bincount(x["color"][:, 0], minlength=5).tolist() == [0, 10, 6, 3, 1]
    expected_brand = {b: zlib.crc32(b.encode()) % 7 + 1 for b in BRANDS}
    arrays_x, arrays_y = task.info["arrays"]["train"]
    assert arrays_x["brand"].dtype == np.int32
    raw_prices = np.array([float(r["price"]) for r in _rows(20)])
    stats = task.schema.metadata["numeric_stats"]["price"]
    assert stats["mean"] == pytest.approx(raw_prices.mean())
    assert stats["std"] == pytest.approx(raw_prices.std())
    # map arrays back to file rows through the (unique) price
    for k in range(20):
        raw = arrays_x["price"][k, 0] * stats["std"] + stats["mean"]
        row = _rows(20)[int(np.argmin(np.abs(raw_prices - raw)))]
        assert arrays_x["brand"][k, 0] == expected_brand[row["brand"]]
        assert arrays_y[k, 0] == float(row["click"])
        assert arrays_x["color"][k, 0] == task.info["vocabularies"]["color"][row["color"]]
        tokens = [t for t in row["hist"].split("|") if t][-3:]
        vocab = task.info["vocabularies"]["hist"]
        want = [0] * (3 - len(tokens)) + [vocab[t] for t in tokens]
        assert arrays_x["hist"][k].tolist() == want


def test_load_csv_infers_kinds_and_standardises_with_train_statistics(tmp_path):
    rows = _rows(40)
    path = _write_csv(tmp_path / "infer.csv", rows)
    task = load_csv(path, label="click", sequence=["hist"], seed=5)
    kinds = {f.name: f.kind for f in task.schema}
    assert kinds == {
        "price": "numeric",
        "qty": "numeric",
        "color": "categorical",
        "brand": "categorical",
        "hist": "sequence",
    }
    rows_count = task.info["rows"]
    assert rows_count == {"train": 32, "validation": 4, "test": 4, "total": 40}
    train_x, _ = task.info["arrays"]["train"]
    # train values standardised: mean 0, std 1
    assert float(train_x["price"].mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(train_x["price"].std()) == pytest.approx(1.0, abs=1e-5)
    # validation / test use TRAIN statistics: undoing them gives back the raw file values
    stats = task.info["numeric_stats"]["price"]
    restored = np.concatenate(
        [task.info["arrays"][s][0]["price"][:, 0] for s in ("train", "validation", "test")]
    )
    restored = restored * stats["std"] + stats["mean"]
    raw = sorted(float(r["price"]) for r in rows)
    np.testing.assert_allclose(sorted(restored), raw, rtol=1e-5)
    val_x, _ = task.info["arrays"]["validation"]
    assert abs(float(val_x["price"].mean())) > 1e-3  # not re-standardised on its own
    _check_specs(task)


def test_load_csv_split_is_seeded_and_deterministic(tmp_path):
    path = _write_csv(tmp_path / "s.csv", _rows(30))
    a = load_csv(path, label="click", seed=1)
    b = load_csv(path, label="click", seed=1)
    c = load_csv(path, label="click", seed=2)
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(
            a.info["arrays"][part][0]["price"], b.info["arrays"][part][0]["price"]
        )
    assert not np.array_equal(
        a.info["arrays"]["test"][0]["price"], c.info["arrays"]["test"][0]["price"]
    )
    # the shuffled training dataset is the same for the same seed, and holds every train row
    xa, _ = _all(a, "train")
    xb, _ = _all(b, "train")
    np.testing.assert_array_equal(xa["price"], xb["price"])
    np.testing.assert_allclose(
        np.sort(xa["price"][:, 0]), np.sort(a.info["arrays"]["train"][0]["price"][:, 0])
    )
    n = sum(a.info["rows"][p] for p in ("train", "validation", "test"))
    assert n == 30 == a.info["rows"]["total"]


def test_load_csv_hashing_is_stable_across_calls_and_unseen_values(tmp_path):
    rows = _rows(20)
    path = _write_csv(tmp_path / "h.csv", rows)
    kwargs = dict(label="click", categorical=["color"], hash_buckets={"brand": 3, "color": 50})
    first = load_csv(path, **kwargs, seed=0)
    second = load_csv(path, **kwargs, seed=9)
    assert first.info["hash_buckets"] == {"brand": 3, "color": 50}
    assert "color" not in first.info["vocabularies"] and "brand" not in first.info["vocabularies"]
    for task in (first, second):
        for part in ("train", "validation", "test"):
            x, _ = task.info["arrays"][part]
            assert x["brand"].min() >= 1 and x["brand"].max() <= 3
    # the same value gets the same id in every load, whatever the split
    colors = []
    for task in (first, second):
        parts = ("train", "validation", "test")
        x = np.concatenate([task.info["arrays"][p][0]["color"][:, 0] for p in parts])
        assert set(x.tolist()) == {zlib.crc32(c.encode()) % 50 + 1 for c in set(COLORS)}
        colors.append(np.sort(x))
    np.testing.assert_array_equal(colors[0], colors[1])
    assert np.bincount(colors[0])[zlib.crc32(b"red") % 50 + 1] == 10


def test_load_csv_max_vocab_and_oov(tmp_path):
    path = _write_csv(tmp_path / "v.csv", _rows(20))
    task = load_csv(path, label="click", categorical=["color"], max_vocab=2, split=(1.0, 0.0, 0.0))
    assert task.info["vocabularies"]["color"] == {"red": 1, "blue": 2}
    assert task.schema["color"].vocab_size == 3
    x, _ = task.info["arrays"]["train"]
    assert np.bincount(x["color"][:, 0], minlength=3).tolist() == [4, 10, 6]  # green/black -> 0
    per_col = load_csv(path, label="click", categorical=["color"], max_vocab={"color": 1})
    assert len(per_col.info["vocabularies"]["color"]) == 1


def test_load_csv_values_unseen_in_train_map_to_zero(tmp_path):
    rows = [{"y": str(k % 2), "city": f"c{k}"} for k in range(10)]
    path = _write_csv(tmp_path / "oov.csv", rows)
    task = load_csv(path, label="y", categorical=["city"], split=(0.6, 0.2, 0.2))
    assert len(task.info["vocabularies"]["city"]) == 6
    for part in ("validation", "test"):
        x, _ = task.info["arrays"][part]
        assert x["city"][:, 0].tolist() == [0, 0]
    x, _ = task.info["arrays"]["train"]
    assert sorted(x["city"][:, 0].tolist()) == [1, 2, 3, 4, 5, 6]


def test_load_csv_sequence_padding_and_truncation(tmp_path):
    rows = [
        {"y": "1", "seq": "a|b|c|d|e"},
        {"y": "0", "seq": "b"},
        {"y": "1", "seq": ""},
        {"y": "0", "seq": " a | b "},
    ]
    path = _write_csv(tmp_path / "seq.csv", rows)
    task = load_csv(path, label="y", sequence=["seq"], sequence_length=3, split=(1.0, 0.0, 0.0))
    vocab = task.info["vocabularies"]["seq"]
    assert vocab == {"b": 1, "a": 2, "c": 3, "d": 4, "e": 5}
    x, y = task.info["arrays"]["train"]
    by_label_row = {
        tuple(r): lab for r, lab in zip(x["seq"].tolist(), y[:, 0].tolist(), strict=True)
    }
    assert by_label_row == {(3, 4, 5): 1.0, (0, 0, 1): 0.0, (0, 0, 0): 1.0, (0, 2, 1): 0.0}
    assert task.schema["seq"].vocab_size == 6 and x["seq"].dtype == np.int32


def test_load_csv_multiclass_labels_delimiter_names_and_gzip(tmp_path):
    rows = [{"item id": f"x{k % 3}", "score": str(k), "grade": str(k % 4)} for k in range(12)]
    text = "\n".join(
        ["item id;score;grade"] + [f"{r['item id']};{r['score']};{r['grade']}" for r in rows]
    )
    path = tmp_path / "multi.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text + "\n")
    task = load_csv(path, label="grade", task="multiclass", delimiter=";", batch_size=5)
    assert task.schema.task == "multiclass" and task.schema.num_classes == 4
    assert task.schema.names == ["item_id", "score"]
    assert task.info["columns"]["item id"]["features"] == ["item_id"]
    _check_specs(task)
    _, y = _all(task, "train")
    assert y.dtype == np.int32 and y.ndim == 1 and set(y.tolist()) <= {0, 1, 2, 3}
    first = next(iter(task.train))
    assert first[1].shape == (5,)


def test_load_csv_numeric_fill(tmp_path):
    path = tmp_path / "fill.csv"
    path.write_text("y,price\n1,1\n0,\n1,3\n0,5\n", encoding="utf-8")
    mean_fill = load_csv(path, label="y", numeric=["price"], numeric_fill="mean", split=(1, 0, 0))
    stats = mean_fill.info["numeric_stats"]["price"]
    assert stats["mean"] == pytest.approx(3.0)
    x, _ = mean_fill.info["arrays"]["train"]
    assert sorted(x["price"][:, 0].tolist()) == pytest.approx(
        sorted((np.array([1, 3, 3, 5]) - 3.0) / np.std([1, 3, 3, 5]))
    )
    zero_fill = load_csv(path, label="y", numeric=["price"], numeric_fill=0.0, split=(1, 0, 0))
    assert zero_fill.info["numeric_stats"]["price"]["mean"] == pytest.approx(9 / 4)


# --------------------------------------------------------------------------- CSV: bad files


def _bad(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad_file.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "kwargs", "line", "fragment"),
    [
        ("", {}, 1, "empty"),
        ("\n\n", {}, 1, "empty"),
        ("click,price\n", {}, 2, "header only"),
        ("click,price\n1,2\n", {"numeric": ["cost"]}, 1, "column 'cost'"),
        ("buy,price\n1,2\n", {}, 1, "column 'click'"),
        ("click,price\n1,2\n0,3\n1,4\n0,5\n1,6\nyes,7\n", {}, 7, "label 'yes' is not 0 or 1"),
        ("click,price\n1,2\n2,3\n", {}, 3, "label '2' is not 0 or 1"),
        ("click,price\n1,2\n0,3,4\n", {}, 3, "3 fields but the header has 2"),
        ("click,price\n1,2\n\n0\n", {}, 4, "1 fields but the header has 2"),
        ("click,price\n1,2\n0,cheap\n", {"numeric": ["price"]}, 3, "'cheap'"),
        ("click,price\n1,2\n0,\n", {"numeric": ["price"]}, 3, "empty value"),
        ("click,price\n1,2\n0,nan\n", {"numeric": ["price"]}, 3, "not a finite number"),
        ("click,price,price\n1,2,3\n", {}, 1, "repeats column"),
        ("click\n1\n", {}, 1, "no feature columns"),
        ('click,price\n1,"2\n', {}, 2, "malformed"),
    ],
)
def test_load_csv_bad_files_name_file_and_line(tmp_path, text, kwargs, line, fragment):
    path = _bad(tmp_path, text)
    with pytest.raises(ValueError) as err:
        load_csv(path, label="click", **kwargs)
    message = str(err.value)
    assert "bad_file.csv" in message
    assert f"line {line}" in message
    assert fragment in message


def test_load_csv_multiclass_bad_label_and_missing_file(tmp_path):
    path = _bad(tmp_path, "k,x\n0,a\n1.5,b\n")
    with pytest.raises(ValueError, match=r"bad_file\.csv line 3: label '1.5' is not a class id"):
        load_csv(path, label="k", task="multiclass")
    with pytest.raises(ValueError, match=r"nope\.csv: file not found"):
        load_csv(tmp_path / "nope.csv", label="k")
    with pytest.raises(ValueError, match="not a regular file"):
        load_csv(tmp_path, label="k")
    bad_bytes = tmp_path / "latin.csv"
    bad_bytes.write_bytes(b"k,x\n0,caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin\.csv line \d: not UTF-8"):
        load_csv(bad_bytes, label="k")


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"batch_size": 0}, ValueError, "`batch_size` must be an int >= 1, received 0"),
        ({"batch_size": 2.0}, TypeError, "`batch_size` must be an int"),
        ({"split": (0.5, 0.2, 0.2)}, ValueError, "sum"),
        ({"split": (0.0, 0.5, 0.5)}, ValueError, "train > 0"),
        ({"split": "abc"}, TypeError, "split must be three numbers"),
        ({"seed": -1}, ValueError, "seed"),
        ({"task": "regression"}, ValueError, "task must be"),
        ({"hash_buckets": {"color": 0}}, ValueError, "hash_buckets['color']"),
        ({"hash_buckets": ["color"]}, TypeError, "hash_buckets must be a dict"),
        ({"hash_buckets": {"price": 4}, "numeric": ["price"]}, ValueError, "only categorical"),
        ({"numeric": ["price"], "categorical": ["price"]}, ValueError, "listed in both"),
        ({"numeric": ["click"]}, ValueError, "is the label"),
        ({"numeric": [1]}, TypeError, "numeric must be a list of column names"),
        ({"max_vocab": 0}, ValueError, "max_vocab"),
        ({"sequence_length": 0}, ValueError, "sequence_length"),
        ({"sequence_separator": ","}, ValueError, "equals the delimiter"),
        ({"delimiter": ""}, ValueError, "delimiter"),
        ({"numeric_fill": "median"}, ValueError, "numeric_fill"),
    ],
)
def test_load_csv_bad_arguments(tmp_path, kwargs, error, fragment):
    path = _write_csv(tmp_path / "ok.csv", _rows(10))
    with pytest.raises(error) as err:
        load_csv(path, **{"label": "click", **kwargs})
    assert fragment in str(err.value)


def test_load_csv_bad_path_and_label_types(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        load_csv(123, label="click")
    path = _write_csv(tmp_path / "ok.csv", _rows(4))
    with pytest.raises(TypeError, match="label must be"):
        load_csv(path, label=None)


# --------------------------------------------------------------------------- CSV round trip


@pytest.mark.slow
def test_csv_round_trip_fits_a_tf_keras_model(tmp_path):
    path = _write_csv(tmp_path / "fit.csv", _rows(64))
    task = load_csv(
        path,
        label="click",
        categorical=["color", "brand"],
        numeric=["price", "qty"],
        sequence=["hist"],
        sequence_length=4,
        batch_size=16,
    )
    inputs, parts, tables = {}, [], {}
    for f in task.schema:
        inputs[f.name] = keras.Input(shape=f.shape, dtype=f.dtype, name=f.name)
        if f.kind == "numeric":
            parts.append(inputs[f.name])
            continue
        if f.vocab_name not in tables:
            tables[f.vocab_name] = keras.layers.Embedding(
                f.vocab_size, 4, name=f"emb_{f.vocab_name}"
            )
        emb = tables[f.vocab_name](inputs[f.name])
        parts.append(keras.layers.GlobalAveragePooling1D()(emb))
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()(parts))
    output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, output)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    history = model.fit(task.train, validation_data=task.validation, epochs=1, verbose=0)
    loss = history.history["loss"][0]
    assert math.isfinite(loss) and 0.0 < loss < 5.0
    assert math.isfinite(history.history["val_loss"][0])
    preds = model.predict(task.test, verbose=0)
    assert preds.shape == (task.info["rows"]["test"], 1)
    assert np.all((preds >= 0) & (preds <= 1))


# --------------------------------------------------------------------------- libFM / libFFM


LIBSVM = """\
1 0:1 10:1 20:0.5
-1 1:1 11:1 20:2.5
+1 0:1 12:1 20:1.5
-1 2:1 10:1
1 1:1 11:1 20:3.5
-1 0:1 10:1 20:0.0
1 2:1 13:1 20:4.0
-1 1:1 12:1 20:1.0
1 0:1 11:1 20:2.0
-1 2:1 10:1 20:3.0
"""


def test_load_libfm_pairs_positions_labels_and_values(tmp_path):
    path = tmp_path / "bench.libsvm"
    path.write_text(LIBSVM, encoding="utf-8")
    task = load_libfm(path, split=(1.0, 0.0, 0.0), batch_size=4)
    assert task.info["format"] == "libfm"
    assert task.info["fields"] == [0, 1, 2]
    assert task.info["numeric_fields"] == [2]
    assert task.info["n_features"] == 21
    assert task.schema.names == ["field_0", "field_1", "field_2", "value_2"]
    assert {f.vocab_name for f in task.schema.of_kind("categorical")} == {"feature_index"}
    assert task.schema.vocab_sizes() == {"feature_index": 22}
    _check_specs(task)
    x, y = task.info["arrays"]["train"]
    assert y.dtype == np.float32 and y.shape == (10, 1) and y.sum() == 5
    assert set(np.unique(y).tolist()) == {0.0, 1.0}
    raw_values = np.array([0.5, 2.5, 1.5, 0.0, 3.5, 0.0, 4.0, 1.0, 2.0, 3.0])
    stats = task.info["numeric_stats"]["value_2"]
    assert stats["mean"] == pytest.approx(raw_values.mean())
    restored = x["value_2"][:, 0] * stats["std"] + stats["mean"]
    # rows are shuffled: match them through field_1 + value
    lines = [line.split() for line in LIBSVM.splitlines()]
    expected = sorted(
        (int(t[2].split(":")[0]) + 1, float(t[3].split(":")[1]) if len(t) > 3 else 0.0)
        for t in lines
    )
    got = sorted(zip(x["field_1"][:, 0].tolist(), np.round(restored, 4).tolist(), strict=True))
    assert got == expected
    # the missing third token of line 4 is id 0
    assert (x["field_2"][:, 0] == 0).sum() == 1
    assert sorted(set(x["field_0"][:, 0].tolist())) == [1, 2, 3]


def test_load_libfm_ffm_triples_fields_max_fields_and_n_features(tmp_path):
    text = "\n".join(
        [
            "1 0:5:1 3:7:1 1:2:1",
            "0 0:4:1 1:2:1",
            "1 3:8:1 0:5:1",
            "0 1:9:1 0:4:1 3:7:1",
            "",
            "1 0:5:1 1:2:1 3:8:1",
        ]
    )
    path = tmp_path / "ffm.txt"
    path.write_text(text + "\n", encoding="utf-8")
    task = load_libfm(path, n_features=100, split=(1.0, 0.0, 0.0))
    assert task.info["format"] == "libffm"
    assert task.info["fields"] == [0, 1, 3]
    assert task.info["numeric_fields"] == []
    assert task.schema.names == ["field_0", "field_1", "field_3"]
    assert task.schema["field_3"].vocab_size == 101
    x, y = task.info["arrays"]["train"]
    assert task.info["rows"]["total"] == 5
    pairs = sorted(
        zip(x["field_0"][:, 0].tolist(), x["field_3"][:, 0].tolist(), y[:, 0], strict=True)
    )
    assert pairs == sorted([(6, 8, 1.0), (5, 0, 0.0), (6, 9, 1.0), (5, 8, 0.0), (6, 9, 1.0)])
    capped = load_libfm(path, max_fields=2)
    assert capped.schema.names == ["field_0", "field_1"]
    assert capped.info["dropped_tokens"] == 4
    assert capped.schema.vocab_sizes() == {"feature_index": 11}  # largest index 9 (field 1)
    _check_specs(capped)
    assert sum(capped.info["rows"][p] for p in ("train", "validation", "test")) == 5


@pytest.mark.parametrize(
    ("text", "kwargs", "line", "fragment"),
    [
        ("", {}, 1, "empty"),
        ("\n  \n", {}, 1, "empty"),
        ("1 0:1\nabc 1:1\n", {}, 2, "label 'abc'"),
        ("1 0:1\n2 1:1\n", {}, 2, "label '2'"),
        ("1 0:1\n0 1:x\n", {}, 2, "token '1:x'"),
        ("1 0:1\n0 oops\n", {}, 2, "token 'oops'"),
        ("1 0:1\n0 1:2:3:4\n", {}, 2, "token '1:2:3:4'"),
        ("1 0:1\n0 -3:1\n", {}, 2, "token '-3:1'"),
        ("1 0:1\n0 0:1:1\n", {}, 2, "a file holds one format"),
        ("1 0:1\n0 1:1\n1 7:1\n", {"n_features": 5}, 3, "index 7 >= n_features=5"),
        ("1 0:1:1 0:2:1\n", {}, 1, "field 0 appears twice"),
        ("1\n0\n", {}, 1, "no line has a feature"),
    ],
)
def test_load_libfm_bad_files_name_file_and_line(tmp_path, text, kwargs, line, fragment):
    path = tmp_path / "bad_file.libfm"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_libfm(path, **kwargs)
    message = str(err.value)
    assert "bad_file.libfm" in message and f"line {line}" in message and fragment in message


def test_load_libfm_bad_arguments(tmp_path):
    path = tmp_path / "ok.libfm"
    path.write_text("1 0:1\n0 1:1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="`n_features` must be an int >= 1, received 0"):
        load_libfm(path, n_features=0)
    with pytest.raises(TypeError, match="`max_fields` must be an int >= 1, received '3'"):
        load_libfm(path, max_fields="3")
    with pytest.raises(ValueError, match="split"):
        load_libfm(path, split=(1.0, 0.5, 0.0))
    with pytest.raises(ValueError, match=r"missing\.libfm: file not found"):
        load_libfm(tmp_path / "missing.libfm")


# --------------------------------------------------------------------------- MovieLens

# user, item, rating, timestamp; user 1 has 5 positives, user 2 has 3, user 3 has 1.
INTERACTIONS = [
    (1, 10, 5, 100),
    (1, 20, 4, 90),
    (1, 30, 2, 95),  # negative rating: never a positive, never a sampled negative for user 1
    (1, 40, 5, 120),
    (1, 50, 4, 130),
    (1, 60, 5, 140),
    (2, 20, 5, 10),
    (2, 10, 4, 20),
    (2, 70, 4.5, 30),
    (2, 80, 3, 40),
    (3, 90, 5, 7),
    (3, 100, 1, 8),
]


def _write_ratings(path: Path, style: str) -> Path:
    if style == "dat":
        lines = [f"{u}::{i}::{r:g}::{t}" for u, i, r, t in INTERACTIONS]
    elif style == "tab":
        lines = [f"{u}\t{i}\t{r:g}\t{t}" for u, i, r, t in INTERACTIONS]
    else:
        lines = ["userId,movieId,rating,timestamp"] + [
            f"{u},{i},{float(r)},{t}" for u, i, r, t in INTERACTIONS
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("style", "sep", "header"), [("dat", "::", False), ("tab", "\t", False), ("csv", ",", True)]
)
def test_load_movielens_ctr_formats_history_negatives_and_time_split(tmp_path, style, sep, header):
    path = _write_ratings(tmp_path / f"ratings.{style}", style)
    task = load_movielens(path, sequence_length=3, negatives=2, batch_size=4, seed=0)
    info = task.info
    assert info["sep"] == sep and info["header"] is header
    assert (info["n_users"], info["n_items"], info["n_interactions"]) == (3, 10, 12)
    assert info["n_positives"] == 9
    # items remapped to 1..10 in numeric order of the raw ids
    assert info["vocabularies"]["item_id"] == {str(10 * k): k for k in range(1, 11)}
    assert task.schema.names == ["user_id", "item_id", "hist_item_ids"]
    assert task.schema.label == "click" and task.schema.task == "binary"
    assert task.schema["hist_item_ids"].vocab_name == "item_id"
    assert task.schema.vocab_sizes() == {"user_id": 4, "item_id": 11}
    _check_specs(task)
    assert info["rows"]["total"] == 9 * 3
    # time split: user 1 (5 positives) -> 3 train, 1 val, 1 test; user 2 (3) -> 1/1/1;
    # user 3 (1 positive) -> train
    assert info["rows"] == {"train": 15, "validation": 6, "test": 6, "total": 27}
    pos_by_split = {}
    for part in ("train", "validation", "test"):
        x, y = info["arrays"][part]
        assert y.shape[1] == 1 and set(np.unique(y).tolist()) <= {0.0, 1.0}
        assert y.sum() * 3 == len(y)  # 1 positive + 2 negatives each
        pos = y[:, 0] == 1
        pos_by_split[part] = sorted(
            zip(
                x["user_id"][pos, 0].tolist(),
                x["item_id"][pos, 0].tolist(),
                [tuple(h) for h in x["hist_item_ids"][pos].tolist()],
                strict=True,
            )
        )
        # negatives are items the user never rated, with the positive's history
        rated = {1: {1, 2, 3, 4, 5, 6}, 2: {1, 2, 7, 8}, 3: {9, 10}}
        for u, item in zip(
            x["user_id"][~pos, 0].tolist(), x["item_id"][~pos, 0].tolist(), strict=True
        ):
            assert 1 <= item <= 10 and item not in rated[u]
    # user 1 positives in time order: 20(t90), 10(t100), 40(t120), 50(t130), 60(t140)
    assert pos_by_split["test"] == [(1, 6, (1, 4, 5)), (2, 7, (0, 2, 1))]
    assert pos_by_split["validation"] == [(1, 5, (2, 1, 4)), (2, 1, (0, 0, 2))]
    assert pos_by_split["train"] == [
        (1, 1, (0, 0, 2)),
        (1, 2, (0, 0, 0)),
        (1, 4, (0, 2, 1)),
        (2, 2, (0, 0, 0)),
        (3, 9, (0, 0, 0)),
    ]


def test_load_movielens_same_result_for_every_format_and_seeded_negatives(tmp_path):
    tasks = [
        load_movielens(_write_ratings(tmp_path / f"r.{s}", s), seed=3, negatives=3)
        for s in ("dat", "tab", "csv")
    ]
    for other in tasks[1:]:
        for part in ("train", "validation", "test"):
            for name in ("user_id", "item_id", "hist_item_ids"):
                np.testing.assert_array_equal(
                    tasks[0].info["arrays"][part][0][name], other.info["arrays"][part][0][name]
                )
    again = load_movielens(tmp_path / "r.dat", seed=3, negatives=3)
    other_seed = load_movielens(tmp_path / "r.dat", seed=4, negatives=3)
    items = [t.info["arrays"]["train"][0]["item_id"] for t in (tasks[0], again, other_seed)]
    np.testing.assert_array_equal(items[0], items[1])
    assert not np.array_equal(items[0], items[2])


def test_load_movielens_retrieval_labels_catalog_and_schema(tmp_path):
    path = _write_ratings(tmp_path / "ratings.dat", "dat")
    task = load_movielens(path, task="retrieval", sequence_length=2, min_rating=4.5)
    schema = task.schema
    assert schema.task == "retrieval" and schema.label == "next_item"
    assert schema.num_classes == 11
    assert schema.names == ["user_id", "hist_item_ids", "item_id"]
    assert schema["item_id"].group == "item" and schema["user_id"].group == "user"
    catalog = task.info["catalog"]["item_id"]
    assert catalog.shape == (11, 1) and catalog.dtype == np.int32
    np.testing.assert_array_equal(catalog[:, 0], np.arange(11))
    _check_specs(task)
    # positives with rating >= 4.5: user 1: 10(t100), 40(t120), 60(t140); user 2: 20, 70; user 3: 90
    assert task.info["n_positives"] == 6
    assert task.info["rows"] == {"train": 4, "validation": 1, "test": 1, "total": 6}
    x, y = task.info["arrays"]["test"]
    assert y.dtype == np.int32 and y.shape == (1,)
    assert y.tolist() == x["item_id"][:, 0].tolist() == [6]
    assert x["hist_item_ids"].tolist() == [[1, 4]]
    x, y = task.info["arrays"]["train"]
    np.testing.assert_array_equal(y, x["item_id"][:, 0])
    batch_x, batch_y = next(iter(task.train))
    assert batch_y.shape.rank == 1 and batch_x["item_id"].shape[1] == 1


def test_load_movielens_user_who_rated_everything_gets_no_impossible_negative(tmp_path):
    path = tmp_path / "all.dat"
    path.write_text("1::1::5::1\n1::2::5::2\n2::1::5::3\n", encoding="utf-8")
    task = load_movielens(path, negatives=2, split=(1.0, 0.0, 0.0))
    x, y = task.info["arrays"]["train"]
    # user 1 rated both items -> its two positives keep no negative; user 2 gets item 2 twice
    assert y[:, 0].sum() == 3 and len(y) == 5
    neg = y[:, 0] == 0
    assert x["user_id"][neg, 0].tolist() == [2, 2] and x["item_id"][neg, 0].tolist() == [2, 2]


@pytest.mark.parametrize(
    ("text", "kwargs", "line", "fragment"),
    [
        ("", {}, 1, "empty"),
        ("userId,movieId,rating,timestamp\n", {}, 1, "header only"),
        ("1::2::5::9\n1::3::4\n", {}, 2, "expected 4 fields"),
        ("1::2::5::9\n1::3::good::9\n", {}, 2, "rating 'good' is not a number"),
        ("1::2::5::9\n\n1::3::4::yesterday\n", {}, 3, "timestamp 'yesterday' is not a number"),
        ("1 2 5 9\n", {}, 1, "cannot tell the separator"),
        ("1,2,5,9\n1,3,4,9,7\n", {}, 2, "found 5"),
    ],
)
def test_load_movielens_bad_files_name_file_and_line(tmp_path, text, kwargs, line, fragment):
    path = tmp_path / "bad_file.dat"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_movielens(path, **kwargs)
    message = str(err.value)
    assert "bad_file.dat" in message and f"line {line}" in message and fragment in message


def test_load_movielens_bad_arguments_and_no_positives(tmp_path):
    path = _write_ratings(tmp_path / "ok.dat", "dat")
    with pytest.raises(ValueError, match=r"ok\.dat: no rating >= min_rating=6"):
        load_movielens(path, min_rating=6)
    with pytest.raises(ValueError, match="task must be 'ctr' or 'retrieval'"):
        load_movielens(path, task="ranking")
    with pytest.raises(ValueError, match="`negatives` must be an int >= 1, received 0"):
        load_movielens(path, negatives=0)
    with pytest.raises(TypeError, match="min_rating must be a finite number"):
        load_movielens(path, min_rating="4")
    with pytest.raises(ValueError, match="sep must be None"):
        load_movielens(path, sep="")
    with pytest.raises(ValueError, match="`sequence_length` must be an int >= 1, received 0"):
        load_movielens(path, sequence_length=0)
    with pytest.raises(ValueError, match=r"gone\.dat: file not found"):
        load_movielens(tmp_path / "gone.dat")
    retrieval = load_movielens(path, task="retrieval", negatives=0)
    assert retrieval.info["rows"]["total"] == 9


def test_load_csv_hashed_sequence_column(tmp_path):
    path = _write_csv(tmp_path / "hs.csv", [{"y": "1", "seq": "a|b"}, {"y": "0", "seq": "c"}])
    task = load_csv(path, label="y", sequence=["seq"], hash_buckets={"seq": 5}, split=(1, 0, 0))
    assert task.schema["seq"].kind == "sequence" and task.schema["seq"].vocab_size == 6
    assert "seq" not in task.info["vocabularies"] and task.info["hash_buckets"] == {"seq": 5}
    x, y = task.info["arrays"]["train"]
    h = {t: zlib.crc32(t.encode()) % 5 + 1 for t in "abc"}
    rows = {float(label): seq for seq, label in zip(x["seq"].tolist(), y[:, 0], strict=True)}
    assert rows == {1.0: [0] * 18 + [h["a"], h["b"]], 0.0: [0] * 19 + [h["c"]]}
