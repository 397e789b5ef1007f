"""Tests of tfcompress.distribute.launch: local clusters in subprocesses (multi-worker, parameter
server).

The worker functions are module-level so the worker processes can import them by name.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

import tfcompress
from tfcompress import distribute, export, models
from tfcompress._keras import keras, tf
from tfcompress.data import load_task
from tfcompress.distribute.launch import LaunchTimeoutError, WorkerError, launch_local

TARGET = 0.5
EPOCHS = 3
STEPS = 4  # batches per epoch


# --------------------------------------------------------------------------- worker functions


def _task_info(strategy, x, y=0):
    cfg = json.loads(os.environ["TF_CONFIG"])
    return {
        "task": cfg["task"],
        "sum": x + y,
        "strategy": strategy,
        "chief": distribute.is_chief(),
        "pid": os.getpid(),
        "keras": os.environ.get("TF_USE_LEGACY_KERAS"),
    }


def _fail_in_worker_1(strategy, pid_file):
    cfg = json.loads(os.environ["TF_CONFIG"])
    with open(f"{pid_file}.{cfg['task']['index']}", "w") as f:
        f.write(str(os.getpid()))
    if cfg["task"]["index"] == 1:
        # fail only once worker 0 has recorded its pid (a fixed sleep raced on a loaded machine)
        deadline = time.monotonic() + 60
        while not os.path.exists(f"{pid_file}.0") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        raise ValueError("worker 1 cannot fit: bad shard")
    time.sleep(120)


def _sleep(strategy, seconds):
    time.sleep(seconds)


class _KillWorker(keras.callbacks.Callback):
    """SIGKILLs worker ``worker`` in batch 2 of epoch ``epoch`` (a hard crash mid-epoch).

    Batch 2 of that epoch has an all-reduce with every worker, so the other workers have written
    their epoch-(epoch-1) backup by then.
    """

    def __init__(self, epoch: int, worker: int) -> None:
        super().__init__()
        self.kill_epoch, self.worker, self.epoch = epoch, worker, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (
            self.epoch == self.kill_epoch
            and batch == 1
            and not distribute.is_chief()
            and (json.loads(os.environ["TF_CONFIG"])["task"]["index"] == self.worker)
        ):
            os.kill(os.getpid(), signal.SIGKILL)


def _ctr(batch_size: int = 64):
    return load_task("ctr", n_samples=1200, seed=0, batch_size=batch_size)


def _ctr_sharded_by_data():
    """The ctr task and STEPS training batches, sharded across workers by data; seeds set."""
    task = _ctr()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    keras.utils.set_random_seed(1)
    return task, task.train.take(STEPS).with_options(options)


def _prune_fit_worker(strategy, out_dir, backup_dir, kill_epoch=None):
    """Prune dcn-tiny to TARGET with tfcompress.prune (steps=None: sized per fit) +
    PruningCallback + BackupAndRestore under the strategy; the chief exports the stripped
    model."""
    task, train = _ctr_sharded_by_data()
    with strategy.scope():
        pruned = tfcompress.prune(models.dcn(task.schema, size="tiny"), TARGET)
        pruned.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    callbacks = [tfcompress.PruningCallback(), keras.callbacks.BackupAndRestore(backup_dir)]
    if kill_epoch is not None:
        callbacks.append(_KillWorker(kill_epoch, worker=1))
    history = pruned.fit(train, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    schedule = pruned.get_layer("prune_low_magnitude_mlp_0").pruning_schedule
    iterations = int(pruned.optimizer.iterations.numpy())
    stripped = tfcompress.pruning.strip(pruned)
    report = tfcompress.pruning.sparsity_report(stripped)
    with distribute.chief_only_path(os.path.join(out_dir, "pruned.tflite"), strategy) as path:
        result = export.export_tflite(stripped, path, parity_data=task.test)
    return {
        "epochs_run": len(history.history["loss"]),
        "iterations": iterations,
        "schedule_steps": schedule.steps_done(iterations),
        "epoch_sparsity": history.history["sparsity"],
        "overall": report.overall,
        "layers": report.layers,
        "chief": distribute.is_chief(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "exported": str(result.path),
        "parity": result.parity["max_abs_diff"],
        "exists": os.path.exists(result.path),
    }


def _qat_student_distill_worker(strategy):
    """Distillation-aware QAT under the strategy: a tfcompress.quantize student inside a
    Distiller; returns a checksum of the trained student's weights."""
    task, train = _ctr_sharded_by_data()
    with strategy.scope():
        teacher = models.dcn(task.schema, size="tiny")
        student = tfcompress.quantize(models.dcn(task.schema, size="tiny"))
        distiller = tfcompress.Distiller(student, teacher, student_loss_weight=0.5)
        distiller.compile(keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    history = distiller.fit(train, epochs=EPOCHS, verbose=0)
    checksum = sum(
        float(np.abs(np.asarray(w, np.float64)).sum()) for w in distiller.student.get_weights()
    )
    return {
        "replicas": strategy.num_replicas_in_sync,
        "loss": history.history["loss"],
        "distillation_loss": history.history["distillation_loss"],
        "checksum": checksum,
        "quantized": tfcompress.quantization.is_quantized(distiller.student),
    }


def _parameter_server_worker(strategy, out_dir):
    """Fit dcn-tiny with sharded embeddings; export a plain copy from the coordinator."""
    task = _ctr(batch_size=128)
    with strategy.scope():
        model = models.compile_for_task(
            models.dcn(task.schema, size="tiny"), task.schema, learning_rate=1e-2
        )
    emb = model.get_layer("emb_user_id").embeddings
    shards = [v.device for v in getattr(emb, "variables", [emb])]
    history = model.fit(task.train.repeat(), epochs=3, steps_per_epoch=6, verbose=0)
    full = np.concatenate([v.numpy() for v in emb.variables])
    features = next(iter(task.test))[0]
    sharded_out = model(features).numpy()
    plain = distribute.to_local_model(model)
    result = export.export_tflite(plain, os.path.join(out_dir, "ps.tflite"), parity_data=task.test)
    return {
        "class": type(emb).__name__,
        "shards": shards,
        "loss": history.history["loss"],
        "table_equal": bool(
            np.array_equal(plain.get_layer("emb_user_id").embeddings.numpy(), full)
        ),
        "plain_vs_sharded": float(np.abs(plain(features).numpy() - sharded_out).max()),
        "plain_vars": sorted({type(w).__name__ for w in plain.weights}),
        "strategy": type(strategy).__name__,
        "parity": result.parity["max_abs_diff"],
        "bytes": result.bytes,
    }


# --------------------------------------------------------------------------- fast launcher tests


def test_launch_runs_fn_in_every_worker_with_its_tf_config():
    results = launch_local(_task_info, 2, args=(1,), kwargs={"y": 2}, strategy=None)
    assert [r["task"] for r in results] == [{"type": "worker", "index": i} for i in range(2)]
    assert [r["sum"] for r in results] == [3, 3]
    assert [r["chief"] for r in results] == [True, False]
    assert all(r["strategy"] is None for r in results)
    assert len({r["pid"] for r in results} | {os.getpid()}) == 3
    assert all(r["keras"] == "1" for r in results)  # TF_USE_LEGACY_KERAS set for every task


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split(")")[-1].split()[0] != "Z"


def test_launch_worker_failure_raises_with_traceback_and_kills_the_others(tmp_path):
    pid_file = str(tmp_path / "pid")
    with pytest.raises(WorkerError, match=r"task worker:1 \(pid \d+\) exited with code 1") as err:
        launch_local(
            _fail_in_worker_1,
            2,
            args=(pid_file,),
            strategy=None,
            timeout=60,
            log_dir=tmp_path / "logs",
        )
    assert err.value.task == "worker:1" and err.value.returncode == 1
    message = str(err.value)
    assert "ValueError: worker 1 cannot fit: bad shard" in message
    assert "stopped the other tasks (worker:0)" in message
    assert "Full log:" in message and (tmp_path / "logs" / "worker-1.log").exists()
    pids = [int((tmp_path / f"pid.{i}").read_text()) for i in (0, 1)]
    assert not any(_alive(p) for p in pids)  # worker 0 (sleeping 120 s) was killed


def test_launch_timeout_kills_everything(tmp_path):
    start = time.monotonic()
    with pytest.raises(LaunchTimeoutError, match=r"did not finish within 1.5 s"):
        launch_local(_sleep, 2, args=(60,), strategy=None, timeout=1.5)
    assert time.monotonic() - start < 30


def _local_function():
    def inner(strategy):
        return 1

    return inner


def test_launch_bad_inputs():
    with pytest.raises(ValueError, match="module-level function"):
        launch_local(lambda s: 1, 2)
    with pytest.raises(ValueError, match="module-level function"):
        launch_local(_local_function(), 2)
    with pytest.raises(TypeError, match="`fn` must be a function"):
        launch_local(42, 2)
    with pytest.raises(ValueError, match="`workers` must be an int >= 1, received 0"):
        launch_local(_task_info, 0)
    with pytest.raises(ValueError, match="`ps` must be an int >= 0"):
        launch_local(_task_info, 1, ps=-1)
    with pytest.raises(ValueError, match="needs strategy='parameter_server'"):
        launch_local(_task_info, 1, ps=1, strategy="multi_worker")
    with pytest.raises(ValueError, match="needs `ps` >= 1"):
        launch_local(_task_info, 1, strategy="parameter_server")
    with pytest.raises(ValueError, match="`strategy` must be one of"):
        launch_local(_task_info, 1, strategy="mirrored")
    with pytest.raises(ValueError, match="`timeout` must be a number of seconds > 0"):
        launch_local(_task_info, 1, timeout=0)
    with pytest.raises(TypeError, match="`args` must be picklable"):
        launch_local(_task_info, 1, args=(lambda: 1,))
    with pytest.raises(TypeError, match="`args` must be a tuple"):
        launch_local(_task_info, 1, args=[1])
    with pytest.raises(TypeError, match="`env` must map str to str"):
        launch_local(_task_info, 1, env={"A": 1})


# --------------------------------------------------------------------------- real clusters


@pytest.mark.multiprocess
def test_multi_worker_prune_killed_worker_resumes_to_exact_target_and_chief_exports(tmp_path):
    out, backup = str(tmp_path / "out"), str(tmp_path / "backup")
    # 1) worker 1 is SIGKILLed in epoch 1: the launcher stops worker 0 and reports it.
    with pytest.raises(WorkerError, match=r"task worker:1 .* was killed by SIGKILL"):
        launch_local(_prune_fit_worker, 2, args=(out, backup, 1), timeout=240)
    assert os.listdir(backup), "BackupAndRestore wrote no backup before the crash"
    assert not os.path.exists(os.path.join(out, "pruned.tflite"))
    # 2) the same cluster again: BackupAndRestore resumes at epoch 1 with the pruning step.
    results = launch_local(_prune_fit_worker, 2, args=(out, backup), timeout=240)
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["epochs_run"] for r in results] == [EPOCHS - 1] * 2  # resumed, not restarted
    for r in results:
        assert r["iterations"] == EPOCHS * STEPS  # the optimizer step was restored
        # the resumed fit continued the schedule of the interrupted one (sized over all its
        # epochs from step 0), exactly as if it had not been interrupted
        assert r["schedule_steps"] == EPOCHS * STEPS
        assert r["epoch_sparsity"][-1] == pytest.approx(TARGET, abs=0.005)
        assert r["overall"] == pytest.approx(TARGET, abs=0.005)
        for name in ("cross_0", "mlp_0", "emb_user_id", "emb_item_id", "emb_hour"):
            assert r["layers"][name] == pytest.approx(TARGET, abs=0.005), name
    chief, other = results
    assert chief["layers"] == other["layers"]  # replicas agree on the masks
    assert chief["chief"] and not other["chief"]
    assert chief["exists"] and chief["exported"] == os.path.join(out, "pruned.tflite")
    assert not other["exists"] and other["exported"] != chief["exported"]
    assert sorted(os.listdir(out)) == ["manifest.json", "pruned.tflite"]
    assert chief["parity"] < 1e-4
    assert not os.path.exists(backup) or not os.listdir(backup)  # deleted after success


@pytest.mark.multiprocess
def test_multi_worker_distillation_aware_qat_keeps_workers_in_sync():
    results = launch_local(_qat_student_distill_worker, 2, timeout=240)
    assert [r["replicas"] for r in results] == [2, 2]
    for r in results:
        assert r["quantized"]
        assert r["loss"][-1] < r["loss"][0]
        assert r["distillation_loss"][-1] < r["distillation_loss"][0]
    chief, other = results
    assert other["checksum"] == pytest.approx(chief["checksum"], rel=1e-6)  # same weights
    assert other["loss"] == pytest.approx(chief["loss"], rel=1e-6)


@pytest.mark.multiprocess
def test_parameter_server_fit_with_sharded_embedding_exports(tmp_path):
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=4 << 10, max_shards=2
    )
    (result,) = launch_local(
        _parameter_server_worker,
        1,
        ps=2,
        args=(str(tmp_path),),
        strategy_options={"variable_partitioner": partitioner},
        timeout=240,
    )
    assert result["strategy"].startswith("ParameterServerStrategy")
    assert result["class"] == "ShardedVariable"
    assert len(result["shards"]) == 2
    assert {s.split("/")[1] for s in result["shards"]} == {"job:ps"}
    assert len({s.split("/")[3] for s in result["shards"]}) == 2  # one shard per ps task
    assert result["loss"][-1] < result["loss"][0]
    assert result["table_equal"] and result["plain_vs_sharded"] < 1e-6
    assert result["plain_vars"] == ["ResourceVariable"]
    assert result["parity"] < 1e-4 and result["bytes"] > 0
    assert (tmp_path / "ps.tflite").stat().st_size == result["bytes"]
