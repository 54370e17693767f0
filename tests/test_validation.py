"""Tests for the shared argument checks of `keras_segattn.validation`."""

import re

import numpy as np
import pytest

from keras_segattn.validation import check_bool
from keras_segattn.validation import check_fraction
from keras_segattn.validation import check_int
from keras_segattn.validation import check_non_negative_float
from keras_segattn.validation import check_non_negative_int
from keras_segattn.validation import check_optional_int
from keras_segattn.validation import check_positive_floats
from keras_segattn.validation import check_positive_int
from keras_segattn.validation import check_rate
from keras_segattn.validation import check_split
from keras_segattn.validation import check_version


def test_accepts_integers_in_range():
    assert check_int(np.int64(3), "n", minimum=1, maximum=3) == 3
    assert type(check_int(np.int32(2), "n")) is int
    assert check_positive_int(1, "n") == 1
    assert check_non_negative_int(0, "n") == 0
    assert check_optional_int(None, "seed") is None
    assert check_optional_int(-5, "seed") == -5
    assert check_split("test", ("train", "test")) == "test"


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: check_int(True, "n"),
            r"Expected an integer\. Received: n=True",
        ),
        (lambda: check_int(2.0, "n", minimum=1), "an integer >= 1"),
        (lambda: check_int(5, "n", maximum=4), "an integer <= 4"),
        (lambda: check_int(0, "n", 1, 254), r"an integer in \[1, 254\]"),
        (lambda: check_positive_int(0, "batch_size"), "batch_size=0"),
        (lambda: check_non_negative_int(-1, "max_shift"), "max_shift=-1"),
        (lambda: check_optional_int("1", "seed"), "seed='1'"),
        (lambda: check_split("val", ("train",)), r"\['train'\].*split='val'"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_positive_int_accepts_numpy_integers_and_rejects_bools():
    value = check_positive_int(np.int64(4), "units")
    assert value == 4 and type(value) is int
    with pytest.raises(ValueError, match="strictly positive integer"):
        check_positive_int(True, "units")
    with pytest.raises(ValueError, match=r"Received: units=2\.0"):
        check_positive_int(2.0, "units")


def test_check_version():
    assert check_version(3) == 3
    for bad in (0, -1, True, 1.0, "1"):
        with pytest.raises(
            ValueError, match=r"TF Serving's version directory.*version="
        ):
            check_version(bad)


@pytest.mark.parametrize("value", [0, 0.5, 1, 1.0])
def test_check_fraction_accepts_the_closed_interval(value):
    result = check_fraction(value, "iou_threshold")
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize("value", [-0.1, 1.5, True, None, "0.5"])
def test_check_fraction_rejects(value):
    with pytest.raises(
        ValueError, match=rf"in \[0, 1\]\. Received: iou_threshold={value!r}"
    ):
        check_fraction(value, "iou_threshold")


def test_check_non_negative_float():
    assert check_non_negative_float(0, "min_size") == 0.0
    assert check_non_negative_float(2.5, "min_size") == 2.5
    for bad in (-1e-3, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match="finite number >= 0"):
            check_non_negative_float(bad, "min_size")


@pytest.mark.parametrize("value", [0, 0.0, 0.5, np.float32(0.25)])
def test_check_rate_accepts_the_half_open_interval(value):
    result = check_rate(value)
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan"), True, None])
def test_check_rate_rejects(value):
    with pytest.raises(ValueError, match=r"Expected a float in \[0, 1\)"):
        check_rate(value, "max_overlap")
    with pytest.raises(ValueError, match=rf"Received: dropout={value!r}\."):
        check_rate(value)


def test_check_positive_floats():
    assert check_positive_floats([1, 0.5], "scales") == (1.0, 0.5)
    assert check_positive_floats((2.0,), "scales") == (2.0,)
    for bad, match in [
        ((), "at least one number. Received: scales=()"),
        ([1.0, 0.0], "Received: scales=0.0"),
        ([1.0, float("inf")], "Received: scales=inf"),
        ([True], "Received: scales=True"),
        ("1.0", "Received: scales='1.0'"),
        (2.0, "Received: scales=2.0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(match)):
            check_positive_floats(bad, "scales")


def test_check_bool():
    assert check_bool(True, "training") is True
    assert check_bool(np.bool_(False), "training") is False
    for value in (1, 0, "yes", None, np.array([True])):
        with pytest.raises(TypeError, match="`training`. Expected a bool"):
            check_bool(value, "training")
