"""`tf.data` pipeline for the MNIST digits of `../shared/data/mnist`.

`mnist_train.npz` holds the 60,000 standard training digits; rows 50,000+
are the *test pool* (the standard test set is held out of ../shared/data):
train only on rows < 50,000. `load_mnist_arrays` splits the archive into
train, validation and test, and `load_mnist` yields `(images, labels)`:
images float32 [B, 28, 28, 1] with values in 0..255 (no normalisation: the
models and serving signatures rescale in the graph) and labels int32 [B],
in fixed-size batches (`drop_remainder=True`) so that an XLA-compiled step
compiles once.

`binarise_stochastic` and `make_stochastic_binarised_dataset` binarise
intensities in [0, 1] by Bernoulli sampling (the density-model setup of
DRAW), a fixed sample for a test set and fresh samples every epoch.

The other digit tasks build on these splits or sit beside them:
`cluttered_mnist`, `mnist_addition`, and `synthetic_digits` (seven-segment
digits, the synthetic stand-in the twins use).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_segattn.data._mnist_files import check_arrays
from keras_segattn.data._mnist_files import read_npz
from keras_segattn.data._mnist_files import resolve_file
from keras_segattn.data._mnist_pipeline import to_dataset
from keras_segattn.validation import check_data_dir
from keras_segattn.validation import check_non_negative_int
from keras_segattn.validation import check_positive_int
from keras_segattn.validation import check_split

PathLike = str | os.PathLike

MNIST_FILE = "mnist_train.npz"
"""File name of the MNIST archive (../shared/data/mnist)."""
MNIST_TEST_POOL_START = 50_000
"""Rows from here on are the MNIST test pool, never used for training."""

MNIST_SPLITS = ("train", "validation", "test")

MNIST_SOURCE = (
    "the folder holding mnist_train.npz (uint8 `x` [60000, 28, 28] and `y` "
    "[60000], the 60,000 MNIST training digits in their usual order, e.g. "
    "`np.savez_compressed(path, x=x, y=y)` of the training half of "
    "keras.datasets.mnist.load_data()); or read MNIST with load_tfds_mnist"
)
"""What `data_dir` must hold, in the error for a missing one."""


def load_mnist_arrays(
    data_dir: PathLike | None = None,
    split: str = "train",
    *,
    validation_size: int = 5000,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of `mnist_train.npz` (uint8 [60000, 28, 28]).

    Rows 50,000-59,999 are the *test pool* (the standard MNIST test set is
    held out of ../shared/data; see its README): never train on them.

    - `"train"`: rows 0 .. 49,999 - `validation_size`;
    - `"validation"`: the `validation_size` rows before 50,000;
    - `"test"`: rows 50,000 .. 59,999.

    Args:
        data_dir: folder holding `mnist_train.npz`, or the file itself;
            required (None raises, saying what it must hold).
        split: `"train"`, `"validation"` or `"test"`.
        validation_size: int in [0, 50000).

    Returns:
        `(digits, labels)`: uint8 [N, 28, 28] in 0..255 and int32 [N].

    Raises:
        ValueError: for a missing or unreadable archive (the message names
            the file), unexpected arrays, an unknown split or a bad
            `validation_size`.
    """
    data_dir = check_data_dir(data_dir, MNIST_SOURCE)
    split = check_split(split, MNIST_SPLITS)
    validation_size = check_non_negative_int(validation_size, "validation_size")
    if validation_size >= MNIST_TEST_POOL_START:
        raise ValueError(
            "Invalid value for argument `validation_size`. Expected fewer "
            f"than {MNIST_TEST_POOL_START}. Received: "
            f"validation_size={validation_size}."
        )
    path = resolve_file(data_dir, (MNIST_FILE,))
    arrays = read_npz(path, ("x", "y"))
    digits, labels = arrays["x"], arrays["y"].reshape(-1)
    check_arrays(path, digits, labels, "x", "y", 28 * 28)
    if len(digits) <= MNIST_TEST_POOL_START:
        raise ValueError(
            f"Corrupt archive {str(path)!r}: expected the 60,000 MNIST "
            f"training digits (test pool from row {MNIST_TEST_POOL_START}). "
            f"Received {len(digits)} rows."
        )
    cut = MNIST_TEST_POOL_START - validation_size
    rows = {
        "train": slice(0, cut),
        "validation": slice(cut, MNIST_TEST_POOL_START),
        "test": slice(MNIST_TEST_POOL_START, None),
    }[split]
    digits = digits[rows].reshape(-1, 28, 28)
    return digits.astype(np.uint8), labels[rows].astype(np.int32)


def load_mnist(
    data_dir: PathLike | None = None,
    split: str = "train",
    *,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int | None = 0,
    validation_size: int = 5000,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """MNIST digits as a batched `tf.data.Dataset`.

    Args:
        data_dir: folder holding `mnist_train.npz`, or the file itself;
            required (None raises, saying what it must hold).
        split: `"train"`, `"validation"` or `"test"` (the test pool, rows
            50,000+); see `load_mnist_arrays`.
        batch_size: int > 0.
        shuffle: bool; defaults to True for `"train"` only.
        seed: shuffle seed.
        validation_size: rows before 50,000 held out for `"validation"`.
        drop_remainder: bool.

    Returns:
        A dataset of `(images, labels)`: float32 [B, 28, 28, 1] in 0..255
        and int32 [B].
    """
    digits, labels = load_mnist_arrays(
        data_dir, split, validation_size=validation_size
    )
    shuffle = split == "train" if shuffle is None else bool(shuffle)
    return to_dataset(
        digits[..., None],
        labels,
        batch_size,
        shuffle,
        seed,
        drop_remainder,
        f"MNIST {split!r}",
    )


def _check_intensities(images, name: str = "images") -> np.ndarray:
    """`images` as a float32 array, or `TypeError` for a non-float dtype
    and `ValueError` for values outside [0, 1] (NaN included)."""
    array = np.asarray(images)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            f"Invalid dtype for argument `{name}`. Expected floating "
            "intensities in [0, 1] (e.g. uint8 digits / 255). Received: "
            f"{name}.dtype={array.dtype}."
        )
    if array.size and not (
        np.all(array >= 0.0) and np.all(array <= 1.0)
    ):  # NaN fails both comparisons
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected intensities in "
            f"[0, 1]. Received: {name} with values in "
            f"[{np.nanmin(array)}, {np.nanmax(array)}]"
            + (" and NaN" if np.isnan(array).any() else "")
            + "."
        )
    return array.astype(np.float32, copy=False)


def binarise_stochastic(images, seed: int) -> np.ndarray:
    """Binarises images by sampling each pixel from Bernoulli(intensity).

    The stochastic binarisation of MNIST used for density models since
    Salakhutdinov & Murray (2008) and by DRAW (Gregor et al., 2015): a
    pixel of intensity p is 1 with probability p, independently. Use a
    fixed `seed` for a test set, so that every evaluation sees the same
    binary images; `make_stochastic_binarised_dataset` draws fresh samples
    every training epoch.

    Args:
        images: float array of any shape with values in [0, 1].
        seed: int >= 0, the seed of NumPy's default generator.

    Returns:
        float32 array of `images`' shape with values in {0, 1}.

    Raises:
        TypeError: for non-float `images` (divide uint8 digits by 255).
        ValueError: for values outside [0, 1] or NaN, or a bad `seed`.
    """
    images = _check_intensities(images)
    seed = check_non_negative_int(seed, "seed")
    uniform = np.random.default_rng(seed).random(images.shape, np.float32)
    # u in [0, 1): P(u < p) = p exactly, so 0 and 1 stay 0 and 1.
    return (uniform < images).astype(np.float32)


def make_stochastic_binarised_dataset(
    images,
    batch_size: int,
    seed: int,
    *,
    shuffle: bool = True,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Batches of `images` binarised by Bernoulli(intensity), fresh samples
    every epoch.

    Each pass over the dataset (each epoch of `fit`) shuffles the images
    and draws new binary samples (`tf.data.Dataset.random` with
    `rerandomize_each_iteration=True` seeds a stateless sampler per batch),
    as in the training setup of Gregor et al. (2015); the sequence of
    epochs is reproducible for a given `seed`.

    Args:
        images: float array [N, ...] with values in [0, 1].
        batch_size: int > 0.
        seed: int >= 0, seed of the shuffling and the samples.
        shuffle: bool, reshuffle the images every epoch.
        drop_remainder: bool, drop the last partial batch (a fixed batch
            shape compiles once under XLA).

    Returns:
        A dataset of float32 batches [B, ...] with values in {0, 1}.

    Raises:
        TypeError: for non-float `images`.
        ValueError: for values outside [0, 1] or NaN, or a bad
            `batch_size` or `seed`.
    """
    images = _check_intensities(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_non_negative_int(seed, "seed")
    dataset = tf.data.Dataset.from_tensor_slices(images)
    if shuffle:
        dataset = dataset.shuffle(
            len(images), seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.batch(batch_size, drop_remainder=bool(drop_remainder))
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True
    ).batch(2)

    def sample(batch, pair):
        uniform = tf.random.stateless_uniform(
            tf.shape(batch), seed=pair, dtype=tf.float32
        )
        return tf.cast(uniform < batch, tf.float32)

    dataset = tf.data.Dataset.zip(dataset, seeds).map(
        sample, num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
