"""Tests for `keras_segattn.data.mnist_addition`."""

import re

import numpy as np
import pytest

from keras_segattn.data import mnist_addition
from keras_segattn.data import synthetic_digits
from tests.data.test_mnist import fake_mnist


def test_mnist_addition_arrays():
    digits, labels = synthetic_digits.make_synthetic_digits(30, seed=1)
    images, sums, pairs = mnist_addition.make_mnist_addition_arrays(
        digits, labels, 20, canvas_size=48, seed=2
    )
    assert images.shape == (20, 48, 48, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(sums, pairs.sum(1))
    assert sums.min() >= 0 and sums.max() <= 18
    # One digit in each half of the canvas.
    assert images[:, :, :20].max() > 100 and images[:, :, 28:].max() > 100
    again, _, _ = mnist_addition.make_mnist_addition_arrays(
        digits, labels, 20, canvas_size=48, seed=2
    )
    np.testing.assert_array_equal(images, again)
    with pytest.raises(ValueError, match="Received: canvas_size=30"):
        mnist_addition.make_mnist_addition_arrays(
            digits, labels, 2, canvas_size=30
        )
    with pytest.raises(ValueError, match=re.escape("scale_range=(0, 1)")):
        mnist_addition.make_mnist_addition_arrays(
            digits, labels, 2, scale_range=(0, 1)
        )


def test_mnist_addition_dataset_uses_the_split_digits(tmp_path):
    fake_mnist(tmp_path)
    ds = mnist_addition.load_mnist_addition(
        tmp_path, "test", num_examples=8, batch_size=4
    )
    images, sums = next(iter(ds))
    assert images.shape == (4, 48, 48, 1) and images.dtype.name == "float32"
    assert sums.dtype.name == "int32"
    assert np.all((sums.numpy() >= 0) & (sums.numpy() <= 18))


def test_synthetic_twin_is_batched():
    images, sums = next(
        iter(mnist_addition.make_synthetic_mnist_addition(8, batch_size=4))
    )
    assert images.shape == (4, 48, 48, 1) and sums.shape == (4,)
