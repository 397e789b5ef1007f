"""compress under MultiWorkerMirroredStrategy (two local worker processes): every worker takes
the same steps (each fine-tune is a collective fit), the chief's folder is the result and the
other worker caches in its own, a repeated call resumes where every worker has a candidate and
rebuilds (collectively) what one worker lacks, and a budget that runs out on one worker stops
both at the same step instead of leaving the other in a collective alone."""

from __future__ import annotations

import json
import os
import shutil

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
        "cached": [r.cached for r in result.candidates],
        "stopped": result.stopped,
        "path": result.path,
        "exists": os.path.exists(result.path),
    }


def test_workers_take_the_same_steps_resume_together_and_stop_together(tmp_path):
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
    # the chief's folder is the result; the other worker caches in a folder of its own inside
    (key,) = os.listdir(out)
    assert chief["exists"] and chief["path"].startswith(os.path.join(out, key) + os.sep)
    mine = os.path.join(out, key, "workers", "worker-1")
    assert other["exists"] and other["path"].startswith(mine + os.sep)
    assert os.listdir(logs)
    names, first = chief["names"], chief

    # the same call again, with worker 1's fine-tuned model gone from its cache: both rebuild
    # that one (a collective fit: had worker 0 read its cache, worker 1 would wait alone), and
    # read every other candidate from their own caches
    shutil.rmtree(os.path.join(mine, "shrink0.50@keras"))
    chief, other = launch_local(
        _compress_worker, 2, args=(out, logs, (None, None)), strategy="multi_worker", timeout=300
    )
    assert chief["names"] == other["names"] == names
    assert chief["trained"] == other["trained"] == 1
    rebuilt = names.index("shrink0.50 (keras)")
    for result in (chief, other):
        assert result["cached"] == [i != rebuilt for i in range(len(names))]
    np.testing.assert_allclose(chief["deltas"], first["deltas"], atol=1e-9)

    # a budget that runs out on worker 1 only (worker 0 has none) stops both at the same step
    chief, other = launch_local(
        _compress_worker, 2, args=(out, logs, (None, 1e-6)), strategy="multi_worker", timeout=300
    )
    assert chief["names"] == other["names"] == []
    assert chief["stopped"] and other["stopped"]
    assert chief["trained"] == other["trained"] == 0
