"""Tests for `keras_segattn.data.synthetic_digits`."""

import numpy as np
import pytest

from keras_segattn.data import synthetic_digits


def test_digits_are_balanced_deterministic_and_in_range():
    digits, labels = synthetic_digits.make_synthetic_digits(30, size=20, seed=4)
    assert digits.shape == (30, 20, 20) and digits.dtype == np.float32
    assert labels.shape == (30,) and labels.dtype == np.int32
    assert digits.min() == 0.0 and digits.max() == 255.0
    np.testing.assert_array_equal(np.bincount(labels), [3] * 10)
    again, again_labels = synthetic_digits.make_synthetic_digits(
        30, size=20, seed=4
    )
    np.testing.assert_array_equal(digits, again)
    np.testing.assert_array_equal(labels, again_labels)
    # An 8 lights every segment of the other digits' boxes: most ink.
    ink = digits.reshape(30, -1).sum(1)
    assert ink[labels == 8].mean() > ink[labels == 1].mean()


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: size=7"):
        synthetic_digits.make_synthetic_digits(4, size=7)
    with pytest.raises(ValueError, match="Received: num_examples=0"):
        synthetic_digits.make_synthetic_digits(0)
