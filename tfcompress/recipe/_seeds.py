"""A run's randomness as a function of the recipe seed, the stage and the epoch (initial weights,
training order, dropout), so a resumed run equals an uninterrupted one (docs/recipes.md).
"""

from __future__ import annotations

from typing import Any

from tfcompress._keras import keras, tf

#: Layer classes that draw random numbers in training (``BaseRandomLayer`` covers Keras' own
#: dropout, noise and augmentation layers; the tuple is the fallback for older layers).
_RANDOM_LAYERS: tuple[type, ...] = (
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)
_BASE_RANDOM = getattr(
    getattr(getattr(keras, "__internal__", None), "layers", None), "BaseRandomLayer", None
)
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
