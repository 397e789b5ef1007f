"""Tests of tfcompress.distribute (strategies, TF_CONFIG, chief-only paths, unsharding) and
tfcompress.distribute.acceleration (XLA, mixed precision, embedding placement), in this process.

Multi-process clusters are in tests/test_launch.py.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import tfcompress
from tfcompress import distribute, models
from tfcompress._keras import keras, tf
from tfcompress.data import load_task
from tfcompress.distribute import acceleration

WORKERS2 = {
    "cluster": {"worker": ["127.0.0.1:20000", "127.0.0.1:20001"]},
    "task": {"type": "worker", "index": 1},
}
PS_CLUSTER = {
    "cluster": {"chief": ["h:1"], "worker": ["h:2"], "ps": ["h:3", "h:4"]},
    "task": {"type": "chief", "index": 0},
}


@pytest.fixture(scope="module")
def ctr():
    return load_task("ctr", n_samples=600, seed=0, batch_size=64)


# --------------------------------------------------------------------------- TF_CONFIG


def test_parse_tf_config_from_argument_string_and_env(monkeypatch):
    cfg = distribute.parse_tf_config(WORKERS2)
    assert cfg == {
        "cluster": WORKERS2["cluster"],
        "task": {"type": "worker", "index": 1},
        "rpc_layer": "grpc",
    }
    assert distribute.parse_tf_config(json.dumps(WORKERS2)) == cfg
    monkeypatch.setenv("TF_CONFIG", json.dumps(PS_CLUSTER))
    assert distribute.parse_tf_config()["cluster"]["ps"] == ["h:3", "h:4"]
    monkeypatch.setenv("TF_CONFIG", "")
    assert distribute.parse_tf_config() is None
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.parse_tf_config() is None
    assert distribute.parse_tf_config({}) is None
    coordinator = distribute.parse_tf_config({"cluster": PS_CLUSTER["cluster"]})
    assert coordinator["task"] is None


@pytest.mark.parametrize(
    "config, match",
    [
        ("{not json", r"`tf_config` is not valid JSON"),
        ({"task": {"type": "worker", "index": 0}}, r"has no 'cluster' key \(keys: \['task'\]\)"),
        ({"cluster": []}, r"'cluster' must be a non-empty dict"),
        ({"cluster": {"trainer": ["h:1"]}}, r"unknown job 'trainer'; valid jobs are"),
        ({"cluster": {"worker": "h:1"}}, r"cluster\['worker'\] must be a non-empty list"),
        (
            {"cluster": {"worker": ["h:1", "localhost"]}},
            r"cluster\['worker'\]\[1\] = 'localhost' is not a 'host:port' address",
        ),
        ({"cluster": {"worker": ["h:99999"]}}, r"port in 1..65535"),
        ({"cluster": {"worker": ["h:1", "h:1"]}}, r"'h:1' is used twice \(worker:0 and worker:1\)"),
        ({"cluster": {"chief": ["h:1", "h:2"]}}, r"at most one chief"),
        (
            {"cluster": {"worker": ["h:1"]}, "task": {"type": "ps", "index": 0}},
            r"task type 'ps' is not a job of the cluster \['worker'\]",
        ),
        (
            {"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}},
            r"task index 2 is out of range for job 'worker', which has 2 task\(s\)",
        ),
        (
            {"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": "0"}},
            r"task index must be an int, received '0'",
        ),
        (
            {"cluster": {"worker": ["h:1"]}, "task": {"type": "worker"}},
            r"'task' must be a dict with 'type' and 'index'",
        ),
    ],
)
def test_malformed_tf_config_names_the_key(config, match):
    with pytest.raises(ValueError, match=match):
        distribute.parse_tf_config(config)
    with pytest.raises(ValueError, match=match):  # every entry point validates it
        distribute.get_strategy("multi_worker", tf_config=config)


def test_malformed_tf_config_env_and_type(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{bad")
    with pytest.raises(ValueError, match="the TF_CONFIG environment variable is not valid JSON"):
        distribute.get_strategy("auto")
    with pytest.raises(TypeError, match="must be a dict or a JSON string, received int"):
        distribute.parse_tf_config(3)


def test_local_tf_config_ports_tasks_and_env(monkeypatch):
    cfg = distribute.local_tf_config(workers=2, ps=1, chief=True, task=("chief", 0))
    cluster = cfg["cluster"]
    assert {k: len(v) for k, v in cluster.items()} == {"chief": 1, "worker": 2, "ps": 1}
    addresses = [a for v in cluster.values() for a in v]
    assert all(a.startswith("127.0.0.1:") for a in addresses)
    ports = [int(a.rsplit(":", 1)[1]) for a in addresses]
    assert len(set(ports)) == 4
    for p in ports:  # free right now
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
    assert cfg["task"] == {"type": "chief", "index": 0}
    assert distribute.parse_tf_config(cfg)["cluster"] == cluster
    # set_env writes os.environ itself: a setenv first makes monkeypatch restore the variable's
    # state after the test (a delenv of an absent variable records nothing, and the worker-1
    # TF_CONFIG leaked into every later test of this xdist worker)
    monkeypatch.setenv("TF_CONFIG", "")
    monkeypatch.delenv("TF_CONFIG")
    fixed = distribute.local_tf_config(2, task=("worker", 1), ports=[21000, 21001], set_env=True)
    assert fixed["cluster"] == {"worker": ["127.0.0.1:21000", "127.0.0.1:21001"]}
    assert json.loads(os.environ["TF_CONFIG"]) == fixed
    assert not distribute.is_chief()
    with pytest.raises(ValueError, match="`workers` must be an int >= 1, received 0"):
        distribute.local_tf_config(0)
    with pytest.raises(ValueError, match=r"`ports` has 1 entries for 2 tasks"):
        distribute.local_tf_config(2, ports=[21000])
    with pytest.raises(ValueError, match=r"`ports` must be distinct"):
        distribute.local_tf_config(2, ports=[21000, 21000])
    with pytest.raises(ValueError, match=r"`task` \('worker', 2\) does not fit the cluster"):
        distribute.local_tf_config(2, task=("worker", 2))
    with pytest.raises(ValueError, match=r"`task` \('ps', 0\) does not fit.*not a job"):
        distribute.local_tf_config(2, task=("ps", 0))


# --------------------------------------------------------------------------- strategies


def test_resolve_auto(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.resolve_strategy_name("auto") == "default"  # no GPU, no TPU here
    assert distribute.resolve_strategy_name("auto", tf_config=WORKERS2) == "multi_worker"
    assert distribute.resolve_strategy_name("auto", tf_config=PS_CLUSTER) == "parameter_server"
    worker = dict(PS_CLUSTER, task={"type": "ps", "index": 1})
    with pytest.raises(ValueError, match=r"task ps:1 of a parameter-server cluster.*run_server"):
        distribute.resolve_strategy_name("auto", tf_config=worker)
    monkeypatch.setenv("TF_CONFIG", json.dumps(WORKERS2))
    assert distribute.resolve_strategy_name("auto") == "multi_worker"
    assert distribute.resolve_strategy_name("mirrored") == "mirrored"


def test_get_strategy_default_and_mirrored(monkeypatch, caplog):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    default = distribute.get_strategy("auto")
    assert default is distribute.get_strategy("default")
    assert default.num_replicas_in_sync == 1 and not tf.distribute.has_strategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored = distribute.get_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == len(cpus) == 2
    assert sorted(d.split("/")[-1] for d in mirrored.extended.worker_devices) == sorted(
        d.split("/")[-1] for d in cpus
    )
    with caplog.at_level(logging.INFO, logger="tfcompress"):
        one = distribute.get_strategy("mirrored", devices=["/cpu:1"])
    assert one.num_replicas_in_sync == 1 and one.extended.worker_devices[0].endswith("CPU:1")
    assert "no data parallelism" in caplog.text


def test_get_strategy_bad_inputs():
    with pytest.raises(
        ValueError,
        match=r"Unknown strategy name 'horovod'; valid names are "
        r"\['auto', 'default', 'mirrored'",
    ):
        distribute.get_strategy("horovod")
    with pytest.raises(ValueError, match=r"'tpu' strategy is not available: no TPU"):
        distribute.get_strategy("tpu")
    with pytest.raises(ValueError, match=r"`devices`: '/gpu:0' is not a logical device"):
        distribute.get_strategy("mirrored", devices=["/gpu:0"])
    with pytest.raises(ValueError, match=r"`devices` lists a device twice"):
        distribute.get_strategy("mirrored", devices=["/cpu:0", "/CPU:0"])
    with pytest.raises(ValueError, match=r"`devices` applies to the 'mirrored' strategy only"):
        distribute.get_strategy("default", devices=["/cpu:0"])
    with pytest.raises(ValueError, match=r"`communication` applies to 'multi_worker' only"):
        distribute.get_strategy("mirrored", communication="ring")
    with pytest.raises(ValueError, match=r"`communication` must be one of"):
        distribute.get_strategy("multi_worker", tf_config=WORKERS2, communication="mpi")
    with pytest.raises(ValueError, match=r"describes a parameter-server cluster"):
        distribute.get_strategy("multi_worker", tf_config=PS_CLUSTER)
    with pytest.raises(ValueError, match=r"TF_CONFIG has no 'task'"):
        distribute.get_strategy("multi_worker", tf_config={"cluster": WORKERS2["cluster"]})
    with pytest.raises(
        ValueError,
        match=r"needs a TF_CONFIG cluster with 'worker' and 'ps'.*"
        r"\['worker'\]",
    ):
        distribute.get_strategy("parameter_server", tf_config=WORKERS2)
    with pytest.raises(ValueError, match=r"built by the coordinator.*task worker:0"):
        distribute.get_strategy(
            "parameter_server", tf_config=dict(PS_CLUSTER, task={"type": "worker", "index": 0})
        )
    with pytest.raises(ValueError, match=r"`variable_partitioner` must be 'default', None"):
        distribute.get_strategy(
            "parameter_server", tf_config=PS_CLUSTER, variable_partitioner="even"
        )
    with pytest.raises(ValueError, match=r"run_server\(\) runs 'worker' or 'ps' tasks"):
        distribute.run_server(PS_CLUSTER)


def test_split_cpu_after_initialisation():
    names = distribute.split_cpu(2)  # conftest made two logical CPUs before TF started
    assert names == [d.name for d in tf.config.list_logical_devices("CPU")]
    with pytest.raises(
        RuntimeError,
        match=r"split_cpu\(3\): TensorFlow is already initialised "
        r"with 2 logical CPU\(s\).*Call",
    ):
        distribute.split_cpu(3)
    with pytest.raises(ValueError, match="`n` must be an int >= 1, received 0"):
        distribute.split_cpu(0)


@pytest.mark.multiprocess
def test_split_cpu_in_a_fresh_process_feeds_mirrored():
    code = (
        "from tfcompress import distribute as d; names = d.split_cpu(3); "
        "s = d.get_strategy('mirrored'); print(len(names), s.num_replicas_in_sync)"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert out.stdout.split()[-2:] == ["3", "3"]


# --------------------------------------------------------------------------- chief only


def test_is_chief_and_chief_only_path(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.is_chief()
    assert distribute.is_chief(tf_config=dict(WORKERS2, task={"type": "worker", "index": 0}))
    assert not distribute.is_chief(tf_config=WORKERS2)
    assert distribute.is_chief(tf_config=PS_CLUSTER)
    assert not distribute.is_chief(tf_config=dict(PS_CLUSTER, task={"type": "worker", "index": 0}))
    target = tmp_path / "out" / "model.tflite"
    with distribute.chief_only_path(target) as p:
        assert p == str(target) and target.parent.is_dir()
        target.write_bytes(b"chief")
    with distribute.chief_only_path(tmp_path / "other.tflite", tf_config=WORKERS2) as p:
        assert p.endswith("other.tflite") and not p.startswith(str(tmp_path))
        with open(p, "wb") as f:
            f.write(b"worker 1")
        temp_dir = os.path.dirname(p)
    assert not os.path.exists(temp_dir)  # removed
    assert not (tmp_path / "other.tflite").exists() and target.read_bytes() == b"chief"
    with (
        pytest.raises(TypeError, match="`path` must be a non-empty str"),
        distribute.chief_only_path(""),
    ):
        pass
    with pytest.raises(TypeError, match="`strategy` must be a tf.distribute.Strategy"):
        distribute.is_chief("mirrored")


# --------------------------------------------------------------------------- fits


@pytest.fixture(scope="module")
def train(ctr):
    """ctr.train in one fixed order (ctr.train reshuffles every epoch), 7 full batches of 64
    (one batch shape: no re-tracing, one XLA compilation)."""
    batches = list(ctr.train.as_numpy_iterator())
    features = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    labels = np.concatenate([b[1] for b in batches])
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(64, drop_remainder=True)


@pytest.fixture(scope="module")
def initial(ctr):
    """Initial dcn-tiny weights, so that every run starts from the same point."""
    keras.utils.set_random_seed(0)
    return models.dcn(ctr.schema, size="tiny").get_weights()


def _dcn(ctr, initial):
    model = models.dcn(ctr.schema, size="tiny")
    model.set_weights(initial)
    return model


def _fit(strategy, ctr, train, initial, epochs=2, **compile_kw):
    with strategy.scope():
        model = _dcn(ctr, initial)
        model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", **compile_kw)
    history = model.fit(train, epochs=epochs, verbose=0)
    return model, history.history["loss"]


def test_fit_under_get_strategy_matches_single_device(ctr, train, initial):
    single, single_loss = _fit(distribute.get_strategy("default"), ctr, train, initial)
    mirrored, mirrored_loss = _fit(distribute.get_strategy("mirrored"), ctr, train, initial)
    np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-4)
    assert mirrored_loss[-1] < mirrored_loss[0]
    with (
        pytest.raises(ValueError, match=r"must run outside `strategy.scope\(\)`"),
        distribute.get_strategy("mirrored").scope(),
    ):
        distribute.to_local_model(mirrored)
    plain = distribute.to_local_model(mirrored)
    assert not any(isinstance(w, tf.distribute.DistributedValues) for w in plain.weights)
    assert any(isinstance(w, tf.distribute.DistributedValues) for w in mirrored.weights)
    features = next(iter(ctr.test))[0]
    np.testing.assert_allclose(plain(features), mirrored(features), atol=1e-6)
    np.testing.assert_allclose(plain(features), single(features), atol=1e-4)
    with pytest.raises(TypeError, match="`model` must be a tf_keras.Model"):
        distribute.to_local_model("model")


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.at = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError(f"interrupted at epoch {epoch}")


def _interrupted_then_resumed(compress, callbacks, train, tmp_path, epochs=3, at=2):
    """Fit ``compress()`` uninterrupted, then again interrupted at epoch ``at`` and resumed by
    BackupAndRestore (listed after ``callbacks()``: its on_train_begin restores the optimizer
    step after theirs). Returns ``(reference, its history, resumed, the resumed history)``."""

    def run(backup, interrupt=None):
        model = compress()
        model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
        extra = [keras.callbacks.BackupAndRestore(str(backup))]
        if interrupt is not None:
            extra.append(_Interrupt(interrupt))
        history = model.fit(train, epochs=epochs, callbacks=[*callbacks(), *extra], verbose=0)
        return model, history.history

    reference, ref_history = run(tmp_path / "a")
    with pytest.raises(RuntimeError, match=f"interrupted at epoch {at}"):
        run(tmp_path / "b", interrupt=at)
    keras.backend.clear_session()
    resumed, history = run(tmp_path / "b")
    return reference, ref_history, resumed, history


def _schedule(model):
    return model.get_layer("prune_low_magnitude_mlp_0").pruning_schedule


def test_backup_and_restore_resumes_pruning_to_the_exact_target(ctr, train, initial, tmp_path):
    steps = len(list(train))
    # tfcompress.prune with steps=None: the schedule is sized per fit.
    reference, ref_history, resumed, history = _interrupted_then_resumed(
        lambda: tfcompress.prune(_dcn(ctr, initial), 0.75),
        lambda: [tfcompress.PruningCallback()],
        train,
        tmp_path,
    )
    assert len(history["loss"]) == 1  # resumed at epoch 2, not restarted
    assert history["loss"][0] == pytest.approx(ref_history["loss"][-1], rel=1e-3)
    assert int(resumed.optimizer.iterations.numpy()) == 3 * steps  # the step was restored
    # steps=None: the resumed fit continues the interrupted fit's schedule, sized over all its
    # steps from step 0 and from the sparsity it started at (restored with the checkpoint), so
    # it prunes exactly as the uninterrupted fit did (issue 14)
    schedule = _schedule(resumed)
    assert schedule.steps_done(3 * steps) == 3 * steps
    assert schedule.end_step == _schedule(reference).end_step
    assert schedule.initial_sparsity == 0.0
    for a, b in zip(resumed.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert history["sparsity"][0] == pytest.approx(0.75, abs=0.005)  # ramped, not only final
    report = tfcompress.pruning.sparsity_report(tfcompress.pruning.strip(resumed))
    assert report.overall == pytest.approx(0.75, abs=0.005)
    assert report.overall == pytest.approx(
        tfcompress.pruning.sparsity_report(tfcompress.pruning.strip(reference)).overall, abs=1e-6
    )
    for layer in ("cross_0", "mlp_0", "emb_user_id", "emb_item_id", "emb_hour"):
        assert report[layer] == pytest.approx(0.75, abs=0.005), layer


def test_backup_and_restore_resumes_qat_with_its_quantizer_ranges(ctr, train, initial, tmp_path):
    reference, ref_history, resumed, history = _interrupted_then_resumed(
        lambda: tfcompress.quantize(_dcn(ctr, initial)), list, train, tmp_path
    )
    assert len(history["loss"]) == 1  # resumed at epoch 2, not restarted
    assert history["loss"][0] == pytest.approx(ref_history["loss"][-1], rel=1e-3)
    # The quantizer ranges (QAT state) came back with the weights and trained on like the
    # uninterrupted run's.
    ranges = tfcompress.quantization.quantizer_ranges(resumed)
    ref_ranges = tfcompress.quantization.quantizer_ranges(reference)
    assert ranges and set(ranges) == set(ref_ranges)
    for key, value in ref_ranges.items():
        assert ranges[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    batch = next(iter(train))[0]
    np.testing.assert_allclose(resumed(batch).numpy(), reference(batch).numpy(), atol=2e-3)


# --------------------------------------------------------------------------- acceleration


def test_mixed_precision_fit_keeps_float32_outputs(ctr):
    before = keras.mixed_precision.global_policy().name
    for policy, optimizer in (("mixed_bfloat16", "Adam"), ("mixed_float16", "LossScaleOptimizer")):
        keras.utils.set_random_seed(0)
        with acceleration.mixed_precision(policy) as active:
            assert active.name == policy
            model = models.compile_for_task(
                models.dcn(ctr.schema, size="tiny"), ctr.schema, learning_rate=1e-2
            )
        assert keras.mixed_precision.global_policy().name == before
        assert model.get_layer("logits").compute_dtype == policy.split("_")[1]
        assert type(model.optimizer).__name__.startswith(optimizer)
        assert acceleration.check_float32_outputs(model) is model
        assert {w.dtype for w in model.weights} == {tf.float32}
        history = model.fit(ctr.train, epochs=3, verbose=0).history["loss"]
        assert history[-1] < history[0] and np.isfinite(history).all()
        assert model.predict(ctr.test, verbose=0).dtype == np.float32
    with acceleration.mixed_precision(None) as unchanged:
        assert unchanged.name == before
    with (
        pytest.raises(ValueError, match=r"`policy` must be one of \['mixed_float16'"),
        acceleration.mixed_precision("float8"),
    ):
        pass
    with acceleration.mixed_precision("mixed_float16"):
        inp = keras.Input((3,))
        half = keras.Model(inp, keras.layers.Dense(1, name="head")(inp))
    with pytest.raises(ValueError, match=r"output of layer 'head' is float16, not float32"):
        acceleration.check_float32_outputs(half)


def test_mixed_precision_with_tfcompress_pruning(ctr):
    """tfcompress.prune under mixed_float16: Embedding wrappers compute in float32 (TFMOT's
    float16 mask times the float32 table failed), the Dense wrappers in float16."""
    keras.utils.set_random_seed(0)
    with acceleration.mixed_precision("mixed_float16"):
        pruned = tfcompress.prune(models.dcn(ctr.schema, size="tiny"), 0.5)
        pruned.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    assert type(pruned.optimizer).__name__.startswith("LossScaleOptimizer")
    assert pruned.get_layer("prune_low_magnitude_mlp_0").compute_dtype == "float16"
    assert pruned.get_layer("prune_low_magnitude_emb_item_id").compute_dtype == "float32"
    assert pruned.get_layer("prune_low_magnitude_emb_item_id").layer.compute_dtype == "float16"
    assert {w.dtype for w in pruned.weights if w.dtype.is_floating} == {tf.float32}
    history = pruned.fit(
        ctr.train, epochs=2, callbacks=[tfcompress.PruningCallback()], verbose=0
    ).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    assert history["sparsity"][-1] == pytest.approx(0.5, abs=0.005)
    stripped = tfcompress.pruning.strip(pruned)
    assert acceleration.check_float32_outputs(stripped) is stripped
    assert stripped.get_layer("mlp_0").compute_dtype == "float16"
    assert tfcompress.pruning.sparsity_report(stripped).overall == pytest.approx(0.5, abs=0.005)
    features = next(iter(ctr.test))[0]
    np.testing.assert_allclose(stripped(features), pruned(features), atol=1e-3)


@pytest.mark.slow
def test_jit_compile_fit_of_a_pruned_reference_model(ctr, train, initial):
    """XLA training of dcn-tiny pruned with tfcompress.prune (mask updates in tf.cond, the
    schedule's steps in variables): the same losses as without XLA (up to fusion round-off)
    and the exact target sparsity."""
    runs = {}
    for jit in (False, True):
        pruned = tfcompress.prune(_dcn(ctr, initial), 0.5)
        pruned.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
        assert acceleration.set_jit_compile(pruned, jit) is jit and pruned.jit_compile is jit
        loss = pruned.fit(
            train, epochs=2, callbacks=[tfcompress.PruningCallback()], verbose=0
        ).history["loss"]
        runs[jit] = loss, tfcompress.pruning.strip(pruned)
    (xla_loss, xla), (plain_loss, plain) = runs[True], runs[False]
    np.testing.assert_allclose(xla_loss, plain_loss, rtol=2e-3)
    assert xla_loss[-1] < xla_loss[0]
    xla_report = tfcompress.pruning.sparsity_report(xla)
    assert xla_report.overall == pytest.approx(0.5, abs=0.005)
    for name in ("cross_0", "mlp_0", "emb_user_id", "emb_item_id"):
        a, b = xla.get_layer(name).weights[0].numpy(), plain.get_layer(name).weights[0].numpy()
        assert xla_report[name] == pytest.approx(0.5, abs=0.005), name
        assert np.mean((a == 0) == (b == 0)) > 0.95, name  # nearly the same masks


def test_set_jit_compile_bad_inputs(mirrored):
    with mirrored.scope():
        inp = keras.Input((2,))
        replicated = keras.Model(inp, keras.layers.Dense(1)(inp))
        replicated.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"MirroredStrategy with 2 replicas on CPU devices: XLA"):
        acceleration.set_jit_compile(replicated)
    assert acceleration.set_jit_compile(replicated, False) is False
    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    with pytest.raises(ValueError, match=r"model '.*' is not compiled; call model.compile"):
        acceleration.set_jit_compile(model)
    model.compile("sgd", "mse")
    with pytest.raises(TypeError, match="`enabled` must be True or False, received 1"):
        acceleration.set_jit_compile(model, 1)
    with pytest.raises(TypeError, match="`model` must be a tf_keras.Model"):
        acceleration.set_jit_compile(object())


def _ops(graph, op_type):
    return [op for op in graph.get_operations() if op.type == op_type]


def test_embeddings_on_cpu_places_tables_and_lookups_on_the_host(ctr, tmp_path):
    host, accelerator = "/CPU:0", "/CPU:1"  # logical devices standing in for host and GPU
    keras.utils.set_random_seed(0)
    original = models.dcn(ctr.schema, size="tiny")
    with tf.device(accelerator):
        placed = acceleration.embeddings_on_cpu(original, host=host, skip="emb_platform")
    tables = {
        layer.name: layer for layer in placed.layers if isinstance(layer, keras.layers.Embedding)
    }
    assert len(tables) == 9
    assert type(tables["emb_platform"]) is keras.layers.Embedding  # skipped
    moved = [t for n, t in tables.items() if n != "emb_platform"]
    assert all(isinstance(t, acceleration.HostEmbedding) for t in moved)
    for t in moved:
        assert t.embeddings.device.endswith("device:CPU:0"), t.embeddings.device
    assert tables["emb_platform"].embeddings.device.endswith("device:CPU:1")
    assert placed.get_layer("mlp_0").kernel.device.endswith("device:CPU:1")
    assert placed.get_layer("cross_0").kernel.device.endswith("device:CPU:1")
    features = next(iter(ctr.test))[0]
    np.testing.assert_array_equal(placed(features), original(features))  # same weights

    # lookups are pinned to the host; the dense tower runs on the "accelerator"
    @tf.function
    def serve(x):
        with tf.device(accelerator):
            return placed(x)

    graph = serve.get_concrete_function(
        {k: tf.TensorSpec(v.shape, v.dtype) for k, v in features.items()}
    ).graph
    gathers = _ops(graph, "ResourceGather")
    # one per lookup: 9 categorical ids + the two history sequences (shared item/category
    # tables); all but the skipped platform table on the host
    assert len(gathers) == 11
    on_host = [op for op in gathers if op.device.endswith("CPU:0")]
    assert len(on_host) == 10
    assert [op.device[-5:] for op in gathers if op not in on_host] == ["CPU:1"]
    matmuls = _ops(graph, "MatMul")
    assert matmuls and all(op.device.endswith("CPU:1") for op in matmuls)
    # it trains (sparse updates on the host) and round-trips through .keras
    with tf.device(accelerator):
        models.compile_for_task(placed, ctr.schema, learning_rate=1e-2)
        loss = placed.fit(ctr.train, epochs=2, verbose=0).history["loss"]
    assert loss[-1] < loss[0]
    assert tables["emb_item_id"].embeddings.device.endswith("device:CPU:0")
    path = tmp_path / "placed.keras"
    placed.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("emb_item_id"), acceleration.HostEmbedding)
    np.testing.assert_allclose(loaded(features), placed(features), atol=1e-6)


def test_embeddings_on_cpu_bad_inputs(ctr, mirrored):
    model = models.dcn(ctr.schema, size="tiny")
    with pytest.raises(ValueError, match=r"`host` must name a CPU device.*'/GPU:0'"):
        acceleration.embeddings_on_cpu(model, host="/GPU:0")
    with pytest.raises(TypeError, match=r"`host` must be a device name"):
        acceleration.embeddings_on_cpu(model, host=0)
    with pytest.raises(ValueError, match=r"`skip` entry 'emb_nope' matches no layer"):
        acceleration.embeddings_on_cpu(model, skip="emb_nope")
    with pytest.raises(ValueError, match=r"leaves no Embedding layer"):
        acceleration.embeddings_on_cpu(model, skip=keras.layers.Embedding)
    inp = keras.Input((2,))
    with pytest.raises(ValueError, match=r"has no keras.layers.Embedding layer"):
        acceleration.embeddings_on_cpu(keras.Model(inp, keras.layers.Dense(1)(inp)))
    with (
        pytest.raises(ValueError, match=r"inside a multi-replica strategy scope"),
        mirrored.scope(),
    ):
        acceleration.embeddings_on_cpu(model)
    with pytest.raises(TypeError, match="`model` must be a tf_keras.Model"):
        acceleration.embeddings_on_cpu("dcn")
