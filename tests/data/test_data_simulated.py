"""Tests of the simulated e-commerce world and its three tasks."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress._keras import keras, tf
from tfcompress.data import TaskData, World, ctr, load_task, profile, retrieval, roc_auc, simulated

SMALL_WORLD = {"n_users": 300, "n_items": 400, "n_categories": 10, "n_brands": 30}


@pytest.fixture(scope="module")
def world() -> World:
    return World.create(seed=3, **SMALL_WORLD)


@pytest.fixture(scope="module")
def ctr_task() -> TaskData:
    return ctr(n_samples=5_000, seq_len=12, batch_size=128, seed=1)


def _first_batch(ds: tf.data.Dataset):
    features, label = next(iter(ds))
    return {k: v.numpy() for k, v in features.items()}, label.numpy()


def _all_arrays(task: TaskData):
    return [task.info["arrays"][name] for name in ("train", "validation", "test")]


# ----------------------------------------------------------------------------- world
def test_world_create_shapes_and_id_ranges(world):
    assert world.user_pref.shape == (301, 10)
    np.testing.assert_allclose(world.user_pref[1:].sum(axis=1), 1.0, rtol=1e-9)
    assert world.item_category[0] == 0 and world.item_brand[0] == 0 and world.item_price[0] == 0
    assert set(np.unique(world.item_category[1:])) == set(range(1, 11))
    assert world.item_brand[1:].min() >= 1 and world.item_brand.max() <= 30
    assert world.item_price[1:].min() >= 1 and world.item_price.max() <= world.n_price_buckets
    # Brands nest in categories: an item's brand belongs to the item's category.
    np.testing.assert_array_equal(
        world.brand_category[world.item_brand[1:]], world.item_category[1:]
    )
    assert world.item_popularity[0] == 0.0
    assert world.item_popularity.sum() == pytest.approx(1.0)
    assert world.vocab_sizes()["item_id"] == 401
    assert world.vocab_sizes()["hour"] == 25
    # Histories: left-padded with 0, ids in range, longer for more active users.
    hist = world.user_history
    assert hist.shape == (301, world.history_len) and hist.max() <= 400
    valid = hist[1:] > 0
    assert np.all(np.diff(valid.astype(int), axis=1) >= 0), "padding must be at the front"
    lengths = valid.sum(axis=1)
    assert lengths.min() >= 3
    assert np.corrcoef(lengths, world.user_activity[1:])[0, 1] > 0.5
    assert not world.user_history.flags.writeable


def test_world_is_deterministic_and_seed_dependent():
    a, b = World.create(5, n_users=50, n_items=80), World.create(5, n_users=50, n_items=80)
    c = World.create(6, n_users=50, n_items=80)
    for name in ("user_pref", "item_category", "item_popularity", "user_history"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.user_history, c.user_history)


def test_zipf_popularity_long_tail(world, ctr_task):
    pop = np.sort(world.item_popularity[1:])[::-1]
    assert pop[: len(pop) // 10].sum() > 0.6  # top 10 % of the catalogue
    # Impressions follow it: the top 10 % of items get a large share of all impressions.
    w = ctr_task.info["world"]
    top = np.argsort(-w.item_popularity)[: w.n_items // 10]
    items = np.concatenate([f["item_id"][:, 0] for f, _ in _all_arrays(ctr_task)])
    assert np.isin(items, top).mean() > 0.5


@pytest.mark.parametrize(
    ("kwargs", "match", "error"),
    [
        ({"n_users": 0}, "n_users", ValueError),
        ({"n_items": 5, "n_categories": 10}, "n_items", ValueError),
        ({"n_brands": 3, "n_categories": 10}, "n_brands", ValueError),
        ({"zipf_exponent": -1.0}, "zipf_exponent", ValueError),
        ({"latent_dim": 2.5}, "latent_dim", TypeError),
        ({"seed": -1}, "seed", ValueError),
    ],
)
def test_world_create_bad_input(kwargs, match, error):
    with pytest.raises(error, match=match):
        World.create(**kwargs)


def test_world_catalog_rows_are_item_ids(world):
    cat = world.catalog()
    assert set(cat) == {"item_id", "item_category", "item_brand", "item_price"}
    np.testing.assert_array_equal(cat["item_id"][:, 0], np.arange(401))
    np.testing.assert_array_equal(cat["item_brand"][:, 0], world.item_brand)


# ----------------------------------------------------------------------------- ctr
CTR_FEATURES = [
    "user_id", "user_age", "user_gender", "item_id", "item_category", "item_brand",
    "item_price", "hour", "platform", "hist_item_ids", "hist_categories", "item_popularity",
    "user_activity",
]  # fmt: skip


def test_ctr_schema_and_batch_specs(ctr_task):
    schema = ctr_task.schema
    assert schema.names == CTR_FEATURES and schema.label == "click" and schema.task == "binary"
    assert schema["hist_item_ids"].vocab_name == "item_id"
    assert schema["hist_categories"].vocab_name == "item_category"
    assert schema["hist_item_ids"].length == 12 and schema["hist_item_ids"].group == "user"
    assert schema["item_price"].kind == "categorical" and schema["item_price"].group == "item"
    assert schema["hour"].group == "context" and schema["item_popularity"].kind == "numeric"
    assert schema.vocab_sizes()["item_id"] == 1001
    features, label = _first_batch(ctr_task.train)
    for name, spec in schema.element_spec().items():
        assert features[name].dtype == spec.dtype.as_numpy_dtype, name
        assert features[name].shape == (128, *spec.shape[1:]), name
    assert label.dtype == np.float32 and label.shape == (128, 1)
    assert set(np.unique(label)) <= {0.0, 1.0}
    ds_spec = ctr_task.train.element_spec
    assert ds_spec[1].shape.as_list() == schema.label_spec().shape.as_list()
    assert ds_spec[0]["hist_item_ids"].shape.as_list() == [None, 12]


def test_ctr_ids_in_vocab_and_padding_rules(ctr_task):
    schema = ctr_task.schema
    w = ctr_task.info["world"]
    for features, _ in _all_arrays(ctr_task):
        for feat in schema:
            x = features[feat.name]
            if feat.kind == "numeric":
                assert np.isfinite(x).all()
                continue
            assert x.min() >= 0 and x.max() < feat.vocab_size, feat.name
            if feat.kind == "categorical":
                assert x.min() >= 1, f"{feat.name}: categorical ids start at 1"
        seq = features["hist_item_ids"]
        nonzero = seq > 0
        assert np.all(np.diff(nonzero.astype(int), axis=1) >= 0), "0 only at the front"
        assert nonzero[:, -1].all(), "every sequence has at least its session clicks"
        np.testing.assert_array_equal(features["hist_categories"], w.item_category[seq])
        np.testing.assert_array_equal(
            features["item_category"][:, 0], w.item_category[features["item_id"][:, 0]]
        )


def test_ctr_split_sizes_base_rate_and_oracle(ctr_task):
    sizes = [len(labels) for _, labels in _all_arrays(ctr_task)]
    assert sizes == [4_000, 500, 500]
    assert ctr_task.info["rows"] == {"train": 4_000, "validation": 500, "test": 500, "total": 5_000}
    n_batches = sum(1 for _ in ctr_task.train)
    assert n_batches == int(np.ceil(4_000 / 128))  # drop_remainder=False
    rates = ctr_task.info["base_ctr"]
    for rate in rates.values():
        assert 0.1 <= rate <= 0.3
    assert 0.75 < ctr_task.info["oracle_auc"] < 0.95
    # The true click probabilities are calibrated: their mean matches the observed rate.
    probs = np.concatenate(list(ctr_task.info["click_prob"].values()))
    assert probs.mean() == pytest.approx(0.2, abs=1e-3)


def test_ctr_session_intent_drives_clicks(ctr_task):
    # Clicks are much likelier when the candidate's category is among the last 2 history items.
    features, labels = ctr_task.info["arrays"]["train"]
    match = (features["hist_categories"][:, -2:] == features["item_category"]).any(axis=1)
    assert labels[match].mean() > 2 * labels[~match].mean()


def test_ctr_deterministic_and_seed_dependent():
    kwargs = {"n_samples": 600, "seq_len": 6, "batch_size": 64, "n_users": 80, "n_items": 120}
    a, b = ctr(seed=4, **kwargs), ctr(seed=4, **kwargs)
    c = ctr(seed=5, **kwargs)
    for (fa, ya), (fb, yb) in zip(_all_arrays(a), _all_arrays(b), strict=True):
        np.testing.assert_array_equal(ya, yb)
        for key in fa:
            np.testing.assert_array_equal(fa[key], fb[key])
    for ds in ("train", "test"):
        (fa, ya), (fb, yb) = _first_batch(getattr(a, ds)), _first_batch(getattr(b, ds))
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(fa["item_id"], fb["item_id"])
    assert not np.array_equal(
        a.info["arrays"]["train"][0]["item_id"], c.info["arrays"]["train"][0]["item_id"]
    )
    # The train set is shuffled (not in array order) and reshuffled each epoch.
    epoch1 = np.concatenate([f["user_id"].numpy()[:, 0] for f, _ in a.train])
    epoch2 = np.concatenate([f["user_id"].numpy()[:, 0] for f, _ in a.train])
    stored = a.info["arrays"]["train"][0]["user_id"][:, 0]
    assert sorted(epoch1) == sorted(stored) and not np.array_equal(epoch1, stored)
    assert not np.array_equal(epoch1, epoch2)
    test_order = np.concatenate([f["user_id"].numpy()[:, 0] for f, _ in a.test])
    np.testing.assert_array_equal(test_order, a.info["arrays"]["test"][0]["user_id"][:, 0])


def test_ctr_accepts_a_world_and_seq_len_one(world):
    task = ctr(n_samples=300, seq_len=1, seed=0, world=world, split=(0.5, 0.25, 0.25))
    assert task.info["world"] is world
    assert task.schema.vocab_sizes()["item_id"] == 401
    features, labels = task.info["arrays"]["train"]
    assert features["hist_item_ids"].shape == (150, 1) and (features["hist_item_ids"] > 0).all()
    assert labels.shape == (150, 1)


@pytest.mark.parametrize(
    ("kwargs", "match", "error"),
    [
        ({"n_samples": -5}, "n_samples", ValueError),
        ({"n_samples": 3}, "n_samples", ValueError),
        ({"seq_len": 0}, "seq_len", ValueError),
        ({"batch_size": 0}, "batch_size", ValueError),
        ({"split": (0.8, 0.3, 0.1)}, "split", ValueError),
        ({"split": (0.0, 0.5, 0.5)}, "split", ValueError),
        ({"split": (0.8, 0.2)}, "split", ValueError),
        ({"split": "0.8,0.1,0.1"}, "split must be three numbers", TypeError),
        ({"base_ctr": 1.5}, "base_ctr", ValueError),
        ({"world": "shop"}, "world", TypeError),
        ({"n_samples": 10.5}, "n_samples", TypeError),
        ({"no_such_world_arg": 1}, "no_such_world_arg", TypeError),
    ],
)
def test_ctr_bad_input(kwargs, match, error):
    with pytest.raises(error, match=match):
        ctr(**{"n_samples": 100, **kwargs})


def test_world_and_world_kwargs_together_rejected(world):
    with pytest.raises(ValueError, match="world"):
        ctr(n_samples=100, world=world, n_items=50)


# ----------------------------------------------------------------------------- retrieval
def test_retrieval_schema_catalog_and_labels(world):
    task = retrieval(n_samples=2_000, seq_len=8, batch_size=100, seed=2, world=world)
    schema = task.schema
    assert schema.task == "retrieval" and schema.label == "next_item"
    assert schema.num_classes == world.n_items + 1 == 401
    assert {f.name for f in schema if f.group == "item"} == {
        "item_id",
        "item_category",
        "item_brand",
        "item_price",
    }
    assert schema["hist_item_ids"].vocab_name == "item_id"
    catalog = task.info["catalog"]
    for name, arr in catalog.items():
        assert arr.shape == (401, 1) and arr.dtype == np.int32, name
        assert arr[0, 0] == 0
    features, labels = task.info["arrays"]["train"]
    assert labels.dtype == np.int32 and labels.shape == (1_600,)
    assert labels.min() >= 1 and labels.max() <= 400
    np.testing.assert_array_equal(features["item_id"][:, 0], labels)
    for name in ("item_category", "item_brand", "item_price"):  # positives agree with catalog
        np.testing.assert_array_equal(features[name][:, 0], catalog[name][labels, 0])
    batch, label = _first_batch(task.train)
    assert label.shape == (100,) and label.dtype == np.int32
    for name, spec in schema.element_spec().items():
        assert batch[name].dtype == spec.dtype.as_numpy_dtype
        assert batch[name].shape[1:] == tuple(spec.shape[1:])
    # The next item is predictable: the truth beats recommending the 10 most popular items.
    assert task.info["oracle_recall_at_10"] > task.info["popularity_recall_at_10"] + 0.1


def test_retrieval_bad_input():
    with pytest.raises(ValueError, match="seq_len"):
        retrieval(n_samples=100, seq_len=0)
    with pytest.raises(ValueError, match="split"):
        retrieval(n_samples=100, split=(0.5, 0.5, 0.5))


# ----------------------------------------------------------------------------- profile
def test_profile_labels_and_learnable_signal(world):
    task = profile(n_samples=3_000, seq_len=16, batch_size=64, seed=0, world=world)
    schema = task.schema
    assert schema.task == "multiclass" and schema.num_classes == 10
    assert schema.names == ["hist_item_ids", "hist_categories", "hist_hours", "user_age",
                            "user_gender"]  # fmt: skip
    assert schema["hist_hours"].vocab_size == 25
    features, labels = task.info["arrays"]["test"]
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10
    hours = features["hist_hours"]
    np.testing.assert_array_equal(hours > 0, features["hist_item_ids"] > 0)
    assert hours.max() <= 24
    # The most frequent history category predicts the interest far better than the majority.
    counts = np.stack(
        [(features["hist_categories"] == c + 1).sum(axis=1) for c in range(10)], axis=1
    )
    mode_acc = float((counts.argmax(axis=1) == labels).mean())
    assert mode_acc > task.info["majority_accuracy"] + 0.15
    assert mode_acc < 0.9, "the task must not be trivial"
    _, label = _first_batch(task.validation)
    assert label.shape == (64,) and label.dtype == np.int32


def test_profile_splits_by_user(world):
    task = profile(n_samples=3_000, seq_len=8, seed=1, world=world)
    users = task.info["users"]
    sets = {name: set(users[name].tolist()) for name in ("train", "validation", "test")}
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["test"]
    assert not sets["validation"] & sets["test"]
    # Users have several samples each, so a split by sample would have shared them.
    assert len(sets["train"]) < len(users["train"])
    for name, (features, labels) in task.info["arrays"].items():
        assert len(users[name]) == len(labels) == task.info["rows"][name]
        # The labels and demographics are those of the recorded users.
        pref = world.user_pref[users[name]]
        np.testing.assert_array_equal(labels, pref.argmax(axis=1))
        np.testing.assert_array_equal(features["user_age"][:, 0], world.user_age[users[name]])
    rows = task.info["rows"]
    assert rows["total"] == 3_000
    # Each split holds about its fraction of the samples.
    assert 2_200 <= rows["train"] <= 2_600 and 200 <= rows["test"] <= 400
    # Seeded: the same seed gives the same users per split, another seed other users.
    again = profile(n_samples=3_000, seq_len=8, seed=1, world=world)
    other = profile(n_samples=3_000, seq_len=8, seed=2, world=world)
    np.testing.assert_array_equal(again.info["users"]["test"], users["test"])
    assert set(other.info["users"]["test"].tolist()) != sets["test"]


def test_profile_bad_input(world):
    with pytest.raises(ValueError, match="n_samples"):
        profile(n_samples=0)
    # Too few users to give every split one of its own.
    tiny = World.create(seed=0, n_users=2, n_items=20, n_categories=4, n_brands=4)
    with pytest.raises(ValueError, match="only 2 users"):
        profile(n_samples=200, world=tiny)


# ----------------------------------------------------------------------------- load_task
def test_load_task_resolves_names(world):
    for name, label in (("ctr", "click"), ("retrieval", "next_item"), ("profile", "interest")):
        task = load_task(name, n_samples=200, seq_len=4, world=world)
        assert task.schema.label == label
        assert sum(len(a[1]) for a in task.info["arrays"].values()) == 200
    assert simulated.TASK_NAMES == ("ctr", "retrieval", "profile")


def test_load_task_unknown_name():
    with pytest.raises(ValueError, match="'ctr', 'retrieval', 'profile'"):
        load_task("clicks")


# ----------------------------------------------------------------------------- roc_auc
def test_roc_auc_values_and_bad_input():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    rng = np.random.default_rng(0)
    y = rng.random(1000) < 0.3
    x = rng.random(1000)
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in x[y] for b in x[~y]])
    assert roc_auc(y, x) == pytest.approx(brute)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.zeros(4), np.arange(4.0))
    with pytest.raises(ValueError, match="same size"):
        roc_auc(np.zeros(4), np.arange(3.0))


# ----------------------------------------------------------------------------- learnability
def _ctr_model(schema, use_sequence: bool) -> keras.Model:
    inputs = {f.name: keras.Input(f.shape, dtype=f.dtype, name=f.name) for f in schema}
    cats = [f for f in schema if f.kind == "categorical"]
    nums = [inputs[f.name] for f in schema if f.kind == "numeric"]
    if not use_sequence:  # logistic regression on the individual ids
        terms = [
            keras.layers.Flatten()(keras.layers.Embedding(f.vocab_size, 1)(inputs[f.name]))
            for f in cats
        ]
        logit = keras.layers.Add()(
            [*terms, keras.layers.Dense(1)(keras.layers.Concatenate()(nums))]
        )
        return keras.Model(inputs, keras.layers.Activation("sigmoid")(logit))
    tables = {}
    reg = keras.regularizers.l2(3e-5)

    def embed(name):
        f = schema[name]
        if f.vocab_name not in tables:
            tables[f.vocab_name] = keras.layers.Embedding(
                f.vocab_size, 8, embeddings_regularizer=reg
            )
        return tables[f.vocab_name](inputs[name])

    # Low-cardinality ids only: 16k impressions are too few to learn user / item id vectors.
    vecs = [keras.layers.Flatten()(embed(f.name)) for f in cats if f.vocab_size <= 100]
    cand = keras.layers.Flatten()(embed("item_category"))
    recent = keras.layers.GlobalAveragePooling1D()(embed("hist_categories")[:, -3:])
    x = keras.layers.Concatenate()([*vecs, *nums, recent, recent * cand])
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


@pytest.mark.slow
def test_ctr_is_learnable_and_sequence_beats_logistic_regression():
    task = ctr(n_samples=20_000, seq_len=10, batch_size=256, seed=0)
    test_x, test_y = task.info["arrays"]["test"]
    aucs = {}
    for use_sequence in (False, True):
        keras.utils.set_random_seed(0)
        model = _ctr_model(task.schema, use_sequence)
        model.compile(
            keras.optimizers.Adam(0.01 if not use_sequence else 0.005), "binary_crossentropy"
        )
        model.fit(task.train, epochs=6, verbose=0)
        aucs[use_sequence] = roc_auc(test_y, model.predict(test_x, batch_size=2048, verbose=0))
    assert aucs[True] > 0.68, aucs
    assert aucs[True] > aucs[False] + 0.04, aucs
    assert aucs[True] < task.info["oracle_auc"], aucs
