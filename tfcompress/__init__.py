"""tfcompress: make tf_keras e-commerce models smaller and faster, and ship them."""

from tfcompress import keras_compat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)

__version__ = "0.1.0"
