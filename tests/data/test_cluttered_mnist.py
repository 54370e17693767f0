"""Tests for `keras_segattn.data.cluttered_mnist`."""

import re
from pathlib import Path

import numpy as np
import pytest

from keras_segattn.data import cluttered_mnist

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = ROOT / "sample_data" / "cluttered_mnist"


def test_cluttered_sample_splits():
    train_x, train_y = cluttered_mnist.load_cluttered_mnist_arrays(
        SAMPLE_DIR, "train", validation_size=50
    )
    val_x, val_y = cluttered_mnist.load_cluttered_mnist_arrays(
        SAMPLE_DIR, "validation", validation_size=50
    )
    test_x, test_y = cluttered_mnist.load_cluttered_mnist_arrays(
        SAMPLE_DIR, "test"
    )
    assert train_x.shape == (150, 40, 40, 1) and val_x.shape == (50, 40, 40, 1)
    assert test_x.shape == (100, 40, 40, 1)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int32
    assert 0.0 <= train_x.min() and train_x.max() <= 255.0
    assert train_x.max() > 200  # ink, in the 0..255 scale
    assert set(np.unique(np.concatenate([train_y, val_y, test_y]))) <= set(
        range(10)
    )
    # The sample file is the head of the shared archive: same values.
    raw = np.load(SAMPLE_DIR / cluttered_mnist.CLUTTERED_MNIST_SAMPLE_FILE)
    np.testing.assert_array_equal(
        val_x.reshape(50, -1), raw["X_train"][150:200] * np.float32(255)
    )


def test_cluttered_dataset_batches():
    ds = cluttered_mnist.load_cluttered_mnist(
        SAMPLE_DIR, "train", batch_size=32, validation_size=50
    )
    batches = list(ds)
    assert len(batches) == 150 // 32  # drop_remainder
    images, labels = batches[0]
    assert images.shape == (32, 40, 40, 1) and images.dtype.name == "float32"
    assert labels.shape == (32,) and labels.dtype.name == "int32"


def test_missing_and_corrupt_archives_name_the_file(tmp_path):
    with pytest.raises(
        ValueError, match=re.escape(cluttered_mnist.CLUTTERED_MNIST_FILE)
    ):
        cluttered_mnist.load_cluttered_mnist_arrays(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        cluttered_mnist.load_cluttered_mnist_arrays(tmp_path / "nowhere")
    corrupt = tmp_path / cluttered_mnist.CLUTTERED_MNIST_FILE
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=re.escape(str(corrupt))):
        cluttered_mnist.load_cluttered_mnist_arrays(tmp_path)
    np.savez(corrupt.with_suffix(""), X_train=np.zeros((3, 1600)))
    with pytest.raises(ValueError, match=r"missing arrays \['y_train'\]"):
        cluttered_mnist.load_cluttered_mnist_arrays(corrupt)
    np.savez(
        corrupt.with_suffix(""), X_train=np.zeros((3, 100)), y_train=[1, 2, 3]
    )
    with pytest.raises(ValueError, match="expected 1600 pixels"):
        cluttered_mnist.load_cluttered_mnist_arrays(corrupt)


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
        cluttered_mnist.load_cluttered_mnist_arrays(SAMPLE_DIR, **kwargs)


def test_synthetic_twin_is_deterministic_and_batched():
    a = cluttered_mnist.make_synthetic_cluttered_mnist_arrays(
        6, image_size=32, seed=3
    )
    b = cluttered_mnist.make_synthetic_cluttered_mnist_arrays(
        6, image_size=32, seed=3
    )
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (6, 32, 32, 1) and a[0].max() == 255.0
    images, labels = next(
        iter(cluttered_mnist.make_synthetic_cluttered_mnist(8, batch_size=4))
    )
    assert images.shape == (4, 40, 40, 1) and labels.shape == (4,)
    with pytest.raises(ValueError, match="Received: image_size=8"):
        cluttered_mnist.make_synthetic_cluttered_mnist_arrays(4, image_size=8)
    with pytest.raises(ValueError, match="Received: batch_size=9"):
        cluttered_mnist.make_synthetic_cluttered_mnist(8, batch_size=9)


def test_random_shifts_translate_and_redraw_every_epoch():
    ds = cluttered_mnist.load_cluttered_mnist(
        SAMPLE_DIR,
        "train",
        batch_size=8,
        validation_size=50,
        shuffle=False,
        max_shift=3,
    )
    first = next(iter(ds))[0].numpy()
    second = next(iter(ds))[0].numpy()
    raw, _ = cluttered_mnist.load_cluttered_mnist_arrays(
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
        cluttered_mnist.load_cluttered_mnist(SAMPLE_DIR, max_shift=-1)
