"""tfcompress._validation: one copy of each argument check, one message style."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfcompress._keras import keras
from tfcompress._validation import (
    check_bool,
    check_choice,
    check_float,
    check_functional,
    check_int,
    is_functional,
    must_be,
)


def test_message_style_names_argument_value_type_and_fix():
    text = must_be("seed", "an int >= 0", -1, "Pass e.g. seed=0.", where="load")
    assert text == "load: `seed` must be an int >= 0, received -1 (int). Pass e.g. seed=0."
    long = must_be("x", "a str", "a" * 200)
    assert len(long) < 140 and long.endswith("... (str).")


def test_check_int_accepts_python_and_numpy_ints():
    assert check_int(3, "n") == 3
    value = check_int(np.int64(7), "n", minimum=1, maximum=7)
    assert value == 7 and type(value) is int
    assert check_int(np.uint8(0), "n", minimum=0) == 0


@pytest.mark.parametrize("bad", [True, False, 2.0, "3", None, np.float32(1), np.bool_(True)])
def test_check_int_rejects_bool_float_and_text(bad):
    with pytest.raises(TypeError, match=r"^`count` must be an int >= 1, received .* Pass e\.g"):
        check_int(bad, "count", minimum=1, fix="Pass e.g. count=4.")


def test_check_int_bounds():
    with pytest.raises(ValueError, match=r"`n` must be an int >= 1, received 0 \(int\)\.$"):
        check_int(0, "n", minimum=1)
    with pytest.raises(ValueError, match=r"`n` must be an int in \[1, 5\], received 6 \(int\)"):
        check_int(6, "n", minimum=1, maximum=5)
    with pytest.raises(ValueError, match=r"`n` must be an int <= 5, received 6"):
        check_int(6, "n", maximum=5)
    with pytest.raises(ValueError, match=r"^dcn: `n` must be an int >= 0, received -1"):
        check_int(np.int32(-1), "n", minimum=0, where="dcn")


def test_check_float_accepts_ints_and_numpy():
    assert check_float(1, "t") == 1.0 and type(check_float(1, "t")) is float
    assert check_float(np.float32(0.5), "t", minimum=0, maximum=1) == 0.5
    assert check_float(0.0, "t", minimum=0) == 0.0
    assert check_float(1.0, "t", maximum=1) == 1.0


@pytest.mark.parametrize("bad", [True, "0.5", None, [0.5]])
def test_check_float_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match=r"`alpha` must be a float in \[0, 1\], received "):
        check_float(bad, "alpha", minimum=0, maximum=1)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_check_float_rejects_nan_and_inf(bad):
    with pytest.raises(ValueError, match=r"`t` must be a finite float, received (nan|inf|-inf)"):
        check_float(bad, "t")


def test_check_float_bounds_open_and_closed():
    with pytest.raises(ValueError, match=r"`t` must be a finite float > 0, received 0 \(int\)"):
        check_float(0, "t", minimum=0, min_open=True)
    with pytest.raises(ValueError, match=r"`s` must be a finite float in \(0, 1\), received 1.0"):
        check_float(1.0, "s", minimum=0, maximum=1, min_open=True, max_open=True)
    with pytest.raises(ValueError, match=r"`s` must be a finite float in \[0, 1\], received -0.1"):
        check_float(-0.1, "s", minimum=0, maximum=1)
    with pytest.raises(ValueError, match=r"`s` must be a finite float < 1, received 1"):
        check_float(1, "s", maximum=1, max_open=True)


def test_check_bool():
    assert check_bool(True, "strict") is True
    assert check_bool(False, "strict") is False
    for bad in (1, 0, "yes", None, np.bool_(True)):
        with pytest.raises(TypeError, match=r"`strict` must be True or False, received "):
            check_bool(bad, "strict")
    with pytest.raises(TypeError, match=r"^dcn: `use_sequence` must be True or False, "):
        check_bool("no", "use_sequence", where="dcn")


def test_check_choice():
    assert check_choice("time", "mode", ("random", "time")) == "time"
    assert check_choice(None, "structure", (None, "2:4")) is None
    with pytest.raises(
        ValueError,
        match=r"`mode` must be one of \['random', 'time'\], received 'day' \(str\)\. "
        r"Pass e\.g\. mode='random'\.",
    ):
        check_choice("day", "mode", ["random", "time"])
    for bad in (True, 1.0, ["random"], np.array(["random", "time"])):
        with pytest.raises(ValueError, match=r"`mode` must be one of"):
            check_choice(bad, "mode", ("random", "time", 1))
    with pytest.raises(ValueError, match=r"received True \(bool\)"):
        check_choice(True, "bits", (1, 4, 8))
    assert check_choice(8, "bits", (4, 8)) == 8


def _functional() -> keras.Model:
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs), name="func")


class _Sub(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)


def test_check_functional_accepts_functional_and_sequential():
    func = _functional()
    seq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    assert check_functional(func, "prune") is func and is_functional(func)
    assert check_functional(seq, "quantize", built=True) is seq and is_functional(seq)


def test_check_functional_rejects_subclassed_unbuilt_and_non_models():
    sub = _Sub()
    assert not is_functional(sub) and not is_functional("model")
    with pytest.raises(
        ValueError,
        match=r"^prune: `model` must be a functional or Sequential model, received 'sub' "
        r"\(_Sub\), a subclassed model\. Apply prune to the functional models it holds",
    ):
        check_functional(sub, "prune")
    with pytest.raises(ValueError, match=r"subclassed model\. Use the student\.$"):
        check_functional(sub, "strip", fix="Use the student.")
    unbuilt = keras.Sequential([keras.layers.Dense(1)], name="lazy")
    assert check_functional(unbuilt, "prune") is unbuilt
    with pytest.raises(ValueError, match=r"`model` must be a built model, received 'lazy'"):
        check_functional(unbuilt, "quantize", built=True)
    with pytest.raises(TypeError, match=r"`model` must be a tf_keras.Model"):
        check_functional("model.keras", "prune")


def test_docstring_examples_run():
    import doctest

    from tfcompress import _validation

    result = doctest.testmod(_validation)
    assert result.attempted >= 8 and result.failed == 0
