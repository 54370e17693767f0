"""Tests for `keras_segattn.data.mnist`."""

import re

import numpy as np
import pytest

from keras_segattn.data import mnist


def fake_mnist(path, rows=50_010):
    """A tiny stand-in for mnist_train.npz with the real layout."""
    x = np.zeros((rows, 28, 28), np.uint8)
    x[:, 10:18, 12:16] = 200
    y = (np.arange(rows) % 10).astype(np.uint8)
    np.savez_compressed(path / mnist.MNIST_FILE, x=x, y=y)
    return path


def test_mnist_splits_keep_the_test_pool_apart(tmp_path):
    fake_mnist(tmp_path)
    train, _ = mnist.load_mnist_arrays(tmp_path, "train", validation_size=10)
    val, _ = mnist.load_mnist_arrays(tmp_path, "validation", validation_size=10)
    test, test_labels = mnist.load_mnist_arrays(tmp_path, "test")
    assert len(train) == 49_990 and len(val) == 10 and len(test) == 10
    np.testing.assert_array_equal(test_labels, np.arange(50_000, 50_010) % 10)
    images, labels = next(
        iter(mnist.load_mnist(tmp_path, "test", batch_size=4))
    )
    assert images.shape == (4, 28, 28, 1) and labels.dtype.name == "int32"


def test_corrupt_archive_names_the_file(tmp_path):
    (tmp_path / mnist.MNIST_FILE).write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match=re.escape(mnist.MNIST_FILE)):
        mnist.load_mnist_arrays(tmp_path)
