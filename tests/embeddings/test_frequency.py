"""count_ids / table_inputs: counts per table, shared tables, bad input."""

import numpy as np
import pytest

from tfcompress._keras import keras, tf
from tfcompress.embeddings import count_ids, table_inputs


def _model():
    item = keras.Input((1,), dtype="int32", name="item")
    hist = keras.Input((3,), dtype="int32", name="history")
    user = keras.Input((1,), dtype="int32", name="user")
    items = keras.layers.Embedding(6, 2, name="emb_item")
    users = keras.layers.Embedding(4, 2, name="emb_user")
    x = keras.layers.Concatenate()(
        [
            keras.layers.Flatten()(items(item)),
            keras.layers.GlobalAveragePooling1D()(items(hist)),
            keras.layers.Flatten()(users(user)),
        ]
    )
    return keras.Model([item, hist, user], keras.layers.Dense(1)(x))


def test_table_inputs_lists_every_input_a_shared_table_reads():
    assert table_inputs(_model()) == {"emb_item": ["item", "history"], "emb_user": ["user"]}


def test_count_ids_sums_the_inputs_of_a_shared_table_over_batches():
    model = _model()
    batch = {
        "item": np.array([[1], [5]]),
        "history": np.array([[1, 2, 0], [0, 0, 0]]),
        "user": np.array([[3], [3]]),
    }
    ds = tf.data.Dataset.from_tensors((batch, np.zeros(2))).repeat(3)
    counts = count_ids(model, ds)
    assert counts["emb_item"].tolist() == [12, 6, 3, 0, 0, 3]
    assert counts["emb_user"].tolist() == [0, 0, 0, 6]
    assert count_ids(model, ds, max_batches=1)["emb_user"].tolist() == [0, 0, 0, 2]


def test_count_ids_rejects_ids_outside_the_table_naming_input_and_table():
    model = _model()
    batch = {
        "item": np.array([[9]]),
        "history": np.zeros((1, 3), int),
        "user": np.ones((1, 1), int),
    }
    with pytest.raises(ValueError, match=r"'item' holds id 9, outside table 'emb_item'"):
        count_ids(model, [batch])


def test_count_ids_bad_arguments():
    inp = keras.Input((2,))
    plain = keras.Model(inp, keras.layers.Dense(1)(inp))
    with pytest.raises(ValueError, match="no Embedding layer"):
        count_ids(plain, [np.ones((1, 2))])
    with pytest.raises(TypeError, match="model"):
        count_ids("m.keras", [])
    with pytest.raises(ValueError, match="max_batches"):
        count_ids(_model(), [], max_batches=0)
