"""Shared steps of the CTR benchmark scripts (imported by name: scripts run from this folder)."""

from __future__ import annotations

from tfcompress import data, models
from tfcompress._keras import keras


def fit_best(model: keras.Model, task: data.TaskData, epochs: int, callbacks=()) -> None:
    """Fit up to ``epochs`` epochs and keep the epoch with the best validation AUC.

    Compression callbacks come after EarlyStopping, so that e.g. PruningCallback's final masks
    apply to the restored weights.
    """
    best = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=2, restore_best_weights=True
    )
    model.fit(
        task.train,
        validation_data=task.validation,
        epochs=epochs,
        callbacks=[best, *callbacks],
        verbose=2,
    )


def trained_dcn_student(samples: int, seed: int, lr: float, epochs: int):
    """The simulated CTR task and the reference DCN student trained on it (Adam ``lr``)."""
    keras.utils.set_random_seed(seed)
    task = data.load_task("ctr", n_samples=samples, seed=seed, batch_size=512)
    model = models.compile_for_task(
        models.dcn(task.schema, size="student"), task.schema, learning_rate=lr
    )
    print(f"Training dcn student ({model.count_params():,} parameters), up to {epochs} epochs")
    fit_best(model, task, epochs)
    return task, model
