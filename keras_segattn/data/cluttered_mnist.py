"""`tf.data` pipeline for cluttered MNIST 40x40, and its synthetic twin.

Cluttered MNIST 40x40 (the `cluttered_mnist_40x40_trainval.npz` file of the
TensorFlow/Lasagne spatial-transformer examples): one MNIST digit at a
random position among random 5x5 clutter fragments.

`load_cluttered_mnist` yields `(images, labels)`: images float32
[B, 40, 40, 1] with values in 0..255 (no normalisation: the models and
serving signatures rescale in the graph) and labels int32 [B]. Batches keep
a fixed size (`drop_remainder=True`) so that an XLA-compiled step compiles
once. `make_synthetic_cluttered_mnist` is its twin built from seven-segment
digits, for tests and `--smoke` runs.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_segattn.data._mnist_files import check_arrays
from keras_segattn.data._mnist_files import read_npz
from keras_segattn.data._mnist_files import resolve_file
from keras_segattn.data._mnist_pipeline import to_dataset
from keras_segattn.data.synthetic_digits import make_synthetic_digits
from keras_segattn.validation import check_data_dir
from keras_segattn.validation import check_non_negative_int
from keras_segattn.validation import check_positive_int
from keras_segattn.validation import check_split

PathLike = str | os.PathLike

CLUTTERED_MNIST_FILE = "cluttered_mnist_40x40_trainval.npz"
"""File name of the cluttered MNIST archive (../shared/data/cluttered_mnist)."""
CLUTTERED_MNIST_SAMPLE_FILE = "sample.npz"
"""File name of the embedded sample (sample_data/cluttered_mnist)."""
CLUTTERED_MNIST_IMAGE_SIZE = 40

CLUTTERED_MNIST_SPLITS = ("train", "validation", "test")


def load_cluttered_mnist_arrays(
    data_dir: PathLike | None = None,
    split: str = "train",
    *,
    validation_size: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of cluttered MNIST 40x40 as NumPy arrays.

    The archive's own `X_train`/`y_train` (10,000 images) and `X_valid`/
    `y_valid` (1,000) are used as follows, since its test part is held out
    of ../shared/data:

    - `"train"`: `X_train` without its last `validation_size` rows;
    - `"validation"`: the last `validation_size` rows of `X_train` (for
      model selection and early stopping);
    - `"test"`: `X_valid`, the split to report errors on.

    Args:
        data_dir: folder holding `cluttered_mnist_40x40_trainval.npz` (or
            the embedded `sample.npz`), or the .npz file itself; required
            (None raises, saying where to get it).
        split: `"train"`, `"validation"` or `"test"`.
        validation_size: int >= 0, rows of `X_train` held out; must leave
            at least one training row.

    Returns:
        `(images, labels)`: images float32 [N, 40, 40, 1] in 0..255 and
        labels int32 [N] in 0..9.

    Raises:
        ValueError: for a missing or unreadable archive (the message names
            the file), arrays of unexpected shapes, an unknown split or a
            bad `validation_size`.
    """
    data_dir = check_data_dir(
        data_dir,
        f"the folder holding {CLUTTERED_MNIST_FILE} (the spatial "
        "transformer's mnist_sequence1_sample_5distortions5x5.npz, from "
        "github.com/daviddao/spatial-transformer-tensorflow: data/) or the "
        f"embedded sample_data/cluttered_mnist/{CLUTTERED_MNIST_SAMPLE_FILE}",
    )
    split = check_split(split, CLUTTERED_MNIST_SPLITS)
    validation_size = check_non_negative_int(validation_size, "validation_size")
    path = resolve_file(
        data_dir, (CLUTTERED_MNIST_FILE, CLUTTERED_MNIST_SAMPLE_FILE)
    )
    keys = ("X_valid", "y_valid") if split == "test" else ("X_train", "y_train")
    arrays = read_npz(path, keys)
    images = arrays[keys[0]]
    labels = arrays[keys[1]].reshape(-1)
    size = CLUTTERED_MNIST_IMAGE_SIZE
    check_arrays(path, images, labels, keys[0], keys[1], size * size)
    if split != "test":
        if validation_size >= len(images):
            raise ValueError(
                f"Invalid value for argument `validation_size`. Expected "
                f"fewer than the {len(images)} training rows of "
                f"{str(path)!r}. Received: validation_size={validation_size}."
            )
        cut = len(images) - validation_size
        rows = slice(0, cut) if split == "train" else slice(cut, None)
        images, labels = images[rows], labels[rows]
    images = images.reshape(-1, size, size, 1).astype("float32") * 255.0
    return images, labels.astype("int32")


def load_cluttered_mnist(
    data_dir: PathLike | None = None,
    split: str = "train",
    *,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int | None = 0,
    validation_size: int = 1000,
    drop_remainder: bool = True,
    max_shift: int = 0,
) -> tf.data.Dataset:
    """Cluttered MNIST 40x40 as a batched `tf.data.Dataset`.

    Args:
        data_dir: folder with the archive (see
            `load_cluttered_mnist_arrays`), or the .npz file.
        split: `"train"`, `"validation"` (held out of `X_train`) or
            `"test"` (the archive's `X_valid`).
        batch_size: int > 0.
        shuffle: bool; defaults to True for `"train"` only (reshuffled
            every epoch).
        seed: shuffle seed.
        validation_size: rows of `X_train` held out for `"validation"`.
        drop_remainder: bool. Drop a last, smaller batch.
        max_shift: int >= 0. Augmentation: translate each image by a
            random whole number of pixels in [-max_shift, max_shift] per
            axis, zeros shifted in, new draws every epoch (0: off).

    Returns:
        A dataset of `(images, labels)`: float32 [B, 40, 40, 1] in 0..255
        and int32 [B].

    Raises:
        ValueError: see `load_cluttered_mnist_arrays`; also for a
            `batch_size` that leaves no batch.
    """
    max_shift = check_non_negative_int(max_shift, "max_shift")
    images, labels = load_cluttered_mnist_arrays(
        data_dir, split, validation_size=validation_size
    )
    shuffle = split == "train" if shuffle is None else bool(shuffle)
    return to_dataset(
        images,
        labels,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        f"cluttered MNIST {split!r}",
        max_shift=max_shift,
    )


def make_synthetic_cluttered_mnist_arrays(
    num_examples: int,
    image_size: int = 40,
    seed: int = 0,
    *,
    num_clutter: int = 5,
    clutter_size: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic cluttered digits in the format of the cluttered MNIST data.

    Each image holds one seven-segment digit (side `min(28, image_size)`)
    at a random position and `num_clutter` random `clutter_size` squares
    cut from other digits, as the cluttered MNIST generator does with
    MNIST digits.

    Args:
        num_examples: int > 0.
        image_size: int >= 12, side of the square images.
        seed: int. Same seed, same arrays.
        num_clutter: int >= 0, clutter fragments per image.
        clutter_size: int > 0, side of each fragment.

    Returns:
        `(images, labels)`: float32 [N, S, S, 1] in 0..255, int32 [N].

    Raises:
        ValueError: for a non-positive `num_examples`, an `image_size`
            below 12 or bad clutter arguments.
    """
    num_examples = check_positive_int(num_examples, "num_examples")
    image_size = check_positive_int(image_size, "image_size")
    if image_size < 12:
        raise ValueError(
            "Invalid value for argument `image_size`. Expected at least 12 "
            f"pixels. Received: image_size={image_size}."
        )
    num_clutter = check_non_negative_int(num_clutter, "num_clutter")
    clutter_size = check_positive_int(clutter_size, "clutter_size")
    digit_size = min(28, image_size)
    clutter_size = min(clutter_size, digit_size)
    digits, labels = make_synthetic_digits(2 * num_examples, digit_size, seed)
    rng = np.random.default_rng(seed + 1)
    images = np.zeros((num_examples, image_size, image_size), np.float32)
    span = image_size - digit_size + 1
    for n in range(num_examples):
        for _ in range(num_clutter):
            source = digits[rng.integers(num_examples, 2 * num_examples)]
            sy, sx = rng.integers(0, digit_size - clutter_size + 1, 2)
            dy, dx = rng.integers(0, image_size - clutter_size + 1, 2)
            patch = source[sy : sy + clutter_size, sx : sx + clutter_size]
            region = images[n, dy : dy + clutter_size, dx : dx + clutter_size]
            np.maximum(region, patch, out=region)
        y, x = rng.integers(0, span, 2)
        region = images[n, y : y + digit_size, x : x + digit_size]
        np.maximum(region, digits[n], out=region)
    return images[..., None], labels[:num_examples]


def make_synthetic_cluttered_mnist(
    num_examples: int,
    image_size: int = 40,
    seed: int = 0,
    batch_size: int = 32,
    *,
    shuffle: bool = False,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Synthetic twin of `load_cluttered_mnist`, for tests and `--smoke`.

    Args:
        num_examples: int > 0.
        image_size: int >= 12.
        seed: int.
        batch_size: int > 0; with `drop_remainder`, at most `num_examples`.
        shuffle: bool.
        drop_remainder: bool.

    Returns:
        A dataset of `(images, labels)`: float32 [B, S, S, 1] in 0..255 and
        int32 [B].
    """
    images, labels = make_synthetic_cluttered_mnist_arrays(
        num_examples, image_size, seed
    )
    return to_dataset(
        images,
        labels,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        "the synthetic cluttered MNIST",
    )
