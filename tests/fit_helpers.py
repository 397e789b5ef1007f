"""Test helper callbacks (imported by name: pytest puts tests/ on sys.path)."""

from tfcompress._keras import keras


class RestoreFirstEpoch(keras.callbacks.Callback):
    """What EarlyStopping(restore_best_weights=True) does when the first epoch was best."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.snapshot = self.model.get_weights()

    def on_train_end(self, logs=None):
        self.model.set_weights(self.snapshot)
