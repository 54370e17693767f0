"""Tests for the data loaders' argument checks."""

import numpy as np
import pytest

from keras_segattn.data._checks import check_int
from keras_segattn.data._checks import check_non_negative_int
from keras_segattn.data._checks import check_optional_int
from keras_segattn.data._checks import check_positive_int
from keras_segattn.data._checks import check_split


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
