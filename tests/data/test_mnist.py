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


# Stochastic binarisation: intensities 0 and 1 stay put, the rest are
# Bernoulli(p); 20,000 pixels per level put the binomial standard error at
# most 0.0036, and the checks allow 5 of them.
LEVELS = np.array([0.0, 0.1, 0.25, 0.5, 0.9, 1.0], np.float32)


def _levels_image(pixels_per_level=20_000):
    """float32 [levels, pixels_per_level // 100, 10, 10, 1] of constant
    intensity per level."""
    return np.broadcast_to(
        LEVELS[:, None, None, None, None],
        (len(LEVELS), pixels_per_level // 100, 10, 10, 1),
    ).copy()


def _check_bernoulli(samples, pixels_axis=(1, 2, 3, 4)):
    assert set(np.unique(samples)) <= {0.0, 1.0}
    frequencies = samples.mean(axis=pixels_axis)
    errors = np.sqrt(LEVELS * (1 - LEVELS) / samples[0].size)
    np.testing.assert_array_less(
        np.abs(frequencies - LEVELS), 5 * errors + 1e-9
    )
    assert frequencies[0] == 0.0 and frequencies[-1] == 1.0


def test_binarise_stochastic_is_bernoulli_with_the_intensity():
    images = _levels_image()
    samples = mnist.binarise_stochastic(images, seed=3)
    assert samples.shape == images.shape and samples.dtype == np.float32
    _check_bernoulli(samples)
    # Independent pixels: at p = 0.5, neighbours agree half of the time
    # (a threshold or a shared draw would make them always agree).
    half = samples[3].reshape(-1)
    assert abs((half[1:] == half[:-1]).mean() - 0.5) < 0.02


def test_binarise_stochastic_is_deterministic_per_seed():
    images = np.random.default_rng(0).random((8, 28, 28, 1), np.float32)
    first = mnist.binarise_stochastic(images, seed=7)
    np.testing.assert_array_equal(first, mnist.binarise_stochastic(images, 7))
    assert (first != mnist.binarise_stochastic(images, seed=8)).any()


def test_stochastic_dataset_samples_fresh_each_epoch_reproducibly():
    images = _levels_image(2_000).reshape(-1, 10, 10, 1)  # level-major rows
    dataset = mnist.make_stochastic_binarised_dataset(
        images, batch_size=20, seed=5, shuffle=False
    )
    epoch_1 = np.concatenate([batch.numpy() for batch in dataset])
    epoch_2 = np.concatenate([batch.numpy() for batch in dataset])
    assert epoch_1.shape == images.shape and epoch_1.dtype == np.float32
    for epoch in (epoch_1, epoch_2):
        _check_bernoulli(epoch.reshape(len(LEVELS), -1), pixels_axis=1)
    assert (epoch_1 != epoch_2).any()  # fresh samples every epoch
    again = mnist.make_stochastic_binarised_dataset(
        images, batch_size=20, seed=5, shuffle=False
    )
    np.testing.assert_array_equal(
        np.concatenate([batch.numpy() for batch in again]), epoch_1
    )
    shuffled = mnist.make_stochastic_binarised_dataset(
        images[:50], batch_size=20, seed=5
    )
    assert [batch.shape[0] for batch in shuffled] == [20, 20]  # remainder


@pytest.mark.parametrize(
    "function",
    [
        lambda x: mnist.binarise_stochastic(x, seed=0),
        lambda x: mnist.make_stochastic_binarised_dataset(x, 2, seed=0),
    ],
    ids=["array", "dataset"],
)
def test_stochastic_binarisation_rejects_bad_images(function):
    with pytest.raises(TypeError, match=re.escape("images.dtype=uint8")):
        function(np.full((2, 4, 4, 1), 255, np.uint8))
    for bad in (1.5, -0.25, np.nan):
        images = np.full((2, 4, 4, 1), 0.5, np.float32)
        images[1, 2, 3, 0] = bad
        with pytest.raises(
            ValueError,
            match=re.escape(
                "Invalid value for argument `images`. Expected "
                "intensities in [0, 1]. Received: images with values in"
            ),
        ):
            function(images)


def test_stochastic_binarisation_rejects_bad_arguments():
    images = np.zeros((4, 2, 2, 1), np.float32)
    with pytest.raises(ValueError, match=re.escape("Received: seed=-1")):
        mnist.binarise_stochastic(images, seed=-1)
    with pytest.raises(ValueError, match=re.escape("Received: batch_size=0")):
        mnist.make_stochastic_binarised_dataset(images, 0, seed=0)
