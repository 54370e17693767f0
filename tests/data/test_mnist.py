"""Tests for `keras_segattn.data.mnist` (cluttered MNIST, MNIST, addition)."""

import re
from pathlib import Path

import numpy as np
import pytest

from keras_segattn.data import mnist

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = ROOT / "sample_data" / "cluttered_mnist"


def _fake_mnist(path, rows=50_010):
    """A tiny stand-in for mnist_train.npz with the real layout."""
    x = np.zeros((rows, 28, 28), np.uint8)
    x[:, 10:18, 12:16] = 200
    y = (np.arange(rows) % 10).astype(np.uint8)
    np.savez_compressed(path / mnist.MNIST_FILE, x=x, y=y)
    return path


def test_cluttered_sample_splits():
    train_x, train_y = mnist.load_cluttered_mnist_arrays(
        SAMPLE_DIR, "train", validation_size=50
    )
    val_x, val_y = mnist.load_cluttered_mnist_arrays(
        SAMPLE_DIR, "validation", validation_size=50
    )
    test_x, test_y = mnist.load_cluttered_mnist_arrays(SAMPLE_DIR, "test")
    assert train_x.shape == (150, 40, 40, 1) and val_x.shape == (50, 40, 40, 1)
    assert test_x.shape == (100, 40, 40, 1)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int32
    assert 0.0 <= train_x.min() and train_x.max() <= 255.0
    assert train_x.max() > 200  # ink, in the 0..255 scale
    assert set(np.unique(np.concatenate([train_y, val_y, test_y]))) <= set(
        range(10)
    )
    # The sample file is the head of the shared archive: same values.
    raw = np.load(SAMPLE_DIR / mnist.CLUTTERED_MNIST_SAMPLE_FILE)
    np.testing.assert_array_equal(
        val_x.reshape(50, -1), raw["X_train"][150:200] * np.float32(255)
    )


def test_cluttered_dataset_batches():
    ds = mnist.load_cluttered_mnist(
        SAMPLE_DIR, "train", batch_size=32, validation_size=50
    )
    batches = list(ds)
    assert len(batches) == 150 // 32  # drop_remainder
    images, labels = batches[0]
    assert images.shape == (32, 40, 40, 1) and images.dtype.name == "float32"
    assert labels.shape == (32,) and labels.dtype.name == "int32"


def test_missing_and_corrupt_archives_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=re.escape(mnist.CLUTTERED_MNIST_FILE)):
        mnist.load_cluttered_mnist_arrays(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        mnist.load_cluttered_mnist_arrays(tmp_path / "nowhere")
    corrupt = tmp_path / mnist.CLUTTERED_MNIST_FILE
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=re.escape(str(corrupt))):
        mnist.load_cluttered_mnist_arrays(tmp_path)
    np.savez(corrupt.with_suffix(""), X_train=np.zeros((3, 1600)))
    with pytest.raises(ValueError, match=r"missing arrays \['y_train'\]"):
        mnist.load_cluttered_mnist_arrays(corrupt)
    np.savez(
        corrupt.with_suffix(""), X_train=np.zeros((3, 100)), y_train=[1, 2, 3]
    )
    with pytest.raises(ValueError, match="expected 1600 pixels"):
        mnist.load_cluttered_mnist_arrays(corrupt)
    (tmp_path / mnist.MNIST_FILE).write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match=re.escape(mnist.MNIST_FILE)):
        mnist.load_mnist_arrays(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(split="valid"), "Received: split='valid'"),
        (dict(validation_size=-1), "Received: validation_size=-1"),
        (dict(validation_size=200), "Received: validation_size=200"),
    ],
)
def test_bad_cluttered_arguments(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        mnist.load_cluttered_mnist_arrays(SAMPLE_DIR, **kwargs)


def test_mnist_splits_keep_the_test_pool_apart(tmp_path):
    _fake_mnist(tmp_path)
    train, _ = mnist.load_mnist_arrays(tmp_path, "train", validation_size=10)
    val, _ = mnist.load_mnist_arrays(tmp_path, "validation", validation_size=10)
    test, test_labels = mnist.load_mnist_arrays(tmp_path, "test")
    assert len(train) == 49_990 and len(val) == 10 and len(test) == 10
    np.testing.assert_array_equal(test_labels, np.arange(50_000, 50_010) % 10)
    images, labels = next(
        iter(mnist.load_mnist(tmp_path, "test", batch_size=4))
    )
    assert images.shape == (4, 28, 28, 1) and labels.dtype.name == "int32"


def test_mnist_addition_arrays():
    digits, labels = mnist.make_synthetic_digits(30, seed=1)
    images, sums, pairs = mnist.make_mnist_addition_arrays(
        digits, labels, 20, canvas_size=48, seed=2
    )
    assert images.shape == (20, 48, 48, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(sums, pairs.sum(1))
    assert sums.min() >= 0 and sums.max() <= 18
    # One digit in each half of the canvas.
    assert images[:, :, :20].max() > 100 and images[:, :, 28:].max() > 100
    again, _, _ = mnist.make_mnist_addition_arrays(
        digits, labels, 20, canvas_size=48, seed=2
    )
    np.testing.assert_array_equal(images, again)
    with pytest.raises(ValueError, match="Received: canvas_size=30"):
        mnist.make_mnist_addition_arrays(digits, labels, 2, canvas_size=30)
    with pytest.raises(ValueError, match=re.escape("scale_range=(0, 1)")):
        mnist.make_mnist_addition_arrays(digits, labels, 2, scale_range=(0, 1))


def test_mnist_addition_dataset_uses_the_split_digits(tmp_path):
    _fake_mnist(tmp_path)
    ds = mnist.load_mnist_addition(
        tmp_path, "test", num_examples=8, batch_size=4
    )
    images, sums = next(iter(ds))
    assert images.shape == (4, 48, 48, 1) and images.dtype.name == "float32"
    assert sums.dtype.name == "int32"
    assert np.all((sums.numpy() >= 0) & (sums.numpy() <= 18))


def test_synthetic_twins_are_deterministic_and_batched():
    a = mnist.make_synthetic_cluttered_mnist_arrays(6, image_size=32, seed=3)
    b = mnist.make_synthetic_cluttered_mnist_arrays(6, image_size=32, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (6, 32, 32, 1) and a[0].max() == 255.0
    images, labels = next(
        iter(mnist.make_synthetic_cluttered_mnist(8, batch_size=4))
    )
    assert images.shape == (4, 40, 40, 1) and labels.shape == (4,)
    images, sums = next(
        iter(mnist.make_synthetic_mnist_addition(8, batch_size=4))
    )
    assert images.shape == (4, 48, 48, 1) and sums.shape == (4,)
    with pytest.raises(ValueError, match="Received: image_size=8"):
        mnist.make_synthetic_cluttered_mnist_arrays(4, image_size=8)
    with pytest.raises(ValueError, match="Received: batch_size=9"):
        mnist.make_synthetic_cluttered_mnist(8, batch_size=9)


def test_random_shifts_translate_and_redraw_every_epoch():
    ds = mnist.load_cluttered_mnist(
        SAMPLE_DIR,
        "train",
        batch_size=8,
        validation_size=50,
        shuffle=False,
        max_shift=3,
    )
    first = next(iter(ds))[0].numpy()
    second = next(iter(ds))[0].numpy()
    raw, _ = mnist.load_cluttered_mnist_arrays(
        SAMPLE_DIR, "train", validation_size=50
    )
    assert first.shape == (8, 40, 40, 1)
    assert not np.array_equal(first, second)  # new draws each epoch
    for shifted, original in zip(first, raw[:8], strict=True):
        # Some integer shift within 3 pixels reproduces the overlap.
        padded = np.pad(original, ((3, 3), (3, 3), (0, 0)))
        assert any(
            np.array_equal(shifted, padded[dy : dy + 40, dx : dx + 40])
            for dy in range(7)
            for dx in range(7)
        )
    with pytest.raises(ValueError, match="Received: max_shift=-1"):
        mnist.load_cluttered_mnist(SAMPLE_DIR, max_shift=-1)
