"""compress under MultiWorkerMirroredStrategy (two local worker processes): every worker takes
the same steps (each fine-tune is a collective fit), only the chief's files stay, and a budget
that runs out on one worker stops both at the same step instead of leaving the other in a
collective alone."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.multiprocess


def _compress_worker(strategy, out, logs, budgets):
    import tfcompress
    from tfcompress._keras import keras
    from tfcompress.distribute import is_chief

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype("float32")
    y = (rng.random(3000) < 1 / (1 + np.exp(-(x @ rng.normal(size=16))))).astype("float32")
    keras.utils.set_random_seed(0)
    with strategy.scope():
        inputs = keras.Input((16,), name="x")
        h = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(h))
        model.compile("adam", "binary_crossentropy")
    model.fit(x[:2000], y[:2000], epochs=2, batch_size=128, verbose=0)
    result = tfcompress.compress(
        model,
        (x[:2000], y[:2000]),
        validation_data=(x[2000:], y[2000:]),
        max_loss=0.05,
        epochs=1,
        steps=1,
        repeats=3,
        progress=False,
        objective="size",
        strategy=strategy,
        output_dir=out,
        log_dir=logs,
        budget=budgets[index],
    )
    return {
        "chief": is_chief(strategy),
        "names": [r.name for r in result.candidates],
        "accepted": [r.accepted for r in result.candidates],
        "deltas": [None if r.difference is None else r.difference.delta for r in result.candidates],
        "trained": result.trained,
        "stopped": result.stopped,
        "path": result.path,
        "exists": os.path.exists(result.path),
    }


def test_workers_take_the_same_steps_and_only_the_chief_writes(tmp_path):
    from tfcompress.distribute.launch import launch_local

    out, logs = str(tmp_path / "out"), str(tmp_path / "logs")
    chief, other = launch_local(
        _compress_worker, 2, args=(out, logs, (None, None)), strategy="multi_worker", timeout=300
    )
    assert chief["chief"] and not other["chief"]
    # the same candidates, judged alike: the shrunk model's fine-tune ran on both (collectively)
    assert chief["names"] == other["names"] and "shrink0.50 (keras)" in chief["names"]
    assert chief["accepted"] == other["accepted"]
    np.testing.assert_allclose(chief["deltas"], other["deltas"], atol=1e-9)
    assert chief["trained"] == other["trained"] == 1
    # only the chief's files stay: its chosen file is under out, the other worker's is gone
    assert chief["exists"] and chief["path"].startswith(out)
    assert not other["exists"] and not other["path"].startswith(out)
    assert len(os.listdir(out)) == 1 and os.listdir(logs)

    # a budget that runs out on worker 1 only (worker 0 has none) stops both at the same step;
    # nothing is read from the chief's cache of the first run (worker 1 has none)
    chief, other = launch_local(
        _compress_worker, 2, args=(out, logs, (None, 1e-6)), strategy="multi_worker", timeout=300
    )
    assert chief["names"] == other["names"] == []
    assert chief["stopped"] and other["stopped"]
    assert chief["trained"] == other["trained"] == 0
