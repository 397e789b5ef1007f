"""Real files: a Criteo-like TSV, a TalkingData-like ad-click log and a MovieLens u.data.

Loader options (drop, overrides, numeric_fill, delimiter, header, timestamps, min_rating,
negatives, split modes), schema inference (ids categorical, hashing, codes), the summary
table, the leak check (warning and strict error), load_file and streaming memory.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import logging
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tfcompress.data import _csv_scan, load_csv, load_file, load_libfm, load_movielens

SPLITS = ("train", "validation", "test")
I_COLS = [f"I{i}" for i in range(1, 14)]
C_COLS = [f"C{i}" for i in range(1, 27)]
CRITEO_HEADER = ["label", *I_COLS, *C_COLS]
C_CARD = {"C1": 4, "C2": 30, "C3": 2500, "C5": 12}  # others: 5 + 7 * i values


# --------------------------------------------------------------------------- generators


def _criteo(path: Path, n: int = 3000, seed: int = 0) -> dict[str, list[str]]:
    """Criteo-like TSV without header: label, 13 integer counts, 26 hex categories."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[str]] = {}
    logit = np.full(n, -1.2)
    for i, col in enumerate(I_COLS):
        counts = rng.poisson(rng.uniform(1, 6) * rng.gamma(1.0, 1.0, size=n))
        if i < 3:
            logit += 0.25 * np.minimum(counts, 8)
        text = counts.astype(str).astype(object)
        if col in ("I1", "I7"):
            text[rng.random(n) < 0.2] = ""  # 20% missing
        cols[col] = text.tolist()
    for i, col in enumerate(C_COLS):
        card = C_CARD.get(col, 5 + 7 * i)
        values = np.array([f"{h:08x}" for h in rng.integers(0, 2**32, size=card)], dtype=object)
        pick = rng.integers(0, card, size=n) if col != "C3" else rng.integers(0, card, size=n)
        if col in ("C1", "C2"):
            logit += rng.normal(0, 1.0, size=card)[pick]
        text = values[pick]
        if col == "C5":
            text[rng.random(n) < 0.1] = ""
        cols[col] = text.tolist()
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).astype(str)
    cols = {"label": label.tolist(), **cols}
    lines = ["\t".join(cols[c][k] for c in CRITEO_HEADER) for k in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cols


def _clicks(path: Path, n: int = 3000, seed: int = 1) -> list[dict[str, str]]:
    """TalkingData-like ad-click log: integer ids, click_time, post-click attributed_time."""
    rng = np.random.default_rng(seed)
    ips = rng.choice(np.arange(1, 200_000), size=400, replace=False)
    app_effect = rng.normal(0, 1.2, size=41)
    channels = rng.choice(np.arange(100, 500), size=30, replace=False)
    ch_effect = dict(zip(channels.tolist(), rng.normal(0, 1.0, size=30), strict=True))
    start = dt.datetime(2017, 11, 6, 14, 0, 0)
    seconds = np.sort(rng.integers(0, 3 * 86400, size=n))
    rows = []
    for k in range(n):
        app = int(rng.integers(1, 41))
        channel = int(rng.choice(channels))
        p = 1 / (1 + np.exp(-(-2.6 + app_effect[app] + ch_effect[channel])))
        positive = rng.random() < p
        click = start + dt.timedelta(seconds=int(seconds[k]))
        after = click + dt.timedelta(seconds=int(rng.integers(5, 7200)))
        rows.append(
            {
                "ip": str(int(rng.choice(ips))),
                "app": str(app),
                "device": str(int(rng.choice([1, 1, 1, 2, 3]))),
                "os": str(int(rng.integers(1, 26))),
                "channel": str(channel),
                "click_time": click.strftime("%Y-%m-%d %H:%M:%S"),
                "attributed_time": after.strftime("%Y-%m-%d %H:%M:%S") if positive else "",
                "is_attributed": "1" if positive else "0",
            }
        )
    header = list(rows[0])
    text = [",".join(header)] + [",".join(r[h] for h in header) for r in rows]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return rows


def _udata(path: Path, users: int = 60, items: int = 150, n: int = 3000, seed: int = 2):
    """MovieLens 100k-style u.data: user item rating timestamp, tab-separated."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(users * items, size=n, replace=False)
    user, item = pairs // items + 1, pairs % items + 1
    rating = rng.integers(1, 6, size=n)
    stamp = rng.integers(874_724_710, 893_286_638, size=n)
    lines = [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in zip(user, item, rating, stamp, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return user, item, rating, stamp


def _rows_of(task, split: str) -> np.ndarray:
    return task.info["split_rows"][split]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    return {
        "criteo": (root / "day_0.tsv", _criteo(root / "day_0.tsv")),
        "clicks": (root / "train_sample.csv", _clicks(root / "train_sample.csv")),
        "udata": (root / "u.data", _udata(root / "u.data")),
    }


def _criteo_load(path: Path, **kwargs):
    options = dict(
        label="label",
        delimiter="\t",
        header=CRITEO_HEADER,
        numeric_fill="mean",
        hash_threshold=1000,
    )
    options.update(kwargs)
    return load_csv(path, **options)


# --------------------------------------------------------------------------- Criteo-like


def test_criteo_kinds_hashing_missing_and_summary(files):
    path, cols = files["criteo"]
    task = _criteo_load(path)
    info = task.info
    kinds = {c: info["columns"][c]["kind"] for c in CRITEO_HEADER[1:]}
    assert kinds == {**dict.fromkeys(I_COLS, "numeric"), **dict.fromkeys(C_COLS, "categorical")}
    assert task.schema.names == CRITEO_HEADER[1:]
    # C3 has ~1900 distinct values > hash_threshold=1000: hashed into 1000 buckets, stated
    c3 = info["columns"]["C3"]
    assert (c3["encoding"], c3["buckets"], c3["vocab_size"]) == ("hash", 1000, 1001)
    assert "more than 1000 distinct values" in c3["reason"]
    assert task.schema["C3"].vocab_size == 1001 and info["hash_buckets"] == {"C3": 1000}
    # a vocabulary column: the train values, id 0 for empty / unseen
    train = _rows_of(task, "train")
    c2_train = {cols["C2"][k] for k in train}
    assert task.schema["C2"].vocab_size == len(c2_train) + 1
    assert set(info["vocabularies"]["C2"]) == c2_train
    c5_train = {cols["C5"][k] for k in train} - {""}
    assert task.schema["C5"].vocab_size == len(c5_train) + 1
    x, _ = info["arrays"]["train"]
    empty_c5 = np.array([cols["C5"][k] == "" for k in train])
    assert (x["C5"][:, 0] == 0).tolist() == empty_c5.tolist()
    # numeric_fill="mean": an empty I1 is the train mean, i.e. 0 after standardising
    empty_i1 = np.array([cols["I1"][k] == "" for k in train])
    assert empty_i1.any()
    np.testing.assert_allclose(x["I1"][empty_i1, 0], 0.0, atol=1e-6)
    # the summary: one row per column, its missing share, the label rate and positives
    summary = task.summary()
    by_column = {r["column"]: r for r in summary.rows}
    assert list(by_column) == CRITEO_HEADER[1:]
    n = len(cols["label"])
    assert by_column["I1"]["missing"] == pytest.approx(cols["I1"].count("") / n)
    assert by_column["C5"]["missing"] == pytest.approx(cols["C5"].count("") / n)
    assert by_column["I2"]["missing"] == 0.0
    assert (by_column["C3"]["buckets"], by_column["C3"]["encoding"]) == (1000, "hash")
    assert by_column["C2"]["values"] == len(c2_train)
    positives = sum(v == "1" for v in cols["label"])
    assert (summary.label["rows"], summary.label["positives"]) == (n, positives)
    assert summary.label["rate"] == pytest.approx(positives / n)
    assert summary.label["splits"]["train"]["rows"] == len(train)
    text = str(summary)
    assert re.search(r"C3\s+categorical\s+hash\s+1,000 buckets", text)
    assert re.search(rf"I1\s+numeric\s+standardised\s+-\s+{cols['I1'].count('') / n:.1%}", text)
    assert f"{positives:,} positives in {n:,} rows" in text
    markdown = summary.to_markdown()
    assert "| column | kind | encoding | vocabulary / buckets | missing |" in markdown
    assert f"| C2 | categorical | vocabulary | {len(c2_train)} values | 0.0% |" in markdown


def test_criteo_missing_numbers_need_numeric_fill_and_fill_value(files):
    path, cols = files["criteo"]
    first_empty = cols["I1"].index("") + 1  # no header row: data row k is line k
    with pytest.raises(ValueError) as err:
        _criteo_load(path, numeric_fill=None)
    message = str(err.value)
    assert f"day_0.tsv line {first_empty}: empty value in numeric column 'I1'" in message
    assert "numeric_fill='mean'" in message
    task = _criteo_load(path, numeric_fill=-1)
    x, _ = task.info["arrays"]["train"]
    stats = task.info["numeric_stats"]["I1"]
    empty = np.array([cols["I1"][k] == "" for k in _rows_of(task, "train")])
    raw = x["I1"][empty, 0] * stats["std"] + stats["mean"]
    np.testing.assert_allclose(raw, -1.0, atol=1e-4)


def test_criteo_overrides_drop_and_max_vocab(files):
    path, cols = files["criteo"]
    task = _criteo_load(
        path,
        categorical=["I2"],
        numeric=["C1"] if False else None,
        drop=["C26", "I13"],
        max_vocab={"C2": 5},
    )
    info = task.info
    assert "C26" not in task.schema.names and "I13" not in task.schema.names
    assert info["ignored_columns"] == ["I13", "C26"]
    assert info["columns"]["I2"]["kind"] == "categorical"
    assert info["columns"]["I2"]["reason"] == "listed in categorical="
    assert set(info["vocabularies"]["I2"]) <= set(cols["I2"])
    assert task.schema["C2"].vocab_size == 6 and len(info["vocabularies"]["C2"]) == 5
    with pytest.raises(ValueError, match=r"value '[0-9a-f]{8}' in numeric column 'C1' is not"):
        _criteo_load(path, numeric=["C1"])


def test_header_false_names_columns_and_delimiter_is_required(files):
    path, _ = files["criteo"]
    task = load_csv(
        path,
        label="col_1",
        delimiter="\t",
        header=False,
        numeric_fill=0,
        drop=[f"col_{k}" for k in range(16, 41)],
    )
    assert task.schema.names == [f"col_{k}" for k in range(2, 16)]
    with pytest.raises(ValueError, match="column 'label' .* not in header .*delimiter="):
        load_csv(path, label="label")


# --------------------------------------------------------------------------- ad-click log


def test_click_log_ids_are_categorical_and_times_become_hour_and_weekday(files, caplog):
    path, rows = files["clicks"]
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        task = load_csv(path, label="is_attributed", drop=["attributed_time"])
    assert not [r for r in caplog.records if "predict the label" in r.getMessage()]
    info = task.info
    for col in ("ip", "app", "device", "os", "channel"):
        entry = info["columns"][col]
        assert (entry["kind"], entry["encoding"]) == ("categorical", "vocabulary"), col
        assert entry["reason"] == "integer ids (id-like name)"
        seen = {rows[k][col] for k in _rows_of(task, "train")}
        assert task.schema[col].vocab_size == len(seen) + 1
        assert task.schema[col].kind == "categorical"
    entry = info["columns"]["click_time"]
    assert (entry["kind"], entry["encoding"]) == ("timestamp", "hour+weekday (UTC)")
    assert entry["features"] == ["click_time_hour", "click_time_weekday"]
    assert task.schema.names == [
        "ip",
        "app",
        "device",
        "os",
        "channel",
        "click_time_hour",
        "click_time_weekday",
    ]
    x, y = info["arrays"]["test"]
    for j, k in enumerate(_rows_of(task, "test")[:50]):
        when = dt.datetime.strptime(rows[k]["click_time"], "%Y-%m-%d %H:%M:%S")
        assert x["click_time_hour"][j, 0] == when.hour + 1
        assert x["click_time_weekday"][j, 0] == when.isoweekday()
        assert y[j, 0] == float(rows[k]["is_attributed"])
    no_times = load_csv(
        path, label="is_attributed", drop=["attributed_time"], timestamp_features="drop"
    )
    assert no_times.schema.names == ["ip", "app", "device", "os", "channel"]
    assert no_times.info["ignored_columns"] == ["attributed_time", "click_time"]


def test_leak_check_warns_names_the_column_and_strict_raises(files, caplog):
    path, rows = files["clicks"]
    with caplog.at_level(logging.WARNING, logger="tfcompress"):
        task = load_csv(path, label="is_attributed")
    leaks = [r.getMessage() for r in caplog.records if "predict the label" in r.getMessage()]
    assert len(leaks) == 1
    assert "'attributed_time': AUC 1.0000 from whether it is empty" in leaks[0]
    assert 'drop = ["attributed_time"]' in leaks[0] and "strict" in leaks[0]
    assert list(task.info["leaks"]) == ["attributed_time"]
    assert task.info["columns"]["attributed_time"]["missing"] == pytest.approx(
        sum(r["attributed_time"] == "" for r in rows) / len(rows)
    )
    with pytest.raises(ValueError, match=r"attributed_time.*drop=\[\"attributed_time\"\]"):
        load_csv(path, label="is_attributed", strict=True)
    assert (
        load_csv(path, label="is_attributed", strict=True, drop=["attributed_time"]).info["leaks"]
        == {}
    )


def test_time_split_orders_rows_and_by_user_keeps_users_whole(files):
    path, rows = files["clicks"]
    stamp = np.array(
        [dt.datetime.strptime(r["click_time"], "%Y-%m-%d %H:%M:%S").timestamp() for r in rows]
    )
    task = load_csv(
        path,
        label="is_attributed",
        drop=["attributed_time"],
        split_mode="time",
        split=(0.7, 0.15, 0.15),
    )
    assert task.info["split_column"] == "click_time"  # the timestamp without empty cells
    times = {s: stamp[_rows_of(task, s)] for s in SPLITS}
    assert task.info["rows"] == {"train": 2100, "validation": 450, "test": 450, "total": 3000}
    assert times["train"].max() <= times["validation"].min()
    assert times["validation"].max() <= times["test"].min()
    assert times["train"].max() <= times["test"].min()
    assert np.all(np.diff(times["test"]) >= 0)  # test in time order
    by_user = load_csv(
        path,
        label="is_attributed",
        drop=["attributed_time"],
        split_mode="by_user",
        user_column="ip",
        seed=3,
    )
    assert by_user.info["split_column"] == "ip"
    ips = {s: {rows[k]["ip"] for k in _rows_of(by_user, s)} for s in SPLITS}
    assert not ips["train"] & ips["validation"] and not ips["train"] & ips["test"]
    assert not ips["validation"] & ips["test"]
    assert sum(len(_rows_of(by_user, s)) for s in SPLITS) == 3000
    assert 0.7 < by_user.info["rows"]["train"] / 3000 < 0.9
    # ips of validation / test users are unseen in train: id 0
    x, _ = by_user.info["arrays"]["test"]
    assert (x["ip"] == 0).all()
    with pytest.raises(ValueError, match=r"split_mode='by_user' .*pass user_column="):
        load_csv(path, label="is_attributed", split_mode="by_user")
    with pytest.raises(ValueError, match=r"split_mode must be one of .*received 'weekly'"):
        load_csv(path, label="is_attributed", split_mode="weekly")
    with pytest.raises(ValueError, match=r"line \d+: time_column='attributed_time' has an emp"):
        load_csv(path, label="is_attributed", split_mode="time", time_column="attributed_time")


def test_integer_codes_are_categorical_and_counts_numeric(tmp_path):
    rng = np.random.default_rng(5)
    n = 3000
    zones = rng.choice(np.arange(1000, 9999), size=25, replace=False)
    zone_rate = dict(zip(zones.tolist(), rng.uniform(0.02, 0.7, size=25), strict=True))
    lines = ["zone,visits,price,label"]
    for _ in range(n):
        zone = int(rng.choice(zones))
        visits = int(rng.poisson(3))
        p = min(0.95, zone_rate[zone] + 0.02 * visits)
        lines.append(f"{zone},{visits},{rng.uniform(1, 50):.2f},{int(rng.random() < p)}")
    path = tmp_path / "codes.csv"
    path.write_text("\n".join(lines) + "\n")
    task = load_csv(path, label="label")
    columns = task.info["columns"]
    assert columns["zone"]["kind"] == "categorical"
    assert columns["zone"]["reason"].startswith("integer codes: label rate per value AUC")
    assert task.schema["zone"].vocab_size == 26
    assert (columns["visits"]["kind"], columns["visits"]["reason"]) == (
        "numeric",
        "integer counts / amounts",
    )
    assert (columns["price"]["kind"], columns["price"]["reason"]) == ("numeric", "numbers")
    forced = load_csv(path, label="label", numeric=["zone"])
    assert forced.info["columns"]["zone"]["kind"] == "numeric"


# --------------------------------------------------------------------------- MovieLens u.data


def test_movielens_udata_options_and_split_modes(files):
    path, (user, item, rating, stamp) = files["udata"]
    task = load_movielens(path, delimiter="\t", min_rating=4, negatives=2, split_mode="time")
    positives = int((rating >= 4).sum())
    assert task.info["n_positives"] == positives
    assert task.info["rows"]["total"] == 3 * positives
    times = {s: stamp[_rows_of(task, s)] for s in SPLITS}
    assert times["train"].max() <= times["validation"].min()
    assert times["validation"].max() <= times["test"].min()
    summary = task.summary()
    assert summary.label["positives"] == positives
    assert summary.label["rate"] == pytest.approx(1 / 3)
    assert {r["column"] for r in summary.rows} == {"user_id", "item_id", "hist_item_ids"}
    lower = load_movielens(path, min_rating=3, negatives=1)
    assert lower.info["n_positives"] == int((rating >= 3).sum())
    assert lower.info["rows"]["total"] == 2 * int((rating >= 3).sum())
    by_user = load_movielens(path, split_mode="by_user", negatives=1, seed=1)
    users = {s: set(by_user.info["arrays"][s][0]["user_id"][:, 0].tolist()) for s in SPLITS}
    assert users["train"] and users["validation"] and users["test"]
    assert not users["train"] & users["test"] and not users["train"] & users["validation"]
    assert not users["validation"] & users["test"]
    # each example's user is the one of its source row
    x, _ = by_user.info["arrays"]["test"]
    raw_users = user[_rows_of(by_user, "test")]
    vocab = by_user.info["vocabularies"]["user_id"]
    assert [vocab[str(u)] for u in raw_users] == x["user_id"][:, 0].tolist()
    rand = load_movielens(path, split_mode="random", negatives=1, split=(0.8, 0.1, 0.1))
    assert abs(rand.info["rows"]["train"] / 2 - 0.8 * int((rating >= 4).sum())) <= 1
    with pytest.raises(ValueError, match=r"split_mode must be one of .*received 'by_time'"):
        load_movielens(path, split_mode="by_time")
    with pytest.raises(ValueError, match=r"pass either delimiter or sep \(its former name\)"):
        load_movielens(path, delimiter="\t", sep="\t")


def test_movielens_header_option(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,2,5,10\n1,3,4,11\n2,2,5,12\n")
    assert load_movielens(path, header=True, split=(1, 0, 0)).info["n_positives"] == 3
    with pytest.raises(ValueError, match=r"ratings\.csv line 1: rating 'rating' is not a number"):
        load_movielens(path, header=False)


# --------------------------------------------------------------------------- load_file


def test_load_file_dispatches_with_options(files, tmp_path):
    path, _ = files["criteo"]
    direct = _criteo_load(path, drop=["C26"])
    via = load_file(
        path,
        format="csv",
        label="label",
        delimiter="\t",
        header=CRITEO_HEADER,
        numeric_fill="mean",
        hash_threshold=1000,
        drop=["C26"],
    )
    assert via.schema == direct.schema
    for s in SPLITS:
        np.testing.assert_array_equal(
            via.info["arrays"][s][0]["I1"], direct.info["arrays"][s][0]["I1"]
        )
    udata, (_, _, rating, _) = files["udata"]
    movies = load_file(udata, min_rating=5, negatives=1, seed=4)  # .data: MovieLens
    assert movies.info["format"] == "movielens"
    assert movies.info["n_positives"] == int((rating >= 5).sum())
    libfm = tmp_path / "tiny.libfm"
    libfm.write_text("1 0:1 5:1\n0 1:1 5:0.5\n1 0:1 6:1\n0 2:1 6:0.2\n" * 5)
    assert load_file(libfm, n_features=10).info["n_features"] == 10
    with pytest.raises(TypeError, match=r"min_rating is not an option of libfm files.*accepted:"):
        load_file(libfm, min_rating=4)
    with pytest.raises(ValueError, match=r"the CSV file .*day_0.tsv needs label="):
        load_file(path, format="csv")
    with pytest.raises(ValueError, match=r"label= applies to CSV files only"):
        load_file(udata, label="rating")
    with pytest.raises(ValueError, match=r"format must be one of .*received 'parquet'"):
        load_file(path, format="parquet", label="label")


def test_libfm_split_mode_and_strict_leak(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(400):
        y = int(rng.random() < 0.3)
        leak = 7 if y else 8  # field 2 is the label in disguise
        lines.append(f"{y} 0:{rng.integers(0, 5)}:1 1:{rng.integers(5, 7)}:1 2:{leak}:1")
    path = tmp_path / "leaky.ffm"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"'field_2': AUC 1\.0000"):
        load_libfm(path, strict=True)
    with pytest.raises(ValueError, match=r"split_mode must be one of \['random'\] for libFM"):
        load_libfm(path, split_mode="time")


# --------------------------------------------------------------------------- option names


LOADERS = {"csv": load_csv, "movielens": load_movielens, "libfm": load_libfm, "any": load_file}


def _messages(module) -> list[str]:
    """The text of every raised error, log call and ``fix=`` argument in a module (f-string
    fields as ``{}``)."""
    tree = ast.parse(inspect.getsource(module))
    inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}

    def text(node) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(text(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
        return ""

    roots = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Raise)
        or (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("warning", "info", "error")
        )
        or (isinstance(n, ast.keyword) and n.arg == "fix")
    ]
    return [
        text(sub) for root in roots for sub in ast.walk(root) if id(sub) not in inner and text(sub)
    ]


def test_every_option_an_error_recommends_is_accepted_by_its_loader_and_the_recipe():
    """Grep the loaders' messages for recommended options (``pass numeric_fill='mean'``,
    ``list it in categorical=``): each must be a keyword of that loader and a recipe key."""
    from tfcompress.data import (
        _csv_args,
        _csv_build,
        _csv_kinds,
        _csv_scan,
        csv_loader,
        files,
        inference,
        libfm,
        movielens,
    )
    from tfcompress.recipe import DataSpec

    data_keys = set(DataSpec.__dataclass_fields__)
    modules = {
        "csv": [csv_loader, _csv_args, _csv_build, _csv_kinds, _csv_scan, inference],
        "movielens": [movielens],
        "libfm": [libfm, inference],
        "any": [files],
    }
    recommended = set()
    for fmt, mods in modules.items():
        accepted = set(inspect.signature(LOADERS[fmt]).parameters)
        for mod in mods:
            for message in _messages(mod):
                for name in re.findall(r"\b([a-z_]+)=(?![{=])", message):
                    recommended.add(name)
                    assert name in accepted, f"{fmt}: {name}= is recommended but not accepted"
                    assert name in data_keys, f"{fmt}: {name}= is not a recipe [data] key"
    assert {
        "numeric_fill",
        "categorical",
        "delimiter",
        "header",
        "time_column",
        "user_column",
        "max_fields",
        "strict",
        "task",
        "format",
    } <= recommended


# --------------------------------------------------------------------------- memory


def test_csv_load_streams_instead_of_holding_rows_as_strings(tmp_path, monkeypatch):
    path = tmp_path / "big.tsv"
    _criteo(path, n=12_000, seed=7)
    size = path.stat().st_size
    monkeypatch.setattr(_csv_scan, "CHUNK_ROWS", 1_000)
    tracemalloc.start()
    try:
        task = _criteo_load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert task.info["rows"]["total"] == 12_000
    # measured: the loader that held every row as Python strings peaked at 10x the file
    # (31 MB for 3.1 MB); the streamed one at 1.9x (numpy arrays + one chunk of text)
    assert peak < 3 * size, (peak, size)


def test_indexed_datasets_match_constant_datasets(files, monkeypatch):
    from tfcompress.data import _common

    path, _ = files["clicks"]
    small = load_csv(path, label="is_attributed", drop=["attributed_time"], batch_size=64)
    monkeypatch.setattr(_common, "INDEXED_BYTES", 0)
    big = load_csv(path, label="is_attributed", drop=["attributed_time"], batch_size=64)
    assert big.train.element_spec == small.train.element_spec
    for s in SPLITS:
        for (xa, ya), (xb, yb) in zip(getattr(small, s), getattr(big, s), strict=True):
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())
            for k in xa:
                np.testing.assert_array_equal(xa[k].numpy(), xb[k].numpy())
