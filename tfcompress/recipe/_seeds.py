"""A run's randomness as a function of the recipe seed, the stage and the epoch.

A resumed ``tfcompress run`` must equal an uninterrupted one, whichever stages ran in the same
process. Three sources of randomness would otherwise depend on the process's history:

* initial weights (the input model, a distilled student, layers a stage adds): each stage
  starts with ``keras.utils.set_random_seed(stage_seed(recipe seed, index))``;
* the training order: ``TaskData.train`` reshuffles by how often it was iterated in this
  process; each fit reads :func:`tfcompress.data.epochs.epoch_batches` instead, whose order is
  a function of the stage seed and the optimizer step at which the epoch starts (restored by
  ``BackupAndRestore`` with the weights);
* dropout and other random layers: TensorFlow's stateful random kernels restart with each new
  training function, so a fit resumed at epoch k would draw epoch 0's masks. :class:`EpochSeeds`
  sets TensorFlow's seed from ``(stage seed, epoch)`` and traces the training function again at
  each epoch of a model that has random layers, in the uninterrupted and the resumed fit alike.
"""

from __future__ import annotations

from typing import Any

from tfcompress._keras import keras, tf

#: Layer classes that draw random numbers in training (``BaseRandomLayer`` covers Keras' own
#: dropout, noise and augmentation layers; the tuple is the fallback for older layers).
_RANDOM_LAYERS: tuple[type, ...] = (
    keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)
_BASE_RANDOM = getattr(getattr(getattr(keras, "__internal__", None), "layers", None),
                       "BaseRandomLayer", None)
if _BASE_RANDOM is not None:
    _RANDOM_LAYERS = (*_RANDOM_LAYERS, _BASE_RANDOM)


def stage_seed(seed: int, index: int) -> int:
    """The seed of stage ``index`` (-1: the input model) of a run with recipe seed ``seed``."""
    return seed + index + 1


def epoch_seed(seed: int, epoch: int) -> int:
    """TensorFlow's global seed for ``epoch`` of a fit whose stage seed is ``seed``."""
    return (seed * 1_000_003 + epoch) % 2**31


def has_random_layers(model: keras.Model) -> bool:
    """Whether ``model`` (or a model nested in it, e.g. a Distiller's student) has a layer
    that draws random numbers in training."""
    return any(isinstance(m, _RANDOM_LAYERS) for m in (model, *model.submodules))


class EpochSeeds(keras.callbacks.Callback):
    """At each epoch's start, seed TensorFlow from ``(seed, epoch)`` and trace the training
    function again, so that dropout masks are a function of the epoch (not of how many epochs
    this process ran). Does nothing for a model without random layers."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self._active = False

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self._active = has_random_layers(model)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._active:
            return
        tf.random.set_seed(epoch_seed(self.seed, epoch))
        # fit reads model.train_function at every step: the new one, with fresh random kernels
        self.model.make_train_function(force=True)
